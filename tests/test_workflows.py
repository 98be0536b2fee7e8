"""Every GitHub Actions workflow is valid against GitHub's workflow schema (offline: check-jsonschema
vendors it), its jobs' `needs` and `matrix.*` references resolve, and the fleet nightly keeps its shape:
build, then one timing job per machine class, one at a time per machine, then the report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastnas_bench.variants.profiles import PROFILES

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
FLEET = REPO / ".github" / "workflows" / "nightly-fleet.yml"


def _schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against its vendored copy of the GitHub workflow schema (SchemaStore's)."""
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is not installed (pip install 'fastnas-bench[test]')")
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, check=False, timeout=120)


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _jobs(path: Path) -> dict[str, dict[str, Any]]:
    return _load(path)["jobs"]


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def _include(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job["strategy"]["matrix"].get("include", [])


def test_there_are_workflows() -> None:
    assert FLEET in WORKFLOWS, [p.name for p in WORKFLOWS]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_matches_the_github_schema(path: Path) -> None:
    out = _schema_check(path)
    assert out.returncode == 0, f"{path.name}:\n{out.stdout}{out.stderr}"


@pytest.mark.parametrize(("line", "replacement", "named"), [
    ("    runs-on: ${{ matrix.label }}\n", "", "runs-on"),
    ("    timeout-minutes: 240\n", "    timeout-minutes: [240]\n", "timeout-minutes"),
], ids=["job-without-runs-on", "timeout-not-a-number"])
def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path, line: str, replacement: str, named: str) -> None:
    """The fleet workflow with one defect: the check must fail and name the offending key."""
    text = FLEET.read_text()
    assert line in text, f"{FLEET.name} no longer has {line.strip()!r}: pick another defect"
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace(line, replacement, 1))
    out = _schema_check(broken)
    assert out.returncode == 1, f"check-jsonschema accepted a workflow with {named} broken:\n{out.stdout}{out.stderr}"
    assert named in out.stdout + out.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_needs_name_jobs_of_the_same_workflow(path: Path) -> None:
    jobs = _jobs(path)
    unknown = {name: need for name, job in jobs.items() for need in _needs(job) if need not in jobs}
    assert not unknown, f"{path.name}: `needs` names no job of this workflow: {unknown}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_matrix_references_are_defined_by_every_entry(path: Path) -> None:
    """A `matrix.x` that one `include` entry lacks reads as an empty string on that runner, silently."""
    for name, job in _jobs(path).items():
        used = set(re.findall(r"\bmatrix\.([A-Za-z_][\w-]*)", json.dumps(job)))
        if "strategy" not in job:
            assert not used, f"{path.name}: job {name} uses matrix.{sorted(used)} without a matrix"
            continue
        matrix = job["strategy"]["matrix"]
        axes = set(matrix) - {"include", "exclude"}
        for entry in _include(job):
            missing = used - axes - set(entry)
            assert not missing, f"{path.name}: job {name}'s matrix entry {entry} lacks {sorted(missing)}"
        if not matrix.get("include"):
            assert used <= axes, f"{path.name}: job {name} uses matrix.{sorted(used - axes)}, not an axis"


def test_fleet_runs_build_then_bench_then_report() -> None:
    jobs = _jobs(FLEET)
    assert set(jobs) == {"build", "bench", "report"}
    assert _needs(jobs["bench"]) == ["build"]
    assert _needs(jobs["report"]) == ["bench"]
    # The report also shows what the machine classes stored when a bench job failed.
    assert jobs["report"]["if"] == "${{ !cancelled() }}"


def test_fleet_bench_entries_name_a_runner_and_a_known_profile() -> None:
    bench = _jobs(FLEET)["bench"]
    assert bench["strategy"]["fail-fast"] is False
    entries = _include(bench)
    assert entries, "the bench matrix lists no runner"
    for entry in entries:
        assert entry.get("name") and entry.get("label") and entry.get("profile"), entry
        assert "self-hosted" in entry["label"], f"{entry['name']}: timing needs a runner of its own: {entry['label']}"
        assert entry["profile"] in PROFILES, f"{entry['name']}: unknown profile {entry['profile']!r}"
        # A cuda profile without --gpu would time nothing on the GPU; --gpu with a CPU profile is refused.
        assert ("--gpu" in entry["pytest_args"].split()) == (PROFILES[entry["profile"]].device == "cuda"), entry
    names = [e["name"] for e in entries]
    labels = [tuple(e["label"]) for e in entries]
    assert len(set(names)) == len(names), f"runner names repeat: {names}"
    assert len(set(labels)) == len(labels), f"two entries select the same runners: {labels}"


def test_fleet_times_one_job_at_a_time_per_runner() -> None:
    concurrency = _jobs(FLEET)["bench"]["concurrency"]
    assert "${{ matrix.name }}" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False


def test_fleet_builds_and_reports_the_profiles_it_benchmarks() -> None:
    jobs = _jobs(FLEET)
    benched = {e["profile"] for e in _include(jobs["bench"])}
    built = {e["profile"] for e in _include(jobs["build"])}
    assert built <= benched, f"built but never benchmarked: {sorted(built - benched)}"
    assert set(jobs["report"]["strategy"]["matrix"]["profile"]) == benched


def test_fleet_records_runs_in_the_results_store() -> None:
    jobs = _jobs(FLEET)
    bench_runs = " ".join(step.get("run", "") for step in jobs["bench"]["steps"])
    report_runs = " ".join(step.get("run", "") for step in jobs["report"]["steps"])
    for flag in ("--fastnas-profile ${{ matrix.profile }}", "--update-baselines", '--results-store "$RESULTS_URL"',
                 "--benchmark-autosave"):
        assert flag in bench_runs, f"the bench job's pytest lacks {flag}"
    assert 'fastnas-bench report --results-store "$RESULTS_URL"' in report_runs
    # PyYAML reads the key `on` as True.
    triggers = _load(FLEET)[True]
    assert "schedule" in triggers and "pytest_args" in triggers["workflow_dispatch"]["inputs"]
