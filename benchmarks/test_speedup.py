"""Pruned variants against the baseline on the same backend, batch and run (paired ABBA rounds).

``test_speedup`` asks "is it at least the profile's bound faster?"; ``test_speedup_regression``
asks "is it as much faster as the stored runs of this machine class say it should be?". The
second is the one that catches a 10% regression on a noisy shared machine: it compares a
ratio timed in paired rounds, which machine drift hardly moves, with that ratio's own history.
"""

from __future__ import annotations

import pytest

from fastnas_bench.backends import BackendUnavailable
from fastnas_bench.baselines import speedup_gate
from fastnas_bench.checks import efficiency
from fastnas_bench.machine import run_versions
from fastnas_bench.measure import Measurer
from fastnas_bench.plugin import judge_against_stored, report_outcome, unavailable
from fastnas_bench.settings import BackendTarget, BenchSettings
from fastnas_bench.verdicts import Outcome, PairedSpeedup, at_least, at_most

# Zeroed weights on a dense backend do the same work: anything above this would be news.
UNSTRUCTURED_MAX_SPEEDUP = 1.10


def _measured(measurer: Measurer, target: BackendTarget, name: str, batch: int,
              timing_disabled: str | None) -> PairedSpeedup:
    if timing_disabled:
        pytest.skip(timing_disabled)
    try:
        return measurer.paired_speedup(target, name, batch)
    except BackendUnavailable as e:
        unavailable(measurer.settings, target.backend, str(e))


def _record(baselines, request, variant, name: str, estimate: PairedSpeedup, flops_ratio: float, bound: float,
            outcome: Outcome) -> None:
    baselines.produced[request.node.name] = {
        "speedup": estimate.speedup, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high,
        "rounds": estimate.rounds, "confidence": estimate.confidence, "bound": bound, "outcome": outcome.value,
        "baseline_p50_ms": estimate.baseline_p50_ms, "pruned_p50_ms": estimate.variant_p50_ms,
        "flops_ratio": flops_ratio,
        "efficiency": efficiency(1 / estimate.speedup, flops_ratio) if flops_ratio < 1 else None,
        "variant_keys": {"baseline": variant("baseline").meta["key"], name: variant(name).meta["key"]},
        "versions": run_versions(),
    }


def test_speedup(measurer: Measurer, bench_settings: BenchSettings, baselines, request, variant,
                 target: BackendTarget, structured_name: str, batch_size: int, timing_disabled: str | None) -> None:
    bound = bench_settings.profile.min_speedup
    estimate = _measured(measurer, target, structured_name, batch_size, timing_disabled)
    outcome = at_least(estimate, bound)
    _record(baselines, request, variant, structured_name, estimate,
            variant(structured_name).gflops / variant("baseline").gflops, bound, outcome)
    report_outcome(request, outcome, f"{target.id} {structured_name} bs{batch_size}: speedup {estimate.describe()} "
                                     f"vs required ≥ {bound:.2f}x")


def test_unstructured_gives_no_speedup(measurer: Measurer, baselines, request, variant, target: BackendTarget,
                                       unstructured_name: str, batch_size: int, timing_disabled: str | None) -> None:
    """The reference's claim: zeroing weights does not make a dense backend faster."""
    estimate = _measured(measurer, target, unstructured_name, batch_size, timing_disabled)
    outcome = at_most(estimate, UNSTRUCTURED_MAX_SPEEDUP)
    _record(baselines, request, variant, unstructured_name, estimate, 1.0, UNSTRUCTURED_MAX_SPEEDUP, outcome)
    report_outcome(request, outcome, f"{target.id} {unstructured_name}: speedup {estimate.describe()} from "
                                     f"unstructured sparsity on a dense backend vs allowed ≤ {UNSTRUCTURED_MAX_SPEEDUP}x")


def test_speedup_regression(measurer: Measurer, baselines, request, variant, target: BackendTarget,
                            structured_name: str, batch_size: int, timing_disabled: str | None) -> None:
    """The speedup against the distribution of the stored runs of this machine class."""
    speedup_id = f"test_speedup[{target.id}-{structured_name}-bs{batch_size}]"
    estimate = _measured(measurer, target, structured_name, batch_size, timing_disabled)
    judge_against_stored(
        request, baselines, speedup_id, "speedup", target.backend, estimate, speedup_gate,
        f"{speedup_id}: speedup {estimate.describe()}", run_versions(),
        {"baseline": variant("baseline").meta["key"], structured_name: variant(structured_name).meta["key"]})
