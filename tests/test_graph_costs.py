"""The in-graph calibration of a latency table: node names to modules, the configurations it profiles, how
nodes are matched across configurations and charged to the convolution that drives them, and its cost of
configurations it never profiled, on a scripted network whose true costs are known."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.compat.modelopt import hparam_choices
from fastnas_bench.measure.nodes import ModelProfile, NodePlan
from fastnas_bench.measure.timing import rotation_rounds
from fastnas_bench.methods._lib.graph_costs import (
    CONSTANT,
    INPUT_SIDE,
    OUTPUT_SIDE,
    RANDOM_CONFIGS,
    UNIFORM_POSITIONS,
    GraphCosts,
    ProfiledConfig,
    anchored_nodes,
    calibration_configs,
    conv_module,
    fit_graph_costs,
)
from fastnas_bench.methods._lib.latency_table import (
    ConvShape,
    LatencyTable,
    active_widths,
    build_table,
    conv_shapes,
    in_graph_calibrator,
)
from fastnas_bench.methods._lib.search_space import searchable
from fastnas_bench.variants.spec import LatencyBudget

# A three-convolution network: h0 narrows c0's output (and c1's input), h1 c1's output; c2 reads the
# concatenation of c0's and c1's outputs, so its input narrows with both.
CHOICES = {"h0": [16, 24, 32], "h1": [16, 32, 48, 64]}
C0, C1, C2 = "model.0.conv", "model.1.conv", "model.22.cv2.0.2"
FULL = {C0: (3, 32), C1: (32, 64), C2: (96, 16)}
SCALE = {C0: 0.9, C1: 0.7, C2: 0.8}  # what the graph pays per ms of isolated timing
OVERHEAD_MS = 2.0


def layer_ms(name: str, cin: int, cout: int) -> float:
    return cin * cout / 100


def active(widths: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    w0, w1 = widths["h0"], widths["h1"]
    return {C0: (3, w0), C1: (w0, w1), C2: (w0 + w1, 16)}


def trace(widths: Mapping[str, int], token: int) -> tuple[dict[str, float], dict[str, str]]:
    """Node → ms and node → op of the scripted network, in execution order, as ORT names them."""
    w0, w1 = widths["h0"], widths["h1"]
    act = active(widths)
    nodes = [
        ("/model.0/conv/Conv_output_0_nchwc", "Conv", SCALE[C0] * layer_ms(C0, *act[C0])),
        ("/model.0/act/Mul/QuickGeluFusion/", "QuickGelu", 0.5 * w0 / 32),  # c0's output
        (f"ReorderOutput_token_{token}", "ReorderOutput", 0.3 * w0 / 32),  # c0's output
        ("/model.1/conv/Conv_output_0_nchwc", "Conv", SCALE[C1] * layer_ms(C1, *act[C1])),
        ("/model.2/Concat", "Concat", 0.6 * (w0 + w1) / 96),  # c2's input
        (f"ReorderInput_token_{token + 1}", "ReorderInput", 0.4 * (w0 + w1) / 96),  # c2's input
        ("/model.22/cv2.0/cv2.0.2/Conv_output_0_nchwc", "Conv", SCALE[C2] * layer_ms(C2, *act[C2])),
        ("/model.22/dfl/Softmax", "Softmax", 1.2),  # the head's decoding: no width
    ]
    return {n: ms for n, _, ms in nodes}, {n: op for n, op, _ in nodes}


def true_ms(widths: Mapping[str, int]) -> float:
    return OVERHEAD_MS + sum(trace(widths, 0)[0].values())


def profiled(configs: list[dict[str, int]], profiler_ms: float = 0.0, plain: bool = True,
             between_ms: float = OVERHEAD_MS) -> list[ProfiledConfig]:
    """The scripted network's profiles, the profiler adding ``profiler_ms`` to every node's time and the
    profiled session reading ``between_ms`` between kernels (the profiled wall time is not measured
    from it here); with ``plain``, each with its wall time without the profiler."""
    out = []
    for index, widths in enumerate(configs):
        node_ms, node_op = trace(widths, 10 * index)  # reorder tokens numbered differently in every session
        node_ms = {n: ms + profiler_ms for n, ms in node_ms.items()}
        out.append(ProfiledConfig(active(widths), node_ms, node_op, between_ms, OVERHEAD_MS + sum(node_ms.values()),
                                  true_ms(widths) if plain else None))
    return out


CONV_OF = {"/model.0/conv/Conv_output_0_nchwc": "model.0.conv", "/model.22/cv2.0/cv2.0.2/Conv": "model.22.cv2.0.2",
           "/model.22/cv2.0/cv2.0.0/conv/Conv_output_0_nchwc": "model.22.cv2.0.0.conv",
           "/model.2/m.0/cv1/conv/Conv": "model.2.m.0.cv1.conv", "/model.22/dfl/conv/Conv": "model.22.dfl.conv"}


@pytest.mark.parametrize(("node", "module"), CONV_OF.items())
def test_a_convolution_node_names_its_module(node: str, module: str) -> None:
    assert conv_module(node) == module


@pytest.mark.parametrize("node", ["/model.2/Concat", "ReorderInput_token_3", "/model.22/dfl/Softmax", "Conv"])
def test_other_nodes_name_no_module(node: str) -> None:
    assert conv_module(node) is None


def test_calibration_profiles_the_full_network_uniform_cuts_and_random_ones_at_realizable_widths() -> None:
    configs = calibration_configs(CHOICES)
    distinct = {tuple(sorted(c.items())) for c in configs}
    assert len(distinct) == len(configs) and len(UNIFORM_POSITIONS) < len(configs) <= len(UNIFORM_POSITIONS) + RANDOM_CONFIGS
    assert configs[0] == {"h0": 32, "h1": 64} and configs[len(UNIFORM_POSITIONS) - 1] == {"h0": 16, "h1": 16}
    assert all(w in CHOICES[h] for config in configs for h, w in config.items())
    assert configs == calibration_configs(CHOICES) and configs != calibration_configs(CHOICES, seed=1)


def test_configurations_that_land_on_the_same_rungs_are_profiled_once() -> None:
    # Three choices: ¾ rounds to the widest rung and ¼ to the narrowest.
    configs = calibration_configs({"h": [8, 16, 24]})
    assert configs[:3] == [{"h": 24}, {"h": 16}, {"h": 8}] and len(configs) == 3


def test_nodes_are_matched_across_sessions_by_their_place_between_convolutions() -> None:
    keys = []
    for token in (3, 70):
        node_ms, node_op = trace({"h0": 32, "h1": 64}, token)
        times, neighbours = anchored_nodes(ProfiledConfig({}, node_ms, node_op, 0.0, 0.0), list(FULL))
        keys.append(sorted(times))
        assert neighbours[f"ReorderOutput@{C0}>{C1}#0"] == (C0, C1)
        assert neighbours[f"Softmax@{C2}>#0"] == (C2, "")
    assert keys[0] == keys[1]
    assert set(FULL) <= set(keys[0])


def _fit(configs: list[dict[str, int]], profiler_ms: float = 0.0, plain: bool = True,
         between_ms: float = OVERHEAD_MS) -> GraphCosts:
    return fit_graph_costs(profiled(configs, profiler_ms, plain, between_ms), layer_ms, FULL, full_ms=50.0,
                           inferences=40)


def test_each_node_is_charged_to_the_convolution_that_drives_it() -> None:
    graph = _fit(calibration_configs(CHOICES))
    charges = {c.key.split("@")[0]: (c.anchor, c.side, c.full_ms) for c in graph.charges}
    assert charges["QuickGelu"][:2] == (C0, OUTPUT_SIDE) and charges["QuickGelu"][2] == pytest.approx(0.5)
    assert charges["ReorderOutput"][:2] == (C0, OUTPUT_SIDE)
    # A concatenation's size is the next convolution's input: both earlier outputs, not the last one alone.
    assert charges["Concat"][:2] == (C2, INPUT_SIDE) and charges["Concat"][2] == pytest.approx(0.6)
    assert charges["ReorderInput"][:2] == (C2, INPUT_SIDE)
    assert charges["Softmax"][:2] == ("", CONSTANT) and charges["Softmax"][2] == pytest.approx(1.2)
    assert graph.conv_scale == pytest.approx(SCALE)
    assert graph.overhead_ms == pytest.approx(OVERHEAD_MS) and graph.inferences == 40
    assert graph.fit_errors == pytest.approx([0.0] * len(graph.fit_errors), abs=1e-4)


@pytest.mark.parametrize(("profiler_ms", "between_ms"), [(0.0, OVERHEAD_MS), (0.3, OVERHEAD_MS), (0.3, 9.0)])
def test_the_fit_predicts_configurations_it_never_profiled_and_keeps_the_tables_units(profiler_ms: float,
                                                                                      between_ms: float) -> None:
    # With unprofiled wall times the constant comes from them, whatever the profiled session read between kernels.
    graph = _fit(calibration_configs(CHOICES), profiler_ms, between_ms=between_ms)
    assert graph.profiler_node_ms == pytest.approx(profiler_ms)
    assert graph.overhead_ms == pytest.approx(OVERHEAD_MS)
    full = {"h0": 32, "h1": 64}

    def cost(widths: dict[str, int]) -> float:
        return graph.cost_ms(layer_ms, active(widths), FULL)

    assert cost(full) == pytest.approx(50.0)
    unseen = ({"h0": 24, "h1": 16}, {"h0": 16, "h1": 48}, {"h0": 32, "h1": 32})
    assert not any(widths in calibration_configs(CHOICES) for widths in unseen)
    for widths in unseen:
        assert cost(widths) / cost(full) == pytest.approx(true_ms(widths) / true_ms(full))


def test_without_unprofiled_times_the_profilers_cost_reads_as_time_no_width_removes() -> None:
    graph = _fit(calibration_configs(CHOICES), profiler_ms=0.3, plain=False)
    narrow, full = {"h0": 16, "h1": 16}, {"h0": 32, "h1": 64}
    predicted = graph.cost_ms(layer_ms, active(narrow), FULL) / graph.cost_ms(layer_ms, active(full), FULL)
    assert graph.profiler_node_ms == 0.0
    assert predicted > true_ms(narrow) / true_ms(full) + 0.02


def test_a_fit_needs_the_full_network_first_and_every_convolution_in_a_graph() -> None:
    configs = calibration_configs(CHOICES)
    with pytest.raises(ValueError, match="full network"):
        _fit(configs[1:])
    with pytest.raises(ValueError, match="configuration"):
        _fit(configs[:1])
    prof = profiled(configs)
    with pytest.raises(RuntimeError, match=r"\['c9'\] \(of 1\)"):
        fit_graph_costs([replace(p, active={**p.active, "c9": (8, 8)}) for p in prof], layer_ms,
                        {**FULL, "c9": (8, 8)}, 50.0, 40)


SHAPE = ConvShape(kernel=3, stride=1, padding=1, height=8, width=8, in_choices=(3,), out_choices=(16, 24, 32), act=True)
BUDGET = LatencyBudget(target=0.75, backend="onnxruntime", machine="cpu-class-a", threads=2)


def test_a_calibrated_table_costs_through_its_graph_model_and_round_trips() -> None:
    graph = GraphCosts(conv_scale={"c": 0.5}, charges=(), overhead_ms=1.0, units=2.0, configs=8, inferences=40,
                       fit_errors=(0.0, 0.01))
    plain = LatencyTable({"c": {(3, o): float(o) for o in (16, 24, 32)}}, {"c": SHAPE}, other_ms=3.0, full_ms=38.0)
    table = replace(plain, graph=graph)
    assert plain.cost_ms({"c": (3, 16)}) == pytest.approx(3.0 + 16)
    assert table.cost_ms({"c": (3, 16)}) == pytest.approx(2.0 * (1.0 + 0.5 * 16))
    assert table.layers_cost_ms({"c": (3, 16)}) == plain.cost_ms({"c": (3, 16)})
    for original in (table, plain, replace(table, graph=_fit(calibration_configs(CHOICES), 0.3))):
        assert LatencyTable.from_json(json.loads(json.dumps(original.to_json()))) == original


def test_build_hands_the_timed_table_to_the_calibration() -> None:
    seen: list[LatencyTable] = []
    graph = GraphCosts({}, (), 0.0, 1.0, 2, 2, ())

    def calibrate(table: LatencyTable) -> GraphCosts:
        seen.append(table)
        return graph

    table = build_table({"c": SHAPE}, BUDGET, full_model=lambda: None, caller=lambda m, x: (lambda: None),
                        measure=lambda call, ref, rounds: 2.0, calibrate=calibrate)
    assert table.graph is graph and seen[0].graph is None and seen[0].layers == table.layers


def test_only_a_backend_that_profiles_its_graph_is_calibrated(tmp_path: Path) -> None:
    assert in_graph_calibrator(None, CHOICES, replace(BUDGET, backend="pytorch"), tmp_path) is None
    assert in_graph_calibrator(None, CHOICES, BUDGET, tmp_path) is not None


def test_rotation_runs_every_call_in_order_then_in_reverse() -> None:
    calls: list[str] = []
    samples = rotation_rounds([lambda: calls.append("a"), lambda: calls.append("b"), lambda: calls.append("c")], 2)
    assert calls == list("abccba" * 2) and [len(s) for s in samples] == [4, 4, 4]


def test_the_calibrator_profiles_realizable_subnets_of_the_real_search_space_and_leaves_it_at_full_width(
        tmp_path: Path) -> None:
    torch.manual_seed(0)
    net, hparams = searchable(DetectionModel("yolov8n.yaml", nc=5, verbose=False).eval(), 16)
    choices = {h: sorted(int(w) for w in hparam_choices(hp)) for h, hp in hparams.items()}
    shapes = conv_shapes(net, hparams, imgsz=64, batch=1)
    # A table whose entries are exact under bilinear interpolation, and a graph paying half of each.
    table = LatencyTable({n: {(i, o): i * o / 1000 for i, o in s.grid()} for n, s in shapes.items()}, shapes,
                         other_ms=0.0, full_ms=10.0)
    exported: list[dict[str, tuple[int, int]]] = []

    def export(model: torch.nn.Module, folder: Path, imgsz: int, batch: int) -> Path:
        widths = {n: (m.in_channels, m.out_channels) for n, m in model.named_modules()
                  if isinstance(m, torch.nn.Conv2d)}
        exported.append(widths)
        path = folder / "model.onnx"
        path.write_text(json.dumps(widths))
        return path

    def profile(paths: Sequence[Path], plan: NodePlan) -> list[ModelProfile]:
        assert plan.threads == BUDGET.threads
        out = []
        for path in paths:
            node_ms = {f"/{n}/Conv": 0.5 * i * o / 1000 for n, (i, o) in json.loads(path.read_text()).items()}
            kernels = sum(node_ms.values())
            out.append(ModelProfile(inferences=plan.timed_inferences, op_ms={}, op_share={}, node_ms=node_ms,
                                    node_op=dict.fromkeys(node_ms, "Conv"), nodes_ms=kernels, wall_ms=kernels + 0.7,
                                    overhead_ms=1.0, run_ms=None, providers=(), plain_wall_ms=kernels + 0.7))
        return out

    calibrate = in_graph_calibrator(net, choices, replace(BUDGET, imgsz=64), tmp_path, export=export, profile=profile)
    assert calibrate is not None
    graph = calibrate(table)
    assert len(exported) == graph.configs == len(calibration_configs(choices))
    for widths in exported:
        assert all(widths[n][0] in s.in_choices and widths[n][1] in s.out_choices for n, s in shapes.items())
    assert graph.conv_scale == pytest.approx(dict.fromkeys(shapes, 0.5))
    assert graph.overhead_ms == pytest.approx(0.7) and graph.charges == ()
    assert graph.fit_errors == pytest.approx([0.0] * graph.configs, abs=1e-4)
    assert active_widths(net, {}, list(shapes)) == table.full_widths()
