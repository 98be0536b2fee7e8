"""Rival pruning methods on a small untrained YOLOv8n (no search, no training: fast)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.methods.base import PruneContext
from fastnas_bench.methods.registry import get_method
from fastnas_bench.variants.spec import VariantSpec
from fastnas_bench.yolo.models import model_gflops


@pytest.fixture(scope="module")
def stock() -> DetectionModel:
    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", nc=5, verbose=False).eval()


def _ctx(method: str, match: float, tmp_path: Path) -> PruneContext:
    spec = VariantSpec(method=method, flops_target=0.66, finetune_epochs=1, channel_divisor=8)  # type: ignore[arg-type]
    return PruneContext(spec=spec, data_yaml=tmp_path / "unused.yaml", device="cpu", work_dir=tmp_path,
                        cache_root=tmp_path, source_sha256="0" * 64, match_flops_ratio=match)


def test_l2struct_lands_at_the_matched_flops(stock: DetectionModel, tmp_path: Path) -> None:
    pruned = get_method("l2struct").prune(copy.deepcopy(stock), _ctx("l2struct", 0.70, tmp_path))
    ratio = model_gflops(pruned) / model_gflops(stock)
    assert 0.68 <= ratio <= 0.70
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert pruned.eval()(x)[0].shape == stock(x)[0].shape
    assert not any(type(m).__name__.startswith("Dynamic") for m in pruned.modules())


def test_l2struct_keeps_the_highest_norm_channels(stock: DetectionModel, tmp_path: Path) -> None:
    pruned = get_method("l2struct").prune(copy.deepcopy(stock), _ctx("l2struct", 0.70, tmp_path))
    # Layer 2's output feeds only conv 3, whose per-input-channel weight norms rank those channels:
    # the channels kept must be exactly the highest-ranked ones.
    full = stock.model[3].conv.weight.detach()  # [out, in, 3, 3]
    part = pruned.model[3].conv.weight.detach()
    assert part.shape[1] < full.shape[1]
    # Identify each kept input channel by its (unique, random) 3x3 kernel in the first kept row.
    kept = set()
    for j in range(part.shape[1]):
        hits = (full - part[0, j]).abs().amax(dim=(2, 3)) < 1e-6  # [out, in]
        assert hits.sum() == 1
        kept.add(int(hits.nonzero()[0, 1]))
    norms = torch.linalg.vector_norm(full.transpose(0, 1).reshape(full.shape[1], -1), dim=1)
    assert kept == set(torch.argsort(norms, descending=True)[: part.shape[1]].tolist())


def test_unstructured_sparsity_and_mask_survive_training(stock: DetectionModel, tmp_path: Path) -> None:
    method = get_method("unstructured")
    source = copy.deepcopy(stock)
    for p in source.parameters():
        p.requires_grad_(False)  # as loaded from an Ultralytics checkpoint
    pruned = method.prune(source, _ctx("unstructured", 0.62, tmp_path))
    weights = [m.weight for name, m in pruned.named_modules() if isinstance(m, nn.Conv2d) and ".dfl" not in name]
    dfl = stock.model[-1].dfl.conv.weight
    assert torch.equal(pruned.model[-1].dfl.conv.weight, dfl)  # the fixed DFL integral is untouched
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    assert zeros / total == pytest.approx(0.38, abs=0.005)
    assert model_gflops(pruned) == pytest.approx(model_gflops(stock))  # dense shapes: same FLOPs
    with torch.no_grad():
        for w in weights:
            w.add_(0.1)  # what an optimizer step does to zeroed weights
    method.constrain(pruned)
    assert sum(int((w == 0).sum()) for w in weights) == zeros


def test_lossless_choices_counts_narrower_widths_that_cost_nothing(tmp_path: Path) -> None:
    from fastnas_bench.methods.fastnas import lossless_choices

    checkpoint = tmp_path / "fastnas_search.pth"
    torch.save({"sensitivity_map": {
        "model.1.conv.out_channels": {16: 0.06, 32: 0.0},
        "model.5.conv.out_channels": {16: 0.014, 32: 0.0, 48: 0.0, 64: 0.0},
    }}, checkpoint)
    assert lossless_choices(checkpoint) == (2, 4)  # 32 and 48 of model.5; full widths do not count
    torch.save({"history": []}, checkpoint)
    assert lossless_choices(checkpoint) is None


def test_unreachable_flops_target_is_a_one_line_error_naming_the_values() -> None:
    from dataclasses import replace

    from fastnas_bench.errors import BadInputError
    from fastnas_bench.methods.fastnas import _unreachable_as_bad_input

    spec = replace(VariantSpec(model="yolov8n", data="generated", method="fastnas", flops_target=0.66), channel_divisor=64)
    with pytest.raises(BadInputError, match=r"^FLOPs target 0.66 is out of reach for yolov8n with channel divisor 64: "):
        with _unreachable_as_bad_input(spec, 0.66):
            raise ValueError("\nProfiling ...\nNOT all constraints can be satisfied within the search space, see above!")
    with pytest.raises(ValueError, match="unrelated"), _unreachable_as_bad_input(spec, 0.66):
        raise ValueError("unrelated")
