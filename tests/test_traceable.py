"""The traceable model matches the stock one and exposes C2f internals to modelopt."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.utils._pytree import tree_flatten
from ultralytics.nn.modules.block import C2f
from ultralytics.nn.tasks import DetectionModel, SegmentationModel

from fastnas_bench.traceable import TraceableC2f, TraceableDetectionModel, make_traceable


@pytest.fixture(scope="module")
def stock() -> DetectionModel:
    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", nc=5, verbose=False).eval()


def test_outputs_equal_stock_model(stock: DetectionModel) -> None:
    x = torch.rand(2, 3, 96, 128)
    traced = make_traceable(copy.deepcopy(stock))
    assert type(traced) is TraceableDetectionModel
    assert any(type(m) is TraceableC2f for m in traced.modules())
    assert not any(type(m) is C2f for m in traced.modules())
    with torch.inference_mode():
        ref, out = stock(x), traced(x)
    ref_leaves, ref_spec = tree_flatten(ref)
    out_leaves, out_spec = tree_flatten(out)
    assert ref_spec == out_spec and len(ref_leaves) > 1
    for a, b in zip(ref_leaves, out_leaves):
        assert torch.equal(a, b)


def test_training_batch_still_returns_the_loss(stock: DetectionModel) -> None:
    traced = make_traceable(copy.deepcopy(stock)).train()
    traced.args = __import__("ultralytics.cfg", fromlist=["get_cfg"]).get_cfg()
    batch = {
        "img": torch.rand(2, 3, 64, 64),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[1.0], [2.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]]),
    }
    loss, items = traced(batch)
    assert torch.isfinite(loss).all() and len(items) == 3


def test_modelopt_sees_c2f_internals(stock: DetectionModel) -> None:
    import modelopt.torch.nas as mtn
    import modelopt.torch.prune as mtp
    from modelopt.torch.opt.utils import named_hparams

    from fastnas_bench.methods._lib.search_space import frozen_patterns

    config = mtp.fastnas.FastNASConfig()
    for pattern in frozen_patterns(stock):
        config["nn.Conv2d"][pattern] = None
    model = mtn.convert(make_traceable(copy.deepcopy(stock)), [("fastnas", config)], registry=mtp.pruning.PruneModeRegistry)
    names = set(dict(named_hparams(model, configurable=True)))
    # Inner bottleneck convs of C2f blocks are prunable only when C2f was traced, not frozen.
    assert any(".m.0.cv1.conv.out_channels" in n for n in names), names
    try:
        stock_model = mtn.convert(copy.deepcopy(stock), [("fastnas", config)], registry=mtp.pruning.PruneModeRegistry)
        stock_hparams = len(dict(named_hparams(stock_model, configurable=True)))
    except TypeError:  # "'Node' object is not iterable": the stock class does not trace at all
        stock_hparams = 0
    assert len(names) > stock_hparams


def test_rejects_other_tasks() -> None:
    with pytest.raises(TypeError, match="SegmentationModel"):
        make_traceable(SegmentationModel("yolov8n-seg.yaml", nc=2, verbose=False))


def test_finetune_keeps_pruned_structure(stock: DetectionModel, tiny_dataset: Path, tmp_path: Path) -> None:
    """The trainer fine-tunes the pruned module itself; it must not rebuild it from the YAML."""
    import modelopt.torch.nas as mtn
    import modelopt.torch.prune as mtp
    from modelopt.torch.nas.utils import sample

    from fastnas_bench.methods._lib.search_space import search_space_config
    from fastnas_bench.variants.spec import VariantSpec
    from fastnas_bench.yolo.models import describe_structure, load_model
    from fastnas_bench.yolo.train import finetune as _finetune

    config = search_space_config(stock, 16)
    model = mtn.convert(make_traceable(copy.deepcopy(stock)), [("fastnas", config)], registry=mtp.pruning.PruneModeRegistry)
    sample(model, min)  # a real modelopt subnet: the narrowest widths
    pruned = mtn.export(model)
    before = describe_structure(pruned)
    assert before["gflops"] < 0.8 * describe_structure(stock)["gflops"]
    # The head's output convs are frozen: predictions keep the stock layout (4 box + nc scores).
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert pruned.eval()(x)[0].shape == stock(x)[0].shape

    spec = VariantSpec(imgsz=64, batch=4, method="fastnas", flops_target=0.66, finetune_epochs=1)
    best = _finetune(pruned, spec, tiny_dataset, "cpu", tmp_path / "ft")
    after = describe_structure(load_model(best))
    assert after["conv_out_channels"] == before["conv_out_channels"]
    assert after["gflops"] == pytest.approx(before["gflops"])
    assert after["params"] == before["params"]


def test_flops_and_params_are_counted_the_way_the_reference_table_is() -> None:
    """YOLOv8m with COCO's 80 classes reads 25.9M params / 79.3 GFLOPs at 640 px (the seed table)."""
    from fastnas_bench.yolo.models import model_gflops, model_params

    m = DetectionModel("yolov8m.yaml", nc=80, verbose=False)
    assert model_params(m) / 1e6 == pytest.approx(25.9, abs=0.05)
    assert model_gflops(m) == pytest.approx(79.3, abs=0.1)
