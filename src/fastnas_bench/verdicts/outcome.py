"""Three-way verdicts: pass and fail are claimed only when an interval lies on one side of a bound.

*Undecided* says the measurement could not tell; it is reported as such, never as a pass. How much
is measured is fixed before the first sample (the profile's rounds); nothing is re-measured
because of what was seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING

from fastnas_bench.measure.stats import PairedSpeedup

if TYPE_CHECKING:  # for the annotation only: the A/B machinery is not needed to judge its result
    from fastnas_bench.measure.ab import ABResult


class Outcome(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    UNDECIDED = "undecided"


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


#: Chance that an A/A run (nothing changed) fails any of its A/B gates: the whole run's false-alarm
#: rate, split evenly over its gates (Bonferroni; each gate's decision must be made when it runs).
FAMILY_ALPHA = 0.05
#: B/A latency ratios up to this much above 1 are not a regression: what a process restart alone moves
#: (an A/A probe of the same model read 0.986-0.989 here, every interval excluding 1.0).
AB_TOLERANCE = 0.03


def family_confidence(gates: int, family_alpha: float = FAMILY_ALPHA) -> float:
    """Two-sided confidence of each of ``gates`` intervals whose one-sided failure bounds together err
    with probability at most ``family_alpha``."""
    return 1 - 2 * family_alpha / max(1, gates)


def not_slower(estimate: ABResult, tolerance: float = AB_TOLERANCE) -> Outcome:
    """Is side B at most ``tolerance`` slower than side A? Fail only when the whole interval lies above
    the tolerance (significance and size); pass when it lies at or under it; else undecided."""
    limit = 1 + tolerance
    if estimate.ci_low > limit:
        return Outcome.FAIL
    if estimate.ci_high <= limit:
        return Outcome.PASS
    return Outcome.UNDECIDED


def holm(p_values: Sequence[float], family_alpha: float) -> list[bool]:
    """Holm's step-down procedure: which of the hypotheses to reject, with the chance of rejecting any
    true one at most ``family_alpha`` (no assumption on how the tests depend on each other).

    The i-th smallest p-value (from 0) is compared with ``family_alpha / (m - i)``; rejection stops at
    the first that is not below it. It rejects everything Bonferroni (``family_alpha / m`` each) does,
    and more where several gates fail together.
    """
    m = len(p_values)
    rejected = [False] * m
    for step, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        if p_values[index] >= family_alpha / (m - step):
            break
        rejected[index] = True
    return rejected
