"""A YOLOv8 detection model that modelopt's FX-based tracer can see through.

Its module path, ``fastnas_bench.traceable``, is part of the checkpoint format: every pruned
variant's cached ``model.pt`` pickles these classes by that name, so moving them would make every
existing cache entry unreadable (``fastnas-bench export`` writes checkpoints without them).

modelopt traces ``type(model).forward``. Ultralytics' ``BaseModel.forward(x, *args, **kwargs)``
defeats FX, so the tracer falls back to treating ``model.model`` as a plain chain and every
``Concat`` sees a single input. ``C2f.forward`` materialises ``list(tensor.chunk(...))``, which FX
cannot iterate, so C2f would be frozen as an opaque leaf. The classes here fix both at the class
level, for one model instance at a time (no process-wide patching of Ultralytics):

* :class:`TraceableDetectionModel` has an explicit signature whose defaults the tracer turns into
  concrete values, and routes straight into the layer loop.
* :class:`TraceableC2f` indexes the chunks instead of listing them, so its inner convolutions
  become prunable.

Both subclass the Ultralytics classes and add no state, so weights, ``fuse()``, the trainer and
the validator keep working, and pickled checkpoints reference these importable classes.
"""

from __future__ import annotations

from typing import Any

import torch
from ultralytics.nn.modules.block import C2f
from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.compat.ultralytics import c2f_parts, predict_augment, predict_once


class TraceableC2f(C2f):
    """C2f whose forward FX can trace (chunks indexed rather than iterated)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cv1, blocks, cv2 = c2f_parts(self)
        halves = cv1(x).chunk(2, 1)
        y = [halves[0], halves[1]]
        for m in blocks:
            y.append(m(y[-1]))
        return cv2(torch.cat(y, 1))


class TraceableDetectionModel(DetectionModel):
    """DetectionModel with an FX-traceable forward; behaviour identical to the stock model."""

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor | dict[str, Any],
        profile: bool = False,
        augment: bool = False,
        embed: list[int] | None = None,
    ) -> Any:
        if isinstance(x, dict):  # training batch: Ultralytics' trainer asks for the loss
            return self.loss(x)
        if augment:
            return predict_augment(self, x)
        return predict_once(self, x, profile, embed)


def make_traceable(model: DetectionModel) -> TraceableDetectionModel:
    """Re-class ``model`` and its C2f blocks in place as the traceable variants; returns it.

    The swap changes only which ``forward`` runs; parameters and buffers are untouched, so the
    outputs are the stock model's (checked in the unit tests).

    Raises:
        TypeError: if ``model`` is not an Ultralytics DetectionModel.
    """
    if type(model) not in (DetectionModel, TraceableDetectionModel):
        # A subclass (segmentation, pose, ...) has its own forward that re-classing would drop.
        raise TypeError(f"expected an Ultralytics DetectionModel, got {type(model).__name__}")
    for module in model.modules():
        if type(module) is C2f:
            module.__class__ = TraceableC2f
    model.__class__ = TraceableDetectionModel
    return model  # type: ignore[return-value]
