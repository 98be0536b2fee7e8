"""Norm-ranked structured pruning at a uniform per-layer width ratio (the heuristic rival).

The channels of every prunable layer are ranked by modelopt's own importance (the L2 norm of the
consuming convolution's weights per input channel, via ``sort_parameters``), and every layer keeps
the same fraction of its channels (to the divisor grid). The fraction is found by bisection so the
FLOPs land at the ratio FastNAS reached (or under the target when there is no FastNAS result to
match), then rounding remainders are spent like largest-remainder rounding. Same search space,
divisor and frozen head as FastNAS: the only difference is *how* widths are chosen.
"""

from __future__ import annotations

import copy
import logging

from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.methods.base import PruneContext, PruneMethod, register
from fastnas_bench.methods.search_space import search_space_config
from fastnas_bench.models import model_gflops
from fastnas_bench.traceable import make_traceable

log = logging.getLogger(__name__)

BISECTION_STEPS = 14


def uniform_widths(hparams: dict, keep: float) -> dict:
    """For each hparam, the smallest allowed width ≥ ``keep`` × its full width."""
    config = {}
    for name, hp in hparams.items():
        choices = sorted(hp.choices)
        wanted = keep * max(choices)
        config[name] = next((c for c in choices if c >= wanted - 1e-9), max(choices))
    return config


@register("l2struct")
class UniformNormPruning(PruneMethod):
    """Uniform-ratio structured pruning keeping the highest-norm channels."""

    version = 2
    matches_fastnas_flops = True

    def prune(self, model: DetectionModel, ctx: PruneContext) -> DetectionModel:
        import modelopt.torch.nas as mtn
        import modelopt.torch.prune as mtp
        from modelopt.torch.nas.utils import select, sort_parameters
        from modelopt.torch.opt.utils import named_hparams

        spec = ctx.spec
        target = ctx.match_flops_ratio if ctx.match_flops_ratio is not None else spec.flops_target
        assert target is not None
        source_gflops = model_gflops(model)
        net = make_traceable(copy.deepcopy(model)).float()
        net = mtn.convert(net, [("fastnas", search_space_config(net, spec.channel_divisor))],
                          registry=mtp.pruning.PruneModeRegistry)
        sort_parameters(net)  # channel order = importance order, so a width keeps the top channels
        hparams = {k: hp for k, hp in named_hparams(net, configurable=True) if len(hp.choices) > 1}

        def ratio_at(keep: float) -> float:
            select(net, uniform_widths(hparams, keep), strict=False)
            return model_gflops(mtn.export(copy.deepcopy(net))) / source_gflops

        # Largest keep fraction whose FLOPs stay at or under the target.
        lo, hi = 0.0, 1.0
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ratio_at(mid) <= target else (lo, mid)
        config = uniform_widths(hparams, lo)
        # Widths move in divisor steps, so FLOPs jump between neighbouring ratios. Like
        # largest-remainder rounding, widen first the layers that rounding cut furthest below the
        # common ratio, while the FLOPs stay under the target.
        for name in sorted(hparams, key=lambda n: config[n] / max(hparams[n].choices)):
            wider = [c for c in sorted(hparams[name].choices) if c > config[name]]
            if not wider:
                continue
            trial = {**config, name: wider[0]}
            select(net, trial, strict=False)
            if model_gflops(mtn.export(copy.deepcopy(net))) / source_gflops <= target:
                config = trial
        select(net, config, strict=False)
        achieved = model_gflops(mtn.export(copy.deepcopy(net))) / source_gflops
        log.info("l2struct: common keep ratio %.3f, FLOPs ratio %.4f (target %.4f)", lo, achieved, target)
        self.notes.update(keep_ratio=lo, flops_ratio_before_finetune=achieved)
        return mtn.export(net)
