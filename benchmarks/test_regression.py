"""Absolute latency against the stored runs of this machine class.

Absolute latency on a shared machine drifts far more than a paired ratio does, so this gate's
resolution (stated in the terminal summary) is coarse there; it is compared in units of a
calibration workload timed alongside, and its tolerance is the stored runs' own spread.
"""

from __future__ import annotations

import pytest

from fastnas_bench.backends import BackendUnavailable
from fastnas_bench.baselines import calibrated_latency, gate_message, latency_gate
from fastnas_bench.machine import run_versions
from fastnas_bench.measure import Measurer
from fastnas_bench.plugin import report_outcome, unavailable
from fastnas_bench.settings import BackendTarget, BenchSettings


def test_latency_regression(measurer: Measurer, bench_settings: BenchSettings, baselines, request, variant,
                            target: BackendTarget, variant_name: str, batch_size: int,
                            timing_disabled: str | None) -> None:
    if timing_disabled:
        pytest.skip(timing_disabled)
    latency_id = f"test_latency[{target.id}-{variant_name}-bs{batch_size}]"
    try:
        record = measurer.measure(target, variant_name, batch_size)
    except BackendUnavailable as e:
        unavailable(bench_settings, target.backend, str(e))
    v = variant(variant_name)
    samples_ms = [s * 1e3 for s in record.samples_s]
    current = {
        "variant_keys": {variant_name: v.meta["key"]}, "versions": run_versions(),
        "latency_p50_ms": record.summary.latency_p50_ms, "calibration_ms": record.calibration_ms,
        **calibrated_latency(samples_ms, record.calibration_ms),
    }
    baselines.produced[latency_id] = current
    runs = baselines.stored_runs(latency_id)
    verdict = latency_gate(runs, current)
    if verdict is None:
        pytest.skip(f"{len(runs)} stored run(s) of {latency_id} in {baselines.path}; the gate needs ≥ 5 "
                    "(record passing runs with --update-baselines)")
    baselines.gates[request.node.name] = {"backend": target.backend, "kind": "latency",
                                          "resolution": verdict.resolution, "outcome": verdict.outcome.value}
    report_outcome(request, verdict.outcome, gate_message(
        f"{latency_id}: median {record.summary.latency_p50_ms:.2f} ms = {current['norm_p50']:.3f} calibration units "
        f"(calibration {record.calibration_ms:.2f} ms)", "latency", verdict, runs, current["versions"],
        current["variant_keys"]))
