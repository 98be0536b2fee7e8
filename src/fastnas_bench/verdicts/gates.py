"""Regression gates: a current figure against the distribution of the same figure in stored runs.

A gate's tolerance is the spread of the stored runs of this machine class, never a number set by
hand. A new version or a rebuilt variant is compared like any other run; the message names it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastnas_bench.verdicts.outcome import Outcome
from fastnas_bench.verdicts.records import LatencyRecord, SpeedupRecord

#: Chance that a run of unchanged code fails any of its stored-run gates (family-wise): 2% is one
#: false alarm in about fifty nightly runs. Each gate decides at this rate / gates when it runs
#: (Bonferroni, Holm's first step); ``test_regression_family`` then applies Holm's remaining steps.
STORED_FAMILY_ALPHA = 0.02
#: The tests whose verdicts make up the family.
GATE_TESTS = ("test_speedup_regression", "test_latency_regression")
#: Stored runs a regression gate needs before it judges (fewer cannot estimate a spread).
MIN_STORED_RUNS = 5


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
        resolution: The relative drop this gate catches (fails on) in ≥ 90% of runs, given the current
            interval's half-width and the stored spread: exp(center - limit + half-width + z_0.90 · spread) - 1.
        p_value: The smallest one-sided false-alarm rate at which this gate would fail: the stored runs'
            prediction distribution (Student's t, n - 1 degrees of freedom) evaluated at the current
            interval's upper end, so conservative for the estimate itself. Fails ⟺ ``p_value < alpha``;
            Holm's procedure over a run's gates reads it.
        alpha: The false-alarm rate this gate decided at.
    """

    outcome: Outcome
    stored_center: float
    stored_spread: float
    limit: float
    stored_runs: int
    resolution: float
    p_value: float = 1.0
    alpha: float = STORED_FAMILY_ALPHA


Z_95 = 1.959963984540054
#: One-sided 90% normal quantile: "resolution" is the change caught in at least 90% of runs.
Z_90 = 1.2815515655446004
#: Above this resolution a gate reports its figures instead of gating (it could fail only on a
#: change so large that no regression suite is needed to see it).
MAX_GATING_RESOLUTION = 0.50


def drop_gate(stored: Sequence[float], stored_half_widths: Sequence[float], current: float, current_low: float,
              current_high: float, alpha: float = STORED_FAMILY_ALPHA) -> GateVerdict:
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
    in_run = float(np.median(np.asarray(stored_half_widths, dtype=float))) / Z_95 if len(stored_half_widths) else 0.0
    spread = max(float(values.std(ddof=1)), in_run)
    center = float(values.mean())
    scale = spread * math.sqrt(1 + 1 / n)
    limit = center - float(t.ppf(1 - alpha, n - 1)) * scale
    # current_high < limit ⟺ (center - current_high) / scale > t quantile ⟺ p_value < alpha.
    p_value = float(t.sf((center - current_high) / scale, n - 1)) if scale > 0 else float(current_high >= center)
    if current_high < limit:
        outcome = Outcome.FAIL
    elif current >= limit:
        outcome = Outcome.PASS
    else:
        outcome = Outcome.UNDECIDED
    # A true drop d is caught when a run's whole interval lands under the limit: its upper end, the
    # estimate plus a half-width, falls below the limit in 90% of runs when the estimate's run-to-run
    # spread (the stored runs', which includes each run's own noise) leaves room for z_0.90 of it.
    half_width = (current_high - current_low) / 2
    resolution = math.exp(center - limit + half_width + Z_90 * spread) - 1
    return GateVerdict(outcome, center, spread, limit, n, resolution, p_value, alpha)


def gate_alpha(gates: int) -> float:
    """The rate each of ``gates`` gates in one run decides at when it runs (Bonferroni)."""
    return STORED_FAMILY_ALPHA / max(1, gates)


def speedup_gate(runs: Sequence[SpeedupRecord], current: SpeedupRecord, alpha: float = STORED_FAMILY_ALPHA) -> GateVerdict | None:
    """The current speedup against stored runs' speedups (log units); ``None`` with too few runs."""
    if len(runs) < MIN_STORED_RUNS:
        return None
    if current.ci_low is None or current.ci_high is None:
        raise ValueError("a speedup gate judges a speedup with its interval")
    return drop_gate(
        [math.log(r.speedup) for r in runs], [r.half_width_log for r in runs],
        math.log(current.speedup), math.log(current.ci_low), math.log(current.ci_high), alpha,
    )


def latency_gate(runs: Sequence[LatencyRecord], current: LatencyRecord, alpha: float = STORED_FAMILY_ALPHA) -> GateVerdict | None:
    """A current calibrated median latency against stored runs' (log units, turned around so that
    slower is lower); ``None`` with too few runs."""
    if len(runs) < MIN_STORED_RUNS:
        return None
    return drop_gate(
        [-math.log(r.norm_p50) for r in runs], [r.half_width_log for r in runs],
        -math.log(current.norm_p50), -math.log(current.norm_ci_high), -math.log(current.norm_ci_low), alpha,
    )


def changed_versions(runs: Sequence[SpeedupRecord | LatencyRecord], current: dict[str, str]) -> list[str]:
    """``name old → new`` for every package whose version differs from the newest stored run."""
    stored = runs[-1].versions if runs else {}
    return [f"{name} {stored.get(name, '?')} → {version}" for name, version in sorted(current.items())
            if stored.get(name) != version]


def gate_message(head: str, verdict: GateVerdict, runs: Sequence[SpeedupRecord | LatencyRecord],
                 current: SpeedupRecord | LatencyRecord) -> str:
    """One line: the current figure, the stored distribution, the limit, and what changed since."""
    what = "speedup" if isinstance(current, SpeedupRecord) else "latency"
    center, limit = math.exp(verdict.stored_center), math.exp(verdict.limit)
    if what == "latency":  # stored turned around (see latency_gate): back to calibrated latency
        center, limit = 1 / center, 1 / limit
    bound = "≥" if what == "speedup" else "≤"
    changes = changed_versions(runs, current.versions)
    stored_keys = runs[-1].variant_keys if runs else {}
    rebuilt = [name for name, key in current.variant_keys.items() if stored_keys.get(name) not in (None, key)]
    return (f"{head} vs stored {what} {center:.3f} over {verdict.stored_runs} runs (spread ±{verdict.stored_spread:.1%}); "
            f"explained by them: {bound} {limit:.3f} (one-sided, false-alarm rate {verdict.alpha:.2%}; p = "
            f"{verdict.p_value:.2g}); this gate's resolution {verdict.resolution:.1%}"
            + (f"; changed since the stored runs: {', '.join(changes)}" if changes else "; no version changed")
            + (f"; rebuilt since: {', '.join(rebuilt)}" if rebuilt else ""))


def judge(runs: Sequence[SpeedupRecord | LatencyRecord], current: SpeedupRecord | LatencyRecord,
          alpha: float = STORED_FAMILY_ALPHA) -> GateVerdict | None:
    """The gate of ``current``'s kind against ``runs`` at false-alarm rate ``alpha``; ``None`` with too few runs."""
    if isinstance(current, SpeedupRecord):
        return speedup_gate(runs, current, alpha)  # type: ignore[arg-type]
    return latency_gate(runs, current, alpha)  # type: ignore[arg-type]
