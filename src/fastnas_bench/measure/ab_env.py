"""Reference environments for A/B comparisons: a venv made from version specs, complete or absent.

``fastnas-bench ab-env ref onnxruntime==1.31.1`` makes ``ref/``: a venv holding what the A/B worker of
each named backend imports (:data:`BACKEND_NEEDS`), a user spec replacing the default of its project, and
a manifest (:data:`MANIFEST_NAME`) of what was asked and what pip installed. The venv is built in a
temporary sibling and renamed into place only after pip succeeded, so a failed install (a version that
does not exist, no network) leaves nothing under the final name that a later ``--reference ref`` would
trust. An existing environment is never overwritten.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from fastnas_bench.errors import BadInputError
from fastnas_bench.fsutil import atomic_directory, atomic_write_text

log = logging.getLogger(__name__)

#: The manifest in the environment's folder: requested specs, backends, ``pip freeze``, Python version, time.
MANIFEST_NAME = "fastnas-ab-env.json"


class EnvBuildError(RuntimeError):
    """Creating the venv, installing into it or importing from it failed; the message names what and why."""


@dataclass(frozen=True)
class Need:
    """A module an A/B worker imports, and the projects that provide it.

    Attributes:
        module: The import name.
        projects: Canonical names of the projects that install ``module``; the first is installed by
            default, and a user spec for any of them replaces it.
    """

    module: str
    projects: tuple[str, ...]


_NUMPY = Need("numpy", ("numpy",))

#: What the A/B worker of each backend imports; the keys are those of
#: :data:`fastnas_bench.measure.ab.WORKER_BACKENDS` (a unit test holds them equal).
BACKEND_NEEDS: dict[str, tuple[Need, ...]] = {
    # onnxruntime-gpu installs the same module (and runs on the CPU too); with both wheels installed the
    # one that came last wins and the ORT backend refuses the mix, so a spec for either replaces the default.
    "onnxruntime": (Need("onnxruntime", ("onnxruntime", "onnxruntime-gpu")), _NUMPY),
    "pytorch": (Need("torch", ("torch",)), Need("ultralytics", ("ultralytics",)), _NUMPY),
}

# Run by the new environment's python after the rename: every needed module imports, and every other
# requested project is installed and its public top-level modules import. Standard library only.
_CHECK = """
import importlib, importlib.metadata as md, json, re, sys
modules, projects = json.loads(sys.argv[1]), json.loads(sys.argv[2])
canonical = lambda name: re.sub(r"[-_.]+", "-", name).lower()
provides = {}
for top, dists in md.packages_distributions().items():
    for dist in dists:
        provides.setdefault(canonical(dist), []).append(top)
for project in projects:
    md.version(project)
    modules += [m for m in provides.get(canonical(project), []) if not m.startswith("_")]
for module in dict.fromkeys(modules):
    importlib.import_module(module)
