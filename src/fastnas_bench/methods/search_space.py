"""The FastNAS search space over a YOLOv8 detector, shared by every method that prunes through it.

FastNAS searches it; l2struct ranks channels with modelopt's importance inside the same space, so
both cut exactly the same layers at the same granularity.
"""

from __future__ import annotations

from typing import Any

from ultralytics.nn.tasks import DetectionModel


def frozen_patterns(model: DetectionModel) -> tuple[str, ...]:
    """Modules whose widths are fixed: the Detect head's output convs (4·reg_max box bins and
    ``nc`` class scores) and its DFL integral. The head's inner 3×3 convs stay prunable: at 640 px
    they run at the highest resolutions and are a large share of the network's latency.
    """
    head = f"model.{len(model.model) - 1}"  # type: ignore[arg-type]
    return (f"*{head}.cv[23].*.2", f"*{head}.dfl*")


def search_space_config(model: DetectionModel, channel_divisor: int) -> Any:
    """FastNAS search-space rules: widths in multiples of ``channel_divisor``, head outputs frozen."""
    import modelopt.torch.prune as mtp

    config = mtp.fastnas.FastNASConfig()
    config["nn.Conv2d"]["*"]["channel_divisor"] = channel_divisor
    config["nn.BatchNorm2d"]["*"]["feature_divisor"] = channel_divisor
    for pattern in frozen_patterns(model):
        config["nn.Conv2d"][pattern] = None
    return config


def searchable(model: DetectionModel, channel_divisor: int) -> tuple[Any, dict[str, Any]]:
    """A search-space copy of ``model`` with channels in importance order, and its prunable hparams.

    Channels are sorted by modelopt's own importance (as FastNAS's search does before scoring), so
    a narrower width keeps the most important channels and a width chosen from FastNAS's
    sensitivity map means what it meant there.

    Returns:
        (search-space network, hparam name → hparam) for hparams with more than one choice.
    """
    import copy

    import modelopt.torch.nas as mtn
    import modelopt.torch.prune as mtp
    from modelopt.torch.nas.utils import sort_parameters
    from modelopt.torch.opt.utils import named_hparams

    from fastnas_bench.traceable import make_traceable

    net = make_traceable(copy.deepcopy(model)).float()
    net = mtn.convert(net, [("fastnas", search_space_config(net, channel_divisor))],
                      registry=mtp.pruning.PruneModeRegistry)
    sort_parameters(net)
    return net, {k: hp for k, hp in named_hparams(net, configurable=True) if len(hp.choices) > 1}


def subnet(net: Any, widths: dict[str, int]) -> Any:
    """A plain (exported) copy of search-space ``net`` at ``widths``; hparams not named stay at full width."""
    import copy

    import modelopt.torch.nas as mtn
    from modelopt.torch.nas.utils import select
    from modelopt.torch.opt.utils import named_hparams

    full = {k: max(hp.choices) for k, hp in named_hparams(net, configurable=True)}
    select(net, {**full, **widths}, strict=False)
    return mtn.export(copy.deepcopy(net))
