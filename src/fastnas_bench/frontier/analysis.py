"""What a backend's measured points say: the frontier, the best efficiency near a FLOPs target, and how
well the latency table ranks the configurations.

Pure: points in, figures out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fastnas_bench.measure.stats import efficiency
from fastnas_bench.report.summary import pareto_front

#: FLOPs ratio the efficiency is read around (the reference experiment's FLOPs ≤ 66% cut landed here) and
#: the half-width of the window: wide enough to hold several sampled configurations at 150.
EFFICIENCY_FLOPS = 0.64
EFFICIENCY_HALF_WIDTH = 0.03


@dataclass(frozen=True)
class Point:
    """One configuration measured on one backend.

    Attributes:
        config: The configuration's widths digest.
        family: How it was sampled.
        flops_ratio: Its FLOPs over the full network's.
        latency_ratio: Its measured latency over the full network's (median of paired rounds).
        ratio_low, ratio_high: The latency ratio's 95% interval.
        predicted_ratio: The latency table's prediction of the ratio, ``None`` without a table.
        layers_ratio: Where the table is calibrated in the graph, its prediction without the calibration
            (the isolated layers' sum, the rest of the model a constant); ``None`` otherwise.
    """

    config: str
    family: str
    flops_ratio: float
    latency_ratio: float
    ratio_low: float
    ratio_high: float
    predicted_ratio: float | None = None
    layers_ratio: float | None = None

    @property
    def efficiency(self) -> float | None:
        return efficiency(self.latency_ratio, self.flops_ratio)


@dataclass(frozen=True)
class EfficiencyPick:
    """The most efficient point of a FLOPs window, with the interval its latency interval gives.

    The interval is the chosen point's own; the best of several noisy points reads high (the winner's
    curse), so remeasure the configuration before quoting it as reachable.
    """

    point: Point
    efficiency: float
    efficiency_low: float
    efficiency_high: float
    candidates: int


def frontier(points: Sequence[Point]) -> list[Point]:
    """The Pareto set: points no other beats on both lower latency ratio and higher FLOPs ratio (as FLOPs
    kept stand for capacity kept), fastest first. A point with the same figures as one kept is left out."""
    by_key = {(p.latency_ratio, p.flops_ratio, p.config): p for p in points}
    return [by_key[k] for k in pareto_front(list(by_key))]


def best_efficiency(points: Sequence[Point], flops_ratio: float = EFFICIENCY_FLOPS,
                    half_width: float = EFFICIENCY_HALF_WIDTH) -> EfficiencyPick | None:
    """The point of highest efficiency (1 − latency ratio) / (1 − FLOPs ratio) with a FLOPs ratio within
    ``half_width`` of ``flops_ratio``; ``None`` where none is in the window."""
    inside = [p for p in points if abs(p.flops_ratio - flops_ratio) <= half_width + 1e-12 and p.flops_ratio < 1]
    if not inside:
        return None
    best = max(inside, key=lambda p: (p.efficiency, p.config))
    # Efficiency falls as latency rises: the latency interval's top end gives the efficiency's bottom.
    low = efficiency(best.ratio_high, best.flops_ratio)
    high = efficiency(best.ratio_low, best.flops_ratio)
    assert best.efficiency is not None and low is not None and high is not None  # flops_ratio < 1 above
    return EfficiencyPick(best, best.efficiency, low, high, len(inside))


def spearman(measured: Sequence[float], predicted: Sequence[float]) -> float | None:
    """Spearman rank correlation of ``measured`` and ``predicted`` (ties ranked by their mean); ``None``
    with fewer than 3 pairs or where either side is constant (undefined)."""
    from scipy.stats import spearmanr

    if len(measured) != len(predicted):
        raise ValueError(f"{len(measured)} measured and {len(predicted)} predicted values do not pair")
    if len(measured) < 3 or len(set(measured)) < 2 or len(set(predicted)) < 2:
        return None
    rho = float(spearmanr(measured, predicted).statistic)
    return None if math.isnan(rho) else rho
