"""The latency table: its cache key, its interpolation, its grid of realizable widths, its build with
scripted timings, and how a width configuration reaches each convolution of a real YOLOv8n search space."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.compat.modelopt import hparam_choices
from fastnas_bench.host import cpu_isa
from fastnas_bench.methods._lib.latency_table import (
    ConvShape,
    LatencyTable,
    active_widths,
    build_table,
    cached_table,
    conv_shapes,
    grid_widths,
    table_key,
)
from fastnas_bench.methods._lib.search_space import searchable
from fastnas_bench.variants.cache import ArtifactCache
from fastnas_bench.variants.spec import LatencyBudget

BUDGET = LatencyBudget(target=0.75, backend="onnxruntime", machine="cpu-class-a", threads=2)
SPACE = {"model.1.conv.out_channels": [16, 32], "model.3.conv.out_channels": [16, 32, 48, 64]}
SHAPE = ConvShape(kernel=3, stride=1, padding=1, height=8, width=8, in_choices=(16, 32, 48, 64),
                  out_choices=(8, 16, 32), act=True)


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


def test_key_names_the_vector_extension_of_the_host_that_times_the_table() -> None:
    # ORT's NCHWc kernels block channels by 8 on AVX2 and by 16 on AVX-512: one table never serves both,
    # even under one machine class name.
    keys = {isa: table_key("a" * 64, SPACE, BUDGET, isa=isa) for isa in ("base", "avx2", "avx512", "amx")}
    assert len(set(keys.values())) == 4
    assert table_key("a" * 64, SPACE, BUDGET) == table_key("a" * 64, SPACE, BUDGET, isa=cpu_isa())


def test_grid_widths_are_widths_the_network_can_take() -> None:
    # The midpoint of 16..64 is 40, an odd multiple of 8 that no configuration at divisor 16 has.
    assert grid_widths([16, 32, 48, 64]) == [16, 32, 64]
    assert grid_widths([64, 16, 48]) == [16, 48, 64] and grid_widths([16, 64]) == [16, 64] and grid_widths([3]) == [3]
    assert grid_widths([272, 288, 304, 320, 336, 352, 368, 384]) == [272, 320, 384]
    assert SHAPE.grid() == [(i, o) for i in (16, 32, 64) for o in (8, 16, 32)]
    assert all(i in SHAPE.in_choices and o in SHAPE.out_choices for i, o in SHAPE.grid())
    with pytest.raises(ValueError, match="in_choices"):
        replace(SHAPE, in_choices=())


def test_interpolation_is_exact_at_the_grid_and_bilinear_between() -> None:
    grid = {(i, o): i * o / 100 + (i == 32) for i, o in SHAPE.grid()}
    assert sorted({i for i, _ in grid}) == [16, 32, 64] and sorted({o for _, o in grid}) == [8, 16, 32]
    table = LatencyTable({"c": grid}, {"c": SHAPE}, other_ms=1.0, full_ms=0.0)
    assert table.layer_ms("c", 32, 16) == pytest.approx(32 * 16 / 100 + 1)
    # 48 lies a half of the way from 32 to 64, 24 a half of the way from 16 to 32.
    assert table.layer_ms("c", 48, 24) == pytest.approx((32 * 16 + 64 * 16 + 32 * 32 + 64 * 32) / 400 + 0.5)
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
    shapes = {"a": SHAPE, "b": replace(SHAPE, in_choices=(8, 16, 24, 32), out_choices=(16, 32, 48, 64))}
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
    # Realizable widths: a hparam's choices, or a concatenation's fixed part plus them; never a
    # width the search space skips (modelopt's choices here jump from 320 to 352).
    assert shapes["model.3.conv"].out_choices == (16, 32, 48, 64) and shapes["model.3.conv"].in_choices == (16, 32)
    concat = shapes["model.12.cv1.conv"]
    assert concat.in_choices == tuple(hparam_choices(hparams["model.12.cv1.conv.in_channels"])) and 336 not in concat.in_choices
    assert sorted({i for i, _ in concat.grid()}) == [272, 320, 384]
    assert shapes["model.0.conv"].in_choices == (3,)
    # Every width a random configuration gives a conv is among its choices, and every grid width is one.
    rng = random.Random(0)
    for _ in range(5):
        config = {h: rng.choice(list(hparam_choices(hp))) for h, hp in hparams.items()}
        for n, (cin, cout) in active_widths(net, config, list(shapes)).items():
            assert cin in shapes[n].in_choices and cout in shapes[n].out_choices, (n, cin, cout)
    for n, s in shapes.items():
        assert all(i in s.in_choices and o in s.out_choices for i, o in s.grid()), n
