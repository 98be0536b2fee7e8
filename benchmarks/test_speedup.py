"""Pruned variants against the baseline on the same backend, batch and run (paired ABBA rounds).

``test_speedup`` asks "is it at least the profile's bound faster?"; ``test_speedup_regression``
asks "is it as much faster as the stored runs of this machine class say it should be?". The
second is the one that catches a 10% regression on a noisy shared machine: it compares a
ratio timed in paired rounds, which machine drift hardly moves, with that ratio's own history.
"""

from __future__ import annotations

import pytest

from fastnas_bench.backends.base import BackendTarget, BackendUnavailable
from fastnas_bench.config.settings import BenchSettings
from fastnas_bench.measure.measurer import Measurer
from fastnas_bench.measure.stats import PairedSpeedup
from fastnas_bench.pytest_plugin.outcomes import judge_against_stored, report_outcome, unavailable
from fastnas_bench.pytest_plugin.session import BenchSession
from fastnas_bench.verdicts.outcome import at_least, at_most
from fastnas_bench.verdicts.records import SpeedupRecord, TestKey
from fastnas_bench.versions import run_versions

# Zeroed weights on a dense backend do the same work: anything above this would be news.
UNSTRUCTURED_MAX_SPEEDUP = 1.10


def _measured(measurer: Measurer, settings: BenchSettings, target: BackendTarget, name: str, batch: int,
              timing_disabled: str | None) -> PairedSpeedup:
    if timing_disabled:
        pytest.skip(timing_disabled)
    try:
        return measurer.paired_speedup(target, name, batch)
    except BackendUnavailable as e:
        unavailable(settings, target.backend, str(e))


def _record(variant, name: str, estimate: PairedSpeedup, flops_ratio: float, **verdict: object) -> SpeedupRecord:
    return SpeedupRecord.of(estimate, flops_ratio=flops_ratio, versions=run_versions(),
                            variant_keys={"baseline": variant("baseline").meta["key"], name: variant(name).meta["key"]},
                            **verdict)  # type: ignore[arg-type]


def test_speedup(measurer: Measurer, bench_settings: BenchSettings, bench_session: BenchSession, request, variant,
                 target: BackendTarget, structured_name: str, batch_size: int, timing_disabled: str | None) -> None:
    bound = bench_settings.profile.min_speedup
    estimate = _measured(measurer, bench_settings, target, structured_name, batch_size, timing_disabled)
    outcome = at_least(estimate, bound)
    flops_ratio = variant(structured_name).gflops / variant("baseline").gflops
    bench_session.record(TestKey("test_speedup", target.id, structured_name, batch_size),
                         _record(variant, structured_name, estimate, flops_ratio, bound=bound, outcome=outcome.value))
    report_outcome(request, outcome, f"{target.id} {structured_name} bs{batch_size}: speedup {estimate.describe()} "
                                     f"vs required ≥ {bound:.2f}x")


def test_unstructured_gives_no_speedup(measurer: Measurer, bench_settings: BenchSettings, bench_session: BenchSession,
                                       request, variant, target: BackendTarget, unstructured_name: str, batch_size: int,
                                       timing_disabled: str | None) -> None:
    """The reference's claim: zeroing weights does not make a dense backend faster."""
    estimate = _measured(measurer, bench_settings, target, unstructured_name, batch_size, timing_disabled)
    outcome = at_most(estimate, UNSTRUCTURED_MAX_SPEEDUP)
    bench_session.record(TestKey("test_unstructured_gives_no_speedup", target.id, unstructured_name, batch_size),
                         _record(variant, unstructured_name, estimate, 1.0, bound=UNSTRUCTURED_MAX_SPEEDUP,
                                 outcome=outcome.value))
    report_outcome(request, outcome, f"{target.id} {unstructured_name}: speedup {estimate.describe()} from "
                                     f"unstructured sparsity on a dense backend vs allowed ≤ {UNSTRUCTURED_MAX_SPEEDUP}x")


def test_speedup_regression(measurer: Measurer, bench_settings: BenchSettings, bench_session: BenchSession, request,
                            variant, target: BackendTarget, structured_name: str, batch_size: int,
                            timing_disabled: str | None) -> None:
    """The speedup against the distribution of the stored runs of this machine class."""
    stored = TestKey("test_speedup", target.id, structured_name, batch_size)
    estimate = _measured(measurer, bench_settings, target, structured_name, batch_size, timing_disabled)
    flops_ratio = variant(structured_name).gflops / variant("baseline").gflops
    judge_against_stored(request, bench_session, stored, target.backend, _record(variant, structured_name, estimate, flops_ratio),
                         f"{stored.format()}: speedup {estimate.describe()}")
