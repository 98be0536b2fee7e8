"""Stored baselines: run history, atomic writes, the gates end to end through the real plugin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fastnas_bench.errors import BadInputError
from fastnas_bench.verdicts.baselines import (
    MAX_STORED_RUNS,
    SCHEMA_VERSION,
    BaselineStore,
    baseline_path,
    load_baselines,
    write_baselines,
)
from fastnas_bench.verdicts.gates import changed_versions, latency_gate
from fastnas_bench.verdicts.records import LatencyRecord, SpeedupRecord

REPO = Path(__file__).resolve().parents[1]


def test_write_appends_runs_atomically_and_checks_the_schema(tmp_path: Path) -> None:
    path = baseline_path(tmp_path, "cpuX-2cores-ort1", "cpu")
    write_baselines(path, "cpuX-2cores-ort1", "cpu", {"a": {"speedup": 1.0}})
    write_baselines(path, "cpuX-2cores-ort1", "cpu", {"a": {"speedup": 1.1}, "b": {"speedup": 2.0}})
    stored = load_baselines(path)
    assert [r["speedup"] for r in stored["a"]["runs"]] == [1.0, 1.1] and len(stored["b"]["runs"]) == 1
    for i in range(MAX_STORED_RUNS + 3):
        write_baselines(path, "cpuX-2cores-ort1", "cpu", {"a": {"speedup": float(i)}})
    runs = load_baselines(path)["a"]["runs"]
    assert len(runs) == MAX_STORED_RUNS and runs[-1]["speedup"] == MAX_STORED_RUNS + 2  # the newest kept
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert load_baselines(tmp_path / "absent.json") == {}
    path.write_text(json.dumps({"schema": SCHEMA_VERSION + 1, "tests": {}}))
    with pytest.raises(BadInputError, match="schema"):
        load_baselines(path)


def _latency_run(median_ms: float, calibration_ms: float, seed: int) -> LatencyRecord:
    rng = np.random.default_rng(seed)
    samples = list(median_ms * (1 + np.abs(rng.normal(0, 0.03, 30))))
    return LatencyRecord.of(samples, calibration_ms, float(np.median(samples)), variant_keys={}, versions={})


def test_latency_gate_calibrates_and_takes_its_tolerance_from_the_stored_runs() -> None:
    # Stored runs on a machine whose speed wandered by ±20%: the calibration workload wandered too.
    stored = [_latency_run(30 * f, 2 * f, seed) for seed, f in enumerate((1.0, 1.2, 0.85, 1.1, 0.95))]
    slower_machine = latency_gate(stored, _latency_run(30 * 1.8, 2 * 1.8, 9))
    assert slower_machine is not None and slower_machine.outcome.value == "pass"
    regressed = latency_gate(stored, _latency_run(30 * 1.5, 2.0, 10))
    assert regressed is not None and regressed.outcome.value == "fail" and regressed.resolution < 0.5
    assert latency_gate(stored[:4], stored[0]) is None


def test_changed_versions_are_named() -> None:
    runs = [SpeedupRecord(1.3, versions={"torch": "2.14.1", "onnxruntime": "1.31.0"})]
    assert changed_versions(runs, {"torch": "2.14.1", "onnxruntime": "1.32.0"}) == ["onnxruntime 1.31.0 → 1.32.0"]
    assert changed_versions(runs, {"torch": "2.14.1", "onnxruntime": "1.31.0"}) == []


def _plugin_with_session(pytester: pytest.Pytester) -> None:
    """A pytester project that loads the real plugin and hands its tests the bench session."""
    pytester.makeconftest(
        """
        import pytest
        pytest_plugins = ["fastnas_bench.pytest_plugin.hooks"]

        @pytest.fixture(scope="session")
        def bench_session(pytestconfig):
            from fastnas_bench.pytest_plugin.hooks import session_of
            return session_of(pytestconfig)
        """
    )


def _suite_with_scripted_speedups(pytester: pytest.Pytester) -> None:
    """A pytester project that runs the real plugin, gate and outcome reporting on scripted ABBA samples."""
    _plugin_with_session(pytester)
    pytester.makepyfile(
        test_fake="""
        import os
        import numpy as np
        import pytest
        from fastnas_bench.pytest_plugin.outcomes import judge_against_stored
        from fastnas_bench.measure.stats import paired_speedup
        from fastnas_bench.verdicts.records import SpeedupRecord, TestKey

        KEY = TestKey("test_speedup", "fake", "fastnas66", 1)

        def test_regression_family(bench_session):  # first in the file: the plugin must run it last
            from fastnas_bench.pytest_plugin.outcomes import judge_gate_family
            judge_gate_family(bench_session)

        def test_speedup_regression(bench_session, request):
            rng = np.random.default_rng(int(os.environ.get("SEED", "0")))
            pruned_ms = float(os.environ.get("PRUNED_MS", "24"))
            base = list(30e-3 * (1 + np.abs(rng.normal(0, 0.03, 180))))
            pruned = list(pruned_ms * 1e-3 * (1 + np.abs(rng.normal(0, 0.03, 180))))
            estimate = paired_speedup(base, pruned)
            bench_session.record(KEY, SpeedupRecord.of(estimate, bound=1.1, outcome="pass", flops_ratio=0.66,
                                                       variant_keys={}, versions={"torch": "1"}))
            current = SpeedupRecord.of(estimate, flops_ratio=0.66, variant_keys={},
                                       versions={"torch": os.environ.get("TORCH", "1")})
            judge_against_stored(request, bench_session, KEY, "fake", current, f"{KEY.format()}: speedup {estimate.describe()}")

        def test_other():
            if os.environ.get("INTERRUPT") == "1":
                raise KeyboardInterrupt
            assert os.environ.get("FAIL_OTHER") != "1"

        """
    )


def test_gate_records_every_run_with_its_outcome_and_fails_with_figures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite_with_scripted_speedups(pytester)
    root = pytester.path / "baselines"
    common = ["-p", "no:cacheprovider", "--baselines-dir", str(root), "--backends", "pytorch"]
    for seed in range(5):
        monkeypatch.setenv("SEED", str(seed))
        pytester.runpytest_subprocess(*common, "--update-baselines").assert_outcomes(passed=1, skipped=2)
    (stored,) = root.glob("*/cpu.json")
    runs = json.loads(stored.read_text())["tests"]["test_speedup[fake-fastnas66-bs1]"]["runs"]
    assert [r["gate"] for r in runs] == ["ungated"] * 5 and all(r["recorded_at"] for r in runs)

    # A run that fails elsewhere is still recorded, with its gate's outcome.
    monkeypatch.setenv("FAIL_OTHER", "1")
    failed = pytester.runpytest_subprocess(*common, "--update-baselines")
    failed.assert_outcomes(failed=1, passed=2)
    failed.stdout.fnmatch_lines(["*this run was recorded in 1 entries of*with its outcomes*"])
    runs = json.loads(stored.read_text())["tests"]["test_speedup[fake-fastnas66-bs1]"]["runs"]
    assert len(runs) == 6 and runs[-1]["gate"] == "pass"
    before = stored.read_bytes()

    # An interrupted run is not recorded.
    monkeypatch.delenv("FAIL_OTHER")
    monkeypatch.setenv("INTERRUPT", "1")
    interrupted = pytester.runpytest_subprocess(*common, "--update-baselines")
    assert interrupted.ret == pytest.ExitCode.INTERRUPTED
    assert stored.read_bytes() == before
    monkeypatch.delenv("INTERRUPT")

    monkeypatch.setenv("PRUNED_MS", str(24 * 1.10))  # the pruned model 10% slower
    monkeypatch.setenv("TORCH", "2")
    slowed = pytester.runpytest_subprocess(*common)
    slowed.assert_outcomes(failed=1, passed=2)
    slowed.stdout.fnmatch_lines([
        ("*test_speedup[[]fake-fastnas66-bs1]: speedup 1.13*x (9*% CI*) vs stored speedup 1.2* over 6 runs*"
         "false-alarm rate 2.00%; p = *changed since the stored runs: torch 1 → 2*"),
        "*1 gate(s) judged, each at a one-sided false-alarm rate of 2%/1*",
        "*resolution on machine class*fake: the speedup drop these gates catch in ≥ 90% of runs is *%*",
    ])
    assert stored.read_bytes() == before  # comparing never writes

    # Recorded, the failed run is kept with its outcome but is no reference for the next run.
    recorded = pytester.runpytest_subprocess(*common, "--update-baselines")
    recorded.assert_outcomes(failed=1, passed=2)
    recorded.stdout.fnmatch_lines(["*the failed gates' figures (test_speedup[[]fake-fastnas66-bs1]) are kept*"])
    store = BaselineStore(root, stored.parent.name, "cpu")
    assert [r["gate"] for r in store.stored["test_speedup[fake-fastnas66-bs1]"]["runs"]][-1] == "fail"
    assert len(store.history("test_speedup[fake-fastnas66-bs1]")) == 6

    monkeypatch.setenv("PRUNED_MS", "24")
    monkeypatch.setenv("TORCH", "1")
    monkeypatch.setenv("SEED", "42")
    pytester.runpytest_subprocess(*common).assert_outcomes(passed=3)

    # An intended change: accepted, the window starts again (the gate waits for 5 new runs).
    monkeypatch.setenv("PRUNED_MS", str(24 * 1.10))
    from fastnas_bench.cli import main

    assert main(["baselines", "accept", "--baselines-dir", str(root), "--machine-class", stored.parent.name,
                 "--tests", "test_speedup[[]fake-*", "--reason", "a smaller cut, on purpose"]) == 0
    waiting = pytester.runpytest_subprocess(*common, "-rs")
    waiting.assert_outcomes(passed=1, skipped=2)
    waiting.stdout.fnmatch_lines(["*0 stored run(s) of test_speedup[[]fake-fastnas66-bs1]*since the shift accepted "
                                  "at * (a smaller cut, on purpose)*"])


def test_undecided_is_its_own_outcome(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["fastnas_bench.pytest_plugin.hooks"]')
    pytester.makepyfile(
        test_u="""
        from fastnas_bench.pytest_plugin.outcomes import report_outcome
        from fastnas_bench.measure.stats import PairedSpeedup
        from fastnas_bench.verdicts.outcome import at_least

        def test_straddles(request):
            estimate = PairedSpeedup(1.10, 1.08, 1.12, 90, 0.95)
            report_outcome(request, at_least(estimate, 1.10), "speedup " + estimate.describe())
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--backends", "pytorch", "-v")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_straddles UNDECIDED*", "*UNDECIDED*test_straddles: speedup 1.100x*",
                                 "*1 undecided*"])
    assert "passed" not in result.stdout.lines[-1]


