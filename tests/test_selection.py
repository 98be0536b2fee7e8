"""Width selection under a latency budget: scripted sensitivity maps and latency savings with known optima."""

from __future__ import annotations

import itertools
import random

import pytest

from fastnas_bench.errors import BadInputError
from fastnas_bench.methods._lib.knapsack import reachable_saving, select_widths

# Two layers: "a" is cheap to narrow in accuracy but saves little; "b" costs accuracy and saves a lot.
LOSS = {"a": {16: 0.00, 32: 0.00, 64: 0.0}, "b": {8: 0.10, 16: 0.03, 32: 0.0}}
SAVING = {"a": {16: 0.05, 32: 0.02, 64: 0.0}, "b": {8: 0.30, 16: 0.20, 32: 0.0}}


def _brute_force(loss, saving, required):  # type: ignore[no-untyped-def]
    names = sorted(loss)
    best = None
    for combo in itertools.product(*(sorted(loss[n]) for n in names)):
        widths = dict(zip(names, combo))
        if sum(saving[n][w] for n, w in widths.items()) >= required - 1e-12:
            total = sum(loss[n][w] for n, w in widths.items())
            if best is None or total < best[0] - 1e-12:
                best = (total, widths)
    return best


def test_the_known_optimum() -> None:
    # 0.22 of latency: "a" alone saves at most 0.05, so "b" must go to 16 (0.20) and "a" must add 0.02.
    assert select_widths(LOSS, SAVING, 0.22) == {"a": 32, "b": 16}
    # 0.25 needs "a" at its narrowest beside b=16 (0.20 + 0.05), still cheaper than b=8.
    assert select_widths(LOSS, SAVING, 0.25) == {"a": 16, "b": 16}
    # 0.26 is beyond what b=16 can reach with any "a": only b=8 gets there.
    assert select_widths(LOSS, SAVING, 0.26)["b"] == 8


def test_no_budget_keeps_every_layer_whole_even_where_narrowing_is_free() -> None:
    assert select_widths(LOSS, SAVING, 0.0) == {"a": 64, "b": 32}
    # Free savings are taken only as far as the budget needs them.
    assert select_widths(LOSS, SAVING, 0.02) == {"a": 32, "b": 32}


def test_agrees_with_brute_force_on_random_instances() -> None:
    rng = random.Random(0)
    for _ in range(200):
        loss, saving = {}, {}
        for name in "abcd":
            widths = sorted(rng.sample(range(8, 129, 8), rng.randint(2, 4)))
            loss[name] = {w: (0.0 if w == widths[-1] else round(rng.random() * 0.1, 4)) for w in widths}
            saving[name] = {w: (0.0 if w == widths[-1] else round(rng.random() * 0.2, 3)) for w in widths}
        required = round(rng.random() * 0.5, 3)
        expected = _brute_force(loss, saving, required)
        if expected is None:
            with pytest.raises(BadInputError):
                select_widths(loss, saving, required)
            continue
        chosen = select_widths(loss, saving, required)
        assert sum(saving[n][w] for n, w in chosen.items()) >= required - 1e-9
        assert sum(loss[n][w] for n, w in chosen.items()) == pytest.approx(expected[0], abs=1e-6)


def test_a_choice_measured_slower_is_never_counted_as_a_saving() -> None:
    saving = {"a": {16: -0.10, 64: 0.0}, "b": {8: 0.30, 32: 0.0}}
    loss = {"a": {16: 0.0, 64: 0.0}, "b": {8: 0.5, 32: 0.0}}
    assert select_widths(loss, saving, 0.2) == {"a": 64, "b": 8}


def test_an_unreachable_budget_is_a_one_line_error_naming_the_values() -> None:
    with pytest.raises(BadInputError, match=r"latency saving 0\.400 is out of reach.*saves 0\.350"):
        select_widths(LOSS, SAVING, 0.40)


def test_the_reachable_saving_is_exactly_reachable() -> None:
    # Savings that are not multiples of the programme's step: their sum, rounded per choice, is reached.
    saving = {"a": {16: 0.10037, 64: 0.0}, "b": {8: 0.20049, 32: 0.0}, "c": {4: 0.05013, 8: 0.0}}
    loss = {n: {w: 0.0 for w in choices} for n, choices in saving.items()}
    most = reachable_saving(saving)
    assert 0.35 - 3 * 5e-4 <= most <= 0.35099
    assert select_widths(loss, saving, most) == {"a": 16, "b": 8, "c": 4}
    with pytest.raises(BadInputError):
        select_widths(loss, saving, most + 5e-4)
