"""Latency of every variant on every backend, timed by pytest-benchmark (saved, comparable runs)."""

from __future__ import annotations

from fastnas_bench.backends import BackendUnavailable
from fastnas_bench.checks import efficiency
from fastnas_bench.measure import Measurer
from fastnas_bench.plugin import unavailable
from fastnas_bench.settings import BackendTarget, BenchSettings
from fastnas_bench.timing import summarize_seconds


def test_latency(benchmark, measurer: Measurer, bench_settings: BenchSettings, variant,
                 target: BackendTarget, variant_name: str, batch_size: int) -> None:
    benchmark.group = f"{target.id}-bs{batch_size}"
    try:
        if benchmark.disabled:
            # No timing: the output check against the PyTorch reference still runs (and can fail).
            measurer.check(target, variant_name, batch_size)
            return
        record = measurer.measure(target, variant_name, batch_size, benchmark=benchmark)
    except BackendUnavailable as e:
        unavailable(bench_settings, target.backend, str(e))
    v = variant(variant_name)
    base = variant("baseline")
    benchmark.extra_info.update(
        record.summary.as_dict(),
        variant=variant_name, method=v.spec.method, flops_target=v.spec.flops_target,
        channel_divisor=v.spec.channel_divisor,
        cut_for=v.spec.latency.label if v.spec.latency else None,
        latency_target=v.spec.latency.target if v.spec.latency else None, backend=target.backend, precision=target.precision,
        batch=batch_size, imgsz=bench_settings.profile.bench_imgsz, params=v.params, gflops=v.gflops,
        flops_ratio=v.gflops / base.gflops, map50_95=v.map50_95, recall=v.recall, ap_small=v.meta["ap_small"],
        output_box_err_px=record.agreement.box_err_px, output_score_err=record.agreement.score_err,
        output_detections_matched=record.agreement.detections, runtime=record.backend_info,
        # Per-round samples feed the statistical regression verdict and the report's distributions.
        latency_samples_ms=[round(s * 1e3, 4) for s in record.samples_s],
    )
    base_record = measurer.records.get((target.id, "baseline", batch_size))
    if variant_name != "baseline" and base_record is not None:
        ratio = base_record.summary.latency_p50_ms / record.summary.latency_p50_ms
        benchmark.extra_info["speedup_vs_baseline"] = ratio
        if v.gflops < base.gflops:  # efficiency is undefined when no FLOPs were removed (unstructured)
            benchmark.extra_info["efficiency"] = efficiency(1 / ratio, v.gflops / base.gflops)
    if record.gpu_samples_ms:
        gpu = summarize_seconds([ms / 1e3 for ms in record.gpu_samples_ms])
        benchmark.extra_info.update(gpu_time_p50_ms=gpu.latency_p50_ms, gpu_time_iqr_ms=gpu.latency_iqr_ms,
                                    gpu_time_samples_ms=[round(ms, 4) for ms in record.gpu_samples_ms])
    if record.gpu_state is not None:
        benchmark.extra_info.update(gpu_state_before=record.gpu_state["before"], gpu_state_after=record.gpu_state["after"])
