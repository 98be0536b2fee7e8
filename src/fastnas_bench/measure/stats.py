"""Statistics of noisy timings: paired speedups with a distribution-free interval, and efficiency.

Verdicts on these figures (pass / fail / undecided) are in :mod:`fastnas_bench.verdicts.outcome`.
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
        speedup: exp(median of the per-round log ratios) (of the batch medians' mean where the interval
            is by batches); > 1 means the variant is faster.
        ci_low: Lower end of its interval.
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


def paired_speedup(base_s: Sequence[float], variant_s: Sequence[float], confidence: float = CONFIDENCE,
                   batch_rounds: int | None = None) -> PairedSpeedup:
    """The speedup and its interval from ABBA samples (see :func:`abba_log_ratios`).

    Args:
        batch_rounds: ``None``: the sign-test interval of the median, which assumes independent rounds;
            else the batch-means interval over batches of this many consecutive rounds
            (:func:`batch_interval`), which holds where rounds are autocorrelated, as a shared
            machine's are.
    """
    ratios = abba_log_ratios(base_s, variant_s)
    if batch_rounds is None:
        median, low, high, coverage = median_interval(ratios, confidence)
    else:
        median, low, high, _ = batch_interval([ratios], batch_rounds, confidence)
        coverage = confidence
    return PairedSpeedup(math.exp(median), math.exp(low), math.exp(high), len(ratios), coverage,
                         float(np.median(base_s)) * 1e3, float(np.median(variant_s)) * 1e3)


def efficiency(latency_ratio: float, flops_ratio: float) -> float | None:
    """(1 - latency ratio) / (1 - FLOPs ratio): 1.0 means the FLOPs cut became latency in full; ``None``
    where no FLOPs were removed (unstructured sparsity), where it is undefined."""
    return (1.0 - latency_ratio) / (1.0 - flops_ratio) if flops_ratio < 1 else None


def log_half_width(low: float, high: float) -> float:
    """Half an interval's width in log units (≈ its relative half-width)."""
    return (math.log(high) - math.log(low)) / 2


def batch_interval(sessions: Sequence[Sequence[float]], batch_rounds: int,
                   confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """Center and interval of a noisy per-round series whose rounds are autocorrelated.

    Rounds of a shared machine come in bursts lasting seconds to minutes, so neighbouring rounds are not
    independent and an interval that treats them so is too narrow. Non-overlapping batch means: each
    session's rounds are cut into contiguous batches of ``batch_rounds``; the median of each batch is one
    observation, and the interval is Student's t over those batch medians. Batches never span two
    sessions (worker restarts). Batches of one session share its per-process effect, so with several
    sessions the standard error is also taken over the sessions' own means (t with sessions - 1 degrees
    of freedom), and the wider of the two intervals is returned: where restarts move the figure more
    than rounds do (PyTorch workers here), the session level decides.

    Args:
        sessions: Per-round values of each session, in time order (log ratios, say).
        batch_rounds: Rounds per batch; a session's leftover rounds (fewer than a batch) join its last batch.
        confidence: Two-sided coverage.

    Returns:
        (mean of batch medians, low, high, number of batches).

    Raises:
        ValueError: with fewer than 3 batches.
    """
    from scipy.stats import t

    medians: list[float] = []
    per_session: list[list[float]] = []
    for values in sessions:
        n = len(values) // batch_rounds
        own = [float(np.median(values[b * batch_rounds:len(values) if b == n - 1 else (b + 1) * batch_rounds]))
               for b in range(n)]
        medians += own
        if own:
            per_session.append(own)
    k = len(medians)
    if k < 3:
        raise ValueError(f"need ≥ 3 batches of {batch_rounds} rounds for an interval, got {k}")
    center = float(np.mean(medians))
    quantile = 0.5 + confidence / 2
    half = float(t.ppf(quantile, k - 1)) * float(np.std(medians, ddof=1)) / math.sqrt(k)
    if len(per_session) >= 3:
        means = [float(np.mean(s)) for s in per_session]
        r = len(means)
        half = max(half, float(t.ppf(quantile, r - 1)) * float(np.std(means, ddof=1)) / math.sqrt(r))
    return center, center - half, center + half, k