print(json.dumps(sorted(set(modules))))
"""


def parse_requirement(spec: str) -> Requirement:
    """``spec`` as a pip requirement.

    Raises:
        BadInputError: naming a spec that is no valid requirement.
    """
    try:
        return Requirement(spec)
    except InvalidRequirement as e:
        reason = str(e).splitlines()[0] if str(e) else "invalid"
        raise BadInputError(f"requirement {spec!r} is not a valid spec: {reason}") from None


def install_specs(requirements: Sequence[str], backends: Sequence[str]) -> list[str]:
    """What pip installs: each backend's needs in order, a user spec replacing the default of its project.

    ``["onnxruntime==1.31.1"]`` with backend ``onnxruntime`` gives ``["onnxruntime==1.31.1", "numpy"]``;
    specs for projects no backend needs come last.

    Args:
        requirements: pip requirement specs, e.g. ``onnxruntime==1.31.1``.
        backends: Keys of :data:`BACKEND_NEEDS`.

    Raises:
        BadInputError: naming a spec that is no valid requirement, two specs for one project or module,
            or a backend no A/B worker runs.
    """
    unknown = [b for b in backends if b not in BACKEND_NEEDS]
    if unknown:
        raise BadInputError(f"A/B workers run {', '.join(BACKEND_NEEDS)}, not {', '.join(map(repr, unknown))}")
    given: dict[str, str] = {}
    for spec in requirements:
        name = canonicalize_name(parse_requirement(spec).name)
        if name in given:
            raise BadInputError(f"requirements {given[name]!r} and {spec!r} name the same project; give one")
        given[name] = spec.strip()
    chosen: list[str] = []
    for need in dict.fromkeys(n for b in backends for n in BACKEND_NEEDS[b]):  # numpy once for both backends
        asked = [p for p in need.projects if p in given]
        if len(asked) > 1:
            raise BadInputError(f"requirements {' and '.join(repr(given[p]) for p in asked)} both install module "
                                f"{need.module!r}; give one")
        chosen.append(given.pop(asked[0]) if asked else need.projects[0])
    return chosen + list(given.values())


def make_reference_env(path: Path, requirements: Sequence[str], backends: Sequence[str], *,
                       requirements_file: Path | None = None, pip_args: Sequence[str] = (),
                       python: str = sys.executable) -> Path:
    """Make the venv ``path`` for ``fastnas-bench ab --reference`` (``--ab-reference``); return its python.

    Args:
        path: The environment's folder; absent or empty.
        requirements: pip specs, e.g. ``onnxruntime==1.31.1``; each replaces the default of its project.
        backends: A/B worker backends the environment must run (keys of :data:`BACKEND_NEEDS`); may be
            empty when ``requirements`` or ``requirements_file`` name everything.
        requirements_file: A lock file (``pip freeze`` output) installed with ``-r``.
        pip_args: Extra ``pip install`` arguments, e.g. ``--no-index --find-links DIR``.
        python: The interpreter that creates the venv; the environment runs its Python version.

    Raises:
        BadInputError: naming a bad spec, an unknown backend, a missing requirements file or an existing
            non-empty ``path``; or for an empty request.
        EnvBuildError: when venv, pip or the import check fails (naming the specs and pip's last error
            line); nothing is left at ``path``.
    """
    specs = install_specs(requirements, backends)
    if requirements_file is not None and not requirements_file.is_file():
        raise BadInputError(f"requirements file {str(requirements_file)!r} does not exist")
    if not specs and requirements_file is None:
        raise BadInputError("nothing to install: give a spec, a backend or a requirements file")
    path = path.expanduser().absolute()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BadInputError(f"{str(path)!r} exists and is not empty; an environment is never overwritten")
    install = [*specs, *(["-r", str(requirements_file.absolute())] if requirements_file is not None else [])]
    what = " ".join(install)
    log.info("ab-env: making %s with %s", path, what)
    with atomic_directory(path) as built:
        built.chmod(0o755)  # mkdtemp makes the folder private; an environment others run is not
        _run([python, "-m", "venv", str(built)], f"{python} -m venv failed")
        # A venv's scripts name its folder: bin/pip's shebang and bin/activate would point at this
        # temporary folder after the rename (bin/python is a symlink to the base interpreter and works
        # from anywhere). So pip always runs as `<env>/bin/python -m pip`, and the scripts are retargeted
        # to the final folder before the rename.
        env_python = str(built / "bin" / "python")
        log.info("ab-env: pip install %s (pip's output with -v)", what)
        _run([env_python, "-m", "pip", "install", *pip_args, *install], f"pip could not install {what} into {path}")
        freeze = _run([env_python, "-m", "pip", "freeze"], "pip freeze failed").splitlines()
        version = _run([env_python, "-c", "import platform; print(platform.python_version())"],
                       "the new environment's python does not run").strip()
        # pip_args stay out: an index URL may carry credentials.
        manifest = {"requested": list(requirements), "backends": list(backends),
                    "requirements_file": str(requirements_file) if requirements_file is not None else None,
                    "installed_specs": install, "pip_freeze": freeze, "python": version,
                    "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        atomic_write_text(built / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
        _retarget_scripts(built, path)
    final_python = path / "bin" / "python"
    modules = list(dict.fromkeys(n.module for b in backends for n in BACKEND_NEEDS[b]))
    needed = {p for b in backends for n in BACKEND_NEEDS[b] for p in n.projects}
    projects = [name for name in (canonicalize_name(Requirement(s).name) for s in requirements) if name not in needed]
    try:
        imported = _run([str(final_python), "-c", _CHECK, json.dumps(modules), json.dumps(projects)],
                        f"{final_python} cannot import what was installed")
    except EnvBuildError:
        shutil.rmtree(path, ignore_errors=True)  # made by this call a moment ago: nothing half-usable stays
        raise
    log.info("ab-env: %s imports %s", final_python, ", ".join(json.loads(imported)) or "(no modules)")
    return final_python


def _child_env() -> dict[str, str]:
    """This process's environment without what would let the new venv see this one's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # The version check's notice would end pip's stderr, whose last line names the failure; the import
    # check imports Ultralytics, which must not download or install anything.
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", YOLO_OFFLINE="true", YOLO_AUTOINSTALL="false")
    return env


def _run(cmd: list[str], failure: str) -> str:
    """Run ``cmd`` and return its stdout.

    Raises:
        EnvBuildError: ``failure``, then the last line of the command's stderr.
    """
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), check=False)
    except OSError as e:
        raise EnvBuildError(f"{failure}: {e}") from None
    if proc.stdout or proc.stderr:
        log.debug("%s%s", proc.stdout, proc.stderr)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("[notice]")]
        raise EnvBuildError(f"{failure}: {lines[-1] if lines else f'exit code {proc.returncode}'}")
    return proc.stdout


def _retarget_scripts(built: Path, final: Path) -> None:
    """Replace the folder's name ``built`` by ``final`` in the venv's text scripts and ``pyvenv.cfg``."""
    old, new = str(built), str(final)
    for script in [*(built / "bin").iterdir(), built / "pyvenv.cfg"]:
        if script.is_symlink() or not script.is_file():
            continue
        try:
            text = script.read_text()
        except UnicodeDecodeError:  # a compiled program: left as it is
            continue
        if old in text:
            script.write_text(text.replace(old, new))  # rewritten in place: the mode (executable) stays
