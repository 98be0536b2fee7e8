"""Absolute latency against the stored runs of this machine class.

Absolute latency on a shared machine drifts far more than a paired ratio does, so this gate's
resolution (stated in the terminal summary) is coarse there; it is compared in units of a
calibration workload timed alongside, and its tolerance is the stored runs' own spread.
"""

from __future__ import annotations

import pytest

from fastnas_bench.backends.base import BackendTarget, BackendUnavailable
from fastnas_bench.config.settings import BenchSettings
from fastnas_bench.measure.measurer import Measurer
from fastnas_bench.pytest_plugin.outcomes import judge_against_stored, judge_gate_family, unavailable
from fastnas_bench.pytest_plugin.session import BenchSession
from fastnas_bench.verdicts.records import LatencyRecord, TestKey
from fastnas_bench.versions import run_versions


def test_latency_regression(measurer: Measurer, bench_settings: BenchSettings, bench_session: BenchSession, request,
                            variant, target: BackendTarget, variant_name: str, batch_size: int,
                            timing_disabled: str | None) -> None:
    if timing_disabled:
        pytest.skip(timing_disabled)
    stored = TestKey("test_latency", target.id, variant_name, batch_size)
    try:
        measurement = measurer.measure(target, variant_name, batch_size)
    except BackendUnavailable as e:
        unavailable(bench_settings, target.backend, str(e))
    current = LatencyRecord.of([s * 1e3 for s in measurement.samples_s], measurement.calibration_ms,
                               measurement.summary.latency_p50_ms, versions=run_versions(),
                               variant_keys={variant_name: variant(variant_name).meta["key"]})
    bench_session.record(stored, current)
    judge_against_stored(
        request, bench_session, stored, target.backend, current,
        f"{stored.format()}: median {current.latency_p50_ms:.2f} ms = {current.norm_p50:.3f} calibration units "
        f"(calibration {measurement.calibration_ms:.2f} ms)")


def test_regression_family(bench_session: BenchSession) -> None:
    """The stored-run gates of this run as one family: Holm's procedure at a 2% family-wise false-alarm
    rate (runs after every gate; each gate already decided at its Bonferroni share when it ran)."""
    judge_gate_family(bench_session)
