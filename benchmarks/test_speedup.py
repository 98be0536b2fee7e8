"""Pruned variants against the baseline on the same backend, batch and run (interleaved rounds)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fastnas_bench.backends import BackendUnavailable
from fastnas_bench.checks import check_speedup, efficiency, speedup
from fastnas_bench.measure import Measurer, confirmed_pair
from fastnas_bench.settings import BackendTarget, BenchSettings
from fastnas_bench.timing import LatencySummary

# Zeroed weights on a dense backend do the same work: anything above this would be news.
UNSTRUCTURED_MAX_SPEEDUP = 1.10


def _interleaved(measurer: Measurer, target: BackendTarget, name: str, batch: int,
                 passes: Callable[[LatencySummary, LatencySummary], bool]) -> tuple[LatencySummary, LatencySummary, int]:
    try:
        # Timed in alternating rounds, so machine drift cannot favour either variant; a failing
        # block is confirmed by a second one before the verdict (see confirmed_pair).
        return confirmed_pair(lambda: measurer.interleaved_samples(target, ("baseline", name), batch), passes)
    except BackendUnavailable as e:
        pytest.skip(str(e))


def _record(baselines, request, base: LatencySummary, pruned: LatencySummary, flops_ratio: float, bound: float,
            blocks: int) -> float:
    value = speedup(base, pruned)
    baselines.produced[request.node.name] = {
        "speedup": value, "bound": bound, "flops_ratio": flops_ratio, "blocks": blocks,
        "efficiency": efficiency(1 / value, flops_ratio) if flops_ratio < 1 else None,
        "baseline_p50_ms": base.latency_p50_ms, "pruned_p50_ms": pruned.latency_p50_ms,
        "baseline_iqr_ms": base.latency_iqr_ms, "pruned_iqr_ms": pruned.latency_iqr_ms,
    }
    return value


def test_speedup(measurer: Measurer, bench_settings: BenchSettings, baselines, request, variant,
                 target: BackendTarget, structured_name: str, batch_size: int) -> None:
    bound = bench_settings.profile.min_speedup[target.backend]
    base, pruned, blocks = _interleaved(measurer, target, structured_name, batch_size,
                                        lambda b, p: speedup(b, p) >= bound)
    _record(baselines, request, base, pruned, variant(structured_name).gflops / variant("baseline").gflops, bound, blocks)
    message = check_speedup(f"{target.id} {structured_name} bs{batch_size}", base, pruned, bound)
    if message:
        pytest.fail(f"{message}, {blocks} block(s) of rounds")


def test_unstructured_gives_no_speedup(measurer: Measurer, baselines, request, target: BackendTarget,
                                       unstructured_name: str, batch_size: int) -> None:
    """The reference's claim: zeroing weights does not make a dense backend faster."""
    base, pruned, blocks = _interleaved(measurer, target, unstructured_name, batch_size,
                                        lambda b, p: speedup(b, p) <= UNSTRUCTURED_MAX_SPEEDUP)
    value = _record(baselines, request, base, pruned, 1.0, UNSTRUCTURED_MAX_SPEEDUP, blocks)
    if value > UNSTRUCTURED_MAX_SPEEDUP:
        pytest.fail(f"{target.id} {unstructured_name}: speedup {value:.3f}x > {UNSTRUCTURED_MAX_SPEEDUP}x "
                    f"from unstructured sparsity on a dense backend, {blocks} block(s) of rounds")
