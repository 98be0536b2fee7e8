"""Norm-ranked structured pruning at a uniform per-layer width ratio (the heuristic rival).

The channels of every prunable layer are ranked by modelopt's own importance (the L2 norm of the
consuming convolution's weights per input channel, via ``sort_parameters``), and every layer keeps
the same fraction of its channels (to the divisor grid). The fraction is found by bisection so the
FLOPs land at the ratio FastNAS reached (or under the target when there is no FastNAS result to
match), then rounding remainders are spent like largest-remainder rounding. Same search space,
divisor and frozen head as FastNAS: the only difference is *how* widths are chosen. Under a
latency budget its FLOPs target is bisected until the measured latency meets it.
"""

from __future__ import annotations

import logging

from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.compat.modelopt import hparam_choices
from fastnas_bench.methods._lib.latency_match import prune_to_latency
from fastnas_bench.methods._lib.search_space import searchable, subnet
from fastnas_bench.methods.base import PruneContext, PruneMethod
from fastnas_bench.methods.registry import register
from fastnas_bench.yolo.models import model_gflops

log = logging.getLogger(__name__)

BISECTION_STEPS = 14


def uniform_widths(hparams: dict, keep: float) -> dict:
    """For each hparam, the smallest allowed width ≥ ``keep`` × its full width."""
    config = {}
    for name, hp in hparams.items():
        choices = sorted(hparam_choices(hp))
        wanted = keep * max(choices)
        config[name] = next((c for c in choices if c >= wanted - 1e-9), max(choices))
    return config


@register("l2struct")
class UniformNormPruning(PruneMethod):
    """Uniform-ratio structured pruning keeping the highest-norm channels."""

    version = 2
    matches_fastnas_flops = True
    budget = "either"

    def prune(self, model: DetectionModel, ctx: PruneContext) -> DetectionModel:
        spec = ctx.spec
        if spec.latency is not None:
            pruned, notes = prune_to_latency(lambda t: self._prune_to_flops(model, spec.channel_divisor, t), model, ctx,
                                             self.notes)
            self.notes.update(notes)
            return pruned
        target = ctx.match_flops_ratio if ctx.match_flops_ratio is not None else spec.flops_target
        assert target is not None
        return self._prune_to_flops(model, spec.channel_divisor, target)

    def _prune_to_flops(self, model: DetectionModel, divisor: int, target: float) -> DetectionModel:
        source_gflops = model_gflops(model)
        net, hparams = searchable(model, divisor)

        def ratio_of(config: dict) -> float:
            return model_gflops(subnet(net, config)) / source_gflops

        # Largest keep fraction whose FLOPs stay at or under the target.
        lo, hi = 0.0, 1.0
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ratio_of(uniform_widths(hparams, mid)) <= target else (lo, mid)
        config = uniform_widths(hparams, lo)
        # Widths move in divisor steps, so FLOPs jump between neighbouring ratios. Like
        # largest-remainder rounding, widen first the layers that rounding cut furthest below the
        # common ratio, while the FLOPs stay under the target.
        for name in sorted(hparams, key=lambda n: config[n] / max(hparam_choices(hparams[n]))):
            wider = [c for c in sorted(hparam_choices(hparams[name])) if c > config[name]]
            if not wider:
                continue
            trial = {**config, name: wider[0]}
            if ratio_of(trial) <= target:
                config = trial
        pruned = subnet(net, config)
        achieved = model_gflops(pruned) / source_gflops
        log.info("l2struct: common keep ratio %.3f, FLOPs ratio %.4f (target %.4f)", lo, achieved, target)
        self.notes.update(keep_ratio=lo, flops_ratio_before_finetune=achieved)
        return pruned
