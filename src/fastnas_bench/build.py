"""The variant pipeline: spec → (train | load) → prune → fine-tune → metrics → cached entry.

Every step uses the libraries' own machinery: Ultralytics' trainer, validator, FLOPs counter and
exporter, and modelopt for the pruning. A pruned network is handed to the trainer as a module so
it is fine-tuned as is; the stock ``YOLO.train()`` would rebuild it from the YAML and silently
drop every weight whose shape changed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from fastnas_bench import progress
from fastnas_bench.cache import ArtifactCache
from fastnas_bench.data import GENERATED_PREFIX, GeneratedDataConfig, generate_dataset, validate_data_yaml
from fastnas_bench.errors import BadInputError
from fastnas_bench.methods import PruneContext, get_method, get_method_class
from fastnas_bench.models import describe_structure, load_model
from fastnas_bench.spec import VariantSpec, package_version
from fastnas_bench.splits import DataSplits, carve_search_split

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class Variant:
    """A built variant: its spec, its cache entry and the metadata measured at build time."""

    spec: VariantSpec
    path: Path
    meta: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def gflops(self) -> float:
        return float(self.meta["gflops"])

    @property
    def params(self) -> int:
        return int(self.meta["params"])

    @property
    def map50_95(self) -> float:
        return float(self.meta["map50_95"])

    @property
    def recall(self) -> float:
        return float(self.meta["recall"])


def resolve_data(data: str, cache: ArtifactCache, seed: int = 0) -> DataSplits:
    """The select/report views of a dataset (see :mod:`fastnas_bench.splits`).

    ``generated`` is written into the cache; a local YAML is validated; names without a path that
    Ultralytics knows (``coco128.yaml``) are resolved, and when online downloaded, by Ultralytics.

    Raises:
        BadInputError: for a bad path or a dataset Ultralytics cannot resolve (offline, say).
    """
    if data == GENERATED_PREFIX:
        yaml_path: Path | str = generate_dataset(cache.root / "datasets", GeneratedDataConfig(seed=seed))
    else:
        path = Path(data).expanduser()
        if path.suffix not in {".yaml", ".yml"}:
            raise BadInputError(f"data {data!r} must be a dataset YAML or {GENERATED_PREFIX!r}")
        yaml_path = validate_data_yaml(path) if path.parent != Path(".") or path.exists() else data
    from ultralytics.data.utils import check_det_dataset

    try:
        dataset = check_det_dataset(str(yaml_path))
    except Exception as e:  # noqa: BLE001 - Ultralytics raises FileNotFoundError, ConnectionError, SyntaxError, ...
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInputError(f"dataset {data!r} is not available: {first_line}") from None
    return carve_search_split(dataset, cache.root / "datasets")


def _resolve_weights(weights: str) -> str:
    path = Path(weights).expanduser()
    if path.parent != Path(".") or path.exists():
        if not path.is_file() or not os.access(path, os.R_OK):
            raise BadInputError(f"weights file {weights} is not a readable file")
        return str(path)
    return weights  # an Ultralytics asset name, downloaded by Ultralytics when online


@contextlib.contextmanager
def _build_log(path: Path) -> Iterator[None]:
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


def _train_args(spec: VariantSpec, data: Path | str, device: str, run_dir: Path, epochs: int) -> dict[str, Any]:
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
        "val": True,
        "amp": device != "cpu",
        "verbose": False,
    }


def _finetune(
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
    from ultralytics.models.yolo.detect import DetectionTrainer

    args = _train_args(spec, data, device, run_dir, spec.finetune_epochs)
    args["model"] = f"{spec.model}.yaml"  # required by the trainer's config; never built (see below)
    trainer = DetectionTrainer(overrides=args)
    # A module already in place makes the trainer skip building from the YAML.
    trainer.model = model.float().train()  # type: ignore[assignment]
    if constrain is not None:

        def reapply(tr: Any) -> None:
            constrain(tr.model)
            if tr.ema is not None:
                constrain(tr.ema.ema)

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


def _train_baseline(spec: VariantSpec, data: Path | str, device: str, run_dir: Path) -> Path:
    from ultralytics import YOLO

    if spec.weights is not None:
        model = YOLO(_resolve_weights(spec.weights))
        if spec.epochs == 0:
            if not model.ckpt_path:
                raise BadInputError(f"weights {spec.weights} are not an Ultralytics .pt checkpoint")
            return Path(model.ckpt_path)
    else:
        model = YOLO(f"{spec.model}.yaml")
    model.add_callback("on_train_epoch_end", progress.epoch_callback(f"{spec.model} source: train"))
    model.train(**_train_args(spec, data, device, run_dir, spec.epochs))
    return run_dir / "weights" / "best.pt"


def _validate(weights: Path, spec: VariantSpec, data: Path | str, device: str, out_dir: Path) -> dict[str, Any]:
    """Ultralytics validation: mAP50-95, mAP50, precision, recall, per-class AP and COCO per-size AP.

    ``save_json`` makes Ultralytics evaluate its COCO-format predictions with faster-coco-eval,
    which adds AP for small/medium/large objects (COCO area ranges at the stored image size).
    """
    from ultralytics.models.yolo.detect import DetectionValidator

    validator = DetectionValidator(
        save_dir=out_dir,
        args={"model": str(weights), "data": str(data), "imgsz": spec.imgsz, "batch": 16, "split": "val",
              "device": device, "plots": False, "verbose": False, "save_json": True},
    )
    stats = validator()
    box = validator.metrics.box  # type: ignore[union-attr]
    result: dict[str, Any] = {
        "map50_95": float(box.map), "map50": float(box.map50), "precision": float(box.mp), "recall": float(box.mr),
        "ap_per_class": {validator.names[int(c)]: float(ap) for c, ap in zip(box.ap_class_index, box.maps[box.ap_class_index])},  # type: ignore[index]
    }
    for size in ("small", "medium", "large"):
        key = f"metrics/mAP_{size}(B)"
        if key not in stats:
            # Ultralytics only logs a warning when the COCO evaluation fails; a missing figure is an error here.
            raise RuntimeError(f"Ultralytics' COCO evaluation produced no {key}; is faster-coco-eval installed?")
        result[f"ap_{size}"] = float(stats[key])
    return result


def _prune_context(
    spec: VariantSpec, data: Path, device: str, source: Variant, match: float | None, cache: ArtifactCache, work: Path
) -> PruneContext:
    return PruneContext(
        spec=spec, data_yaml=data, device=device, work_dir=work, match_flops_ratio=match,
        cache_root=cache.root, source_sha256=source.meta["files"][MODEL_FILE],
    )


def build_variant(
    spec: VariantSpec, cache: ArtifactCache, device: str = "cpu", *, rebuild: bool = False
) -> Variant:
    """Build (or read from cache) the variant described by ``spec``.

    Any variant other than the source first builds the source (also cached); a pruned variant
    prunes a copy of it, and every such variant is then fine-tuned ``finetune_epochs``.

    Args:
        spec: The variant to build.
        cache: Artifact cache holding the entry.
        device: ``cpu`` or ``cuda[:N]``.
        rebuild: Rebuild this entry even if cached (``--rebuild-variants``). Only this entry: a
            caller that wants a fresh source too rebuilds it first.
    """
    splits = resolve_data(spec.data, cache, spec.seed)
    # Every accuracy-driven choice (best epoch, FastNAS widths) sees the search split only.
    data = splits.select_yaml
    is_source = spec == spec.source()
    source = None if is_source else build_variant(spec.source(), cache, device)
    # Rivals are compared with FastNAS at equal FLOPs: they aim at the ratio FastNAS reached (under
    # a latency budget every method aims at the measured latency instead).
    match = None
    if spec.method != "baseline" and spec.latency is None and get_method_class(spec.method).matches_fastnas_flops:
        match = build_variant(replace(spec, method="fastnas"), cache, device).meta["flops_ratio"]

    def builder(tmp: Path) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "spec": spec.to_dict(),
            "versions": {p: package_version(p) for p in ("torch", "ultralytics", "nvidia-modelopt")},
            "device": device,
            "splits": {"train_images": splits.train_images, "search_images": splits.search_images,
                       "val_images": splits.val_images},
        }
        with _build_log(tmp / "logs" / "build.log"):
            progress.report(f"building {spec.name} ({key}); cached after this run")
            if source is None:
                best = _train_baseline(spec, data, device, tmp / "train")
            else:
                model = load_model(source.weights)
                constrain = None
                if spec.method != "baseline":
                    method = get_method(spec.method)
                    ctx = _prune_context(spec, data, device, source, match, cache, tmp / "work")
                    model = method.prune(model, ctx)  # type: ignore[arg-type]
                    constrain = method.constrain
                    meta["pruned_before_finetune"] = describe_structure(model)
                    meta["prune_notes"] = method.notes
                    if match is not None:
                        meta["matched_flops_ratio"] = match
                best = _finetune(model, spec, data, device, tmp / "train", constrain)
            shutil.copyfile(best, tmp / MODEL_FILE)
            meta.update(describe_structure(load_model(tmp / MODEL_FILE)))
            progress.report(f"{spec.name}: validating on the held-out val split ({splits.val_images} images)")
            meta.update(_validate(tmp / MODEL_FILE, spec, splits.report_yaml, device, tmp / "val"))
            if source is not None:
                meta["flops_ratio"] = round(meta["gflops"] / source.gflops, 4)
                meta["source_key"] = source.meta["key"]
                meta["source_sha256"] = source.meta["files"][MODEL_FILE]
        # Keep logs and the training curve; drop the trainer's duplicate weights.
        for scratch in ("train/weights", "work", "val"):
            shutil.rmtree(tmp / scratch, ignore_errors=True)
        return meta

    key = spec.key()
    meta = cache.get_or_build(key, builder, rebuild=rebuild)
    reason = stale_reason(meta, source, match)
    if reason:
        log.warning("rebuilding %s: %s", key, reason)
        meta = cache.get_or_build(key, builder, rebuild=True)
    return Variant(spec=spec, path=cache.path(key), meta=meta)


def stale_reason(meta: dict[str, Any], source: Variant | None, match: float | None) -> str | None:
    """Why a cached entry no longer follows from its inputs, or ``None``.

    A key hashes the spec, not the builds it derives from: a rebuilt source, or a FastNAS sibling
    that now reaches another FLOPs ratio, must not leave a pruned entry or a rival built from
    the old one in place.
    """
    if match is not None and meta.get("matched_flops_ratio") != match:
        return f"built to match FLOPs ratio {meta.get('matched_flops_ratio')}, FastNAS now reaches {match}"
    built_from = meta.get("source_sha256")
    if source is not None and built_from is not None and built_from != source.meta["files"][MODEL_FILE]:
        return f"built from source model {built_from[:12]}, the cached source is now {source.meta['files'][MODEL_FILE][:12]}"
    return None
