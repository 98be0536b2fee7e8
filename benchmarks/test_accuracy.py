"""FLOPs and accuracy of the pruned variants against the baseline, and across backends."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fastnas_bench.config.settings import BenchSettings
from fastnas_bench.variants.variant import Variant
from fastnas_bench.verdicts.checks import (
    check_agreement,
    check_drop,
    check_flops_ratio,
    check_matched_flops,
    check_relative_drop,
)

# Ultralytics validates PyTorch with rectangular batches and static ONNX with square letterboxing;
# the same weights then differ by up to about a point of mAP.
BACKEND_MAP_TOLERANCE = 0.02
# Rivals are compared with FastNAS at equal FLOPs: their ratio must be within this of FastNAS's.
MATCHED_FLOPS_TOLERANCE = 0.02


def _fail_if(message: str | None) -> None:
    if message:
        pytest.fail(message)


def test_flops_ratio(baseline_variant: Variant, variant, flops_name: str) -> None:
    v = variant(flops_name)
    assert v.spec.flops_target is not None
    _fail_if(check_flops_ratio(baseline_variant.gflops, v.gflops, v.spec.flops_target))


def test_matched_flops(variant, rival_name: str) -> None:
    """Rival structured methods sit at the FLOPs FastNAS reached, so latency differences are fair."""
    rival = variant(rival_name)
    _fail_if(check_matched_flops(rival_name, rival.meta["flops_ratio"], rival.meta["matched_flops_ratio"],
                                 MATCHED_FLOPS_TOLERANCE))


def test_finetune_kept_structure(variant, pruned_name: str) -> None:
    """The trainer fine-tuned the pruned network itself: widths and FLOPs are what pruning made."""
    meta = variant(pruned_name).meta
    before = meta["pruned_before_finetune"]
    assert meta["conv_out_channels"] == before["conv_out_channels"], "fine-tuning changed the pruned widths"
    assert meta["gflops"] == pytest.approx(before["gflops"])


def _judgeable(baseline: Variant, settings: BenchSettings) -> None:
    """Skip, with the figure, where the baseline detects too little for a drop to mean anything."""
    if baseline.map50_95 < settings.profile.min_baseline_map:
        pytest.skip(f"baseline mAP50-95 {baseline.map50_95:.4f} < {settings.profile.min_baseline_map}: "
                    "too weak to judge an accuracy drop (train the source longer or start from weights)")


def test_map_drop(baseline_variant: Variant, variant, fastnas_name: str, bench_settings: BenchSettings) -> None:
    _judgeable(baseline_variant, bench_settings)
    _fail_if(check_drop("mAP50-95", baseline_variant.map50_95, variant(fastnas_name).map50_95,
                        bench_settings.profile.max_map_drop))


def test_recall_drop(baseline_variant: Variant, variant, fastnas_name: str, bench_settings: BenchSettings) -> None:
    _judgeable(baseline_variant, bench_settings)
    _fail_if(check_drop("recall", baseline_variant.recall, variant(fastnas_name).recall,
                        bench_settings.profile.max_recall_drop))


def test_ap_small_drop(baseline_variant: Variant, variant, fastnas_name: str, bench_settings: BenchSettings) -> None:
    """Small objects are where pruning is expected to hurt most; bound that loss on its own, as a
    share of the baseline's AP_small (an absolute bound of 0.10 on a baseline of 0.11 cannot fail)."""
    _judgeable(baseline_variant, bench_settings)
    _fail_if(check_relative_drop("AP_small", baseline_variant.accuracy.ap_small, variant(fastnas_name).accuracy.ap_small,
                                 bench_settings.profile.max_ap_small_rel_drop))


def test_fastnas_keeps_more_accuracy(variant, rival_name: str, bench_settings: BenchSettings) -> None:
    """The reference's premise: at equal FLOPs and fine-tune budget, the searched widths beat the
    heuristic's uniform ones on accuracy."""
    rival = variant(rival_name)
    fastnas_spec = replace(rival.spec, method="fastnas")
    fastnas_name = next((n for n, s in bench_settings.variants.items() if s == fastnas_spec), None)
    if fastnas_name is None:
        pytest.skip(f"no FastNAS variant with {rival_name}'s target and divisor selected (add fastnas to --methods)")
    fastnas = variant(fastnas_name)
    _fail_if(None if fastnas.map50_95 >= rival.map50_95 else
             f"{rival_name} mAP50-95 {rival.map50_95:.4f} beats {fastnas_name} {fastnas.map50_95:.4f} at matched FLOPs")


def test_onnx_map_agrees(pruned_variant: Variant, onnx_export, artifact_cache, tmp_path) -> None:
    """The pruned model validated through ONNX Runtime scores what PyTorch scored."""
    from ultralytics import YOLO

    from fastnas_bench.variants.build import resolve_data

    spec = pruned_variant.spec
    onnx = onnx_export(pruned_variant, spec.imgsz, 1)
    data = resolve_data(spec.data, artifact_cache, spec.seed).report_yaml
    metrics = YOLO(str(onnx), task="detect").val(
        data=str(data), imgsz=spec.imgsz, batch=1, device="cpu", plots=False, verbose=False,
        project=str(tmp_path), name="val",
    )
    _fail_if(check_agreement("mAP50-95", pruned_variant.map50_95, float(metrics.box.map), BACKEND_MAP_TOLERANCE, "onnxruntime"))
