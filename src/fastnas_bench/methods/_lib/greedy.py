"""Width selection under a latency budget: a greedy descent on the true cost of the whole configuration.

Every prunable hparam (a layer's width) takes one of its choices. Each choice has a loss (FastNAS's
sensitivity: the score lost when only that hparam is narrowed to it); the latency of a
configuration is one call of ``cost_ms`` on all its widths at once (the latency table's cost of the
whole network), never a sum of per-hparam savings. Savings do not add: a convolution's cost grows
with its input times its output width, so narrowing both sides of one conv to half saves 3/4 of it,
not 1/2 + 1/2. A selection that adds savings measured at full width is exact for the wrong
objective.

So the selection walks from the full network, NetAdapt-style: at each step every hparam is tried
one choice narrower than it is now, each candidate is costed as a whole configuration, and the
step that adds the least loss per millisecond it saves is taken, until the cost meets the target.
Pure: no model, no timing; ``cost_ms`` is called at most (number of hparams) times per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from fastnas_bench.errors import BadInputError


def greedy_select(
    loss: Mapping[str, Mapping[int, float]],
    choices: Mapping[str, Sequence[int]],
    cost_ms: Callable[[dict[str, int]], float],
    target_ms: float,
    on_step: Callable[[dict[str, int], float], None] | None = None,
) -> dict[str, int]:
    """Widths, narrowed one choice at a time by least loss per millisecond saved, whose cost meets ``target_ms``.

    Args:
        loss: hparam → choice → score lost with only that hparam at that choice (its widest reads 0).
        choices: hparam → the widths it can take (any order).
        cost_ms: Predicted latency in ms of a whole configuration (hparam → width, every hparam named).
        target_ms: Latency the selection must not exceed, in ms.
        on_step: Called with the widths and their cost (ms) after each step taken. The walk to a
            lower target passes through the selection for every higher one, so one walk with this
            gives the selections for a whole range of targets.

    Returns:
        hparam → chosen width, for every hparam of ``choices``; the widest choices where the full
        network already meets ``target_ms``.

    Raises:
        ValueError: where ``loss`` lacks a choice of ``choices``, or an hparam has no choice.
        BadInputError: where even every hparam at its narrowest costs more than ``target_ms``.
    """
    ladders = {h: sorted(set(choices[h]), reverse=True) for h in sorted(choices)}
    empty = [h for h, ladder in ladders.items() if not ladder]
    missing = [f"{h}@{w}" for h, ladder in ladders.items() for w in ladder if w not in loss.get(h, {})]
    if empty or missing:
        raise ValueError(f"hparams without choices {empty} or without a loss for choices {missing}")
    narrowest = {h: ladder[-1] for h, ladder in ladders.items()}
    floor_ms = cost_ms(dict(narrowest))
    if floor_ms > target_ms:
        raise BadInputError(f"latency target {target_ms:.3f} ms is out of reach: every layer at its narrowest "
                            f"costs {floor_ms:.3f} ms by the latency table")
    # Position of each hparam on its ladder (0 = widest).
    rung = dict.fromkeys(ladders, 0)
    current_ms = cost_ms(_widths(ladders, rung))
    while current_ms > target_ms:
        best: tuple[tuple[int, float, float, str], str, float] | None = None
        for h, ladder in ladders.items():
            if rung[h] + 1 == len(ladder):
                continue
            step_ms = cost_ms(_widths(ladders, {**rung, h: rung[h] + 1}))
            saved_ms = current_ms - step_ms
            added_loss = float(loss[h][ladder[rung[h] + 1]]) - float(loss[h][ladder[rung[h]]])
            # Steps that save time first, by loss per ms; a step the table reads as no faster (noise
            # between grid entries) only where none saves, least loss first, so that the walk can
            # always go on to the narrowest configuration, which meets the target. Ties: the larger
            # saving (fewer layers narrowed), then the hparam first by name.
            # A loss below zero (calibration noise in a sensitivity map) counts as free, so that among free
            # steps the larger saving goes first rather than the one whose tiny saving divides it most.
            key = (0, max(added_loss, 0.0) / saved_ms, -saved_ms, h) if saved_ms > 0 else (1, added_loss, -saved_ms, h)
            if best is None or key < best[0]:
                best = (key, h, step_ms)
        if best is None:
            # Every hparam narrowest, yet over a target that the narrowest configuration met above.
            raise RuntimeError(f"cost_ms read the narrowest configuration {floor_ms:.3f} ms, then {current_ms:.3f} ms: "
                               "it is not a function of the widths")
        _, h, current_ms = best
        rung[h] += 1
        if on_step is not None:
            on_step(_widths(ladders, rung), current_ms)
    return _widths(ladders, rung)


def _widths(ladders: Mapping[str, Sequence[int]], rung: Mapping[str, int]) -> dict[str, int]:
    return {h: ladder[rung[h]] for h, ladder in ladders.items()}
