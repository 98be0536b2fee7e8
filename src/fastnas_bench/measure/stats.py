"""Statistics of noisy timings: paired speedups with a distribution-free interval, and efficiency.

Verdicts on these figures (pass / fail / undecided) are :mod:`fastnas_bench.verdicts`' business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Two-sided confidence of every interval the suite reports.
CONFIDENCE = 0.95
@dataclass(frozen=True)
class PairedSpeedup:
    """Baseline/variant speedup from rounds timed in ABBA order.

    Attributes:
        speedup: exp(median of the per-round log ratios); > 1 means the variant is faster.
        ci_low: Lower end of the distribution-free interval of that median.
        ci_high: Upper end.
        rounds: Number of ABBA rounds (paired ratios).
        confidence: Coverage of the interval (at least :data:`CONFIDENCE`).
        baseline_p50_ms: Median of the baseline's calls (context; the ratio is not taken from it).
        variant_p50_ms: Median of the variant's calls.
    """

    speedup: float
    ci_low: float
    ci_high: float
    rounds: int
    confidence: float
    baseline_p50_ms: float = float("nan")
    variant_p50_ms: float = float("nan")

    @property
    def half_width_log(self) -> float:
        """Half the interval's width in log units (≈ relative half-width)."""
        return (math.log(self.ci_high) - math.log(self.ci_low)) / 2

    def describe(self) -> str:
        return (f"{self.speedup:.3f}x ({self.confidence:.0%} CI [{self.ci_low:.3f}, {self.ci_high:.3f}], "
                f"{self.rounds} paired rounds)")


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """Median of ``values`` and its distribution-free interval from order statistics (sign test).

    The interval [x_(j), x_(n+1-j)] covers the true median with probability 1 - 2·P(Binom(n, ½) < j),
    whatever the distribution; j is the largest index that keeps that coverage ≥ ``confidence``.

    Returns:
        (median, low, high, actual coverage).

    Raises:
        ValueError: with fewer than 6 values (no order-statistic interval reaches 95% below that).
    """
    from scipy.stats import binom

    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n < 6:
        raise ValueError(f"need ≥ 6 paired rounds for a {confidence:.0%} interval, got {n}")
    tail = (1 - confidence) / 2
    j = 0  # 1-based index of the lower order statistic; binom.cdf(j-1) is the tail it leaves out
    while binom.cdf(j, n, 0.5) <= tail:
        j += 1
    coverage = 1 - 2 * float(binom.cdf(j - 1, n, 0.5))
    return float(np.median(x)), float(x[j - 1]), float(x[n - j]), coverage


def abba_log_ratios(base_s: Sequence[float], variant_s: Sequence[float]) -> list[float]:
    """Per-round log(baseline time / variant time) from samples timed A B B A per round.

    ``base_s`` holds (a1, a2) and ``variant_s`` (b1, b2) of each round in order. Summing the two
    calls of each side cancels a linear drift within the round, and each side has one call after
    itself and one after the other, so neither pays for the other's leftovers more often.
    """
    if len(base_s) != len(variant_s) or len(base_s) % 2:
        raise ValueError(f"ABBA rounds need two samples per side per round, got {len(base_s)} and {len(variant_s)}")
    a = np.asarray(base_s, dtype=float).reshape(-1, 2).sum(axis=1)
    b = np.asarray(variant_s, dtype=float).reshape(-1, 2).sum(axis=1)
    return list(np.log(a / b))


def paired_speedup(base_s: Sequence[float], variant_s: Sequence[float], confidence: float = CONFIDENCE) -> PairedSpeedup:
    """The speedup and its interval from ABBA samples (see :func:`abba_log_ratios`)."""
    ratios = abba_log_ratios(base_s, variant_s)
    median, low, high, coverage = median_interval(ratios, confidence)
    return PairedSpeedup(math.exp(median), math.exp(low), math.exp(high), len(ratios), coverage,
                         float(np.median(base_s)) * 1e3, float(np.median(variant_s)) * 1e3)


def efficiency(latency_ratio: float, flops_ratio: float) -> float:
    """(1 - latency ratio) / (1 - FLOPs ratio): 1.0 means the FLOPs cut became latency in full."""
    return (1.0 - latency_ratio) / (1.0 - flops_ratio)
