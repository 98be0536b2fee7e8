"""Ultralytics' own per-image detection statistics of a validation, kept for resampling.

A validation reduces its images to one mAP. To say how sure a *difference* between two models is,
the paired bootstrap (:mod:`fastnas_bench.verdicts.accuracy`) resamples images and recomputes both
models' metrics on the same resample, so it needs what Ultralytics matched per image: for each image,
each prediction's true-positive flags at the ten IoU thresholds 0.50:0.95, its confidence and class,
and the image's ground-truth classes (``DetMetrics.stats``, which the validator clears after reducing it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fastnas_bench.variants.cache import ArtifactCache
    from fastnas_bench.variants.variant import Variant

#: The validator's per-image stats keys this module keeps.
STAT_KEYS = ("tp", "conf", "pred_cls", "target_cls")


@dataclass(frozen=True)
class PerImageStats:
    """One model's matched detections on one validation split, image by image.

    Attributes:
        images: Image file names, in the order of the lists below.
        tp: Per image, (predictions × 10) true-positive flags at IoU 0.50, 0.55, ..., 0.95.
        conf, pred_cls: Per image, each prediction's confidence and class.
        target_cls: Per image, its ground-truth boxes' classes.
    """

    images: tuple[str, ...]
    tp: list[np.ndarray]
    conf: list[np.ndarray]
    pred_cls: list[np.ndarray]
    target_cls: list[np.ndarray]

    def __post_init__(self) -> None:
        lengths = {len(self.images), len(self.tp), len(self.conf), len(self.pred_cls), len(self.target_cls)}
        if len(lengths) != 1:
            raise ValueError(f"per-image stats of unequal lengths: {sorted(lengths)}")

    def save(self, path: Path) -> None:
        """As one ``.npz``: each key's arrays concatenated, with per-image offsets."""
        arrays: dict[str, Any] = {"images": np.asarray(self.images)}
        for key in STAT_KEYS:
            parts = getattr(self, key)
            arrays[key] = np.concatenate(parts) if parts else np.zeros(0)
            arrays[f"{key}_counts"] = np.asarray([len(p) for p in parts], dtype=np.int64)
        with path.open("wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> PerImageStats:
        with np.load(path) as z:
            split = {key: np.split(z[key], np.cumsum(z[f"{key}_counts"])[:-1]) for key in STAT_KEYS}
            return cls(tuple(str(n) for n in z["images"]), **split)


def keeping_validator(save_dir: Path, args: dict[str, Any]) -> Any:
    """Ultralytics' ``DetectionValidator`` that keeps the per-image statistics of its last run
    (:func:`kept_stats`) instead of only reducing them."""
    from ultralytics.models.yolo.detect import DetectionValidator

    class _Keeping(DetectionValidator):  # type: ignore[misc]
        kept: dict[str, list[np.ndarray]] | None = None

        def get_stats(self) -> dict[str, Any]:
            # DetMetrics.process reduces and then the validator clears the per-image lists: copy them first.
            self.kept = {key: list(self.metrics.stats[key]) for key in STAT_KEYS}
            return dict(super().get_stats())

    return _Keeping(save_dir=save_dir, args=args)


def kept_stats(validator: Any) -> PerImageStats:
    """The per-image statistics a :func:`keeping_validator` kept, images in the val loader's order."""
    images = tuple(Path(f).name for f in validator.dataloader.dataset.im_files)
    kept = validator.kept
    if kept is None:
        raise RuntimeError("Ultralytics' validation reduced no statistics (DetectionValidator.get_stats was not called)")
    return PerImageStats(images, [np.asarray(t, dtype=bool) for t in kept["tp"]],
                         [np.asarray(c, dtype=np.float32) for c in kept["conf"]],
                         [np.asarray(c, dtype=np.float32) for c in kept["pred_cls"]],
                         [np.asarray(c, dtype=np.float32) for c in kept["target_cls"]])


def per_image_stats(weights: Path, data: Path, imgsz: int, device: str, out_dir: Path, *,
                    batch: int = 16) -> PerImageStats:
    """Validate ``weights`` (a checkpoint, or an ONNX export) on the val split of ``data`` as
    :func:`fastnas_bench.yolo.train.validate` does (same image size, batch and thresholds) and keep the
    per-image statistics.

    A validator made directly (not through ``YOLO.val``, which turns on rectangular batches for
    checkpoints) letterboxes every image to ``imgsz`` × ``imgsz``, as Ultralytics must for a static-shape
    export: a checkpoint and its ONNX export see the same input tensors. Images come in the val loader's
    order (no shuffling), which is the order the validator matches them in.
    """
    validator = keeping_validator(out_dir, {"model": str(weights), "data": str(data), "imgsz": imgsz, "batch": batch,
                                            "split": "val", "device": device, "plots": False, "verbose": False})
    validator()
    return kept_stats(validator)


#: The per-image statistics of the build's own validation, in the variant's entry.
STATS_FILE = "val_stats.npz"


def stats_identity(data: Path, imgsz: int, device: str) -> str:
    """What per-image statistics of one model depend on besides its weights: the split (a report YAML
    and its val list), the image size, the device, torch and Ultralytics."""
    from fastnas_bench.keys import digest
    from fastnas_bench.versions import versions_of

    split = data.parent / "val.txt"
    return digest({"data": data.read_text(), "val": split.read_text() if split.exists() else str(data), "imgsz": imgsz,
                   "device": device, "versions": versions_of(("torch", "ultralytics"))})


def cached_per_image_stats(variant: Variant, cache: ArtifactCache, data: Path, device: str) -> PerImageStats:
    """:func:`per_image_stats` of a built variant on the val split of ``data`` (a report YAML): those its
    build's validation kept where that validation is this one (same split, size, device and versions),
    else computed once per (weights, that identity) and kept as a cache entry."""
    import shutil

    from fastnas_bench.compat.ultralytics import torch_cpu_threads
    from fastnas_bench.host import cpu_threads
    from fastnas_bench.keys import digest
    from fastnas_bench.variants.variant import MODEL_FILE

    identity = stats_identity(data, variant.spec.imgsz, device)
    if variant.meta.get("val_stats_identity") == identity and (variant.path / STATS_FILE).is_file():
        return PerImageStats.load(variant.path / STATS_FILE)
    key = f"{variant.spec.model}-{variant.spec.name}-valstats-{digest({'model': variant.meta['files'][MODEL_FILE], 'identity': identity})}"

    def builder(tmp: Path) -> dict[str, Any]:
        with torch_cpu_threads(cpu_threads()):  # every core, as the build's own validation had
            stats = per_image_stats(variant.weights, data, variant.spec.imgsz, device, tmp / "val")
        shutil.rmtree(tmp / "val", ignore_errors=True)  # only the stats are kept
        stats.save(tmp / STATS_FILE)
        return {"variant_key": variant.meta["key"], "images": len(stats.images)}

    cache.get_or_build(key, builder)
    return PerImageStats.load(cache.path(key) / STATS_FILE)
