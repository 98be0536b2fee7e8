"""The FastNAS search space over a YOLOv8 detector, shared by every method that prunes through it.

FastNAS searches it; l2struct ranks channels with modelopt's importance inside the same space, so
both cut exactly the same layers at the same granularity.
"""

from __future__ import annotations

from typing import Any

from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.compat.modelopt import (
    configurable_hparams,
    convert_to_search_space,
    fastnas_config,
    full_widths,
    hparam_choices,
    set_widths,
    sort_channels,
)


def frozen_patterns(model: DetectionModel) -> tuple[str, ...]:
    """Modules whose widths are fixed: the Detect head's output convs (4·reg_max box bins and
    ``nc`` class scores) and its DFL integral. The head's inner 3×3 convs stay prunable: at 640 px
    they run at the highest resolutions and are a large share of the network's latency.
    """
    head = f"model.{len(model.model) - 1}"  # type: ignore[arg-type]
    return (f"*{head}.cv[23].*.2", f"*{head}.dfl*")


def search_space_config(model: DetectionModel, channel_divisor: int) -> Any:
    """FastNAS search-space rules: widths in multiples of ``channel_divisor``, head outputs frozen."""
    return fastnas_config(channel_divisor, frozen_patterns(model))


def searchable(model: DetectionModel, channel_divisor: int) -> tuple[Any, dict[str, Any]]:
    """A search-space copy of ``model`` with channels in importance order, and its prunable hparams.

    Channels are sorted by modelopt's own importance (as FastNAS's search does before scoring), so
    a narrower width keeps the most important channels and a width chosen from FastNAS's
    sensitivity map means what it meant there.

    Returns:
        (search-space network, hparam name → hparam) for hparams with more than one choice.
    """
    import copy

    from fastnas_bench.traceable import make_traceable

    net = make_traceable(copy.deepcopy(model)).float()
    net = convert_to_search_space(net, search_space_config(net, channel_divisor))
    sort_channels(net)
    return net, {k: hp for k, hp in configurable_hparams(net).items() if len(hparam_choices(hp)) > 1}


def subnet(net: Any, widths: dict[str, int]) -> Any:
    """A plain (exported) copy of search-space ``net`` at ``widths``; hparams not named stay at full width."""
    import copy

    import modelopt.torch.nas as mtn

    # ``net`` is left at ``widths``: every function that reads it (here and in the latency table) selects first.
    set_widths(net, {**full_widths(net), **widths})
    return mtn.export(copy.deepcopy(net))
