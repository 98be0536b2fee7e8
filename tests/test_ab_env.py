"""``fastnas-bench ab-env``: a reference environment is made complete, from what was asked, or not at all.

The environments here are real venvs with pip; a wheel built in the test stands in for onnxruntime, so
nothing is downloaded (``--no-index``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastnas_bench.cli import main
from fastnas_bench.errors import BadInputError
from fastnas_bench.measure.ab import WORKER_BACKENDS
from fastnas_bench.measure.ab_env import (
    BACKEND_NEEDS,
    MANIFEST_NAME,
    EnvBuildError,
    install_specs,
    make_reference_env,
)

PROBE = "fastnas-tiny-probe"


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one tiny wheel, ``fastnas-tiny-probe==0.1`` (module ``fastnas_tiny_probe``)."""
    root = tmp_path_factory.mktemp("probe")
    project, wheels = root / "project", root / "wheels"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{PROBE}"\nversion = "0.1"\n\n[tool.setuptools]\npy-modules = ["fastnas_tiny_probe"]\n')
    (project / "fastnas_tiny_probe.py").write_text("VALUE = 42\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(wheels), str(project)], check=True, capture_output=True)
    return wheels


def _offline(wheels: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheels)]


def test_the_needs_are_those_of_the_worker_backends() -> None:
    assert set(BACKEND_NEEDS) == set(WORKER_BACKENDS)
    for backend, needs in BACKEND_NEEDS.items():
        assert [n.module for n in needs] == WORKER_BACKENDS[backend].split(", ")


def test_a_user_spec_replaces_the_default_of_its_project() -> None:
    assert install_specs(["onnxruntime==1.31.1"], ["onnxruntime"]) == ["onnxruntime==1.31.1", "numpy"]
    # Canonical names: NumPy is numpy; numpy once for both backends; other projects come last.
    assert install_specs(["NumPy<2", "pillow"], ["onnxruntime", "pytorch"]) == [
        "onnxruntime", "NumPy<2", "torch", "ultralytics", "pillow"]
    # onnxruntime-gpu installs the same module: it replaces onnxruntime, never joins it.
    assert install_specs(["onnxruntime-gpu==1.32.0"], ["onnxruntime"]) == ["onnxruntime-gpu==1.32.0", "numpy"]
    assert install_specs([], []) == []


@pytest.mark.parametrize("specs, named", [
    (["onnxruntime=="], "'onnxruntime=='"),
    (["not a spec!"], "'not a spec!'"),
    (["numpy<2", "numpy>=1.26"], "'numpy>=1.26'"),
    (["onnxruntime==1.31.1", "onnxruntime-gpu==1.31.1"], "'onnxruntime-gpu==1.31.1'"),
])
def test_a_bad_spec_is_named(tmp_path: Path, specs: list[str], named: str) -> None:
    with pytest.raises(BadInputError, match=re.escape(named)) as caught:
        make_reference_env(tmp_path / "ref", specs, ["onnxruntime"])
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.iterdir())


def test_an_unknown_backend_is_named(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="'tensorrt'"):
        make_reference_env(tmp_path / "ref", [], ["onnxruntime", "tensorrt"])
    assert not list(tmp_path.iterdir())


def test_a_missing_requirements_file_and_an_empty_request_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="absent.lock"):
        make_reference_env(tmp_path / "ref", [], ["onnxruntime"], requirements_file=tmp_path / "absent.lock")
    with pytest.raises(BadInputError, match="nothing to install"):
        make_reference_env(tmp_path / "ref", [], [])
    assert not list(tmp_path.iterdir())


def test_an_existing_environment_is_never_overwritten(tmp_path: Path) -> None:
    existing = tmp_path / "ref"
    existing.mkdir()
    (existing / "keep.txt").write_text("an environment someone relies on")
    with pytest.raises(BadInputError, match=str(existing)):
        make_reference_env(existing, ["onnxruntime==1.31.1"], ["onnxruntime"])
    assert [p.name for p in tmp_path.iterdir()] == ["ref"]
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    assert (existing / "keep.txt").read_text() == "an environment someone relies on"


def test_an_environment_is_made_renamed_into_place_and_works(tmp_path: Path, wheel_dir: Path) -> None:
    parent = tmp_path / "envs"
    path = parent / "ref"
    python = make_reference_env(path, [f"{PROBE}==0.1"], [], pip_args=_offline(wheel_dir))
    assert python == path / "bin" / "python"
    assert [p.name for p in parent.iterdir()] == ["ref"]  # no temporary folder left beside it
    out = subprocess.run([str(python), "-c", "import fastnas_tiny_probe, sys; print(fastnas_tiny_probe.VALUE, sys.prefix)"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["42", str(path)]
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    assert manifest["requested"] == [f"{PROBE}==0.1"] and manifest["backends"] == []
    assert f"{PROBE}==0.1" in [line.replace("_", "-").lower() for line in manifest["pip_freeze"]]
    assert manifest["python"] == subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                                                capture_output=True, text=True, check=True).stdout.strip()
    assert manifest["created_utc"].endswith("+00:00")
    # The scripts name the final folder, not the one the venv was built in: bin/pip runs after the rename.
    assert subprocess.run([str(path / "bin" / "pip"), "--version"], capture_output=True, check=False).returncode == 0
    assert f'"{path}"' in (path / "bin" / "activate").read_text()
    assert ".tmp-" not in (path / "bin" / "pip").read_text()


def test_a_failed_install_leaves_nothing_and_names_the_spec(tmp_path: Path, wheel_dir: Path) -> None:
    parent = tmp_path / "envs"
    path = parent / "ref"
    with pytest.raises(EnvBuildError) as caught:
        make_reference_env(path, ["fastnas-absent-probe==1.0"], [], pip_args=_offline(wheel_dir))
    message = str(caught.value)
    assert "fastnas-absent-probe==1.0" in message and "No matching distribution" in message, message
    assert "\n" not in message
    assert not path.exists()
    assert not list(parent.iterdir())  # the temporary sibling is gone too


def test_cli_makes_an_environment_from_a_lock_file(tmp_path: Path, wheel_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "ab-reference.lock"
    lock.write_text(f"# the accepted environment\n{PROBE}==0.1\n")
    path = tmp_path / "ref"
    assert main(["ab-env", str(path), "--backends", "", "--requirements", str(lock),
                 "--pip-arg=--no-index", f"--pip-arg=--find-links={wheel_dir}"]) == 0
    assert capsys.readouterr().out.strip() == str(path / "bin" / "python")
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    assert manifest["requirements_file"] == str(lock) and manifest["installed_specs"] == ["-r", str(lock)]
    assert f"{PROBE}==0.1" in [line.replace("_", "-").lower() for line in manifest["pip_freeze"]]


def test_cli_names_a_bad_spec_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ab-env", str(tmp_path / "ref"), "onnxruntime=="]) == 2
    assert "'onnxruntime=='" in capsys.readouterr().err
    assert not (tmp_path / "ref").exists()
