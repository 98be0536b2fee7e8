"""Cached ONNX exports of a built variant, made by Ultralytics' exporter."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from fastnas_bench import progress
from fastnas_bench.keys import digest
from fastnas_bench.variants.cache import ArtifactCache
from fastnas_bench.variants.variant import MODEL_FILE, Variant
from fastnas_bench.versions import EXPORT, versions_of

ONNX_FILE = "model.onnx"


#: Bumped whenever ONNX_EXPORT_ARGS change; part of every export's key.
EXPORT_SETTINGS_VERSION = 1
#: Ultralytics exporter arguments (with ``imgsz`` and ``batch``): static-shape FP32, simplified. The A/B
#: worker exports with the same (``measure/ab_worker.py``, which imports nothing of this package).
ONNX_EXPORT_ARGS = {"format": "onnx", "dynamic": False, "simplify": True, "device": "cpu"}


def onnx_key(variant: Variant, imgsz: int, batch: int) -> str:
    """Key of an export: the content of the ``model.pt`` it is made from, its shape, the exporter settings
    and the versions of what writes it. A rebuilt ``model.pt`` (even under the same spec) gets a new export."""
    settings = {
        "model_sha256": variant.meta["files"][MODEL_FILE], "imgsz": imgsz, "batch": batch,
        "settings": EXPORT_SETTINGS_VERSION, "versions": versions_of(EXPORT),
    }
    return f"{variant.spec.model}-{variant.spec.name}-onnx-{imgsz}px-bs{batch}-{digest(settings)}"


def export_onnx(variant: Variant, cache: ArtifactCache, imgsz: int, batch: int, *, rebuild: bool = False) -> Path:
    """Static-shape FP32 ONNX of ``variant`` at ``imgsz`` × ``batch``, built once and cached.

    The exporter writes next to its input, so it runs on a copy inside the entry's temporary
    directory; the variant's own entry is never touched.
    """
    from ultralytics import YOLO

    key = onnx_key(variant, imgsz, batch)

    def builder(tmp: Path) -> dict[str, Any]:
        progress.report(f"{variant.spec.name}: ONNX export at {imgsz} px, batch {batch}")
        shutil.copyfile(variant.weights, tmp / MODEL_FILE)
        out = YOLO(str(tmp / MODEL_FILE)).export(imgsz=imgsz, batch=batch, verbose=False, **ONNX_EXPORT_ARGS)
        os.replace(out, tmp / ONNX_FILE)
        (tmp / MODEL_FILE).unlink()
        return {"variant_key": variant.meta["key"], "model_sha256": variant.meta["files"][MODEL_FILE],
                "imgsz": imgsz, "batch": batch}

    cache.get_or_build(key, builder, rebuild=rebuild)
    return cache.path(key) / ONNX_FILE
