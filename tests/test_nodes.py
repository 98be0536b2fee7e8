"""The per-node breakdown (``fastnas-bench nodes``): trace parsing on scripted traces, aggregation and the
comparison on scripted data, the report files, bad inputs as one-line errors, and one tiny real ORT
profile (a functional check: which op types a trace names, no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastnas_bench.cli import main
from fastnas_bench.errors import BadInputError
from fastnas_bench.measure import node_profile
from fastnas_bench.measure.nodes import (
    KernelTime,
    NodePlan,
    NodeRunInfo,
    TracedRuns,
    breakdown_json,
    compare,
    parse_trace,
    per_inference_ms,
    render_markdown,
    summarize,
)


def node(name: str, op: str, ts_us: float, dur_us: float) -> dict[str, Any]:
    return {"cat": "Node", "ph": "X", "name": f"{name}_kernel_time", "ts": ts_us, "dur": dur_us,
            "args": {"op_name": op, "provider": "CPUExecutionProvider"}}


def scripted_trace(durations_us: list[dict[str, float]], model_runs: bool = True) -> list[dict[str, Any]]:
    """One inference per dict ({node: kernel µs}); node ``n`` has op type ``n.split('/')[0]``, as ORT's names
    do not, so the op is known from the name here. Session events and fences are mixed in, as ORT writes them."""
    events: list[dict[str, Any]] = [{"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 50, "args": {}}]
    ts = 100.0
    for run in durations_us:
        start = ts
        for name, dur in run.items():
            ts += 1
            events.append({"cat": "Node", "name": f"{name}_fence_before", "ts": ts, "dur": 0, "args": {"op_name": "x"}})
            events.append(node(name, name.split("/")[0], ts, dur))
            ts += dur
        ts += 5
        if model_runs:
            events.append({"cat": "Session", "name": "model_run", "ts": start, "dur": ts - start, "args": {}})
        ts += 100
    return events


WARM = {"Conv/a": 900.0, "Conv/b": 800.0, "Concat/c": 90.0}
RUNS = [{"Conv/a": 300.0, "Conv/b": 200.0, "Concat/c": 10.0},
        {"Conv/a": 100.0, "Conv/b": 200.0, "Concat/c": 30.0, "Resize/d": 40.0},
        {"Conv/a": 200.0, "Conv/b": 400.0, "Concat/c": 20.0}]


@pytest.mark.parametrize("model_runs", [True, False], ids=["model-run-spans", "occurrence-count"])
def test_parse_drops_the_warmup_and_sums_kernel_times_per_inference(model_runs: bool) -> None:
    # Counting occurrences holds only where every node runs once per inference: no Resize/d there.
    runs = RUNS if model_runs else [{n: us for n, us in run.items() if n != "Resize/d"} for run in RUNS]
    traced = parse_trace(scripted_trace([WARM, WARM, *runs], model_runs=model_runs), warmup=2, timed=3)
    assert len(traced.runs) == 3
    assert all(k.dur_ms < 0.5 for run in traced.runs for k in run)  # the 0.8-0.9 ms warm-up kernels are gone
    by_op = per_inference_ms(traced.runs, "op_type")
    assert by_op["Conv"] == pytest.approx([0.5, 0.3, 0.6])
    assert by_op["Concat"] == pytest.approx([0.01, 0.03, 0.02])
    if model_runs:
        assert by_op["Resize"] == pytest.approx([0.0, 0.04, 0.0])  # absent from an inference: 0 ms there
    assert {k.provider for run in traced.runs for k in run} == {"CPUExecutionProvider"}
    assert len(traced.run_ms) == (3 if model_runs else 0)


def test_a_node_that_runs_twice_in_an_inference_is_summed_within_it() -> None:
    events = scripted_trace([{"Conv/a": 100.0}, {"Conv/a": 200.0}])
    # A second kernel time of Conv/a inside the second model_run (e.g. a node inside a loop body).
    second_run = [e for e in events if e.get("name") == "model_run"][1]
    events.append(node("Conv/a", "Conv", second_run["ts"] + second_run["dur"] - 2, 50.0))
    traced = parse_trace(events, warmup=1, timed=1)
    assert per_inference_ms(traced.runs, "node") == {"Conv/a": pytest.approx([0.25])}


def test_parse_names_a_count_mismatch_and_a_stray_kernel() -> None:
    with pytest.raises(BadInputError, match=r"trace holds 3 inferences, expected 4 \(1 warm-up \+ 3 timed\)"):
        parse_trace(scripted_trace(RUNS), warmup=1, timed=3)
    stray = [*scripted_trace(RUNS), node("Conv/z", "Conv", 5.0, 1.0)]  # before the first model_run
    with pytest.raises(BadInputError, match="'Conv/z_kernel_time' at 5 µs lies in no model_run"):
        parse_trace(stray, warmup=0, timed=3)


def kernels(run: dict[str, float]) -> tuple[KernelTime, ...]:
    return tuple(KernelTime(node=n, op_type=n.split("/")[0], provider="CPUExecutionProvider", dur_ms=ms)
                 for n, ms in run.items())


def test_summarize_takes_medians_shares_of_totals_and_paired_overhead() -> None:
    runs = [{"Conv/a": 3.0, "Conv/b": 2.0, "Concat/c": 1.0},
            {"Conv/a": 1.0, "Conv/b": 2.0, "Concat/c": 3.0},
            {"Conv/a": 2.0, "Conv/b": 4.0, "Concat/c": 2.0}]
    profile = summarize(TracedRuns(runs=tuple(kernels(r) for r in runs), run_ms=(7.0, 7.5, 9.0)), [8.0, 7.0, 10.0])
    assert profile.inferences == 3
    assert profile.op_ms == {"Conv": 5.0, "Concat": 2.0}  # medians of (5, 3, 6) and (1, 3, 2), slowest first
    assert list(profile.op_ms) == ["Conv", "Concat"]
    assert profile.op_share == pytest.approx({"Conv": 14 / 20, "Concat": 6 / 20})
    assert sum(profile.op_share.values()) == pytest.approx(1.0)
    assert profile.node_ms == {"Conv/a": 2.0, "Conv/b": 2.0, "Concat/c": 2.0}
    assert profile.nodes_ms == 6.0  # median of the per-inference sums (6, 6, 8)
    assert profile.wall_ms == 8.0
    assert profile.overhead_ms == pytest.approx(2.0)  # median of 8-6, 7-6, 10-8, inference by inference
    assert profile.run_ms == 7.5
    with pytest.raises(BadInputError, match="2 wall times for 3 timed inferences"):
        summarize(TracedRuns(runs=tuple(kernels(r) for r in runs), run_ms=()), [1.0, 2.0])


def profile_of(run: dict[str, float], wall_ms: float) -> Any:
    return summarize(TracedRuns(runs=(kernels(run),), run_ms=()), [wall_ms])


def test_compare_gives_ratios_savings_and_namesakes() -> None:
    baseline = profile_of({"Conv/a": 6.0, "Conv/b": 2.0, "Concat/c": 1.0, "Resize/d": 1.0}, 12.0)
    pruned = profile_of({"Conv/a": 3.0, "Conv/b": 1.0, "Concat/c": 1.0, "ReorderInput/r": 0.5}, 7.0)
    breakdown = compare(baseline, pruned, top=3)
    rows = {r.op_type: r for r in breakdown.ops}
    assert [r.op_type for r in breakdown.ops] == ["Conv", "Concat", "Resize", "ReorderInput"]
    assert rows["Conv"].ratio == pytest.approx(0.5) and rows["Conv"].saved_ms == pytest.approx(4.0)
    assert rows["Concat"].ratio == pytest.approx(1.0) and rows["Concat"].saved_ms == 0.0  # width pruning left it
    assert rows["Conv"].baseline_share == pytest.approx(0.8) and rows["Conv"].pruned_share == pytest.approx(4 / 5.5)
    assert rows["Resize"].pruned_ms == 0.0 and rows["Resize"].ratio == 0.0
    assert rows["ReorderInput"].ratio is None and rows["ReorderInput"].saved_ms == pytest.approx(-0.5)
    assert [(n.node, n.pruned_ms) for n in breakdown.nodes] == [("Conv/a", 3.0), ("Conv/b", 1.0), ("Concat/c", 1.0)]
    only_baseline = compare(baseline, profile_of({"Conv/x": 1.0}, 2.0), top=1).nodes[0]
    assert only_baseline.pruned_ms is None and only_baseline.ratio is None


INFO = NodeRunInfo(baseline="b.onnx", pruned="p.onnx", machine_class="Some_CPU-2cores-avx2", onnxruntime="1.99.0",
                   threads=2, rounds=50, warmup=10)


def test_markdown_and_json_state_the_setup_and_every_row() -> None:
    breakdown = compare(profile_of({"Conv/a": 6.0, "Concat/c": 1.0}, 8.0), profile_of({"Conv/a": 3.0, "Concat/c": 1.0}, 5.0))
    page = render_markdown(breakdown, INFO)
    assert "machine class `Some_CPU-2cores-avx2`, onnxruntime 1.99.0, 2 thread(s), 50 timed inferences" in page
    assert "| Conv | 6.000 | 3.000 | 0.50× | +3.000 | 85.7% | 75.0% |" in page
    assert "| session overhead (wall − kernels) | 1.000 | 1.000 |" in page
    assert "| `Conv/a` | Conv | 6.000 | 3.000 | 0.50× |" in page
    data = json.loads(json.dumps(breakdown_json(breakdown, INFO)))
    assert data["info"]["threads"] == 2 and data["ops"][0]["op_type"] == "Conv" and data["pruned"]["wall_ms"] == 5.0


def test_run_nodes_writes_both_files_from_the_profiled_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    breakdown = compare(profile_of({"Conv/a": 6.0}, 7.0), profile_of({"Conv/a": 3.0}, 4.0))
    monkeypatch.setattr(node_profile, "profile_pair", lambda b, p, plan: breakdown)
    page, paths = node_profile.run_nodes(Path("b.onnx"), Path("p.onnx"), NodePlan(rounds=3), tmp_path / "out")
    assert paths == [tmp_path / "out" / "nodes.md", tmp_path / "out" / "nodes.json"]
    assert paths[0].read_text() == page and "4 timed inferences per model after 10 warm-up" in page
    assert json.loads(paths[1].read_text())["info"]["rounds"] == 4
    assert not list((tmp_path / "out").glob(".*"))  # no temporary left beside them


def test_plan_rounds_up_to_whole_abba_blocks() -> None:
    assert (NodePlan(rounds=3).blocks, NodePlan(rounds=3).timed_inferences) == (2, 4)
    assert NodePlan(rounds=50).timed_inferences == 50


@pytest.mark.parametrize(("argv", "message"), [
    (["--rounds", "0"], "rounds 0 must be at least 1"),
    (["--warmup", "-1"], "warmup -1 must not be negative"),
    (["--threads", "0"], "threads 0 must be at least 1"),
])
def test_bad_options_are_one_line_errors(argv: list[str], message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nodes", "b.onnx", "p.onnx", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_and_non_onnx_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    assert main(["nodes", str(tmp_path / "absent.onnx"), str(text), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"ONNX model {tmp_path / 'absent.onnx'} does not exist" in err and err.count("\n") == 1
    assert main(["nodes", str(text), str(text), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{text} is not an ONNX model ORT can load" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def tiny_conv_net(path: Path, channels: int) -> Path:
    """Conv → Sigmoid·x → Conv → Concat at 3×32×32, like a YOLO block in miniature."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32), "w2")]
    graph = helper.make_graph([
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["a"], ["s"], name="sigmoid"),
        helper.make_node("Mul", ["a", "s"], ["m"], name="silu"),
        helper.make_node("Conv", ["m", "w2"], ["b"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["m", "b"], ["y"], name="concat", axis=1),
    ], "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2 * channels, 32, 32])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ORT the project supports (≥ 1.18)
    onnx.save(model, path)
    return path


def test_a_real_profile_of_two_tiny_nets_names_their_op_types(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    baseline = tiny_conv_net(tmp_path / "baseline.onnx", 16)
    pruned = tiny_conv_net(tmp_path / "pruned.onnx", 8)
    breakdown = node_profile.profile_pair(baseline, pruned, NodePlan(rounds=3, warmup=1, threads=1))
    ops = {r.op_type for r in breakdown.ops}
    assert "Conv" in ops and "Concat" in ops
    assert breakdown.baseline.inferences == breakdown.pruned.inferences == 4
    assert breakdown.baseline.providers == ("CPUExecutionProvider",)
    # The same graph at other widths: every convolution finds its namesake (ORT may add layout transforms).
    convs = {n for n, op in breakdown.baseline.node_op.items() if op == "Conv"}
    assert len(convs) == 2 and convs <= set(breakdown.pruned.node_ms)
    assert breakdown.baseline.wall_ms > 0 and breakdown.baseline.nodes_ms > 0


def test_several_models_profile_in_rotation_each_with_its_unprofiled_wall_time(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    paths = [tiny_conv_net(tmp_path / f"net{width}.onnx", width) for width in (16, 8, 4)]
    profiles = node_profile.profile_models(paths, NodePlan(rounds=3, warmup=1, threads=1), plain_wall=True)
    assert [p.inferences for p in profiles] == [4, 4, 4]
    assert all(p.plain_wall_ms is not None and p.plain_wall_ms > 0 for p in profiles)
    assert all(p.plain_wall_ms is None for p in node_profile.profile_models(paths[:1], NodePlan(rounds=1, warmup=0)))
