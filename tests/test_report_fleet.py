"""The fleet report: saved runs of several machine classes merged into one machine × backend table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_report import _bench, _speedup

from fastnas_bench.cli import main
from fastnas_bench.errors import BadInputError
from fastnas_bench.report.fleet import fleet_rows
from fastnas_bench.report.write import STEP_SUMMARY_ENV, write_report, write_report_docs

CPU, GPU = "Intel_Xeon-2cores-avx512", "NVIDIA_H100_80GB_HBM3-550.54"


@pytest.fixture(autouse=True)
def _no_job_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under GitHub Actions the real job summary must not receive the tests' tables.
    monkeypatch.delenv(STEP_SUMMARY_ENV, raising=False)


def _run(machine_class: str | None, at: str, ort_speedup: float, outcome: str = "pass") -> dict[str, Any]:
    """A run timing ONNX Runtime (with a paired speedup) and PyTorch (separate timings only)."""
    doc: dict[str, Any] = {"datetime": at, "benchmarks": [
        _bench("onnxruntime", "baseline", "baseline", 50.0, 8.0, 0.40),
        _bench("onnxruntime", "fastnas66", "fastnas", 38.0, 5.0, 0.38),
        _bench("pytorch", "baseline", "baseline", 70.0, 8.0, 0.40),
        _bench("pytorch", "fastnas66", "fastnas", 55.0, 5.0, 0.38),
    ], "fastnas_bench": {"speedups": {"test_speedup[onnxruntime-fastnas66-bs1]": {
        **_speedup(50.0, 50.0 / ort_speedup, 0.625), "ci_low": ort_speedup - 0.02, "ci_high": ort_speedup + 0.02,
        "rounds": 90, "outcome": outcome}}}}
    doc["machine_info"] = {"fastnas_bench": {"machine_class": machine_class}} if machine_class else {}
    return doc


def _write(tmp_path: Path, docs: dict[str, dict[str, Any]]) -> list[Path]:
    paths = []
    for name, doc in docs.items():
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(doc))
    return paths


@pytest.fixture
def fleet_files(tmp_path: Path) -> list[Path]:
    return _write(tmp_path, {
        "0001_cpu.json": _run(CPU, "2024-05-01T10:00:00+00:00", 1.10, "fail"),
        "0007_gpu.json": _run(GPU, "2024-05-20T09:30:00+00:00", 1.45, "undecided"),
        "0002_cpu.json": _run(CPU, "2024-06-01T12:00:00+00:00", 1.29),
    })


def test_fleet_table_has_one_row_per_class_and_backend_from_the_newest_runs(fleet_files: list[Path],
                                                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = write_report(fleet_files, out)
    md = (out / "report.md").read_text()
    assert md.index("## Fleet: newest run per machine class") < md.index("## Run 0001_cpu")
    fleet_section = md.split("## Interleaved speedups across runs")[0]
    table = [line for line in fleet_section.splitlines() if line.startswith((f"| {CPU} |", f"| {GPU} |"))]
    assert table == [
        f"| {CPU} | onnxruntime | 1 | fastnas66 | 1.29x [1.27, 1.31] | 0.625 | 0.60 | 50.00 | 38.76 | PASS | "
        "0002_cpu (2024-06-01 12:00) |",
        f"| {CPU} | pytorch | 1 | fastnas66 | 1.27x† | 0.625 | 0.57 | 70.00 | 55.00 | — | 0002_cpu (2024-06-01 12:00) |",
        f"| {GPU} | onnxruntime | 1 | fastnas66 | 1.45x [1.43, 1.47] | 0.625 | 0.83 | 50.00 | 34.48 | UNDECIDED | "
        "0007_gpu (2024-05-20 09:30) |",
        f"| {GPU} | pytorch | 1 | fastnas66 | 1.27x† | 0.625 | 0.57 | 70.00 | 55.00 | — | 0007_gpu (2024-05-20 09:30) |",
    ]
    # The older CPU run is still reported on its own, not in the fleet table.
    assert "## Run 0001_cpu" in md and "1.10x [" not in md.split("## Run")[0]
    fleet = json.loads((out / "report.json").read_text())["fleet"]
    assert [(r["machine_class"], r["target"], r["paired"], r["run"]) for r in fleet] == [
        (CPU, "onnxruntime", True, "0002_cpu"), (CPU, "pytorch", False, "0002_cpu"),
        (GPU, "onnxruntime", True, "0007_gpu"), (GPU, "pytorch", False, "0007_gpu")]
    assert fleet[0]["speedup"] == pytest.approx(1.29) and fleet[0]["ci_low"] == pytest.approx(1.27)
    assert fleet[1]["ci_low"] is None and fleet[1]["verdict"] is None
    png = out / "fleet-speedup.png"
    assert png in paths and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_documents_need_no_files(fleet_files: list[Path], tmp_path: Path) -> None:
    docs = [(f"s3://runs/{p.name}", json.loads(p.read_text())) for p in fleet_files]
    write_report_docs(docs, tmp_path / "a")
    write_report(fleet_files, tmp_path / "b")
    assert (tmp_path / "a" / "report.md").read_text() == (tmp_path / "b" / "report.md").read_text()


def test_a_run_without_machine_class_is_named(tmp_path: Path) -> None:
    paths = _write(tmp_path, {"0001_cpu.json": _run(CPU, "2024-05-01T10:00:00", 1.2),
                              "0002_gpu.json": _run(GPU, "2024-05-02T10:00:00", 1.4),
                              "0003_old.json": _run(None, "2024-05-03T10:00:00", 1.3)})
    with pytest.raises(BadInputError, match=r"0003_old\.json has no machine_info\.fastnas_bench\.machine_class"):
        write_report(paths, tmp_path / "out")
    with pytest.raises(BadInputError, match="0003_old.json"):
        fleet_rows([(str(p), json.loads(p.read_text())) for p in paths[2:]])
    assert main(["report", *map(str, paths), "--out", str(tmp_path / "out")]) == 2


def test_job_summary_is_appended_to(fleet_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("## Tests\n\n42 passed\n")
    monkeypatch.setenv(STEP_SUMMARY_ENV, str(summary))
    assert main(["report", *map(str, fleet_files), "--out", str(tmp_path / "out")]) == 0
    text = summary.read_text()
    assert text.startswith("## Tests\n\n42 passed\n\n## fastnas-bench fleet: newest run per machine class\n")
    assert f"| {GPU} | onnxruntime | 1 | fastnas66 | 1.45x [1.43, 1.47] |" in text
    assert "## Run" not in text  # the table alone, not the whole report
    assert main(["report", *map(str, fleet_files), "--out", str(tmp_path / "out")]) == 0
    assert summary.read_text() == text + text[len("## Tests\n\n42 passed\n"):]


def test_one_machine_class_keeps_the_per_run_report(tmp_path: Path) -> None:
    older, newer = _run(CPU, "2024-05-01T10:00:00+00:00", 1.10), _run(CPU, "2024-06-01T12:00:00+00:00", 1.29)
    # Given newest first: the job summary takes the newest by save time, not by position.
    with_class = _write(tmp_path, {"0002_b.json": newer, "0001_a.json": older})
    (tmp_path / "bare").mkdir()
    without = _write(tmp_path / "bare", {"0002_b.json": {**newer, "machine_info": {}},
                                          "0001_a.json": {**older, "machine_info": {}}})
    summary = tmp_path / "summary.md"
    summary.write_text("before\n")
    paths = write_report(with_class, tmp_path / "one", job_summary=summary)
    write_report(without, tmp_path / "bare-out")
    md = (tmp_path / "one" / "report.md").read_text()
    assert md == (tmp_path / "bare-out" / "report.md").read_text()
    assert "Fleet" not in md
    assert "fleet" not in json.loads((tmp_path / "one" / "report.json").read_text())
    assert not any(p.name.startswith("fleet") for p in paths)
    text = summary.read_text()
    assert text.startswith("before\n\n## fastnas-bench: run 0002_b\n")
    assert "| Latency onnxruntime bs1 (ms, p50, paired rounds) | 50.00 | 38.76 | -22.5% (1.29x, CI [1.27, 1.31]) |" in text


def test_a_profile_or_class_without_saved_runs_says_no_runs_yet(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from fastnas_bench.verdicts.baselines import BaselineStore
    from fastnas_bench.verdicts.records import SpeedupRecord
    from fastnas_bench.verdicts.results_store import ResultsStore

    url = f"file://{tmp_path}/store"
    summary = tmp_path / "summary.md"
    # Nothing of profile paper at all: a report saying so, in the job summary too, and exit 0.
    assert main(["report", "--results-store", url, "--profile", "paper", "--out", str(tmp_path / "none"),
                 "--job-summary", str(summary)]) == 0
    said = f"No runs yet: {url} holds no saved run of profile paper."
    assert said in capsys.readouterr().out
    assert said in (tmp_path / "none" / "report.md").read_text() and said in summary.read_text()
    assert json.loads((tmp_path / "none" / "report.json").read_text())["no_runs"] == said

    # The CPU class saved a run; the GPU class recorded runs but saved none yet: CPU reported, GPU named.
    store = ResultsStore.open(url)
    saved = _run(CPU, "2024-06-01T12:00:00+00:00", 1.29)
    saved["fastnas_bench"]["profile"] = "cpu"  # as the suite's plugin saves it
    store.put_saved_run(CPU, "cpu", "2024-06-01T12:00:00+00:00", saved)
    BaselineStore(tmp_path, GPU, "cpu", store).append({"test_speedup[pytorch-fastnas66-bs1]": SpeedupRecord(1.4)}, {})
    assert main(["report", "--results-store", url, "--out", str(tmp_path / "some"), "--job-summary", str(summary)]) == 0
    said = f"No runs yet: {url} holds no saved run of profile cpu from machine class {GPU}."
    assert said in capsys.readouterr().out
    md = (tmp_path / "some" / "report.md").read_text()
    assert said in md and "## Run " in md
    assert summary.read_text().rstrip().endswith(said)


def test_runs_pool_across_runs_only_within_their_machine_class(fleet_files: list[Path], tmp_path: Path) -> None:
    files = [*fleet_files, *_write(tmp_path, {"0008_gpu.json": _run(GPU, "2024-06-02T09:30:00+00:00", 1.55)})]
    write_report(files, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    pooled = [line for line in md.split("## Interleaved speedups across runs of one machine class")[1].splitlines()
              if line.startswith(("| " + CPU, "| " + GPU))]
    # Two runs of each class: each class its own median and range, never one figure over both machines.
    assert pooled == [
        f"| {CPU} | test_speedup[onnxruntime-fastnas66-bs1] | 2 | 1.195x | 1.100x–1.290x | 0.625 | 0.42 |",
        f"| {GPU} | test_speedup[onnxruntime-fastnas66-bs1] | 2 | 1.500x | 1.450x–1.550x | 0.625 | 0.89 |",
    ]
    assert f"## Run 0001_cpu ({CPU})" in md
