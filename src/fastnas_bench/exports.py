"""Cached ONNX exports of a built variant, made by Ultralytics' exporter."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from fastnas_bench.build import MODEL_FILE, Variant
from fastnas_bench.cache import ArtifactCache
from fastnas_bench.spec import package_version

ONNX_FILE = "model.onnx"


def onnx_key(variant: Variant, imgsz: int, batch: int) -> str:
    versions = "-".join(package_version(p) for p in ("onnx", "onnxslim"))
    return f"{variant.meta['key']}-onnx-{imgsz}px-bs{batch}-{versions}"


def export_onnx(variant: Variant, cache: ArtifactCache, imgsz: int, batch: int, *, rebuild: bool = False) -> Path:
    """Static-shape FP32 ONNX of ``variant`` at ``imgsz`` × ``batch``, built once and cached.

    The exporter writes next to its input, so it runs on a copy inside the entry's temporary
    directory; the variant's own entry is never touched.
    """
    from ultralytics import YOLO

    key = onnx_key(variant, imgsz, batch)

    def builder(tmp: Path) -> dict[str, Any]:
        shutil.copyfile(variant.weights, tmp / MODEL_FILE)
        out = YOLO(str(tmp / MODEL_FILE)).export(
            format="onnx", imgsz=imgsz, batch=batch, dynamic=False, simplify=True, device="cpu", verbose=False
        )
        os.replace(out, tmp / ONNX_FILE)
        (tmp / MODEL_FILE).unlink()
        return {"variant_key": variant.meta["key"], "imgsz": imgsz, "batch": batch}

    cache.get_or_build(key, builder, rebuild=rebuild)
    return cache.path(key) / ONNX_FILE
