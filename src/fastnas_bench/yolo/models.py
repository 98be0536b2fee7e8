"""Model facts every layer needs: loading a checkpoint, FLOPs, params, structure.

A leaf: the build pipeline, the pruning methods and the backends import it; it imports none of them.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from fastnas_bench.compat.ultralytics import load_checkpoint_module
from fastnas_bench.errors import BadInputError

REPORT_IMGSZ = 640  # FLOPs are reported at 640 px, the way the reference table does


def load_model(weights: Path | str) -> torch.nn.Module:
    """The float32 CPU DetectionModel stored in an Ultralytics checkpoint."""
    try:
        model = load_checkpoint_module(str(weights), device="cpu")
    except (OSError, RuntimeError, EOFError, KeyError, AttributeError, TypeError, pickle.UnpicklingError) as e:
        # Ultralytics wraps unpickling errors in a TypeError with a multi-line message; keep one line.
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInputError(f"weights {weights} could not be loaded: {first_line}") from None
    return model.float().eval()


def model_gflops(model: torch.nn.Module, imgsz: int = REPORT_IMGSZ) -> float:
    """GFLOPs at ``imgsz`` by Ultralytics' counter; raises rather than report a 0 it failed to count."""
    from ultralytics.utils.torch_utils import get_flops

    gflops = float(get_flops(model, imgsz))
    if gflops <= 0:
        raise RuntimeError(f"Ultralytics could not count the FLOPs of {type(model).__name__}")
    return gflops


def model_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_structure(model: torch.nn.Module) -> dict[str, Any]:
    """Params, GFLOPs at :data:`REPORT_IMGSZ` and every convolution's output width."""
    return {
        "params": model_params(model),
        "gflops": round(model_gflops(model), 3),
        "conv_out_channels": [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)],
    }
