"""The README's commands for saved runs work as written, on a run saved the way the suite saves it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _readme_command(prefix: str) -> str:
    lines = [ln.split("#")[0].strip() for ln in (REPO / "README.md").read_text().splitlines()]
    matches = [ln for ln in lines if ln.startswith(prefix)]
    assert matches, f"README has no `{prefix}` command"
    return matches[0]


def test_readme_compare_command_finds_the_saved_runs(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["fastnas_bench.pytest_plugin.hooks"]')
    pytester.makepyfile(test_b="""
        def test_latency(benchmark):
            benchmark.pedantic(lambda: sum(range(100)), rounds=5, iterations=1)
    """)
    for _ in range(2):  # two saved runs, as after two nights
        pytester.runpytest_subprocess("-p", "no:cacheprovider", "--backends", "pytorch",
                                      "--benchmark-autosave").assert_outcomes(passed=1)
    command = _readme_command("pytest-benchmark compare")
    glob = command.split()[-1]
    assert len(list(pytester.path.glob(glob))) == 2, f"{glob!r} does not match where runs are saved"
    tool = Path(sys.executable).parent / "pytest-benchmark"  # the one installed beside this Python
    out = subprocess.run(re.sub(r"^pytest-benchmark", str(tool), command), shell=True, cwd=pytester.path,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "test_latency" in out.stdout
