"""Stored baselines per machine class, and the regression gates that read them.

A baseline file ``baselines/<machine-class>/<profile>.json`` holds, per test id, the last
``MAX_STORED_RUNS`` runs: for ``test_speedup`` ids the paired speedup with its interval, for
``test_latency`` ids the median latency in units of the calibration workload with its interval;
each with the package versions and variant builds it was measured on. A gate's tolerance is the
spread of those runs (:func:`fastnas_bench.verdicts.drop_gate`), never a number set by hand. A new
version or a rebuilt variant is compared like any other run; the failure message names it.

Files are only written by ``--update-baselines`` at the end of a session in which every test
passed, atomically (temporary file + rename), so a failed or partial run never changes them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from fastnas_bench.errors import BadInputError
from fastnas_bench.verdicts import MIN_STORED_RUNS, GateVerdict, PairedSpeedup, drop_gate, median_interval

SCHEMA_VERSION = 2
#: Runs kept per test id: enough for a spread, recent enough to follow slow changes of the class.
MAX_STORED_RUNS = 20


def speedup_gate(runs: list[dict[str, Any]], current: PairedSpeedup) -> GateVerdict | None:
    """The current speedup against stored runs' speedups (log units); ``None`` with too few runs."""
    if len(runs) < MIN_STORED_RUNS:
        return None
    return drop_gate(
        [math.log(r["speedup"]) for r in runs],
        [(math.log(r["ci_high"]) - math.log(r["ci_low"])) / 2 for r in runs],
        math.log(current.speedup), math.log(current.ci_low), math.log(current.ci_high),
    )


def latency_gate(runs: list[dict[str, Any]], current: dict[str, Any]) -> GateVerdict | None:
    """A current calibrated median latency against stored runs' (log units, turned around so that
    slower is lower); ``None`` with too few runs."""
    if len(runs) < MIN_STORED_RUNS:
        return None
    return drop_gate(
        [-math.log(r["norm_p50"]) for r in runs],
        [(math.log(r["norm_ci_high"]) - math.log(r["norm_ci_low"])) / 2 for r in runs],
        -math.log(current["norm_p50"]), -math.log(current["norm_ci_high"]), -math.log(current["norm_ci_low"]),
    )


def calibrated_latency(samples_ms: list[float], calibration_ms: float | None) -> dict[str, float]:
    """Median latency in units of the calibration workload, with its distribution-free interval."""
    unit = calibration_ms or 1.0
    median, low, high, _ = median_interval([x / unit for x in samples_ms])
    return {"norm_p50": median, "norm_ci_low": low, "norm_ci_high": high}


def changed_versions(runs: list[dict[str, Any]], current: dict[str, str]) -> list[str]:
    """``name old → new`` for every package whose version differs from the newest stored run."""
    stored = runs[-1].get("versions", {}) if runs else {}
    return [f"{name} {stored.get(name, '?')} → {version}" for name, version in sorted(current.items())
            if stored.get(name) != version]


def gate_message(head: str, what: str, verdict: GateVerdict, runs: list[dict[str, Any]], versions: dict[str, str],
                 variant_keys: dict[str, str]) -> str:
    """One line: the current figure, the stored distribution, the limit, and what changed since."""
    center, limit = math.exp(verdict.stored_center), math.exp(verdict.limit)
    if what == "latency":  # stored turned around (see latency_gate): back to calibrated latency
        center, limit = 1 / center, 1 / limit
    bound = "≥" if what == "speedup" else "≤"
    changes = changed_versions(runs, versions)
    stored_keys = runs[-1].get("variant_keys", {}) if runs else {}
    rebuilt = [name for name, key in variant_keys.items() if stored_keys.get(name) not in (None, key)]
    return (f"{head} vs stored {what} {center:.3f} over {verdict.stored_runs} runs (spread ±{verdict.stored_spread:.1%}); "
            f"explained by them: {bound} {limit:.3f}; this gate's resolution {verdict.resolution:.1%}"
            + (f"; changed since the stored runs: {', '.join(changes)}" if changes else "; no version changed")
            + (f"; rebuilt since: {', '.join(rebuilt)}" if rebuilt else ""))


def baseline_path(root: Path, machine_class: str, profile: str) -> Path:
    return root / machine_class / f"{profile}.json"


def _load_doc(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadInputError(f"baseline file {path} is unreadable: {e}") from None
    if doc.get("schema") != SCHEMA_VERSION:
        raise BadInputError(f"baseline file {path} has schema {doc.get('schema')!r}, expected {SCHEMA_VERSION}")
    return dict(doc)


def load_baselines(path: Path) -> dict[str, dict[str, Any]]:
    """Stored entries by test id; empty if the file does not exist.

    Raises:
        BadInputError: if the file exists but is unreadable or of another schema.
    """
    return dict(_load_doc(path).get("tests", {}))


def write_baselines(path: Path, machine_class: str, profile: str, produced: dict[str, dict[str, Any]]) -> None:
    """Atomically append this run's entries to ``path`` (the last ``MAX_STORED_RUNS`` kept per id)."""
    old = _load_doc(path)
    tests = {k: {"runs": list(v.get("runs", []))} for k, v in old.get("tests", {}).items()}
    for test_id, entry in produced.items():
        runs = tests.setdefault(test_id, {"runs": []})["runs"]
        runs.append(entry)
        del runs[:-MAX_STORED_RUNS]
    doc = {"schema": SCHEMA_VERSION, "machine_class": machine_class, "profile": profile, "tests": tests}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
