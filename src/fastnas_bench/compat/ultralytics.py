"""Ultralytics internals: the model's private forward paths, C2f's parts, the trainer, stats keys, loaders.

Ultralytics documents ``YOLO(...)``, ``.train()``, ``.val()`` and ``.export()``. This suite needs
more: a forward FX can trace (which calls the model's private predict paths), C2f's inner layers
(which pruning narrows), a trainer that fine-tunes a module as it is instead of rebuilding it from
its YAML, the validator's raw stats dict, the exporter on an in-memory module, and the checkpoint
loader and NMS by their module paths (both have moved between releases). Every such use goes
through this module.

Ultralytics (and torch under it) is imported inside the functions: importing this module must stay
free of torch, so ``pytest --help`` and the CLI's argument parsing stay fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

READ_FROM = {"ultralytics": "8.4.190"}
# Instance attributes (C2f's ``cv1``/``cv2``/``m``/``c``, ``Conv.conv``, ``ModelEMA.ema``), the
# stats dict's keys, the trainer's preset-model check and the exporter's ``pt_path`` are checked by
# behaviour (or, where that is not cheap, in the source) in tests/test_compat.py.
RELIED_ON = (
    ("ultralytics.nn.tasks", "DetectionModel._predict_once"),
    ("ultralytics.nn.tasks", "DetectionModel._predict_augment"),
    ("ultralytics.nn.tasks", "load_checkpoint"),
    # Stock C2f's split forward (its ONNX export path) reads the hidden width ``c``.
    ("ultralytics.nn.modules.block", "C2f.forward_split"),
    ("ultralytics.engine.trainer", "BaseTrainer.setup_model"),
    ("ultralytics.models.yolo.detect", "DetectionTrainer"),
    ("ultralytics.models.yolo.detect", "DetectionValidator"),
    ("ultralytics.utils.torch_utils", "ModelEMA"),
    ("ultralytics.utils.torch_utils", "unwrap_model"),
    ("ultralytics.utils.metrics", "DetMetrics.keys"),
    ("ultralytics.engine.exporter", "Exporter"),
    ("ultralytics.utils.nms", "non_max_suppression"),
    # Per-image statistics for the paired bootstrap (yolo/per_image.py): the validator's reduction
    # step, its per-image stats lists (DetMetrics.stats, keys tp/conf/pred_cls/target_cls, cleared
    # after get_stats), the val loader's dataset.im_files order, and the AP routine resampled.
    ("ultralytics.models.yolo.detect", "DetectionValidator.get_stats"),
    ("ultralytics.utils.metrics", "DetMetrics.update_stats"),
    ("ultralytics.utils.metrics", "ap_per_class"),
    # select_device sets torch's CPU threads to this module-level name (see ``torch_cpu_threads``).
    ("ultralytics.utils.torch_utils", "NUM_THREADS"),
)

#: The validator's stats key of box mAP50-95 (one of ``DetMetrics.keys``).
MAP50_95_KEY = "metrics/mAP50-95(B)"
#: The validator's stats key of COCO AP for one object-size range (``small``, ``medium``, ``large``),
#: present when it ran with ``save_json`` and its COCO evaluation succeeded.
COCO_SIZE_AP_KEY = "metrics/mAP_{size}(B)"


# --- the model's forward paths -------------------------------------------------------------------


def predict_once(model: nn.Module, x: torch.Tensor, profile: bool = False, embed: list[int] | None = None) -> Any:
    """One plain pass through the layer loop of a DetectionModel (what ``forward`` ends in).

    Called from a traceable ``forward`` that FX sees through; the private method is called on the
    instance, so a subclass that overrides it keeps its own.
    """
    return model._predict_once(x, profile, embed)  # type: ignore[operator]


def predict_augment(model: nn.Module, x: torch.Tensor) -> Any:
    """The test-time-augmented pass of a DetectionModel (``forward(x, augment=True)``)."""
    return model._predict_augment(x)  # type: ignore[operator]


# --- C2f's parts ---------------------------------------------------------------------------------


def c2f_parts(module: Any) -> tuple[nn.Module, Iterable[nn.Module], nn.Module]:
    """A C2f block's input 1×1 conv, its bottlenecks and its output 1×1 conv, in forward order.

    Ultralytics sets them in ``C2f.__init__`` as ``cv1``, ``m`` and ``cv2``; a forward written
    outside the class (the traceable one) reads them here.
    """
    # ``Any``: the parts are set in ``__init__``, so a type checker cannot see them on ``nn.Module``.
    return module.cv1, module.m, module.cv2


def sync_c2f_hidden_width(module: Any) -> None:
    """Set a C2f block's hidden width ``c`` to half of its (possibly pruned) input conv's output.

    Stock ``C2f.forward_split``, which its ONNX export runs, splits ``cv1``'s output at ``c``; the
    attribute is set once at construction, so after pruning narrowed ``cv1`` it is stale.
    """
    module.c = module.cv1.conv.out_channels // 2


# --- trainer and validator -----------------------------------------------------------------------


def detection_trainer_for(model: nn.Module, overrides: Mapping[str, Any]) -> Any:
    """A DetectionTrainer that trains ``model`` itself, with the given config ``overrides``.

    The trainer builds its model from the ``model`` YAML in ``setup_model``, unless a module is
    already in place: that check (``isinstance(self.model, torch.nn.Module)``) is undocumented
    and is what keeps pruned widths from being rebuilt at full width. ``overrides["model"]`` must
    still name a YAML, as the trainer's config requires one.
    """
    from ultralytics.models.yolo.detect import DetectionTrainer

    trainer = DetectionTrainer(overrides=dict(overrides))
    trainer.model = model  # type: ignore[assignment]
    return trainer


@contextlib.contextmanager
def torch_cpu_threads(threads: int) -> Iterator[None]:
    """Make Ultralytics' training and validation on the CPU use ``threads`` torch threads.

    ``select_device`` (called by every trainer and validator) sets torch to ``NUM_THREADS`` = CPU count
    - 1 threads, a default meant to leave a core to dataloader workers: on a 2-core machine one core,
    half the machine idle through training, validation and every FastNAS score call, while the
    builds here load data in-process (``workers=0``). The name ``select_device`` reads is swapped for
    the block and restored after.
    """
    import ultralytics.utils.torch_utils as torch_utils

    saved = torch_utils.NUM_THREADS
    torch_utils.NUM_THREADS = threads
    try:
        yield
    finally:
        torch_utils.NUM_THREADS = saved


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside a DDP / DataParallel wrapper (the module itself where it is not wrapped)."""
    from ultralytics.utils.torch_utils import unwrap_model as unwrap

    return unwrap(model)  # type: ignore[no-any-return]


