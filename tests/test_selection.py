"""Width selection under a latency budget: scripted sensitivity maps and cost models with known optima.

Per-choice savings measured at full width do not add (a conv's cost is its input times its output
width): the greedy selection costs every configuration whole, and where additive savings would
mislead, it still meets the target with the least loss.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import pytest

from fastnas_bench.errors import BadInputError
from fastnas_bench.methods._lib.greedy import greedy_select
from fastnas_bench.methods._lib.latency_table import ConvShape, LatencyTable
from fastnas_bench.methods.fastnas_latency import _select_to

# One 3×3 conv whose input width is hparam "p" and output width hparam "q", costing 1 µs per
# input × output channel pair (4.096 ms at 64 × 64), and nothing else in the network.
CONV = ConvShape(kernel=3, stride=1, padding=1, height=8, width=8, in_choices=(32, 48, 64), out_choices=(32, 48, 64),
                 act=True)
TABLE = LatencyTable({"c": {(i, o): i * o / 1000 for i, o in CONV.grid()}}, {"c": CONV}, other_ms=0.0,
                     full_ms=64 * 64 / 1000)
CONV_CHOICES = {"p": [32, 48, 64], "q": [32, 48, 64]}


def _conv_cost_ms(widths: Mapping[str, int]) -> float:
    return TABLE.cost_ms({"c": (widths.get("p", 64), widths.get("q", 64))})


def test_narrowing_both_sides_of_one_conv_saves_three_quarters_not_the_sum() -> None:
    full_ms = _conv_cost_ms({})
    alone = [full_ms - _conv_cost_ms({h: 32}) for h in ("p", "q")]
    both = full_ms - _conv_cost_ms({"p": 32, "q": 32})
    assert alone == pytest.approx([0.5 * full_ms, 0.5 * full_ms])
    assert both == pytest.approx(0.75 * full_ms) and both < sum(alone)
    # Additive savings would call a quarter of the full cost reachable; the whole configuration is not.
    with pytest.raises(BadInputError, match="out of reach"):
        greedy_select({h: dict.fromkeys(c, 0.0) for h, c in CONV_CHOICES.items()}, CONV_CHOICES, _conv_cost_ms,
                      0.2 * full_ms)


def test_the_predicted_cost_is_the_true_cost_of_the_whole_configuration() -> None:
    loss = {"p": {32: 0.02, 48: 0.01, 64: 0.0}, "q": {32: 0.02, 48: 0.01, 64: 0.0}}
    full_ms = _conv_cost_ms({})
    widths, predicted = _select_to(0.3, loss, CONV_CHOICES, _conv_cost_ms, full_ms)
    assert widths == {"p": 32, "q": 32}
    assert predicted == pytest.approx(_conv_cost_ms(widths) / full_ms) == pytest.approx(0.25)


# Conv X (60 ms at full width) takes its input from "p" and its output from "q": cost ∝ in × out.
# Conv Y (40 ms) is narrowed by "r" alone, linearly. At full width each halving saves p 30, q 30,
# r 20 ms; p and q together save 45 ms, not 60.
LOSS = {"p": {32: 0.010, 64: 0.0}, "q": {32: 0.010, 64: 0.0}, "r": {32: 0.012, 64: 0.0}}
CHOICES = {h: sorted(c) for h, c in LOSS.items()}


def _cost_ms(widths: Mapping[str, int]) -> float:
    return 60.0 * widths["p"] / 64 * widths["q"] / 64 + 40.0 * widths["r"] / 64


def _configs() -> list[dict[str, int]]:
    return [dict(zip(CHOICES, combo)) for combo in itertools.product(*CHOICES.values())]


def _additive_pick(required_ms: float) -> dict[str, int] | None:
    """The least-loss configuration whose savings at full width add up to ``required_ms`` (the old selection)."""
    full = _cost_ms({h: c[-1] for h, c in CHOICES.items()})
    saved = {h: {w: full - _cost_ms({**{k: c[-1] for k, c in CHOICES.items()}, h: w}) for w in c}
             for h, c in CHOICES.items()}
    meeting = [c for c in _configs() if sum(saved[h][w] for h, w in c.items()) >= required_ms - 1e-9]
    return min(meeting, key=lambda c: sum(LOSS[h][w] for h, w in c.items()), default=None)


def _loss(widths: Mapping[str, int]) -> float:
    return sum(LOSS[h][w] for h, w in widths.items())


def test_meets_the_target_with_the_least_loss_where_additive_savings_mislead() -> None:
    target_ms = 54.0
    optimum = min((c for c in _configs() if _cost_ms(c) <= target_ms), key=_loss)
    chosen = greedy_select(LOSS, CHOICES, _cost_ms, target_ms)
    assert _cost_ms(chosen) <= target_ms and _loss(chosen) == pytest.approx(_loss(optimum)) == pytest.approx(0.022)
    assert chosen == {"p": 32, "q": 64, "r": 32}
    # The additive optimum narrows p and q (0.020 by its sums, 60 ms saved) and misses: 55 ms.
    additive = _additive_pick(100.0 - target_ms)
    assert additive == {"p": 32, "q": 32, "r": 64} and _cost_ms(additive) == pytest.approx(55.0)
    # No moved aim mends it: whatever saving the additive selection is asked for (0-100 ms), every
    # pick of it that truly meets the target loses more than the greedy one.
    meets = [c for c in (_additive_pick(s / 2) for s in range(201)) if c is not None and _cost_ms(c) <= target_ms]
    assert min(map(_loss, meets)) == pytest.approx(0.032) and min(map(_loss, meets)) > _loss(chosen)


def test_is_deterministic_and_breaks_ties_by_saving_then_name() -> None:
    # p and q are alike in every way: the earlier name is narrowed first, whatever the order given.
    loss = {"q": {32: 0.01, 64: 0.0}, "p": {32: 0.01, 64: 0.0}}
    choices = {"q": [64, 32], "p": [32, 64]}

    def cost(widths: Mapping[str, int]) -> float:
        return 10.0 * widths["p"] / 64 + 10.0 * widths["q"] / 64

    runs = [greedy_select(loss, choices, cost, 16.0), greedy_select(dict(reversed(loss.items())), choices, cost, 16.0)]
    assert runs == [{"p": 32, "q": 64}] * 2
    # Equal loss per ms: the step that saves more goes first, so fewer layers are narrowed.
    loss = {"a": {32: 0.01, 64: 0.0}, "b": {32: 0.02, 64: 0.0}}

    def cost2(widths: Mapping[str, int]) -> float:
        return 10.0 * widths["a"] / 64 + 20.0 * widths["b"] / 64

    assert greedy_select(loss, {"a": [32, 64], "b": [32, 64]}, cost2, 21.0) == {"a": 64, "b": 32}


def test_the_full_network_is_kept_where_it_meets_the_target() -> None:
    assert greedy_select(LOSS, CHOICES, _cost_ms, 100.0) == {"p": 64, "q": 64, "r": 64}


def test_a_step_the_table_reads_as_no_faster_does_not_stop_the_walk() -> None:
    # z's first narrowing reads 1 ms slower (noise between grid entries), its second saves 30 ms.
    loss = {"z": {16: 0.05, 32: 0.01, 64: 0.0}}

    def cost(widths: Mapping[str, int]) -> float:
        return {64: 50.0, 32: 51.0, 16: 20.0}[widths["z"]]

    assert greedy_select(loss, {"z": [16, 32, 64]}, cost, 30.0) == {"z": 16}


def test_an_unreachable_target_is_a_one_line_error_naming_it() -> None:
    with pytest.raises(BadInputError, match=r"latency target 20\.000 ms is out of reach.*narrowest costs 35\.000 ms") as err:
        greedy_select(LOSS, CHOICES, _cost_ms, 20.0)
    assert "\n" not in str(err.value)


def test_a_choice_without_a_loss_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="r@16"):
        greedy_select(LOSS, {**CHOICES, "r": [16, 32, 64]}, _cost_ms, 60.0)
