"""The results store: stored runs of every machine class at an fsspec URL, against a real S3 HTTP endpoint
(moto's server) and memory://, and the plugin's gates reading their history from it."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest
from test_baselines import _plugin_with_session, _suite_with_scripted_speedups
from test_report import _bench

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
    both.stderr.fnmatch_lines([f"*--baselines-dir {root} and a results store ({s3_url})*both name where the stored "
                               "runs are*"])


def test_a_schema_2_file_is_refused_by_push_naming_it(tmp_path: Path) -> None:
    path = baseline_path(tmp_path, CLASS, "cpu")
    write_baselines(path, CLASS, "cpu", {SPEEDUP_ID: {"speedup": 1.2}})  # no recording time
    with pytest.raises(BadInputError, match="carries no recording time") as raised:
        push(ResultsStore.open(f"memory://results-{uuid.uuid4().hex[:8]}"), tmp_path)
    assert str(path) in str(raised.value)


def test_a_second_pull_of_more_runs_than_a_file_keeps_adds_nothing_and_leaves_the_file(tmp_path: Path) -> None:
    from fastnas_bench.verdicts.baselines import MAX_STORED_RUNS

    results = ResultsStore.open(f"memory://results-{uuid.uuid4().hex[:8]}")
    store = BaselineStore(tmp_path, CLASS, "cpu", results)
    for i in range(MAX_STORED_RUNS + 5):
        store.append(_record(1.0 + i / 100), {})
    path = baseline_path(tmp_path / "files", CLASS, "cpu")
    # The file keeps the newest MAX_STORED_RUNS: the 5 older ones were never added to it.
    assert pull(results, tmp_path / "files") == [(path, MAX_STORED_RUNS)]
    kept = load_baselines(path)[SPEEDUP_ID]["runs"]
    assert len(kept) == MAX_STORED_RUNS and kept[0]["speedup"] == pytest.approx(1.05)
    before = path.stat()
    assert pull(results, tmp_path / "files") == [(path, 0)]
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten


def test_files_beside_the_store_folders_are_no_machine_class_or_profile(tmp_path: Path) -> None:
    results = ResultsStore.open(f"file://{tmp_path}/store")
    BaselineStore(tmp_path, CLASS, "cpu", results).append(_record(1.3), {})
    baselines = tmp_path / "store" / "baselines"
    (baselines / "README.md").write_text("# the fleet's runs\n")
    (baselines / CLASS / "notes.txt").write_text("moved racks in May\n")
    (baselines / CLASS / "paper").mkdir()  # a profile folder with nothing in it yet
    (tmp_path / "store" / "saved").mkdir()
    (tmp_path / "store" / "saved" / "README.md").write_text("saved pytest-benchmark runs\n")
    assert results.machine_classes("runs") == [(CLASS, "cpu"), (CLASS, "paper")]
    assert results.machine_classes("saved") == []
    files = tmp_path / "files"
    assert pull(results, files) == [(baseline_path(files, CLASS, "cpu"), 1)]  # the empty profile writes no file
    assert sorted(p.relative_to(files).as_posix() for p in files.rglob("*.json")) == [f"{CLASS}/cpu.json"]
    assert results.saved_runs_by_class("cpu") == {CLASS: []}


def test_an_object_in_another_class_or_profile_folder_is_named_and_skipped(tmp_path: Path,
                                                                           recwarn: pytest.WarningsRecorder) -> None:
    results = ResultsStore.open(f"file://{tmp_path}/store")
    BaselineStore(tmp_path, CLASS, "cpu", results).append(_record(1.3), {})
    (run,) = (tmp_path / "store" / "baselines" / CLASS / "cpu" / "runs").iterdir()
    for other in ("other-class/cpu", f"{CLASS}/paper"):
        folder = tmp_path / "store" / "baselines" / other / "runs"
        folder.mkdir(parents=True)
        (folder / run.name).write_bytes(run.read_bytes())  # intact, checksum and all, but in the wrong place
    assert results.baselines_doc("other-class", "cpu") == {} and results.baselines_doc(CLASS, "paper") == {}
    messages = [str(w.message) for w in recwarn]
    assert any(f"other-class/cpu/runs/{run.name} is of machine class '{CLASS}'" in m for m in messages), messages
    assert any(f"{CLASS}/paper/runs/{run.name} is of profile 'cpu'" in m for m in messages), messages
    assert [r["speedup"] for r in results.baselines_doc(CLASS, "cpu")["tests"][SPEEDUP_ID]["runs"]] == [1.3]


def test_show_refuses_a_store_beside_baselines_dir_as_the_plugin_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = f"file://{tmp_path}/store"
    monkeypatch.setenv("FASTNAS_BENCH_RESULTS", url)
    assert main(["baselines", "show", "--baselines-dir", str(tmp_path / "b"), "--machine-class", CLASS]) == 2
    err = capsys.readouterr().err
    assert "--baselines-dir" in err and url in err and "both name where the stored runs are" in err
    assert err.count("\n") == 1
    # pull/push move runs between the two, so they take both.
    assert main(["baselines", "pull", "--baselines-dir", str(tmp_path / "b")]) == 0
    assert "no stored runs in" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_report_newest_takes_only_a_positive_integer(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["report", "--results-store", "memory://x", "--newest", value])
    assert exited.value.code == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert line.endswith(f"argument --newest: {value!r} must be a positive integer")


def _saved_run_suite(pytester: pytest.Pytester) -> None:
    """A pytester project timing two tiny pedantic benchmarks saved as suite latency results, with a speedup."""
    _plugin_with_session(pytester)
    benches = (_bench("pytorch", "baseline", "baseline", 50.0, 8.0, 0.40),
               _bench("pytorch", "fastnas66", "fastnas", 38.0, 5.0, 0.38))
    infos = {b["name"].partition("[")[2][:-1]: b["extra_info"] for b in benches}
    pytester.makepyfile(test_saved=f"""
        import pytest
        from fastnas_bench.backends.base import BackendTarget
        from fastnas_bench.verdicts.records import SpeedupRecord, TestKey

        INFOS = {infos!r}

        # A parameter JSON cannot encode, as the suite's own tests have: saved as pytest-benchmark saves it.
        @pytest.mark.parametrize("info,backend_target", [(i, BackendTarget("pytorch", "fp32")) for i in INFOS.values()],
                                 ids=list(INFOS))
        def test_latency(benchmark, bench_session, info, backend_target):
            benchmark.pedantic(lambda: None, rounds=3, iterations=1)
            benchmark.extra_info.update(info)
            if info["variant"] != "baseline":
                bench_session.record(TestKey("test_speedup", "pytorch", "fastnas66", 1),
                                     SpeedupRecord(1.3, ci_low=1.28, ci_high=1.32, rounds=90, confidence=0.95,
                                                   outcome="pass"))
        """)


def test_a_recorded_run_saves_its_run_in_the_store_for_the_report(pytester: pytest.Pytester, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTNAS_BENCH_RESULTS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    _saved_run_suite(pytester)
    url = f"file://{tmp_path}/store"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--backends", "pytorch", "--update-baselines",
                                           "--results-store", url)
    result.assert_outcomes(passed=2)
    (stored,) = (tmp_path / "store" / "saved").glob("*/cpu/*.json")
    machine_class = stored.parent.parent.name
    result.stdout.fnmatch_lines([f"*recorded in 1 entries of {url}*and its saved run as {url}/saved/{machine_class}/"
                                 f"cpu/{stored.name} with its outcomes*"])
    (local,) = (pytester.path / ".benchmarks").rglob("0001_*.json")
    assert not local.name.endswith("_True.json"), local.name  # named as pytest-benchmark's own autosave names it
    assert json.loads(stored.read_text())["benchmarks"] == json.loads(local.read_text())["benchmarks"]

    out = tmp_path / "report"
    assert main(["report", "--results-store", url, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert f"Runs read: {stored.name}" in md and "No runs yet" not in md


def test_a_failed_upload_fails_the_run_in_one_line(pytester: pytest.Pytester, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTNAS_BENCH_RESULTS", raising=False)
    _saved_run_suite(pytester)
    common = ["-p", "no:cacheprovider", "--backends", "pytorch", "--update-baselines"]
    # A file where the store's folders go: the store opens, every write under it fails.
    for broken, said in (("baselines", "this run was NOT recorded in the baselines: results store"),
                         ("saved", "but its saved run was NOT stored for `fastnas-bench report`: results store")):
        store = tmp_path / broken
        store.mkdir()
        (store / broken).write_text("not a folder\n")
        result = pytester.runpytest_subprocess(*common, "--results-store", f"file://{store}")
        result.assert_outcomes(passed=2)
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        (line,) = [line for line in result.stdout.lines if said in line]
        assert "could not write" in line and f"file://{store}" in line
        assert "Traceback" not in result.stdout.str() + result.stderr.str()
