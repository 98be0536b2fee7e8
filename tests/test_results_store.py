"""The results store: stored runs of every machine class at an fsspec URL, against a real S3 HTTP endpoint
(moto's server) and memory://, and the plugin's gates reading their history from it."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest
from test_baselines import _suite_with_scripted_speedups

from fastnas_bench.cli import main
from fastnas_bench.errors import BadInputError
from fastnas_bench.verdicts.baselines import BaselineStore, baseline_path, load_baselines, pull, push, write_baselines
from fastnas_bench.verdicts.records import SpeedupRecord, TestKey
from fastnas_bench.verdicts.results_store import ResultsStore

CLASS = "cpuX-2cores-avx2"
SPEEDUP_ID = "test_speedup[fake-fastnas66-bs1]"


def _record(speedup: float) -> dict[str, SpeedupRecord]:
    return {SPEEDUP_ID: SpeedupRecord(speedup, ci_low=speedup * 0.99, ci_high=speedup * 1.01)}


def test_writers_of_one_class_never_drop_each_others_runs(s3_url: str, tmp_path: Path) -> None:
    """Two runners of one machine class recording at once: every run is kept (no read-change-write)."""
    def runner(offset: int) -> None:
        store = BaselineStore(tmp_path, CLASS, "cpu", ResultsStore.open(s3_url))
        for i in range(4):
            store.append(_record(1.2 + offset + i / 100), {})

    threads = [threading.Thread(target=runner, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    store = BaselineStore(tmp_path, CLASS, "cpu", ResultsStore.open(s3_url))
    assert sorted(r["speedup"] for r in store.history(SPEEDUP_ID)) == pytest.approx(
        [1.2, 1.21, 1.22, 1.23, 2.2, 2.21, 2.22, 2.23])
    key = TestKey("test_speedup", "fake", "fastnas66", 1)
    assert key.format() == SPEEDUP_ID
    assert [r.speedup for r in store.runs(key)] == [r["speedup"] for r in store.history(SPEEDUP_ID)]
    assert not tmp_path.joinpath(CLASS).exists()  # nothing written to the files


def test_push_then_pull_gives_the_same_runs_and_a_second_push_stores_nothing(s3_url: str, tmp_path: Path) -> None:
    committed = tmp_path / "committed"
    path = baseline_path(committed, CLASS, "cpu")
    local = BaselineStore(committed, CLASS, "cpu")
    for i in range(3):
        local.append(_record(1.3 + i / 100), {SPEEDUP_ID: "pass"})
    local.accept("test_speedup*", "a new cut, on purpose")
    local.append(_record(1.5), {})
    results = ResultsStore.open(s3_url)
    assert push(results, committed) == [(path, 4, 0)]
    assert push(results, committed) == [(path, 0, 4)]  # the same runs: the creates fail, nothing doubles

    fresh = tmp_path / "fresh"
    assert pull(results, fresh) == [(baseline_path(fresh, CLASS, "cpu"), 4)]
    assert pull(results, fresh) == [(baseline_path(fresh, CLASS, "cpu"), 0)]
    mine, theirs = json.loads(path.read_text()), json.loads(baseline_path(fresh, CLASS, "cpu").read_text())
    assert theirs["tests"] == mine["tests"] and theirs["accepted"] == mine["accepted"]
    # Read straight from the store, the gates see what they would see in the file.
    remote = BaselineStore(fresh, CLASS, "cpu", results)
    assert remote.history(SPEEDUP_ID) == local.history(SPEEDUP_ID) and len(remote.history(SPEEDUP_ID)) == 1


def test_the_store_keeps_every_run_and_the_gates_read_a_files_window(tmp_path: Path) -> None:
    from fastnas_bench.verdicts.baselines import MAX_STORED_RUNS

    store = BaselineStore(tmp_path, CLASS, "cpu", ResultsStore.open(f"memory://results-{uuid.uuid4().hex[:8]}"))
    for i in range(MAX_STORED_RUNS + 5):
        store.append(_record(1.0 + i / 100), {})
    history = store.history(SPEEDUP_ID)
    assert len(history) == MAX_STORED_RUNS and history[-1]["speedup"] == pytest.approx(1.0 + (MAX_STORED_RUNS + 4) / 100)


def test_a_damaged_object_is_named_and_skipped(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    results = ResultsStore.open(f"file://{tmp_path}/store")
    store = BaselineStore(tmp_path, CLASS, "cpu", results)
    for s in (1.3, 1.31):
        store.append(_record(s), {})
    (first, _) = sorted((tmp_path / "store" / "baselines" / CLASS / "cpu" / "runs").iterdir())
    first.write_bytes(first.read_bytes().replace(b"1.3", b"9.3", 1))  # a flipped digit: still JSON
    fresh = BaselineStore(tmp_path, CLASS, "cpu", results)
    assert [r["speedup"] for r in fresh.history(SPEEDUP_ID)] == [1.31]
    assert any(first.name in str(w.message) and "checksum" in str(w.message) for w in recwarn)


def test_bad_store_urls_are_one_line_errors_naming_them(s3_url: str, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for url, expected in ((f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/r", "bucket or directory not found"),
                          ("nosuchfs://bucket/r", "Protocol not known")):
        with pytest.raises(BadInputError, match=expected) as raised:
            ResultsStore.open(url)
        assert url in str(raised.value) and "\n" not in str(raised.value)
    monkeypatch.delenv("FASTNAS_BENCH_RESULTS", raising=False)
    assert main(["baselines", "pull"]) == 2
    assert "baselines pull needs --results-store URL" in capsys.readouterr().err


def test_five_runs_recorded_in_the_store_give_the_gates_their_history_on_a_fresh_checkout(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, s3_url: str
) -> None:
    """Nightly-style runs record into the store only; a checkout with no baselines/ then gates against them,
    and `baselines pull` puts the same history into files for those who keep it in git."""
    monkeypatch.delenv("FASTNAS_BENCH_RESULTS", raising=False)
    _suite_with_scripted_speedups(pytester)
    common = ["-p", "no:cacheprovider", "--backends", "pytorch", "--results-store", s3_url]
    for seed in range(5):
        monkeypatch.setenv("SEED", str(seed))
        recorded = pytester.runpytest_subprocess(*common, "--update-baselines")
        recorded.assert_outcomes(passed=1, skipped=2)
    recorded.stdout.fnmatch_lines([f"*this run was recorded in 1 entries of {s3_url} (machine class*"])
    assert not (pytester.path / "baselines").exists()

    monkeypatch.setenv("SEED", "42")
    judged = pytester.runpytest_subprocess(*common)
    judged.assert_outcomes(passed=3)
    judged.stdout.fnmatch_lines([f"*regression gates against {s3_url}*", "*1 gate(s) judged*"])

    # The same history as files: pulled into an empty baselines/, the gates judge from them alike.
    root = pytester.path / "pulled"
    assert main(["baselines", "pull", "--results-store", s3_url, "--baselines-dir", str(root)]) == 0
    (stored,) = root.glob("*/cpu.json")
    assert len(load_baselines(stored)[SPEEDUP_ID]["runs"]) == 5
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--backends", "pytorch", "--baselines-dir",
                                  str(root)).assert_outcomes(passed=3)

    both = pytester.runpytest_subprocess(*common, "--baselines-dir", str(root))
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["*--baselines-dir and a results store*both name where the stored runs are*"])


def test_a_schema_2_file_is_refused_by_push_naming_it(tmp_path: Path) -> None:
    path = baseline_path(tmp_path, CLASS, "cpu")
    write_baselines(path, CLASS, "cpu", {SPEEDUP_ID: {"speedup": 1.2}})  # no recording time
    with pytest.raises(BadInputError, match="carries no recording time") as raised:
        push(ResultsStore.open(f"memory://results-{uuid.uuid4().hex[:8]}"), tmp_path)
    assert str(path) in str(raised.value)
