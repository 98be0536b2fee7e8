"""The latency table: its cache key, its interpolation, its build with scripted timings, and how a
width configuration reaches each convolution of a real YOLOv8n search space."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.methods._lib.latency_table import (
    ConvShape,
    LatencyTable,
    active_widths,
    build_table,
    cached_table,
    conv_shapes,
    table_key,
)
from fastnas_bench.methods._lib.search_space import searchable
from fastnas_bench.variants.cache import ArtifactCache
from fastnas_bench.variants.spec import LatencyBudget

BUDGET = LatencyBudget(target=0.75, backend="onnxruntime", machine="cpu-class-a", threads=2)
SPACE = {"model.1.conv.out_channels": [16, 32], "model.3.conv.out_channels": [16, 32, 48, 64]}
SHAPE = ConvShape(kernel=3, stride=1, padding=1, height=8, width=8, in_min=16, in_full=64, out_min=8, out_full=32,
                  act=True)


def test_key_names_everything_that_changes_a_timing_and_not_the_target() -> None:
    key = table_key("a" * 64, SPACE, BUDGET)
    assert key == table_key("a" * 64, SPACE, replace(BUDGET, target=0.5))
    others = [
        table_key("b" * 64, SPACE, BUDGET),
        table_key("a" * 64, {**SPACE, "model.1.conv.out_channels": [8, 16, 32]}, BUDGET),
        *(table_key("a" * 64, SPACE, replace(BUDGET, **change)) for change in (
            {"backend": "pytorch"}, {"precision": "fp16"}, {"batch": 8}, {"imgsz": 320}, {"threads": 4},
            {"machine": "cpu-class-b"}, {"device": "cuda"})),
    ]
    assert len({key, *others}) == len(others) + 1
    assert key.startswith("latency-table-onnxruntime-fp32-640px-bs1-")


def test_interpolation_is_exact_at_the_grid_and_bilinear_between() -> None:
    grid = {(i, o): i * o / 100 for i, o in SHAPE.grid()}
    assert sorted({i for i, _ in grid}) == [16, 40, 64] and sorted({o for _, o in grid}) == [8, 20, 32]
    table = LatencyTable({"c": grid}, {"c": SHAPE}, other_ms=1.0, full_ms=0.0)
    assert table.layer_ms("c", 40, 20) == pytest.approx(8.0)
    assert table.layer_ms("c", 52, 26) == pytest.approx((40 * 20 + 64 * 20 + 40 * 32 + 64 * 32) / 400)
    assert table.layer_ms("c", 64, 32) == pytest.approx(64 * 32 / 100)
    assert table.cost_ms({"c": (64, 32)}) == pytest.approx(1.0 + 64 * 32 / 100)
    again = LatencyTable.from_json(table.to_json())
    assert again == table


class _Call:
    """A fake loaded layer: its 'time' is in its attributes; the reference one really takes 1 ms."""

    def __init__(self, module: torch.nn.Module, x: torch.Tensor) -> None:
        conv = module[0] if isinstance(module, torch.nn.Sequential) else module
        self.units = conv.in_channels * conv.out_channels * x.shape[-1] * x.shape[-2]
        self.reference = conv.in_channels == 64 and x.shape[-1] == 40

    def __call__(self) -> None:
        if self.reference:
            time.sleep(1e-3)


def _scripted(call, reference, rounds: int) -> float:  # type: ignore[no-untyped-def]
    """Ratio to the reference: 1 + units / 10_000 for a layer (1 = the per-call overhead); 40 for the model."""
    if not isinstance(call, _Call):
        return 40.0
    return 1.0 + call.units / 10_000


def test_build_subtracts_the_per_call_overhead_and_keeps_the_rest_of_the_model() -> None:
    shapes = {"a": SHAPE, "b": replace(SHAPE, in_min=8, in_full=32, out_min=16, out_full=64)}
    table = build_table(shapes, BUDGET, full_model=lambda: None, caller=_Call, measure=_scripted)
    ref_ms = table.full_ms / 40
    for name, shape in shapes.items():
        for cin, cout in shape.grid():
            # Less the empty graph's overhead (a 1x1 conv of 1 channel at 1x1 px: 1 unit).
            assert table.layers[name][(cin, cout)] == pytest.approx((cin * cout * 64 - 1) / 10_000 * ref_ms)
    convs_full = sum(table.layers[n][(s.in_full, s.out_full)] for n, s in shapes.items())
    assert table.other_ms == pytest.approx(table.full_ms - convs_full)
    assert table.cost_ms({n: (s.in_full, s.out_full) for n, s in shapes.items()}) == pytest.approx(table.full_ms)


def test_cached_table_is_built_once(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    table = LatencyTable({"c": {(16, 8): 1.0}}, {"c": SHAPE}, other_ms=0.5, full_ms=1.5, build_seconds=2.0)
    builds = []
    first = cached_table(cache, "latency-table-x", lambda: builds.append(1) or table)
    second = cached_table(cache, "latency-table-x", lambda: builds.append(1) or table)
    assert first == second == table and builds == [1]


def test_a_width_choice_reaches_the_producing_and_the_consuming_convolution() -> None:
    torch.manual_seed(0)
    net, hparams = searchable(DetectionModel("yolov8n.yaml", nc=5, verbose=False).eval(), 16)
    shapes = conv_shapes(net, hparams, imgsz=64, batch=1)
    assert shapes["model.0.conv"].height == 64 and shapes["model.1.conv"].height == 32
    assert shapes["model.22.cv2.0.2"].act is False and shapes["model.1.conv"].act is True
    full = active_widths(net, {}, ["model.1.conv", "model.2.cv1.conv"])
    narrow = active_widths(net, {"model.1.conv.out_channels": 16}, ["model.1.conv", "model.2.cv1.conv"])
    assert full == {"model.1.conv": (16, 32), "model.2.cv1.conv": (32, 32)}
    assert narrow == {"model.1.conv": (16, 16), "model.2.cv1.conv": (16, 32)}
    # The network is left at full width for whoever selects next.
    assert active_widths(net, {}, ["model.1.conv"]) == {"model.1.conv": (16, 32)}
