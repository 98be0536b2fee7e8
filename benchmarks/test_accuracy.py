"""FLOPs and accuracy of the pruned variants against the baseline, and across backends."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fastnas_bench.config.settings import BenchSettings
from fastnas_bench.pytest_plugin.outcomes import report_outcome
from fastnas_bench.variants.variant import Variant
from fastnas_bench.verdicts.accuracy import drop_within
from fastnas_bench.verdicts.checks import (
    check_flops_ratio,
    check_matched_flops,
    check_relative_drop,
)

# fp32 ONNX Runtime against PyTorch on identical (square-letterboxed) inputs, measured on this CPU for
# baseline and fastnas66 of the cpu profile: mAP50-95 equal to the last digit, the same confident
# detections on 32 of 32 images, confidences within 1.2e-6. A detection whose confidence sits within
# that of the 0.25 cut may flip: one image in 50 is allowed (at least one), and 0.001 mAP.
ONNX_MAP_TOLERANCE = 0.001
ONNX_DIFFERING_IMAGES_SHARE = 0.02
# Rivals are compared with FastNAS at equal FLOPs: their ratio must be within this of FastNAS's.
MATCHED_FLOPS_TOLERANCE = 0.02
# A variant the accuracy verdicts must fail: the profile's FastNAS cut far deeper, with no fine-tune.
# It reuses the source's search (sensitivity map), so it costs no score calls: a cut and a validation.
DAMAGED = {"flops_target": 0.4, "finetune_epochs": 0}


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


def _judge_drop(request, paired_accuracy, name: str, metric: str, bound: float) -> None:
    drop = paired_accuracy(name)[metric]
    report_outcome(request, drop_within(drop, bound), f"{name}: {drop.describe()} vs allowed ≤ {bound:.4f}")


def test_map_drop(request, baseline_variant: Variant, paired_accuracy, fastnas_name: str,
                  bench_settings: BenchSettings) -> None:
    """The mAP50-95 the pruned variant lost, on the same val images as the baseline, with its interval."""
    _judgeable(baseline_variant, bench_settings)
    _judge_drop(request, paired_accuracy, fastnas_name, "map50_95", bench_settings.profile.max_map_drop)


def test_recall_drop(request, baseline_variant: Variant, paired_accuracy, fastnas_name: str,
                     bench_settings: BenchSettings) -> None:
    """Recall lost at one fixed confidence for both models (not each at its own best-F1 point)."""
    _judgeable(baseline_variant, bench_settings)
    _judge_drop(request, paired_accuracy, fastnas_name, "recall_at_conf", bench_settings.profile.max_recall_drop)


def test_accuracy_verdicts_fail_a_damaged_variant(baseline_variant: Variant, artifact_cache, paired_accuracy,
                                                   fastnas_name: str, bench_settings: BenchSettings) -> None:
    """The drop verdicts can fail: a damaged pruned model (FLOPs 0.4, no fine-tune), judged as the real
    one is (same bounds, same confidence, seed 0), fails both. Without this a bound too loose, or an
    interval too wide to ever lie above it, would pass every run unnoticed."""
    from fastnas_bench.variants.build import build_variant, resolve_data
    from fastnas_bench.verdicts.accuracy import paired_drops
    from fastnas_bench.verdicts.outcome import Outcome
    from fastnas_bench.yolo.per_image import cached_per_image_stats

    if not bench_settings.self_checks:
        pytest.skip("a check of the verdicts themselves (builds an extra variant, ~45 s): run with --self-checks, as CI does")
    _judgeable(baseline_variant, bench_settings)
    judged = paired_accuracy(fastnas_name)["map50_95"]
    damaged = build_variant(replace(bench_settings.variants[fastnas_name], **DAMAGED), artifact_cache,  # type: ignore[arg-type]
                            bench_settings.device)
    data = resolve_data(baseline_variant.spec.data, artifact_cache).report_yaml
    stats = [cached_per_image_stats(v, artifact_cache, data, bench_settings.device) for v in (baseline_variant, damaged)]
    drops = paired_drops(*stats, confidence=judged.confidence)
    bounds = {"map50_95": bench_settings.profile.max_map_drop, "recall_at_conf": bench_settings.profile.max_recall_drop}
    verdicts = {metric: drop_within(drops[metric], bound) for metric, bound in bounds.items()}
    print("; ".join(f"{drops[m].describe()}: {v.value}" for m, v in verdicts.items()))
    missed = [f"{drops[m].describe()} vs allowed ≤ {bounds[m]:.4f}" for m, v in verdicts.items() if v is not Outcome.FAIL]
    _fail_if(f"a damaged variant ({damaged.name}, no fine-tune) passed the drop verdicts: {'; '.join(missed)}"
             if missed else None)


def test_per_image_stats_reproduce_ultralytics_map(paired_accuracy, fastnas_name: str, variant,
                                                   bench_settings: BenchSettings) -> None:
    """The bootstrap resamples what Ultralytics matched: on all images it must give Ultralytics' own mAP
    (the mean over the build seeds where there are several)."""
    drop = paired_accuracy(fastnas_name)["map50_95"]
    seeds = bench_settings.seeds
    assert drop.baseline == pytest.approx(sum(variant("baseline", s).map50_95 for s in seeds) / len(seeds), abs=1e-6)
    assert drop.variant == pytest.approx(sum(variant(fastnas_name, s).map50_95 for s in seeds) / len(seeds), abs=1e-6)


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
    """The pruned model's ONNX export, validated on the same letterboxed inputs as its checkpoint, finds
    the same detections image by image and scores the same mAP (within what fp32 ONNX Runtime and
    PyTorch differ by)."""
    from fastnas_bench.variants.build import resolve_data
    from fastnas_bench.verdicts.accuracy import detection_agreement
    from fastnas_bench.yolo.per_image import cached_per_image_stats, per_image_stats

    spec = pruned_variant.spec
    data = resolve_data(spec.data, artifact_cache).report_yaml
    # Both on the CPU: on a GPU, PyTorch's TF32 convolutions would be compared, not fp32.
    reference = cached_per_image_stats(pruned_variant, artifact_cache, data, "cpu")
    onnx = per_image_stats(onnx_export(pruned_variant, spec.imgsz, 1), data, spec.imgsz, "cpu", tmp_path / "val", batch=1)
    agreement = detection_agreement(reference, onnx)
    allowed_images = max(1, int(ONNX_DIFFERING_IMAGES_SHARE * agreement.images))
    _fail_if(None if agreement.map50_95_diff <= ONNX_MAP_TOLERANCE and agreement.differing_images <= allowed_images else
             f"onnxruntime: mAP50-95 differs from PyTorch's by {agreement.map50_95_diff:.5f} (allowed "
             f"{ONNX_MAP_TOLERANCE}); confident detections differ on {agreement.differing_images} of "
             f"{agreement.images} images (allowed {allowed_images})")
