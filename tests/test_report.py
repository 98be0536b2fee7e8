"""The report reads saved runs in pytest-benchmark's format and writes table, JSON and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastnas_bench.cli import main
from fastnas_bench.errors import BadInputError
from fastnas_bench.report.summary import load_rows, pareto_front, summarize
from fastnas_bench.report.write import STEP_SUMMARY_ENV, write_report
from fastnas_bench.verdicts.records import TestKey


@pytest.fixture(autouse=True)
def _no_job_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under GitHub Actions `fastnas-bench report` appends to the job summary; the tests' tables must not.
    monkeypatch.delenv(STEP_SUMMARY_ENV, raising=False)


def _bench(target: str, variant: str, method: str, p50: float, gflops: float, mAP: float,
           batch: int = 1, divisor: int = 16) -> dict:
    return {
        "name": f"test_latency[{target}-{variant}-bs{batch}]",
        "extra_info": {
            "backend": target, "precision": "fp32", "variant": variant, "method": method, "batch": batch,
            "flops_target": 1.0 if method == "baseline" else 0.66, "channel_divisor": divisor,
            "params": 3_000_000 if method == "baseline" else 1_500_000, "gflops": gflops, "map50_95": mAP,
            "recall": 0.5, "ap_small": 0.1, "latency_p50_ms": p50, "latency_p90_ms": p50 * 1.1,
            "latency_samples_ms": [p50 * f for f in (0.95, 1.0, 1.05, 1.0, 1.2)],
        },
    }


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    doc = {"machine_info": {}, "benchmarks": [
        _bench("onnxruntime", "baseline", "baseline", 50.0, 8.0, 0.40),
        _bench("onnxruntime", "fastnas66", "fastnas", 37.0, 5.0, 0.31),
        _bench("onnxruntime", "unstructured66", "unstructured", 50.5, 8.0, 0.30),
        {"name": "test_speedup[onnxruntime-fastnas66-bs1]", "extra_info": {}},
    ], "fastnas_bench": {"speedups": {"test_speedup[onnxruntime-fastnas66-bs1]": {
        "speedup": 1.31, "ci_low": 1.30, "ci_high": 1.32, "rounds": 90, "outcome": "pass",
        "bound": 1.15, "flops_ratio": 0.625, "efficiency": 0.63, "baseline_p50_ms": 50.0, "pruned_p50_ms": 38.2}}}}
    path = tmp_path / "0001_run.json"
    path.write_text(json.dumps(doc))
    return path


def test_summary_speedup_and_efficiency(run_file: Path) -> None:
    summary = summarize(load_rows(run_file))
    fast = summary["variants"]["fastnas66"]
    assert fast["flops_ratio"] == pytest.approx(5 / 8)
    assert fast["latency"]["onnxruntime bs1"]["speedup"] == pytest.approx(50 / 37)
    assert fast["latency"]["onnxruntime bs1"]["efficiency"] == pytest.approx((1 - 37 / 50) / (1 - 5 / 8))
    assert "efficiency" not in summary["variants"]["unstructured66"]["latency"]["onnxruntime bs1"]


def test_cli_report_writes_markdown_json_and_pngs(run_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report"
    assert main(["report", str(run_file), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| Parameters | 3.00M | 1.50M | -50.0% |" in md
    # The headline uses the paired figures (50.0 → 38.2 ms, 1.31x), not the separate timings (37.0 ms).
    assert "| Latency onnxruntime bs1 (ms, p50, paired rounds) | 50.00 | 38.20 | -23.7% (1.31x, CI [1.30, 1.32]) |" in md
    # The interleaved figure wins over the ratio of separate timings; † marks the latter.
    assert "| fastnas66 | 1.50M | 5.00 | 0.625 | 37.0 / 40.7, 1.31x, eff 0.63 |" in md
    assert "50.5 / 55.6, 0.99x† |" in md
    assert "| test_speedup[onnxruntime-fastnas66-bs1] | 1.310x | [1.300, 1.320] | 90 | 1.15x | pass | 0.625 | 0.63 |" in md
    for png in ("latency.png", "flops_latency.png", "pareto.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "report.json").read_text())["summary"]["run"] == "0001_run"


def test_bad_run_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{")
    with pytest.raises(BadInputError, match="x.json is not a readable"):
        load_rows(bad)
    empty = tmp_path / "e.json"
    empty.write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(BadInputError, match="no fastnas-bench test_latency"):
        load_rows(empty)
    assert main(["report", str(empty)]) == 2


def test_test_keys_format_and_parse_back() -> None:
    key = TestKey.parse("test_speedup[tensorrt-fp16-fastnas66d8-bs32]")
    assert key == TestKey("test_speedup", "tensorrt-fp16", "fastnas66d8", 32)
    assert key.format() == "test_speedup[tensorrt-fp16-fastnas66d8-bs32]"
    assert TestKey.parse("test_speedup[onnxruntime-l2struct66-bs1]") == TestKey("test_speedup", "onnxruntime", "l2struct66", 1)
    assert TestKey.parse("test_flops_ratio[fastnas66]") is None
    assert TestKey.parse("test_speedup[tflite-fastnas66-bs1]") is None  # not a backend of this install
    assert TestKey.parse("test_speedup[openvino-fastnas66-bs1]") == TestKey("test_speedup", "openvino", "fastnas66", 1)
    # Variant names and targets with '-' in them: the target is a known backend target id.
    for text, target, variant, batch in (
        ("test_speedup[pytorch-fastnas-latency@onnxruntime-lat75-bs1]", "pytorch", "fastnas-latency@onnxruntime-lat75", 1),
        ("test_latency[torch-compile-l2struct@pytorch-lat66-bs8]", "torch-compile", "l2struct@pytorch-lat66", 8),
    ):
        key = TestKey.parse(text)
        assert key is not None and (key.target, key.variant, key.batch) == (target, variant, batch)
        assert key.format() == text


def test_latency_budget_comparison_lists_each_cut_on_each_backend(tmp_path: Path) -> None:
    names = {"fastnas-latency@onnxruntime-lat75": ("fastnas-latency", 4.0, 0.39),
             "fastnas@onnxruntime-lat75": ("fastnas", 5.0, 0.37)}
    benches = [_bench(t, "baseline", "baseline", 50.0, 8.0, 0.40) for t in ("onnxruntime", "pytorch")]
    speedups = {}
    for name, (method, gflops, mAP) in names.items():
        for target in ("onnxruntime", "pytorch"):
            benches.append(_bench(target, name, method, 37.5, gflops, mAP))
            speedups[f"test_speedup[{target}-{name}-bs1]"] = {
                **_speedup(50.0, 37.5, gflops / 8), "ci_low": 1.31, "ci_high": 1.35}
    run = tmp_path / "0004_lat.json"
    run.write_text(json.dumps({"benchmarks": benches, "fastnas_bench": {"speedups": speedups}}))
    write_report([run], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "### Latency budgets: latency-aware FastNAS vs FLOPs FastNAS vs l2struct at equal measured speed" in text
    assert ("| onnxruntime-lat75 | onnxruntime bs1 | fastnas-latency | 0.500 | 1.333x [1.310, 1.350] | 0.50 | "
            "0.390 | 0.500 | 0.100 |") in text
    assert "| onnxruntime-lat75 | pytorch bs1 (other backend) | fastnas | 0.625 | 1.333x [1.310, 1.350] |" in text
    summary = summarize(load_rows(run))
    assert summary["variants"]["fastnas@onnxruntime-lat75"]["cut_for"] == "onnxruntime-lat75"
    assert summary["variants"]["baseline"]["cut_for"] is None


def _speedup(base_ms: float, pruned_ms: float, ratio: float) -> dict:
    return {"speedup": base_ms / pruned_ms, "bound": 1.1, "flops_ratio": ratio,
            "efficiency": (1 - pruned_ms / base_ms) / (1 - ratio), "baseline_p50_ms": base_ms, "pruned_p50_ms": pruned_ms}


def test_divisor_study_names_the_fastest_divisor_per_backend(tmp_path: Path) -> None:
    doc = {"benchmarks": [
        _bench("onnxruntime", "baseline", "baseline", 50.0, 8.0, 0.40),
        _bench("onnxruntime", "fastnas66d8", "fastnas", 40.0, 5.3, 0.38, divisor=8),
        _bench("onnxruntime", "fastnas66d32", "fastnas", 36.0, 5.2, 0.37, divisor=32),
    ], "fastnas_bench": {"speedups": {
        "test_speedup[onnxruntime-fastnas66d8-bs1]": _speedup(50.0, 41.0, 0.66),
        "test_speedup[onnxruntime-fastnas66d32-bs1]": _speedup(50.0, 37.0, 0.65),
    }}}
    run = tmp_path / "0002_div.json"
    run.write_text(json.dumps(doc))
    md = (tmp_path / "out" / "report.md")
    write_report([run], tmp_path / "out")
    text = md.read_text()
    assert "### Channel-divisor study: fastnas, FLOPs target 0.66" in text
    assert "| 32 | fastnas66d32 | 1.50M | 0.650 | 36.0, 1.35x, eff 0.74 | 0.370 |" in text
    assert "- onnxruntime bs1: divisor 32 is fastest at 1.35x (range 1.22x–1.35x)" in text


def test_batch_scaling_and_several_runs(run_file: Path, tmp_path: Path) -> None:
    doc = {"benchmarks": [
        _bench("pytorch", "baseline", "baseline", 70.0, 8.0, 0.40),
        _bench("pytorch", "fastnas66", "fastnas", 55.0, 5.0, 0.38),
        _bench("pytorch", "baseline", "baseline", 800.0, 8.0, 0.40, batch=8),
        _bench("pytorch", "fastnas66", "fastnas", 560.0, 5.0, 0.38, batch=8),
    ], "fastnas_bench": {"speedups": {"test_speedup[pytorch-fastnas66-bs8]": _speedup(800.0, 600.0, 0.625)}}}
    batches = tmp_path / "0003_batches.json"
    batches.write_text(json.dumps(doc))
    paths = write_report([run_file, batches], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Run 0001_run" in text and "## Run 0003_batches" in text
    assert "not comparable on a shared machine" in text
    assert "## Interleaved speedups across runs" not in text  # no test id was measured twice
    assert "| pytorch | fastnas66 | 1 | 70.00 | 55.00 | 1.27x† | 0.57 |" in text
    assert "| pytorch | fastnas66 | 8 | 100.00 | 75.00 | 1.33x | 0.67 |" in text
    assert {p.name for p in paths} >= {"1-pareto.png", "2-pareto.png", "2-flops_latency.png", "report.json"}
    assert [r["summary"]["run"] for r in json.loads((tmp_path / "out" / "report.json").read_text())["runs"]] == [
        "0001_run", "0003_batches"]


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    points = [(1.0, 0.41, "baseline"), (0.80, 0.38, "a"), (0.85, 0.36, "b"), (0.70, 0.30, "c"), (0.70, 0.28, "d")]
    assert [p[2] for p in pareto_front(points)] == ["c", "a", "baseline"]


def test_repeated_speedups_are_summarized_across_runs(run_file: Path, tmp_path: Path) -> None:
    doc = json.loads(run_file.read_text())
    doc["fastnas_bench"]["speedups"]["test_speedup[onnxruntime-fastnas66-bs1]"].update(speedup=1.21, efficiency=0.45)
    again = tmp_path / "0002_again.json"
    again.write_text(json.dumps(doc))
    write_report([run_file, again], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| test_speedup[onnxruntime-fastnas66-bs1] | 2 | 1.260x | 1.210x–1.310x | 0.625 | 0.54 |" in text
