"""Stored baselines per machine class: the run history the regression gates read.

A baseline file ``baselines/<machine-class>/<profile>.json`` holds, per test id, the last
``MAX_STORED_RUNS`` runs: for ``test_speedup`` ids the paired speedup with its interval, for
``test_latency`` ids the median latency in units of the calibration workload with its interval;
each with the package versions and variant builds it was measured on. The gates that read them are
in :mod:`fastnas_bench.verdicts.gates`.

Every run recorded with ``--update-baselines`` is kept with its gate's outcome (``pass``, ``fail``,
``undecided``, ``reported`` for a gate too coarse to gate, ``ungated`` before five runs) and the time
it was recorded. A gate's history is the runs since the last accepted shift that its gate did not
fail: a regression the gate caught does not become the reference (nor widen the spread), and
``fastnas-bench baselines accept`` records an intended shift, after which the window starts again.

With a results store (``--results-store URL``, :mod:`fastnas_bench.verdicts.results_store`) the same runs
live as immutable objects at that URL instead, shared by every runner of the class; ``fastnas-bench
baselines pull`` / ``push`` move them between the store and these files.

Files are written atomically (temporary file + rename, under a file lock) at the end of a session that
ran to its end (passed or failed, not interrupted, stopped early or refused), so an interrupted run
never changes them. Per test id the newest ``MAX_STORED_RUNS`` runs the gates read are kept, and beside
them the newest ``MAX_STORED_RUNS`` they failed.
"""

from __future__ import annotations

import fnmatch
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastnas_bench.errors import BadInputError
from fastnas_bench.fsutil import atomic_write_text
from fastnas_bench.verdicts.records import STORED_RECORDS, LatencyRecord, SpeedupRecord, TestKey

if TYPE_CHECKING:
    from fastnas_bench.verdicts.results_store import ResultsStore

SCHEMA_VERSION = 3
#: Schemas this version reads: 2 held the same runs without outcomes, times or accepted shifts.
READABLE_SCHEMAS = (2, 3)
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
    if doc.get("schema") not in READABLE_SCHEMAS:
        raise BadInputError(f"baseline file {path} has schema {doc.get('schema')!r}, expected one of {READABLE_SCHEMAS}")
    return dict(doc)


def utc_now() -> str:
    """A timestamp runs and accepted shifts are ordered by (ISO 8601, UTC, microseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def load_baselines(path: Path) -> dict[str, dict[str, Any]]:
    """Stored entries by test id; empty if the file does not exist.

    Raises:
        BadInputError: if the file exists but is unreadable or of another schema.
    """
    return dict(_load_doc(path).get("tests", {}))


def write_baselines(path: Path, machine_class: str, profile: str, produced: dict[str, dict[str, Any]],
                    accepted: dict[str, str] | None = None) -> None:
    """Atomically append this run's entries to ``path`` (the last ``MAX_STORED_RUNS`` kept per id), or
    with ``accepted`` (``at``, ``reason``, ``tests``: a pattern of test ids) an accepted shift."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    # Read, change, write under a lock: a session finishing while `baselines accept` runs (or two
    # sessions finishing together) must not drop the other's update.
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        old = _load_doc(path)
        tests = {k: {"runs": list(v.get("runs", []))} for k, v in old.get("tests", {}).items()}
        for test_id, entry in produced.items():
            runs = tests.setdefault(test_id, {"runs": []})["runs"]
            runs.append(entry)
            runs[:] = _trimmed(runs)
        shifts = list(old.get("accepted", [])) + ([accepted] if accepted else [])
        doc = {"schema": SCHEMA_VERSION, "machine_class": machine_class, "profile": profile, "tests": tests,
               "accepted": shifts}
        atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def merge_baselines(path: Path, machine_class: str, profile: str, doc: dict[str, Any]) -> int:
    """Atomically add to ``path`` the runs and accepted shifts of ``doc`` (a baselines document) it lacks.

    A run is one entry of a test id at a recording time; one already in the file is kept as it is. Returns
    how many runs were added: those the file keeps (``MAX_STORED_RUNS`` per test id), not those trimmed off again,
    so a second merge of the same document adds 0. A file that would not change is not written.
    """
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        old = _load_doc(path)
        tests = {k: list(v.get("runs", [])) for k, v in old.get("tests", {}).items()}
        added = 0
        for test_id, entry in doc.get("tests", {}).items():
            runs = tests.setdefault(test_id, [])
            known = {r.get("recorded_at") for r in runs}
            new = [r for r in entry.get("runs", []) if r.get("recorded_at") not in known]
            # Runs of schema 2 carry no time: they predate every other.
            runs[:] = _trimmed(sorted(runs + new, key=lambda r: r.get("recorded_at") or ""))
            # Older than the file's window, a store's run is trimmed off again: it was not added.
            fresh = {id(r) for r in new}
            added += sum(id(r) in fresh for r in runs)
        shifts = {a["at"]: a for a in [*old.get("accepted", []), *doc.get("accepted", [])]}
        out = {"schema": SCHEMA_VERSION, "machine_class": machine_class, "profile": profile,
               "tests": {k: {"runs": v} for k, v in tests.items()},
               "accepted": [shifts[at] for at in sorted(shifts, key=datetime.fromisoformat)]}
        if out != old:
            atomic_write_text(path, json.dumps(out, indent=2, sort_keys=True) + "\n")
    return added


