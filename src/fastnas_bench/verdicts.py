"""Verdicts from noisy timings: paired speedups with an interval, and gates against stored runs.

Every verdict has three outcomes. *pass* and *fail* are claimed only when the interval is on one
side of the bound; *undecided* says the measurement could not tell, and is reported as such,
never as a pass. How much is measured is fixed before the first sample (the profile's rounds);
nothing is re-measured because of what was seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

#: Two-sided confidence of every interval the suite reports.
CONFIDENCE = 0.95
#: One-sided false-alarm rate of a regression gate per test and run: with a few dozen gated tests
#: per run and nightly runs, 0.5% keeps a false failure to roughly one in several weeks of runs.
GATE_ALPHA = 0.005
#: Stored runs a regression gate needs before it judges (fewer cannot estimate a spread).
MIN_STORED_RUNS = 5


class Outcome(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    UNDECIDED = "undecided"


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


def at_least(estimate: PairedSpeedup, bound: float) -> Outcome:
    """Is the speedup ≥ ``bound``? Pass/fail only when the whole interval says so."""
    if estimate.ci_low >= bound:
        return Outcome.PASS
    if estimate.ci_high < bound:
        return Outcome.FAIL
    return Outcome.UNDECIDED


def at_most(estimate: PairedSpeedup, bound: float) -> Outcome:
    """Is the speedup ≤ ``bound``? Pass/fail only when the whole interval says so."""
    if estimate.ci_high <= bound:
        return Outcome.PASS
    if estimate.ci_low > bound:
        return Outcome.FAIL
    return Outcome.UNDECIDED


@dataclass(frozen=True)
class GateVerdict:
    """A current log-figure against the distribution of the same figure in stored runs.

    All figures are logs of a "higher is worse" quantity turned around by the caller: the gate
    fails when the current value lies *below* what the stored runs explain.

    Attributes:
        outcome: pass / fail / undecided.
        stored_center: Mean of the stored runs (log units).
        stored_spread: Standard deviation used (log units): the runs' own spread, or their typical
            in-run uncertainty where that is larger (five close runs must not make a razor edge).
        limit: Lowest value the stored runs explain (one-sided prediction bound, log units).
        stored_runs: Number of stored runs.
        resolution: The smallest relative drop this gate catches (fails on), given the current
            interval: exp(center - limit + half-width) - 1.
    """

    outcome: Outcome
    stored_center: float
    stored_spread: float
    limit: float
    stored_runs: int
    resolution: float


def drop_gate(stored: Sequence[float], stored_half_widths: Sequence[float], current: float, current_low: float,
              current_high: float, alpha: float = GATE_ALPHA) -> GateVerdict:
    """Judge a current value (log units, with its interval) against stored runs of it.

    The limit is the one-sided (1 - ``alpha``) prediction bound of a new run from the stored ones:
    mean - t(1-alpha, n-1) · s · sqrt(1 + 1/n). Fail when the current interval lies wholly below
    it; pass when the current estimate is at or above it; undecided in between.

    Raises:
        ValueError: with fewer than :data:`MIN_STORED_RUNS` stored runs.
    """
    from scipy.stats import t

    values = np.asarray(stored, dtype=float)
    n = values.size
    if n < MIN_STORED_RUNS:
        raise ValueError(f"need ≥ {MIN_STORED_RUNS} stored runs, got {n}")
    # A half-width is ~1.96 standard errors; a run-to-run spread below one run's own standard
    # error is luck, not precision.
    z = 1.959963984540054
    in_run = float(np.median(np.asarray(stored_half_widths, dtype=float))) / z if len(stored_half_widths) else 0.0
    spread = max(float(values.std(ddof=1)), in_run)
    center = float(values.mean())
    limit = center - float(t.ppf(1 - alpha, n - 1)) * spread * math.sqrt(1 + 1 / n)
    if current_high < limit:
        outcome = Outcome.FAIL
    elif current >= limit:
        outcome = Outcome.PASS
    else:
        outcome = Outcome.UNDECIDED
    half_width = (current_high - current_low) / 2
    resolution = math.exp(center - limit + half_width) - 1
    return GateVerdict(outcome, center, spread, limit, n, resolution)
