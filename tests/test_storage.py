"""Saved runs: per-machine-class storage, `pytest-benchmark compare` reads them, foreign runs refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest('pytest_plugins = ["fastnas_bench.pytest_plugin.hooks"]\n')
    pytester.makepyfile(test_bench="def test_latency(benchmark):\n    benchmark(sum, range(100))\n")
    return pytester


def _saved(pytester: pytest.Pytester) -> list:
    return sorted((pytester.path / ".benchmarks").glob("*/*/*.json"))


def test_runs_are_stored_per_machine_class_and_compare_reads_them(project: pytest.Pytester) -> None:
    for _ in range(2):
        project.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-autosave").assert_outcomes(passed=1)
    saved = _saved(project)
    assert len(saved) == 2
    info = json.loads(saved[0].read_text())["machine_info"]["fastnas_bench"]
    assert saved[0].parent.parent.name == info["machine_class"]  # .benchmarks/<class>/<pytest-benchmark id>/
    assert info["versions"]["torch"] != "absent"
    result = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", "--group-by=name", *map(str, saved)],
        capture_output=True, text=True, cwd=project.path, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test_latency") >= 2


def test_comparing_with_another_machine_class_is_refused(project: pytest.Pytester) -> None:
    project.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-autosave").assert_outcomes(passed=1)
    (saved,) = _saved(project)
    doc = json.loads(saved.read_text())
    doc["machine_info"]["fastnas_bench"]["machine_class"] = "NVIDIA_H100-drv550"
    saved.write_text(json.dumps(doc))
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-compare")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*refusing to compare with a run from machine class 'NVIDIA_H100-drv550*"])