def _trimmed(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest ``MAX_STORED_RUNS`` runs the gates read and the newest ``MAX_STORED_RUNS`` they failed,
    in order: a regression that persists for weeks must not push the history it is judged against out."""
    failed = [i for i, r in enumerate(runs) if r.get("gate") == "fail"]
    read = [i for i, r in enumerate(runs) if r.get("gate") != "fail"]
    keep = set(failed[-MAX_STORED_RUNS:]) | set(read[-MAX_STORED_RUNS:])
    return [r for i, r in enumerate(runs) if i in keep]


def _after(run: dict[str, Any], at: str) -> bool:
    # Runs of schema 2 carry no time: they predate every accepted shift.
    recorded = run.get("recorded_at")
    return recorded is not None and datetime.fromisoformat(recorded) > datetime.fromisoformat(at)


class BaselineStore:
    """The stored runs of one machine class and profile, read once, as typed records.

    Args:
        root: Baselines root (``<root>/<machine class>/<profile>.json``).
        machine_class: The machine class runs are compared within.
        profile: The profile name.
        results: Read and record the runs there instead of under ``root``.
    """

    def __init__(self, root: Path, machine_class: str, profile: str, results: ResultsStore | None = None) -> None:
        self.path = baseline_path(root, machine_class, profile)
        self.machine_class = machine_class
        self.profile = profile
        self.results = results
        self._doc: dict[str, Any] | None = None

    @property
    def where(self) -> str:
        """Where the runs are, for messages: the file, or the results store's folder of this class."""
        if self.results is None:
            return str(self.path)
        return f"{self.results.url} (machine class {self.machine_class}, profile {self.profile})"

    @property
    def doc(self) -> dict[str, Any]:
        """The stored runs (read on first use), as a baselines file holds them; empty if there are none."""
        if self._doc is None:
            if self.results is None:
                self._doc = _load_doc(self.path)
            else:
                doc = self.results.baselines_doc(self.machine_class, self.profile)
                # The store keeps every run; the gates read the window a file would have kept.
                for entry in doc.get("tests", {}).values():
                    entry["runs"] = _trimmed(entry["runs"])
                self._doc = doc
        return self._doc

    @property
    def stored(self) -> dict[str, dict[str, Any]]:
        """Stored entries by test id, as in the file."""
        return dict(self.doc.get("tests", {}))

    def accepted_shift(self, test_id: str) -> dict[str, str] | None:
        """The newest accepted shift that applies to ``test_id``, if any."""
        shifts = [a for a in self.doc.get("accepted", []) if fnmatch.fnmatchcase(test_id, a.get("tests", "*"))]
        return max(shifts, key=lambda a: datetime.fromisoformat(a["at"])) if shifts else None

    def history(self, test_id: str) -> list[dict[str, Any]]:
        """The runs a gate of ``test_id`` reads, oldest first: since its last accepted shift, and not
        those its gate failed."""
        runs = self.stored.get(test_id, {}).get("runs", [])
        shift = self.accepted_shift(test_id)
        if shift is not None:
            runs = [r for r in runs if _after(r, shift["at"])]
        return [r for r in runs if r.get("gate") != "fail"]

    def runs(self, key: TestKey) -> list[SpeedupRecord | LatencyRecord]:
        """The history of ``key`` (see :meth:`history`) as the record type of its test."""
        record = STORED_RECORDS[key.test]
        return [record.from_json(run) for run in self.history(key.format())]

    def append(self, produced: dict[str, SpeedupRecord | LatencyRecord], gates: dict[str, str],
               verdicts: dict[str, dict[str, Any]] | None = None) -> None:
        """Append one run's records with their gates' outcomes (``gates`` by test id; ``ungated`` where
        none judged), and ``verdicts`` kept as they are (A/B results, with their ``outcome``),
        atomically; the last ``MAX_STORED_RUNS`` kept per id."""
        at = utc_now()
        entries = {k: {**r.to_json(), "gate": gates.get(k, "ungated"), "recorded_at": at} for k, r in produced.items()}
        entries.update({k: {**v, "gate": v.get("outcome", "ungated"), "recorded_at": at}
                        for k, v in (verdicts or {}).items()})
        if self.results is not None:
            self.results.put_run(self.machine_class, self.profile, at, entries)
        else:
            write_baselines(self.path, self.machine_class, self.profile, entries)
        self._doc = None

    def accept(self, tests: str, reason: str) -> int:
        """Record an intended shift of the test ids matching ``tests`` (a shell pattern): their gates
        judge only runs recorded after it. Returns how many stored test ids it applies to.

        Raises:
            BadInputError: with no stored runs, a pattern that matches no stored test id, or no reason.
        """
        if not reason.strip():
            raise BadInputError("an accepted shift needs a reason (--reason)")
        if not self.stored:
            raise BadInputError(f"no stored runs in {self.where} to accept a shift for")
        matched = [t for t in self.stored if fnmatch.fnmatchcase(t, tests)]
        if not matched:
            raise BadInputError(f"--tests {tests!r} matches no stored test id in {self.where}")
        shift = {"at": utc_now(), "reason": reason.strip(), "tests": tests}
        if self.results is not None:
            self.results.put_accepted(self.machine_class, self.profile, shift)
        else:
            write_baselines(self.path, self.machine_class, self.profile, {}, accepted=shift)
        self._doc = None
        return len(matched)


def pull(results: ResultsStore, root: Path, machine_class: str | None = None,
         profile: str | None = None) -> list[tuple[Path, int]]:
    """Copy the store's runs (of one machine class and/or profile, or all) into the files under ``root``,
    adding only what each file lacks. Returns (file, runs added) per machine class and profile."""
    done = []
    for cls, prof in results.machine_classes("runs"):
        if machine_class not in (None, cls) or profile not in (None, prof):
            continue
        doc = results.baselines_doc(cls, prof)
        if not doc:  # a folder with no intact run of its own: nothing to pull, no empty file to write
            continue
        path = baseline_path(root, cls, prof)
        done.append((path, merge_baselines(path, cls, prof, doc)))
    return done


def push(results: ResultsStore, root: Path, machine_class: str | None = None,
         profile: str | None = None) -> list[tuple[Path, int, int]]:
    """Store the runs and accepted shifts of the files under ``root`` (of one machine class and/or profile, or
    all). A run already stored is not stored again. Returns (file, runs created, runs already there) per file.

    Raises:
        BadInputError: for an unreadable file, or one with runs that carry no recording time (schema 2).
    """
    done = []
    for path in sorted(root.glob("*/*.json")):
        cls, prof = path.parent.name, path.stem
        if machine_class not in (None, cls) or profile not in (None, prof):
            continue
        doc = _load_doc(path)
        by_time: dict[str, dict[str, dict[str, Any]]] = {}
        for test_id, entry in doc.get("tests", {}).items():
            for run in entry.get("runs", []):
                if "recorded_at" not in run:
                    raise BadInputError(f"{path}: a run of {test_id} carries no recording time (schema 2); record "
                                        "one run with --update-baselines to rewrite the file, then push")
                by_time.setdefault(run["recorded_at"], {})[test_id] = run
        created = [results.put_run(cls, prof, at, entries)[1] for at, entries in sorted(by_time.items())]
        for shift in doc.get("accepted", []):
            results.put_accepted(cls, prof, shift)
        done.append((path, sum(created), len(created) - sum(created)))
    return done
