"""FLOPs and accuracy of the pruned variant against the baseline, and across backends."""

from __future__ import annotations

import pytest

from fastnas_bench.build import Variant
from fastnas_bench.checks import check_agreement, check_drop, check_flops_ratio
from fastnas_bench.settings import BenchSettings

# Ultralytics validates PyTorch with rectangular batches and static ONNX with square letterboxing;
# the same weights then differ by up to about a point of mAP.
BACKEND_MAP_TOLERANCE = 0.02


def _fail_if(message: str | None) -> None:
    if message:
        pytest.fail(message)


def test_flops_ratio(baseline_variant: Variant, pruned_variant: Variant, bench_settings: BenchSettings) -> None:
    target = bench_settings.profile.pruned.flops_target
    assert target is not None
    _fail_if(check_flops_ratio(baseline_variant.gflops, pruned_variant.gflops, target))


def test_map_drop(baseline_variant: Variant, pruned_variant: Variant, bench_settings: BenchSettings) -> None:
    _fail_if(check_drop("mAP50-95", baseline_variant.map50_95, pruned_variant.map50_95, bench_settings.profile.max_map_drop))


def test_recall_drop(baseline_variant: Variant, pruned_variant: Variant, bench_settings: BenchSettings) -> None:
    _fail_if(check_drop("recall", baseline_variant.recall, pruned_variant.recall, bench_settings.profile.max_recall_drop))


def test_onnx_map_agrees(pruned_variant: Variant, onnx_export, artifact_cache, tmp_path) -> None:
    """The pruned model validated through ONNX Runtime scores what PyTorch scored."""
    from ultralytics import YOLO

    from fastnas_bench.build import resolve_data

    spec = pruned_variant.spec
    onnx = onnx_export(pruned_variant, spec.imgsz, 1)
    data = resolve_data(spec.data, artifact_cache, spec.seed)
    metrics = YOLO(str(onnx), task="detect").val(
        data=str(data), imgsz=spec.imgsz, batch=1, device="cpu", plots=False, verbose=False,
        project=str(tmp_path), name="val",
    )
    _fail_if(check_agreement("mAP50-95", pruned_variant.map50_95, float(metrics.box.map), BACKEND_MAP_TOLERANCE, "onnxruntime"))
