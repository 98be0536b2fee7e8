"""Latency of every variant on every backend, timed by pytest-benchmark (saved, comparable runs)."""

from __future__ import annotations

from fastnas_bench.backends.base import BackendTarget, BackendUnavailable
from fastnas_bench.config.settings import BenchSettings
from fastnas_bench.measure.measurer import Measurer
from fastnas_bench.measure.stats import efficiency
from fastnas_bench.measure.timing import summarize_seconds
from fastnas_bench.pytest_plugin.outcomes import unavailable
from fastnas_bench.verdicts.records import LatencyInfo


def test_latency(benchmark, measurer: Measurer, bench_settings: BenchSettings, variant,
                 target: BackendTarget, variant_name: str, batch_size: int) -> None:
    benchmark.group = f"{target.id}-bs{batch_size}"
    try:
        if benchmark.disabled:
            # No timing: the output check against the PyTorch reference still runs (and can fail).
            measurer.check(target, variant_name, batch_size)
            return
        measurement = measurer.measure(target, variant_name, batch_size, benchmark=benchmark)
    except BackendUnavailable as e:
        unavailable(bench_settings, target.backend, str(e))
    v = variant(variant_name)
    base = variant("baseline")
    speedup = eff = None
    base_measurement = measurer.measurements.get((target.id, "baseline", batch_size))
    if variant_name != "baseline" and base_measurement is not None:
        speedup = base_measurement.summary.latency_p50_ms / measurement.summary.latency_p50_ms
        eff = efficiency(1 / speedup, v.gflops / base.gflops)
    gpu = summarize_seconds([ms / 1e3 for ms in measurement.gpu_samples_ms]) if measurement.gpu_samples_ms else None
    budget = v.spec.latency
    info = LatencyInfo(
        **measurement.summary.as_dict(),
        backend=target.backend, precision=target.precision, variant=variant_name, method=v.spec.method,
        batch=batch_size, imgsz=bench_settings.profile.bench_imgsz, params=v.params, gflops=v.gflops,
        flops_ratio=v.gflops / base.gflops, map50_95=v.map50_95, recall=v.recall, ap_small=v.accuracy.ap_small,
        flops_target=v.spec.flops_target, channel_divisor=v.spec.channel_divisor,
        cut_for=budget.label if budget else None, latency_target=budget.target if budget else None,
        output_box_err_px=measurement.agreement.box_err_px, output_score_err=measurement.agreement.score_err,
        output_detections_matched=measurement.agreement.detections, runtime=measurement.backend_info,
        # Per-round samples feed the statistical regression verdict and the report's distributions.
        latency_samples_ms=[round(s * 1e3, 4) for s in measurement.samples_s],
        speedup_vs_baseline=speedup, efficiency=eff,
        gpu_time_p50_ms=gpu.latency_p50_ms if gpu else None, gpu_time_iqr_ms=gpu.latency_iqr_ms if gpu else None,
        gpu_time_samples_ms=[round(ms, 4) for ms in measurement.gpu_samples_ms] if measurement.gpu_samples_ms else None,
        gpu_state_before=measurement.gpu_state["before"] if measurement.gpu_state else None,
        gpu_state_after=measurement.gpu_state["after"] if measurement.gpu_state else None,
    )
    benchmark.extra_info.update(info.to_json())
