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
