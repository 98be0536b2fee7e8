"""Latency-aware FastNAS: FastNAS's sensitivity map, pruned to a latency budget measured on the target.

modelopt's FastNAS prune takes FLOPs or parameter constraints only, and FLOPs turn into latency
unevenly (the reference experiment's lesson): a layer at 80×80 px can cost a backend far more than
its FLOPs share, one at 20×20 far less. This method keeps FastNAS's accuracy side and replaces the
cost side, after HALP (a per-layer latency lookup table) and NetAdapt (empirical latency on the
target platform, and a greedy walk that narrows one layer at a time on the current network):

- accuracy: the sensitivity map of FastNAS's own search (score lost per width choice of every
  prunable layer), read from the search checkpoint FastNAS variants share: no new score calls;
- latency: every convolution timed alone on the budget's backend over realizable input × output
  widths (:mod:`fastnas_bench.methods._lib.latency_table`), calibrated in the whole graph where the
  backend profiles it per node (the graph's Split, Concat, activations and layout reorders charged to
  the convolutions that drive them); a width configuration's cost is read
  through modelopt's own search space (which convolutions' inputs and outputs each choice
  narrows), so coupled layers and the in × out product are costed as they are, not summed per choice;
- selection: from full width, the step (one hparam one choice narrower) that adds the least
  sensitivity per millisecond the table's cost of the whole configuration saves, repeated until
  that cost meets the aim (:mod:`fastnas_bench.methods._lib.greedy`). Savings are never added up:
  a conv whose input and output both halve saves 3/4 of its cost, not 1/2 + 1/2, so a knapsack
  over per-choice savings at full width is exact for the wrong objective;
- verification: the selected network is timed against the source in ABBA rounds; where it misses
  the budget, or lands more than ``ACCEPT_BELOW`` under it, the aim is moved by the
  measured/predicted factor (pooled over the attempts) and a margin and the selection redone, a
  fixed number of times at most; the selection measured closest under the budget is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ultralytics.nn.tasks import DetectionModel

from fastnas_bench import progress
from fastnas_bench.compat.modelopt import hparam_choices
from fastnas_bench.errors import BadInputError
from fastnas_bench.measure.probe import LatencyProbe
from fastnas_bench.methods._lib.greedy import greedy_select
from fastnas_bench.methods._lib.latency_table import active_widths, cached_table, conv_shapes, table_builder, table_key
from fastnas_bench.methods._lib.search_space import searchable, subnet
from fastnas_bench.methods.base import PruneContext, PruneMethod
from fastnas_bench.methods.fastnas import CALIB_BATCHES, sensitivity_map
from fastnas_bench.methods.registry import register
from fastnas_bench.variants.cache import ArtifactCache
from fastnas_bench.yolo.models import model_gflops

log = logging.getLogger(__name__)

#: Selections verified by measurement; the one closest under the budget is kept.
CORRECTION_ATTEMPTS = 5
#: A measured ratio this far under the budget or closer is accepted (about the verification's
#: interval half-width): the rival FLOPs cut lands within one bisection step (≈ 0.011 FLOPs) of it.
ACCEPT_BELOW = 0.02
#: ABBA rounds of each verification, fixed in advance (a 95% interval about ±1.5% wide here).
VERIFY_ROUNDS = 60


@register("fastnas-latency")
class LatencyAwareFastNAS(PruneMethod):
    """FastNAS's sensitivity map under a measured latency budget (greedy over a latency table)."""

    budget = "latency"
    # 5: the sensitivity map of explicitly recalibrated candidates.
    # 6: greedy selection on the table's cost of the whole configuration (the knapsack added
    #    savings that overlap), over a table of realizable grid widths keyed by the host's ISA.
    # 7: the table calibrated in the whole graph on backends that profile it per node.
    version = 7

    def __init__(self, calib_batches: int = CALIB_BATCHES) -> None:
        super().__init__()
        self.calib_batches = calib_batches

    def prune(self, model: DetectionModel, ctx: PruneContext) -> DetectionModel:
        budget = ctx.spec.latency
        if budget is None:
            raise BadInputError(f"method {self.name!r} needs a latency budget (--latency-targets), not a FLOPs target")
        loss = sensitivity_map(model, ctx, self.calib_batches)
        net, hparams = searchable(model, ctx.spec.channel_divisor)
        unmapped = sorted(set(hparams) - set(loss))
        if unmapped:
            raise RuntimeError(f"FastNAS's sensitivity map lacks hparams {unmapped}: the search spaces differ")
        probe = LatencyProbe(model, budget, ctx.work_dir / "latency-probe")
        space = {name: sorted(hparam_choices(hparams[name])) for name in loss}
        shapes = conv_shapes(net, hparams, budget.imgsz, budget.batch)
        key = table_key(ctx.source_sha256, space, budget)
        table = cached_table(ArtifactCache(ctx.cache_root), key, table_builder(
            shapes, budget, probe.reference_call, net, {h: hparam_choices(hp) for h, hp in hparams.items()},
            ctx.work_dir / "latency-in-graph"))

        def cost_ms(widths: dict[str, int]) -> float:
            return table.cost_ms(active_widths(net, widths, list(shapes)))

        full_ms = cost_ms({})
        source_gflops = model_gflops(model)
        aim = budget.target
        attempts: list[dict[str, object]] = []
        factors: list[float] = []
        best: tuple[DetectionModel, dict[str, int], float] | None = None
        for attempt in range(1, CORRECTION_ATTEMPTS + 1):
            widths, predicted = _select_to(aim, loss, space, cost_ms, full_ms)
            pruned = subnet(net, widths)
            progress.step(f"latency budget {budget.target:g} on {budget.backend}: verifying selection", attempt,
                          CORRECTION_ATTEMPTS)
            measured = probe.ratio(pruned, VERIFY_ROUNDS)
            attempts.append({"aim": round(aim, 4), "predicted_ratio": round(predicted, 4),
                             "measured_ratio": round(measured.ratio, 4),
                             "ci": [round(measured.ratio_low, 4), round(measured.ratio_high, 4)],
                             "flops_ratio": round(model_gflops(pruned) / source_gflops, 4),
                             "sensitivity_sum": round(sum(loss[h][w] for h, w in widths.items()), 5)})
            log.info("latency-aware selection %d: aim %.4f, table predicts %.4f, measured %s", attempt, aim,
                     predicted, measured.describe())
            if measured.ratio <= budget.target and (best is None or measured.ratio > best[2]):
                best = (pruned, widths, measured.ratio)
            if budget.target - ACCEPT_BELOW <= measured.ratio <= budget.target:
                break
            # What the table does not see (fusion, memory traffic, threading of narrow layers) makes
            # the network slower or faster than predicted, by a factor that differs per backend
            # (measured with isolated layers alone: ORT 1.01-1.14, PyTorch 0.82-0.94; with the ORT table
            # calibrated in the graph 0.99-1.05 over 8 selections of 3 seeds at budget 0.75). Pooled over the attempts so far, the
            # median factor sets the next aim, less a quarter of the interval width so that one
            # draw of noise does not decide again. A cut far under the budget is corrected too: it
            # would give away accuracy that the budget allows to keep.
            factors.append(measured.ratio / predicted)
            margin = (measured.ratio_high - measured.ratio_low) / 4
            corrected = budget.target / sorted(factors)[len(factors) // 2] - margin
            aim = min(aim - margin, corrected) if measured.ratio > budget.target else min(0.999, max(aim + margin, corrected))
        if best is None:
            raise BadInputError(f"latency target {budget.target:g} on {budget.backend} not met after "
                                f"{CORRECTION_ATTEMPTS} corrected selections: {attempts}")
        pruned, widths, met = best
        self.notes.update(latency_table=key,
                          latency_table_seconds=table.build_seconds,
                          latency_table_entries=sum(len(g) for g in table.layers.values()),
                          latency_table_full_ms=round(table.full_ms, 3), latency_table_other_ms=round(table.other_ms, 3),
                          latency_table_in_graph=table.graph is not None,
                          **({"latency_table_graph_fit_errors": list(table.graph.fit_errors),
                              "latency_table_graph_overhead_ms": round(table.graph.overhead_ms, 3)}
                             if table.graph is not None else {}),
                          latency_selections=attempts, latency_ratio_before_finetune=round(met, 4),
                          latency_rounds=VERIFY_ROUNDS, widths=widths)
        return pruned


def _select_to(aim: float, loss: dict[str, dict[int, float]], space: dict[str, list[int]],
               cost_ms: Callable[[dict[str, int]], float], full_ms: float) -> tuple[dict[str, int], float]:
    """The greedy selection whose table cost (all widths at once) meets ``aim`` × the full cost,
    with its predicted ratio to the full network.

    Where the table predicts nothing at or under ``aim`` (it can read a backend slower than it
    runs, and a corrected aim can go below its floor), every layer at its narrowest, the fastest
    the table knows, is returned: the measurement decides, and its measured/predicted factor moves
    the next aim.
    """
    narrowest = {h: min(choices) for h, choices in space.items()}
    floor_ms = cost_ms(narrowest)
    if aim * full_ms < floor_ms:
        log.info("the latency table predicts no selection at or under %.4f (fastest %.4f); measuring that one",
                 aim, floor_ms / full_ms)
        return narrowest, floor_ms / full_ms
    widths = greedy_select(loss, space, cost_ms, aim * full_ms)
    return widths, cost_ms(widths) / full_ms
