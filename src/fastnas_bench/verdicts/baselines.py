"""Stored baselines per machine class: the run history the regression gates read.

A baseline file ``baselines/<machine-class>/<profile>.json`` holds, per test id, the last
``MAX_STORED_RUNS`` runs: for ``test_speedup`` ids the paired speedup with its interval, for
``test_latency`` ids the median latency in units of the calibration workload with its interval;
each with the package versions and variant builds it was measured on. The gates that read them are
in :mod:`fastnas_bench.verdicts.gates`.

Files are only written by ``--update-baselines`` at the end of a session in which every test
passed, atomically (temporary file + rename), so a failed or partial run never changes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastnas_bench.errors import BadInputError
from fastnas_bench.fsutil import atomic_write_text
from fastnas_bench.verdicts.records import STORED_RECORDS, LatencyRecord, SpeedupRecord, TestKey

SCHEMA_VERSION = 2
#: Runs kept per test id: enough for a spread, recent enough to follow slow changes of the class.
MAX_STORED_RUNS = 20


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
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


class BaselineStore:
    """The stored runs of one machine class and profile, read once, as typed records.

    Args:
        root: Baselines root (``<root>/<machine class>/<profile>.json``).
        machine_class: The machine class runs are compared within.
        profile: The profile name.
    """

    def __init__(self, root: Path, machine_class: str, profile: str) -> None:
        self.path = baseline_path(root, machine_class, profile)
        self.machine_class = machine_class
        self.profile = profile
        self._stored: dict[str, dict[str, Any]] | None = None

    @property
    def stored(self) -> dict[str, dict[str, Any]]:
        """Stored entries by test id, as in the file (read on first use)."""
        if self._stored is None:
            self._stored = load_baselines(self.path)
        return self._stored

    def runs(self, key: TestKey) -> list[SpeedupRecord | LatencyRecord]:
        """The stored runs of ``key``, oldest first, as the record type of its test."""
        record = STORED_RECORDS[key.test]
        return [record.from_json(run) for run in self.stored.get(key.format(), {}).get("runs", [])]

    def append(self, produced: dict[str, SpeedupRecord | LatencyRecord]) -> None:
        """Append one run's records (atomically; the last ``MAX_STORED_RUNS`` kept per id)."""
        write_baselines(self.path, self.machine_class, self.profile, {k: r.to_json() for k, r in produced.items()})
