"""Pruned checkpoints that stock Ultralytics loads, with nothing of this package installed.

A variant's ``model.pt`` pickles the re-classed :class:`~fastnas_bench.traceable.TraceableDetectionModel`
and :class:`~fastnas_bench.traceable.TraceableC2f` (they only change ``forward``), so unpickling it
needs this package. The export re-classes them back to Ultralytics' own classes, which accept the
pruned widths as they are, and refuses to write a checkpoint that still names any other class.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn
from ultralytics.nn.modules.block import C2f
from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.compat.ultralytics import sync_c2f_hidden_width
from fastnas_bench.errors import BadInputError
from fastnas_bench.fsutil import atomic_write
from fastnas_bench.traceable import TraceableC2f, TraceableDetectionModel


def to_stock(model: nn.Module) -> nn.Module:
    """Re-class ``model`` (in place) to Ultralytics' classes; returns it.

    Raises:
        BadInputError: if a module of a class outside torch and Ultralytics remains.
    """
    for module in model.modules():
        if type(module) is TraceableC2f:
            module.__class__ = C2f
            # Stock C2f's split forward (used by its ONNX export) reads ``c``; pruning narrowed cv1.
            sync_c2f_hidden_width(module)
        elif type(module) is TraceableDetectionModel:
            module.__class__ = DetectionModel
    foreign = sorted({type(m).__module__ + "." + type(m).__qualname__ for m in model.modules()
                      if not type(m).__module__.startswith(("torch.", "ultralytics."))})
    if foreign:
        raise BadInputError(f"the checkpoint holds modules stock Ultralytics cannot load: {', '.join(foreign)}")
    return model


def export_stock_checkpoint(weights: Path, out: Path) -> Path:
    """Write ``weights`` (a variant's ``model.pt`` or its cache entry) as a stock Ultralytics checkpoint.

    Raises:
        BadInputError: naming a path that is not an Ultralytics checkpoint, or a class that remains.
    """
    path = weights / "model.pt" if weights.is_dir() else weights
    try:
        ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise BadInputError(f"{path} is not a readable checkpoint: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or not any(isinstance(ckpt.get(k), nn.Module) for k in ("model", "ema")):
        raise BadInputError(f"{path} is not an Ultralytics checkpoint (no 'model' or 'ema' module)")
    for key in ("model", "ema"):
        if isinstance(ckpt.get(key), nn.Module):
            to_stock(ckpt[key])
    return atomic_write(out, lambda tmp: torch.save(ckpt, tmp))
