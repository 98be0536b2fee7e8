"""A results history shared by a fleet of runners at an fsspec URL (``--results-store s3://bucket/prefix``).

The committed ``baselines/`` files need a commit per nightly run, which a CI job cannot make, and two runners
of one machine class rewriting one file would drop each other's runs. Here every write is a new immutable
object, created once and never replaced, so no runner ever reads, changes and writes back what another
wrote; the history is what a reader assembles from them::

    <url>/baselines/<machine class>/<profile>/runs/<recorded at>-<sha256[:16]>.json      one run's entries
    <url>/baselines/<machine class>/<profile>/accepted/<at>-<sha256[:16]>.json           an accepted shift
    <url>/saved/<machine class>/<profile>/<saved at>-<sha256[:16]>.json                  a saved pytest-benchmark run

- An object's name carries the SHA-256 of its bytes: a reader checks it and skips (with a warning naming it)
  an object that does not match, so a truncated or altered upload is never read as a run.
- Every object names the schema, machine class and profile it was written for; one found in another class's or
  profile's folder (copied or moved by hand) is skipped with a warning, like a damaged one.
- The same run pushed twice has the same name: the second create fails and nothing is duplicated; where
  entries of one run reach the store in two objects (``baselines push`` of a trimmed file), a reader keeps
  one entry per test id and time.
- Assembled, the runs of a class and profile read exactly as a committed baselines file
  (:mod:`fastnas_bench.verdicts.baselines`): the gates cannot tell the two apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from fastnas_bench import progress
from fastnas_bench.errors import BadInputError
from fastnas_bench.fsurl import create_only, library_errors, one_line, open_url, probe

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

RESULTS_STORE_ENV = "FASTNAS_BENCH_RESULTS"
#: Schema of a run object (its ``entries`` are those of a baselines file of schema 3).
OBJECT_SCHEMA = 1
_NAME = re.compile(r"(?P<at>\d{8}T\d{12}Z)-(?P<sha>[0-9a-f]{16})\.json")
# Path components come from machine classes and profile names: keep them to what every store accepts.
_SAFE = re.compile(r"[A-Za-z0-9._-]+")


def resolve_url(option: str | None, baselines_dir: str | None = None) -> str | None:
    """The results store URL ``--results-store`` names, else ``$FASTNAS_BENCH_RESULTS``; ``None`` where neither does.

    Args:
        option: The ``--results-store`` value.
        baselines_dir: An explicit ``--baselines-dir``, where the store would replace it (the plugin, and
            ``baselines show``/``accept``); ``None`` where both are used together (``baselines pull``/``push``).

    Raises:
        BadInputError: where a store and ``baselines_dir`` both name where the stored runs are.
    """
    url = option or os.environ.get(RESULTS_STORE_ENV) or None
    if url and baselines_dir:
        raise BadInputError(f"--baselines-dir {baselines_dir} and a results store ({url}) both name where the stored "
                            "runs are; give one (move runs between them with `fastnas-bench baselines pull/push`)")
    return url


def object_name(at: str, data: bytes) -> str:
    """``<at, compact UTC>-<sha256[:16]>.json``: ordered by time as text, checked by content."""
    moment = datetime.fromisoformat(at).astimezone(timezone.utc)
    return f"{moment.strftime('%Y%m%dT%H%M%S%f')}Z-{hashlib.sha256(data).hexdigest()[:16]}.json"


def _encode(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


class ResultsStore:
    """Runs, accepted shifts and saved runs of every machine class at one URL. Open with :meth:`open`."""

    def __init__(self, url: str, fs: AbstractFileSystem, base: str) -> None:
        self.url = url
        self.fs = fs
        self.base = base
        self._errors = library_errors(fs)

    @classmethod
    def open(cls, url: str) -> ResultsStore:
        """Open and probe the store at ``url``.

        Raises:
            BadInputError: naming ``url``: unknown protocol, missing package, missing bucket, refused credentials.
        """
        url = url.rstrip("/")
        fs, base = open_url(url, "results store")
        probe(fs, base, url, "results store")
        return cls(url, fs, base)

    # -- paths -----------------------------------------------------------------------------------------

    def _folder(self, kind: str, machine_class: str, profile: str) -> str:
        for part in (machine_class, profile):
            if not _SAFE.fullmatch(part):
                raise BadInputError(f"results store {self.url}: {part!r} is not a usable machine class or profile name")
        sub = {"runs": f"baselines/{machine_class}/{profile}/runs",
               "accepted": f"baselines/{machine_class}/{profile}/accepted",
               "saved": f"saved/{machine_class}/{profile}"}[kind]
        return f"{self.base}/{sub}"

    # -- writing ---------------------------------------------------------------------------------------

    def _put(self, folder: str, at: str, doc: dict[str, Any]) -> tuple[str, bool]:
        data = _encode(doc)
        name = object_name(at, data)
        try:
            created = create_only(self.fs, f"{folder}/{name}", data)
        except self._errors as e:
            raise BadInputError(f"results store {self.url}: could not write {name}: {type(e).__name__}: "
                                f"{one_line(e)}") from None
        return f"{self.url}/{folder[len(self.base) + 1:]}/{name}", created

    def put_run(self, machine_class: str, profile: str, recorded_at: str,
                entries: dict[str, dict[str, Any]]) -> tuple[str, bool]:
        """Store one run's entries (by test id, each as in a baselines file). Returns its URL and whether this
        call created it (``False``: the same run was stored before)."""
        doc = {"schema": OBJECT_SCHEMA, "machine_class": machine_class, "profile": profile,
               "recorded_at": recorded_at, "entries": entries}
        return self._put(self._folder("runs", machine_class, profile), recorded_at, doc)

    def put_accepted(self, machine_class: str, profile: str, shift: dict[str, str]) -> tuple[str, bool]:
        """Store an accepted shift (``at``, ``reason``, ``tests``)."""
        return self._put(self._folder("accepted", machine_class, profile), shift["at"],
                         {"schema": OBJECT_SCHEMA, "machine_class": machine_class, "profile": profile, **shift})

    def put_saved_run(self, machine_class: str, profile: str, saved_at: str, doc: dict[str, Any]) -> tuple[str, bool]:
        """Store a saved pytest-benchmark run (its JSON document), for ``fastnas-bench report``."""
        return self._put(self._folder("saved", machine_class, profile), saved_at, doc)

    # -- reading ---------------------------------------------------------------------------------------

    def _objects(self, folder: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(name, document) of every intact object in ``folder``, oldest first; damaged ones warned and skipped."""
        try:
            paths = sorted(self.fs.ls(folder, detail=False)) if self.fs.exists(folder) else []
        except FileNotFoundError:
            paths = []
        except self._errors as e:
            raise BadInputError(f"results store {self.url}: could not list {folder}: {type(e).__name__}: "
                                f"{one_line(e)}") from None
        # Not ours where the name does not match (a README, a console's folder marker).
        ours = [str(path).rstrip("/") for path in paths if _NAME.fullmatch(str(path).rstrip("/").rsplit("/", 1)[-1])]
        # One call for the folder: s3fs fetches a list of objects concurrently, one by one is a round trip each.
        read = self.fs.cat(ours, on_error="return") if ours else {}
        for path, data in sorted(read.items()):
            name = str(path).rstrip("/").rsplit("/", 1)[-1]
            match = _NAME.fullmatch(name)
            if match is None:  # fsspec keys by its own form of the path: read its name again
                continue
            if isinstance(data, FileNotFoundError):
                continue  # deleted since the listing
            if isinstance(data, self._errors):
                raise BadInputError(f"results store {self.url}: could not read {name}: {type(data).__name__}: "
                                    f"{one_line(data)}")
            if isinstance(data, BaseException):
                raise data
            data = bytes(data)
            if hashlib.sha256(data).hexdigest()[:16] != match["sha"]:
                _warn(f"results store object {self.url}/{str(path)[len(self.base) + 1:]} does not match its checksum; "
                      "skipped (delete it, or push the run again from a good copy)")
                continue
            try:
                doc = json.loads(data)
            except ValueError:
                _warn(f"results store object {name} is not JSON; skipped")
                continue
            if not isinstance(doc, dict):
                _warn(f"results store object {name} is not a JSON object; skipped")
                continue
            yield name, doc

    def _placed(self, kind: str, machine_class: str, profile: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(name, document) of the intact objects of one folder that say they belong there; others warned and
        skipped."""
        folder = self._folder(kind, machine_class, profile)
        expected = {"schema": OBJECT_SCHEMA, "machine class": machine_class, "profile": profile}
        for name, doc in self._objects(folder):
            wrong = [f"{what} {found!r}" for what, found in _placement(kind, doc).items() if found != expected[what]]
            if wrong:
                _warn(f"results store object {self.url}/{folder[len(self.base) + 1:]}/{name} is of {', '.join(wrong)}, "
                      "not of the folder it is in; skipped (move it where it belongs, or delete it)")
                continue
            yield name, doc

    def baselines_doc(self, machine_class: str, profile: str) -> dict[str, Any]:
        """The stored runs and accepted shifts of ``machine_class`` and ``profile``, shaped as a baselines file
        (every run, oldest first; one entry per test id and recording time). Empty where there are none."""
        tests: dict[str, dict[str, dict[str, Any]]] = {}
        for _, run in self._placed("runs", machine_class, profile):
            for test_id, entry in dict(run.get("entries", {})).items():
                tests.setdefault(test_id, {}).setdefault(str(entry.get("recorded_at", run.get("recorded_at"))), entry)
        accepted = {str(doc["at"]): {k: doc[k] for k in ("at", "reason", "tests") if k in doc}
                    for _, doc in self._placed("accepted", machine_class, profile) if "at" in doc}
        if not tests and not accepted:
            return {}
        return {"schema": 3, "machine_class": machine_class, "profile": profile,
                "tests": {t: {"runs": [runs[at] for at in sorted(runs, key=_moment)]} for t, runs in sorted(tests.items())},
                "accepted": [accepted[at] for at in sorted(accepted, key=_moment)]}

    def _folders(self, path: str) -> list[str]:
        """Names of the folders in ``path`` (files beside them, a README say, are no class or profile)."""
        try:
            entries = self.fs.ls(path, detail=True) if self.fs.exists(path) else []
        except FileNotFoundError:
            return []
        except self._errors as e:
            raise BadInputError(f"results store {self.url}: could not list {path}: {type(e).__name__}: "
                                f"{one_line(e)}") from None
        names = (str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory")
        return [name for name in names if _SAFE.fullmatch(name)]

    def machine_classes(self, kind: str = "runs") -> list[tuple[str, str]]:
        """(machine class, profile) pairs holding runs (``kind="runs"``) or saved runs (``"saved"``)."""
        top = f"{self.base}/{'baselines' if kind == 'runs' else 'saved'}"
        return sorted({(cls, prof) for cls in self._folders(top) for prof in self._folders(f"{top}/{cls}")})

    def saved_runs_by_class(self, profile: str,
                            newest: int | None = None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """(URL, document) of the saved pytest-benchmark runs of ``profile`` by machine class, per class its
        ``newest`` (all where ``None``), oldest first; every class with runs or saved runs of ``profile`` is
        there, an empty list where it has no saved run yet."""
        classes = {cls for kind in ("runs", "saved") for cls, prof in self.machine_classes(kind) if prof == profile}
        found = {}
        for machine_class in sorted(classes):
            docs = [(f"{self.url}/saved/{machine_class}/{profile}/{name}", doc)
                    for name, doc in self._placed("saved", machine_class, profile)]
            found[machine_class] = docs[-newest:] if newest else docs
        return found

    def saved_runs(self, profile: str, newest: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(URL, document) of the saved pytest-benchmark runs of ``profile``, per machine class its ``newest``
        (all where ``None``), oldest first within a class."""
        return [run for runs in self.saved_runs_by_class(profile, newest).values() for run in runs]


def _placement(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The schema, machine class and profile an object says it is of (``schema``, ``machine class``, ``profile``)."""
    if kind == "saved":
        # pytest-benchmark's document, with no schema of ours: the suite's plugin put the class and profile in it.
        ours, machine = doc.get("fastnas_bench"), (doc.get("machine_info") or {}).get("fastnas_bench")
        return {"machine class": machine.get("machine_class") if isinstance(machine, dict) else None,
                "profile": ours.get("profile") if isinstance(ours, dict) else None}
    said = {"schema": doc.get("schema"), "machine class": doc.get("machine_class"), "profile": doc.get("profile")}
    if kind == "accepted":
        # Accepted shifts stored before they named their class and profile name neither: the folder says it.
        said = {what: found for what, found in said.items() if what == "schema" or found is not None}
    return said


def _moment(at: str) -> datetime:
    return datetime.fromisoformat(at)


def _warn(message: str) -> None:
    # warnings alone land in pytest's end-of-run summary; the progress line shows when it happens.
    warnings.warn(message, stacklevel=3)
    progress.report(message)
