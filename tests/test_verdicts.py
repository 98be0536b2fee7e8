"""The statistics behind every timing verdict, on scripted samples with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastnas_bench.measure.stats import PairedSpeedup, abba_log_ratios, median_interval, paired_speedup
from fastnas_bench.verdicts.gates import drop_gate, speedup_gate
from fastnas_bench.verdicts.outcome import Outcome, at_least, at_most, holm
from fastnas_bench.verdicts.records import SpeedupRecord

ROUNDS = 90


def _abba(base_ms: float, variant_ms: float, seed: int, rounds: int = ROUNDS) -> tuple[list[float], list[float]]:
    """Scripted ABBA samples on a shared machine: a slow drift that both sides share, per-call
    jitter, and occasional bursts that slow whichever call they hit."""
    rng = np.random.default_rng(seed)
    drift = 1 + 0.3 * np.sin(np.linspace(0, 3 * np.pi, rounds * 4)) + rng.normal(0, 0.02, rounds * 4).cumsum() / 20
    jitter = 1 + np.abs(rng.normal(0, 0.03, rounds * 4))
    bursts = np.where(rng.random(rounds * 4) < 0.05, rng.uniform(1.3, 2.0, rounds * 4), 1.0)
    factor = drift * jitter * bursts
    base, variant = [], []
    for r in range(rounds):
        a1, b1, b2, a2 = factor[4 * r: 4 * r + 4]
        base += [base_ms * a1 / 1e3, base_ms * a2 / 1e3]
        variant += [variant_ms * b1 / 1e3, variant_ms * b2 / 1e3]
    return base, variant


def test_median_interval_is_distribution_free_and_covers() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        values = rng.lognormal(0, 1, 90)  # skewed: the true median is 1
        _, low, high, coverage = median_interval(values)
        covered += low <= 1.0 <= high
        assert coverage >= 0.95
    assert covered / 400 >= 0.93  # ≥ 95% nominal, within sampling error of 400 trials
    with pytest.raises(ValueError, match="≥ 6 paired rounds"):
        median_interval([1.0] * 5)


def test_abba_pairs_cancel_a_linear_drift() -> None:
    # The machine slows linearly through the round; the variant is exactly 1.25x faster.
    t = np.arange(8, dtype=float)
    speed = 1 + 0.1 * t  # calls A B B A A B B A
    base = [10 * speed[0], 10 * speed[3], 10 * speed[4], 10 * speed[7]]
    variant = [8 * speed[1], 8 * speed[2], 8 * speed[5], 8 * speed[6]]
    assert np.exp(abba_log_ratios(base, variant)) == pytest.approx([1.25, 1.25])
    with pytest.raises(ValueError, match="two samples per side per round"):
        abba_log_ratios([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])


def test_scripted_speedup_is_recovered_with_a_narrow_interval() -> None:
    estimate = paired_speedup(*_abba(30.0, 24.0, seed=1))
    assert estimate.ci_low <= 1.25 <= estimate.ci_high
    assert estimate.ci_high / estimate.ci_low < 1.03 and estimate.rounds == ROUNDS


def test_outcomes_are_pass_fail_or_undecided() -> None:
    estimate = PairedSpeedup(1.20, 1.15, 1.25, 90, 0.95)
    assert at_least(estimate, 1.10) is Outcome.PASS
    assert at_least(estimate, 1.30) is Outcome.FAIL
    assert at_least(estimate, 1.18) is Outcome.UNDECIDED
    assert at_most(estimate, 1.30) is Outcome.PASS
    assert at_most(estimate, 1.10) is Outcome.FAIL
    assert at_most(estimate, 1.22) is Outcome.UNDECIDED


def _stored_runs(n: int, base_ms: float = 30.0, variant_ms: float = 24.0) -> list[SpeedupRecord]:
    return [_record(paired_speedup(*_abba(base_ms, variant_ms, seed))) for seed in range(100, 100 + n)]


def _record(estimate: PairedSpeedup) -> SpeedupRecord:
    return SpeedupRecord.of(estimate, flops_ratio=0.66, variant_keys={}, versions={})


def test_speedup_gate_catches_a_true_10_percent_drop_and_passes_identical_runs() -> None:
    runs = _stored_runs(5)
    caught = [speedup_gate(runs, _record(paired_speedup(*_abba(30.0, 24.0 * 1.10, seed)))).outcome for seed in range(20)]
    same = [speedup_gate(runs, _record(paired_speedup(*_abba(30.0, 24.0, seed)))).outcome for seed in range(200, 220)]
    assert caught.count(Outcome.FAIL) >= 19
    assert same.count(Outcome.FAIL) == 0 and same.count(Outcome.PASS) >= 19
    verdict = speedup_gate(runs, _record(paired_speedup(*_abba(30.0, 24.0, 7))))
    assert verdict is not None and verdict.resolution < 0.10


def test_speedup_gate_needs_five_stored_runs() -> None:
    assert speedup_gate(_stored_runs(4), _record(PairedSpeedup(1.2, 1.1, 1.3, 90, 0.95))) is None


def test_gate_spread_never_falls_below_one_runs_own_uncertainty() -> None:
    # Five stored runs that agree to the third decimal by luck: the in-run interval sets the spread.
    stored = [math.log(1.25)] * 4 + [math.log(1.2501)]
    lucky = drop_gate(stored, [0.02] * 5, math.log(1.22), math.log(1.20), math.log(1.24))
    assert lucky.stored_spread == pytest.approx(0.02 / 1.96, rel=1e-3)
    assert lucky.outcome is Outcome.PASS  # -2.4% is within one run's own noise
    assert drop_gate(stored, [0.02] * 5, math.log(1.10), math.log(1.09), math.log(1.11)).outcome is Outcome.FAIL
    with pytest.raises(ValueError, match="≥ 5 stored runs"):
        drop_gate(stored[:4], [0.02] * 4, 0.0, 0.0, 0.0)


def test_a_gate_fails_exactly_when_its_p_value_is_below_its_rate() -> None:
    rng = np.random.default_rng(3)
    stored = list(rng.normal(math.log(1.3), 0.01, 8))
    for current in np.linspace(math.log(1.22), math.log(1.30), 41):
        for alpha in (0.02, 0.02 / 6, 0.001):
            verdict = drop_gate(stored, [0.01] * 8, current, current - 0.01, current + 0.01, alpha)
            assert (verdict.outcome is Outcome.FAIL) == (verdict.p_value < alpha)
            assert verdict.alpha == alpha


def test_holm_controls_the_family_and_rejects_at_least_what_bonferroni_does() -> None:
    assert holm([0.001, 0.012, 0.03, 0.5], 0.05) == [True, True, False, False]  # 0.0125, 0.0167: stops at 0.03
    assert holm([0.013, 0.02, 0.04], 0.05) == [True, True, True]  # Bonferroni (0.0167 each) rejects only the first
    assert holm([0.02, 0.9], 0.02) == [False, False] and holm([], 0.05) == []
    # Family-wise rate under the global null, for dependent tests too: 6 gates that share a noise term.
    rng = np.random.default_rng(11)
    from scipy.stats import norm

    shared = rng.normal(size=(4000, 1))
    z = np.sqrt(0.5) * shared + np.sqrt(0.5) * rng.normal(size=(4000, 6))
    any_rejected = np.mean([any(holm(list(norm.sf(row)), 0.05)) for row in z])
    assert any_rejected <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 4000)
