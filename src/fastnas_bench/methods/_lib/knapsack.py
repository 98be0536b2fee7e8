"""Width selection under a latency budget: a multiple-choice knapsack (HALP-style).

Every prunable hparam (a layer's width) takes exactly one of its choices. Each choice has a loss
(FastNAS's sensitivity: the score lost when only that hparam is narrowed to it) and a latency
saving (from the measured latency table, relative to the full model). The selection keeps the
least total loss whose total saving reaches the budget; both are additive by assumption, and the
measured latency of the result is what decides in the end (see ``methods/fastnas_latency.py``).

Pure and exact: dynamic programming over savings in steps of ``resolution`` (rounded down, so the
selected widths' predicted saving never falls short of the budget).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from fastnas_bench.errors import BadInputError

#: Saving granularity of the dynamic programme: 0.05% of the full model's latency.
RESOLUTION = 5e-4
# Between choices of equal loss, keep the wider one: a zero-loss choice is only taken where the
# budget needs it. Far below any loss FastNAS can resolve (modelopt's no-loss cut-off is 1e-5).
_TIE_BREAK = 1e-9


def select_widths(
    loss: Mapping[str, Mapping[int, float]],
    saving: Mapping[str, Mapping[int, float]],
    required_saving: float,
    resolution: float = RESOLUTION,
) -> dict[str, int]:
    """The choice per hparam with the least total loss whose total saving is ≥ ``required_saving``.

    Args:
        loss: hparam → choice → score lost (≥ 0); the widest choice of each hparam should read 0.
        saving: hparam → choice → latency saved as a share of the full model's latency (a choice
            measured slower than full width saves 0: the selection never counts on it).
        required_saving: 1 − the latency budget, e.g. 0.25 for a budget of 0.75.
        resolution: Saving step of the programme.

    Returns:
        hparam → chosen width, for every hparam of ``loss``.

    Raises:
        BadInputError: where even the narrowest choices together save less than required.
    """
    names = sorted(loss)
    missing = [n for n in names if n not in saving]
    if missing:
        raise ValueError(f"no latency saving for hparam(s) {missing}")
    need = max(0, math.ceil(required_saving / resolution - 1e-9))
    inf = math.inf
    # best[s] = least loss with (capped) saving s units; choice[i][s] = (choice, previous s).
    best = [0.0] + [inf] * need
    back: list[list[tuple[int, int]]] = []
    for name in names:
        widest = max(loss[name])
        items = []
        for width, lost in loss[name].items():
            units = math.floor(max(0.0, float(saving[name].get(width, 0.0))) / resolution + 1e-9)
            items.append((width, float(lost) + _TIE_BREAK * (widest - width) / widest, units))
        nxt = [inf] * (need + 1)
        step: list[tuple[int, int]] = [(widest, -1)] * (need + 1)
        for s, value in enumerate(best):
            if value == inf:
                continue
            for width, cost, units in items:
                t = min(need, s + units)
                if value + cost < nxt[t]:
                    nxt[t] = value + cost
                    step[t] = (width, s)
        best = nxt
        back.append(step)
    if best[need] == inf:
        most = reachable_saving({n: saving[n] for n in names}, resolution)
        raise BadInputError(f"latency saving {required_saving:.3f} is out of reach: narrowing every layer as far as "
                            f"allowed saves {most:.3f} by the latency table")
    chosen: dict[str, int] = {}
    s = need
    for name, step in zip(reversed(names), reversed(back)):
        width, s = step[s]
        chosen[name] = width
    return chosen


def reachable_saving(saving: Mapping[str, Mapping[int, float]], resolution: float = RESOLUTION) -> float:
    """The largest saving :func:`select_widths` can reach: every hparam at its best choice, in its steps."""
    units = sum(math.floor(max(0.0, *map(float, choices.values())) / resolution + 1e-9) for choices in saving.values())
    return units * resolution
