"""Absolute latency against the stored runs of this machine class.

Absolute latency on a shared machine drifts far more than a paired ratio does, so this gate's
resolution (stated in the terminal summary) is coarse there; it is compared in units of a
calibration workload timed alongside, and its tolerance is the stored runs' own spread.
"""

from __future__ import annotations

import pytest

from fastnas_bench.backends import BackendUnavailable
from fastnas_bench.baselines import calibrated_latency, latency_gate
from fastnas_bench.machine import run_versions
from fastnas_bench.measure import Measurer
from fastnas_bench.plugin import judge_against_stored, unavailable
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
    judge_against_stored(
        request, baselines, latency_id, "latency", target.backend, current, latency_gate,
        f"{latency_id}: median {record.summary.latency_p50_ms:.2f} ms = {current['norm_p50']:.3f} calibration units "
        f"(calibration {record.calibration_ms:.2f} ms)", current["versions"], current["variant_keys"])
