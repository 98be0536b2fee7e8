"""Stored baselines: the statistical verdict, matching, atomic writes, refusal across machines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fastnas_bench.baselines import SCHEMA_VERSION, baseline_path, load_baselines, regression_verdict, write_baselines
from fastnas_bench.errors import BadInputError

REPO = Path(__file__).resolve().parents[1]


def _noisy(median_ms: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Shared-machine noise: jitter plus occasional large outliers.
    samples = median_ms * (1 + rng.normal(0, 0.03, n))
    spikes = rng.random(n) < 0.1
    samples[spikes] *= rng.uniform(1.2, 2.0, spikes.sum())
    return samples


def test_unchanged_latency_never_flags() -> None:
    stored = _noisy(50.0, 30, seed=0)
    flagged = [regression_verdict(stored, _noisy(50.0, 30, seed=s)).regressed for s in range(1, 51)]
    assert not any(flagged)


def test_clear_slowdown_is_flagged_with_numbers() -> None:
    verdict = regression_verdict(_noisy(50.0, 30, 0), _noisy(60.0, 30, 1), tolerance=0.10)
    assert verdict.regressed and verdict.median_ratio > 1.1 and verdict.p_value < 0.01 and verdict.ci_low > 1
    text = verdict.describe("test_latency[onnxruntime-fastnas66-bs1]", 50.0, 60.0, 0.10)
    assert "onnxruntime-fastnas66-bs1" in text and "60.000 ms vs stored 50.000 ms" in text and "+10%" in text


def test_significant_but_small_slowdown_is_not_a_regression() -> None:
    # 4% slower with tight noise is significant, but below the minimum effect size.
    rng = np.random.default_rng(0)
    stored, current = 50 + rng.normal(0, 0.2, 50), 52 + rng.normal(0, 0.2, 50)
    verdict = regression_verdict(stored, current, tolerance=0.10)
    assert verdict.p_value < 1e-6 and not verdict.regressed


def test_too_few_samples() -> None:
    with pytest.raises(ValueError, match="≥ 5 samples"):
        regression_verdict([1.0, 2.0], [1.0] * 10)


def test_write_is_atomic_merge_and_schema_checked(tmp_path: Path) -> None:
    path = baseline_path(tmp_path, "cpuX-2cores-ort1", "cpu")
    write_baselines(path, "cpuX-2cores-ort1", "cpu", {"a": {"latency_p50_ms": 1.0}})
    write_baselines(path, "cpuX-2cores-ort1", "cpu", {"b": {"latency_p50_ms": 2.0}})
    assert set(load_baselines(path)) == {"a", "b"}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    assert load_baselines(tmp_path / "absent.json") == {}
    path.write_text(json.dumps({"schema": SCHEMA_VERSION + 1, "tests": {}}))
    with pytest.raises(BadInputError, match="schema"):
        load_baselines(path)


def _suite_with_fake_measurer(pytester: pytest.Pytester) -> None:
    """A pytester project that uses the real plugin and baseline hooks with scripted latencies."""
    pytester.makeconftest(
        """
        import pytest
        pytest_plugins = ["fastnas_bench.plugin"]

        @pytest.fixture(scope="session")
        def baselines(pytestconfig):
            from fastnas_bench.plugin import BASELINES_KEY
            return pytestconfig.stash[BASELINES_KEY]
        """
    )
    pytester.makepyfile(
        test_fake="""
        import os
        import numpy as np
        import pytest
        from fastnas_bench.baselines import regression_verdict

        def test_latency_regression(baselines):
            rng = np.random.default_rng(int(os.environ.get("SEED", "0")))
            current = list(float(os.environ.get("MEDIAN_MS", "10")) * (1 + rng.normal(0, 0.02, 30)))
            key = "test_latency[fake-fastnas66-bs1]"
            baselines.produced[key] = {"latency_p50_ms": float(np.median(current)), "samples_ms": current}
            if baselines.update:
                pytest.skip("recording")
            stored = baselines.stored[key]
            verdict = regression_verdict(stored["samples_ms"], current)
            assert not verdict.regressed, verdict.describe(key, stored["latency_p50_ms"], float(np.median(current)), 0.1)

        def test_other():
            assert os.environ.get("FAIL_OTHER") != "1"
        """
    )


def test_failing_run_leaves_stored_baselines_byte_identical(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _suite_with_fake_measurer(pytester)
    root = pytester.path / "baselines"
    common = ["-p", "no:cacheprovider", "--baselines-dir", str(root), "--backends", "pytorch"]
    first = pytester.runpytest_subprocess(*common, "--update-baselines")
    first.assert_outcomes(passed=1, skipped=1)
    (stored,) = root.glob("*/cpu.json")
    before = stored.read_bytes()

    monkeypatch.setenv("FAIL_OTHER", "1")
    monkeypatch.setenv("MEDIAN_MS", "20")
    failed = pytester.runpytest_subprocess(*common, "--update-baselines")
    failed.assert_outcomes(failed=1, skipped=1)
    failed.stdout.fnmatch_lines(["*baselines NOT updated: the run did not pass*"])
    assert stored.read_bytes() == before

    monkeypatch.delenv("FAIL_OTHER")
    slowed = pytester.runpytest_subprocess(*common)
    slowed.assert_outcomes(failed=1, passed=1)
    slowed.stdout.fnmatch_lines(["*test_latency[[]fake-fastnas66-bs1]: median 19.9* ms vs stored 9.9* ms*Mann-Whitney*"])
    assert stored.read_bytes() == before  # comparing never writes

    monkeypatch.setenv("MEDIAN_MS", "10")
    for seed in range(1, 4):
        monkeypatch.setenv("SEED", str(seed))
        pytester.runpytest_subprocess(*common).assert_outcomes(passed=2)


def test_calibration_cancels_a_uniformly_slower_machine() -> None:
    from fastnas_bench.baselines import normalized_samples

    stored = {"samples_ms": list(_noisy(50.0, 30, 0)), "calibration_ms": 2.0}
    # The whole machine runs 1.8x slower this hour: the model and the calibration workload alike.
    slower = {"samples_ms": list(_noisy(90.0, 30, 1)), "calibration_ms": 3.6}
    assert regression_verdict(stored["samples_ms"], slower["samples_ms"]).regressed
    assert not regression_verdict(normalized_samples(stored), normalized_samples(slower)).regressed
    # A model that got slower on an unchanged machine is still caught.
    worse = {"samples_ms": list(_noisy(65.0, 30, 2)), "calibration_ms": 2.0}
    assert regression_verdict(normalized_samples(stored), normalized_samples(worse)).regressed
    assert normalized_samples({"samples_ms": [1.0, 2.0]}) == [1.0, 2.0]


def test_tolerance_is_stored_per_machine_class(tmp_path: Path) -> None:
    from fastnas_bench.baselines import stored_tolerance

    path = tmp_path / "cls" / "cpu.json"
    write_baselines(path, "cls", "cpu", {"a": {}}, tolerance=0.3)
    write_baselines(path, "cls", "cpu", {"b": {}})  # a later update keeps the recorded tolerance
    assert stored_tolerance(path) == 0.3 and set(load_baselines(path)) == {"a", "b"}
    assert stored_tolerance(tmp_path / "none.json") is None