def ema_module(trainer: Any) -> nn.Module | None:
    """The trainer's exponential-moving-average copy of the model, or ``None`` before it exists.

    ``trainer.ema`` is a ``ModelEMA`` (``None`` until training sets it up); the module it averages
    into is its ``ema`` attribute.
    """
    return None if trainer.ema is None else trainer.ema.ema


def map50_95(stats: Mapping[str, Any]) -> float:
    """Box mAP50-95 from the stats dict a DetectionValidator call returns."""
    return float(stats[MAP50_95_KEY])


def coco_size_ap_key(size: str) -> str:
    """The stats key of COCO AP for objects of ``size`` (``small``, ``medium`` or ``large``)."""
    return COCO_SIZE_AP_KEY.format(size=size)


# --- export, loading, NMS ------------------------------------------------------------------------


def export_module(model: Any, pt_path: Path, overrides: Mapping[str, Any]) -> str:
    """Export an in-memory ``model`` with Ultralytics' exporter; returns the exported file's path.

    The exporter names its output after the checkpoint the model came from, read from the
    undocumented ``pt_path`` attribute; ``model`` (a throwaway copy: the attribute stays set) is
    pointed at ``pt_path`` so the export lands beside it.
    """
    from ultralytics.engine.exporter import Exporter

    model.pt_path = str(pt_path)
    return str(Exporter(overrides=dict(overrides))(model=model))


def load_checkpoint_module(weights: str, device: str = "cpu") -> nn.Module:
    """The model stored in an Ultralytics checkpoint, on ``device`` (its EMA where it has one).

    Raises:
        Whatever Ultralytics' loader raises for a missing or unreadable file (callers translate it).
    """
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(weights, device=device)
    return model


def non_max_suppression(prediction: torch.Tensor, conf_thres: float, iou_thres: float) -> list[torch.Tensor]:
    """Ultralytics' NMS: per image, rows of x1, y1, x2, y2, conf, class above ``conf_thres``."""
    from ultralytics.utils.nms import non_max_suppression as nms

    return nms(prediction, conf_thres=conf_thres, iou_thres=iou_thres)
