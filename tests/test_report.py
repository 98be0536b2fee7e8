"""The report reads saved runs in pytest-benchmark's format and writes table, JSON and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastnas_bench.cli import main
from fastnas_bench.errors import BadInputError
from fastnas_bench.report import load_rows, summarize


def _bench(target: str, variant: str, method: str, p50: float, gflops: float, mAP: float) -> dict:
    return {
        "name": f"test_latency[{target}-{variant}-bs1]",
        "extra_info": {
            "backend": target, "precision": "fp32", "variant": variant, "method": method, "batch": 1,
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
        "speedup": 1.31, "bound": 1.15, "flops_ratio": 0.625, "efficiency": 0.63,
        "baseline_p50_ms": 50.0, "pruned_p50_ms": 38.2}}}}
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
    assert "| Latency onnxruntime bs1 (ms, p50) | 50.00 | 37.00 | -26.0% |" in md
    assert "eff 0.69" in md
    assert "| test_speedup[onnxruntime-fastnas66-bs1] | 50.00 | 38.20 | 1.310x | 1.15x | 0.625 | 0.63 |" in md
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
