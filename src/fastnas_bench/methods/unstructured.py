"""Unstructured global magnitude pruning (``torch.nn.utils.prune``), the no-speedup control.

Zeroes the smallest-magnitude convolution weights network-wide at a sparsity equal to the FLOPs
share FastNAS removed. Shapes are unchanged, so dense backends do the same work: the point of this
variant is to show that "fewer non-zeros" is not "faster". The zeros are kept through fine-tuning
by re-applying the mask after every optimizer step and on the final checkpoint.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.methods.base import PruneContext, PruneMethod
from fastnas_bench.methods.registry import register

log = logging.getLogger(__name__)


@register("unstructured")
class GlobalMagnitudePruning(PruneMethod):
    """Global L1 unstructured pruning of all Conv2d weights."""

    version = 2
    structured = False  # zeroes weights; every shape stays
    matches_fastnas_flops = True

    def __init__(self) -> None:
        super().__init__()
        self.masks: dict[str, torch.Tensor] = {}

    def prune(self, model: DetectionModel, ctx: PruneContext) -> DetectionModel:
        target = ctx.match_flops_ratio if ctx.match_flops_ratio is not None else ctx.spec.flops_target
        assert target is not None
        sparsity = 1.0 - target
        net = copy.deepcopy(model).float()
        # The DFL conv is a fixed integral (weights 0..reg_max-1), not a learned layer.
        convs = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Conv2d) and ".dfl" not in name]
        torch_prune.global_unstructured(
            [(m, "weight") for _, m in convs], pruning_method=torch_prune.L1Unstructured, amount=sparsity
        )
        for name, m in convs:
            self.masks[f"{name}.weight"] = m.weight_mask.detach().clone().bool()  # type: ignore[operator]
            torch_prune.remove(m, "weight")  # bake the zeros in; shapes and graph stay dense
        zeros = sum(int((~mask).sum()) for mask in self.masks.values())
        total = sum(mask.numel() for mask in self.masks.values())
        log.info("unstructured: %.1f%% of conv weights zeroed (target sparsity %.1f%%)", 100 * zeros / total, 100 * sparsity)
        self.notes["sparsity"] = zeros / total
        return net

    def constrain(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, mask in self.masks.items():
                if name in params:
                    params[name].mul_(mask.to(params[name].device, params[name].dtype))
