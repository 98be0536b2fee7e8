"""FLOPs-constrained methods at equal measured latency: the fair rival of a latency-cut variant.

A FLOPs method (FastNAS, l2struct) given a latency budget bisects its own FLOPs target until the
pruned network's latency, measured against the source on the budget's backend, meets the budget.
So a latency-aware method is compared with it at the same measured speed, not the same FLOPs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from fastnas_bench import progress
from fastnas_bench.measure.probe import LatencyProbe, match_latency
from fastnas_bench.methods.base import PruneContext

#: Bisection steps over the FLOPs target, fixed in advance: [0.3, 1) to within 0.7 / 2**6 ≈ 0.011.
BISECTION_STEPS = 6
#: ABBA rounds per measured candidate (a 95% interval about ±1% wide on the 2-core VM).
MATCH_ROUNDS = 30


def prune_to_latency(prune_at: Callable[[float], nn.Module], source: nn.Module, ctx: PruneContext,
                     notes: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The network ``prune_at(flops_target)`` gives at the largest FLOPs target whose measured latency
    ratio meets ``ctx.spec.latency``; with notes for the variant's metadata.

    ``notes`` (the method's own, which each ``prune_at`` call rewrites) is left as the kept step left it.
    """
    budget = ctx.spec.latency
    assert budget is not None
    probe = LatencyProbe(source, budget, ctx.work_dir / "latency-probe")
    steps = iter(range(1, BISECTION_STEPS + 1))

    def measure(model: nn.Module):  # type: ignore[no-untyped-def]
        progress.step(f"matching latency {budget.target:g} on {budget.backend}: bisection step", next(steps),
                      BISECTION_STEPS)
        return probe.ratio(model, MATCH_ROUNDS)

    kept: dict[float, dict[str, Any]] = {}

    def pruned_at(flops: float) -> nn.Module:
        model = prune_at(flops)
        if notes is not None:
            kept[flops] = dict(notes)
        return model

    model, flops_target, measured, history = match_latency(pruned_at, measure, budget.target, BISECTION_STEPS)
    if notes is not None:
        notes.clear()
        notes.update(kept[flops_target])
    return model, {"flops_target": round(flops_target, 4), "latency_ratio_before_finetune": round(measured.ratio, 4),
                   "latency_ratio_ci": [round(measured.ratio_low, 4), round(measured.ratio_high, 4)],
                   "latency_bisection": history, "latency_rounds": MATCH_ROUNDS}
