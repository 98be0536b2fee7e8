"""Ultralytics' own training, fine-tuning and validation of a variant (no hand-written loop).

A pruned network is handed to the trainer as a module so it is fine-tuned as is; the stock
``YOLO.train()`` would rebuild it from the YAML and silently drop every weight whose shape changed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from fastnas_bench import progress
from fastnas_bench.compat.ultralytics import coco_size_ap_key, detection_trainer_for, ema_module, unwrap_model
from fastnas_bench.errors import BadInputError
from fastnas_bench.variants.spec import VariantSpec
from fastnas_bench.yolo.per_image import keeping_validator, kept_stats, stats_identity


def resolve_weights(weights: str) -> str:
    path = Path(weights).expanduser()
    if path.parent != Path(".") or path.exists():
        if not path.is_file() or not os.access(path, os.R_OK):
            raise BadInputError(f"weights file {weights} is not a readable file")
        return str(path)
    return weights  # an Ultralytics asset name, downloaded by Ultralytics when online


@contextlib.contextmanager
def build_log(path: Path) -> Iterator[None]:
    """Copy Ultralytics' and this package's log records into the entry's ``logs/build.log``."""
    from ultralytics.utils import LOGGER

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    ours = logging.getLogger("fastnas_bench")
    loggers = [LOGGER, ours]
    for lg in loggers:
        lg.addHandler(handler)
    level = ours.level
    ours.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        yield
    finally:
        ours.setLevel(level)
        for lg in loggers:
            lg.removeHandler(handler)
        handler.close()


def train_args(spec: VariantSpec, data: Path | str, device: str, run_dir: Path, epochs: int) -> dict[str, Any]:
    return {
        "data": str(data),
        "imgsz": spec.imgsz,
        "epochs": epochs,
        "batch": spec.batch,
        "seed": spec.seed,
        "deterministic": True,
        "device": device,
        "workers": 0 if device == "cpu" else 8,
        "project": str(run_dir.parent),
        "name": run_dir.name,
        "exist_ok": True,
        "plots": False,
        # Per-epoch validation on the search split picks best.pt. On the CPU it costs about 14% of
        # an epoch and picked the last epoch for the source (60/60), the baseline (30/30) and
        # fastnas66 (30/30) of the cpu profile: there the trainer validates the final epoch only.
        "val": device != "cpu",
        "amp": device != "cpu",
        "verbose": False,
    }


def finetune(
    model: torch.nn.Module,
    spec: VariantSpec,
    data: Path | str,
    device: str,
    run_dir: Path,
    constrain: Callable[[torch.nn.Module], None] | None = None,
) -> Path:
    """Fine-tune ``model`` as is (no YAML rebuild) with Ultralytics' trainer; returns best.pt.

    ``constrain`` (a pruning method's structure, e.g. an unstructured mask) is re-applied to the
    model and its EMA after every batch and to the weights in the saved checkpoint.
    """
    args = train_args(spec, data, device, run_dir, spec.finetune_epochs)
    args["model"] = f"{spec.model}.yaml"  # required by the trainer's config; never built (see below)
    # The module handed in is trained as it is: the trainer skips building from the YAML.
    trainer = detection_trainer_for(model.float().train(), args)
    if constrain is not None:

        def reapply(tr: Any) -> None:
            # Under DDP the trainer's model is wrapped (parameter names gain "module."): constrain the
            # network itself, whose names the method's masks use.
            constrain(unwrap_model(tr.model))
            ema = ema_module(tr)
            if ema is not None:
                constrain(ema)

        trainer.add_callback("on_train_batch_end", reapply)
    trainer.add_callback("on_train_epoch_end", progress.epoch_callback(f"{spec.name}: fine-tune"))
    trainer.train()
    best = run_dir / "weights" / "best.pt"
    if constrain is not None:
        ckpt = torch.load(best, map_location="cpu", weights_only=False)
        for key in ("model", "ema"):
            if isinstance(ckpt.get(key), torch.nn.Module):
                constrain(ckpt[key])
        torch.save(ckpt, best)
    return best


def save_unfinetuned(model: torch.nn.Module, like: Path, path: Path) -> Path:
    """Save ``model`` as it is (a pruned network with no fine-tune) in the checkpoint of ``like`` (its
    source), by Ultralytics' own ``YOLO.save``: the same training args, class names and format."""
    from ultralytics import YOLO

    from fastnas_bench.yolo.models import load_model, model_params

    holder = YOLO(str(like))
    holder.model = model
    holder.save(str(path))
    # A checkpoint still holding the source's EMA would load as the source: make sure it did not.
    if model_params(load_model(path)) != model_params(model):
        raise RuntimeError(f"{path} does not load as the network saved into it (the checkpoint of {like} overrode it)")
    return path


def train_source(spec: VariantSpec, data: Path | str, device: str, run_dir: Path) -> Path:
    from ultralytics import YOLO

    if spec.weights is not None:
        model = YOLO(resolve_weights(spec.weights))
        if spec.epochs == 0:
            if not model.ckpt_path:
                raise BadInputError(f"weights {spec.weights} are not an Ultralytics .pt checkpoint")
            return Path(model.ckpt_path)
    else:
        model = YOLO(f"{spec.model}.yaml")
    model.add_callback("on_train_epoch_end", progress.epoch_callback(f"{spec.model} source: train"))
    model.train(**train_args(spec, data, device, run_dir, spec.epochs))
    return run_dir / "weights" / "best.pt"


def validate(weights: Path, spec: VariantSpec, data: Path, device: str, out_dir: Path,
             stats_file: Path | None = None) -> dict[str, Any]:
    """Ultralytics validation: mAP50-95, mAP50, precision, recall, per-class AP and COCO per-size AP.

    ``save_json`` makes Ultralytics evaluate its COCO-format predictions with faster-coco-eval,
    which adds AP for small/medium/large objects (COCO area ranges at the stored image size).
    ``stats_file``: where to keep the validation's per-image statistics (for the paired bootstrap),
    so the drops' intervals need no second validation; the result then names their identity.
    """
    validator = keeping_validator(
        out_dir,
        {"model": str(weights), "data": str(data), "imgsz": spec.imgsz, "batch": 16, "split": "val",
         "device": device, "plots": False, "verbose": False, "save_json": True},
    )
    stats = validator()
    box = validator.metrics.box  # type: ignore[union-attr]
    result: dict[str, Any] = {
        "map50_95": float(box.map), "map50": float(box.map50), "precision": float(box.mp), "recall": float(box.mr),
        "ap_per_class": {validator.names[int(c)]: float(ap) for c, ap in zip(box.ap_class_index, box.maps[box.ap_class_index])},  # type: ignore[index]
    }
    for size in ("small", "medium", "large"):
        key = coco_size_ap_key(size)
        if key not in stats:
            # Ultralytics only logs a warning when the COCO evaluation fails; a missing figure is an error here.
            raise RuntimeError(f"Ultralytics' COCO evaluation produced no {key}; is faster-coco-eval installed?")
        result[f"ap_{size}"] = float(stats[key])
    if stats_file is not None:
        kept_stats(validator).save(stats_file)
        result["val_stats_identity"] = stats_identity(data, spec.imgsz, device)
    return result