def test_injected_runs_never_become_baselines(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest('pytest_plugins = ["fastnas_bench.pytest_plugin.hooks"]')
    monkeypatch.setenv("FASTNAS_BENCH_INJECT_SLOWDOWN", "onnxruntime:*=25%")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--update-baselines")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--update-baselines with FASTNAS_BENCH_INJECT_SLOWDOWN set*"])
    monkeypatch.setenv("FASTNAS_BENCH_INJECT_SLOWDOWN", "onnxruntime=25")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(["*item 'onnxruntime=25' must look like backend:variant=10%*"])


def test_a_gate_coarser_than_half_reports_instead_of_gating(pytester: pytest.Pytester) -> None:
    """Stored runs that scatter by tens of percent make a gate that only catches huge changes: it skips
    with its figures and says why, rather than fail on a burst or pass as if it had judged."""
    from fastnas_bench.host import machine_class

    root = pytester.path / "baselines"
    path = baseline_path(root, machine_class("cpu"), "cpu")
    for s in (1.0, 2.0, 1.4, 3.0, 1.1):
        write_baselines(path, machine_class("cpu"), "cpu",
                        {"test_speedup[fake-fastnas66-bs1]": {"speedup": s, "ci_low": s * 0.98, "ci_high": s * 1.02}})
    _plugin_with_session(pytester)
    pytester.makepyfile(test_coarse="""
        from fastnas_bench.pytest_plugin.outcomes import judge_against_stored
        from fastnas_bench.verdicts.records import SpeedupRecord, TestKey

        def test_speedup_regression(bench_session, request):
            current = SpeedupRecord(0.9, ci_low=0.88, ci_high=0.92)
            judge_against_stored(request, bench_session, TestKey("test_speedup", "fake", "fastnas66", 1), "fake",
                                 current, "speedup 0.900x")
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--baselines-dir", str(root), "--backends",
                                           "pytorch", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*above 50%, so they report instead of gating*",
                                 "*not gating (resolution *% > 50% on this machine): speedup 0.900x vs stored*"])


def test_accept_restarts_the_window_and_refuses_what_it_cannot_apply_to(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path, "cpuX-2cores-avx2", "cpu")
    with pytest.raises(BadInputError, match="no stored runs in"):
        store.accept("*", "upgrade")
    ids = ("test_speedup[onnxruntime-fastnas66-bs1]", "test_latency[pytorch-baseline-bs1]")
    for s in (1.30, 1.31, 1.29):
        store.append({i: SpeedupRecord(s, ci_low=s * 0.99, ci_high=s * 1.01) for i in ids},
                     {ids[0]: "pass", ids[1]: "fail" if s == 1.29 else "pass"})
    assert [len(store.history(i)) for i in ids] == [3, 2]  # a run its gate failed is kept, not read
    with pytest.raises(BadInputError, match=r"--tests 'test_x\*' matches no stored test id"):
        store.accept("test_x*", "upgrade")
    with pytest.raises(BadInputError, match="needs a reason"):
        store.accept("*", " ")
    assert store.accept("test_speedup[[]onnxruntime-*", "onnxruntime 1.32: faster kernels") == 1
    assert store.history(ids[0]) == [] and len(store.history(ids[1])) == 2  # the pattern chose one id
    store.append({ids[0]: SpeedupRecord(1.4, ci_low=1.39, ci_high=1.41)}, {})
    fresh = BaselineStore(tmp_path, "cpuX-2cores-avx2", "cpu")  # read back from the file
    assert [r["speedup"] for r in fresh.history(ids[0])] == [1.4] and fresh.history(ids[0])[0]["gate"] == "ungated"
    assert fresh.accepted_shift(ids[0])["reason"] == "onnxruntime 1.32: faster kernels"
    assert len(fresh.stored[ids[0]]["runs"]) == 4  # nothing before the shift was deleted


def test_baselines_show_lists_runs_outcomes_and_shifts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fastnas_bench.cli import main

    store = BaselineStore(tmp_path, "cpuX-2cores-avx2", "cpu")
    for outcome in ("pass", "fail", "pass"):
        store.append({"test_speedup[onnxruntime-fastnas66-bs1]": SpeedupRecord(1.3, ci_low=1.29, ci_high=1.31)},
                     {"test_speedup[onnxruntime-fastnas66-bs1]": outcome})
    args = ["baselines", "show", "--baselines-dir", str(tmp_path), "--machine-class", "cpuX-2cores-avx2"]
    assert main(args) == 0
    assert "test_speedup[onnxruntime-fastnas66-bs1]: 3 run(s) (fail 1, pass 2); 2 read by its gate" in capsys.readouterr().out
    assert main(["baselines", "accept", "--baselines-dir", str(tmp_path), "--machine-class", "cpuX-2cores-avx2",
                 "--tests", "nothing*", "--reason", "x"]) == 2
    assert "--tests 'nothing*' matches no stored test id" in capsys.readouterr().err


def test_schema_2_files_are_read_as_runs_before_any_shift(tmp_path: Path) -> None:
    path = baseline_path(tmp_path, "cpuX-2cores-avx2", "cpu")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": 2, "tests": {"t[a-b-bs1]": {"runs": [{"speedup": 1.2}] * 5}}}))
    store = BaselineStore(tmp_path, "cpuX-2cores-avx2", "cpu")
    assert len(store.history("t[a-b-bs1]")) == 5
    store.accept("*", "new runner image")
    assert store.history("t[a-b-bs1]") == []


def test_ab_verdicts_are_recorded_with_their_outcome(pytester: pytest.Pytester) -> None:
    _plugin_with_session(pytester)
    pytester.makepyfile(test_ab_fake="""
        from fastnas_bench.measure.ab import ABResult

        def test_ab(bench_session):
            result = ABResult(1.08, 1.05, 1.11, 0.95, 80, 8, (1.07, 1.09), 0.1, 30.0, 32.4)
            bench_session.ab_results["test_ab[onnxruntime-fastnas66-bs1]"] = (result, "fail")
        """)
    root = pytester.path / "baselines"
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--baselines-dir", str(root), "--backends", "pytorch",
                                  "--update-baselines").assert_outcomes(passed=1)
    (stored,) = root.glob("*/cpu.json")
    (run,) = json.loads(stored.read_text())["tests"]["test_ab[onnxruntime-fastnas66-bs1]"]["runs"]
    assert run["ratio"] == 1.08 and run["outcome"] == run["gate"] == "fail" and run["recorded_at"]


def test_failed_runs_never_push_out_the_history_they_are_judged_against(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path, "cpuX-2cores-avx2", "cpu")
    key = "test_speedup[onnxruntime-fastnas66-bs1]"
    for _ in range(6):
        store.append({key: SpeedupRecord(1.3, ci_low=1.29, ci_high=1.31)}, {key: "pass"})
    for _ in range(MAX_STORED_RUNS + 5):  # a regression that persists for weeks
        store.append({key: SpeedupRecord(1.1, ci_low=1.09, ci_high=1.11)}, {key: "fail"})
    runs = store.stored[key]["runs"]
    assert [r["gate"] for r in runs].count("fail") == MAX_STORED_RUNS
    assert len(store.history(key)) == 6 and all(r["speedup"] == 1.3 for r in store.history(key))


def test_holm_rejections_beyond_the_gates_own_failures_are_named() -> None:
    from fastnas_bench.pytest_plugin.outcomes import holm_rejections
    from fastnas_bench.pytest_plugin.session import GateResult

    def gate(p: float, outcome: str) -> GateResult:
        return GateResult("test_speedup[x-v-bs1]", "x", "speedup", 0.05, outcome, p)

    # Six gates at 2%/6 each when run; Holm then steps to 2%/5, 2%/4, ...
    gates = {"a": gate(0.001, "fail"), "b": gate(0.0038, "undecided"), "c": gate(0.0055, "pass"),
             "d": gate(0.3, "pass"), "e": gate(0.5, "pass"), "f": gate(0.9, "pass")}
    assert holm_rejections(gates) == ["b"]  # 0.0038 < 0.02/5; c: 0.0055 ≥ 0.02/4 stops
    assert holm_rejections({"a": gate(0.5, "pass")}) == []
