"""Three-way verdicts: pass and fail are claimed only when an interval lies on one side of a bound.

*Undecided* says the measurement could not tell; it is reported as such, never as a pass. How much
is measured is fixed before the first sample (the profile's rounds); nothing is re-measured
because of what was seen.
"""

from __future__ import annotations

from enum import Enum

from fastnas_bench.measure.stats import PairedSpeedup


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
