"""Paired A/B latency across two Python environments: did an upgrade or a change make inference slower?

The design of asv ``continuous`` and Chromium Pinpoint, with this suite's ABBA pairing. Each side is a
long-lived worker process (:mod:`fastnas_bench.measure.ab_worker`) in its own environment — side A the
reference (say a venv with the previous onnxruntime), side B the current one — loading the same model
on the same backend with the same threads, warmed up, timing a few calls per slot on command. Only one
side runs at a time; the other blocks on its pipe (ORT spinning off; OpenMP's brief default spin).

- Rounds alternate A-B-B-A and B-A-A-B in a random order drawn before the first sample from a fixed seed.
- The workers are restarted ``sessions`` times, alternating which side starts first, so a per-process
  or start-order effect cannot favour one side.
- Each round gives log((B1 + B2) / (A1 + A2)); the verdict's figure is B/A with a batch-means interval
  over those rounds (:func:`fastnas_bench.measure.stats.batch_interval`), which holds for rounds that
  are autocorrelated.

Side A is ``self`` (an A/A run), another Python environment (a venv or an interpreter), or a git commit
of this checkout: then the worker script of that commit runs in this environment, so what the commit
changes of how a model is exported and run is what is compared, on the same cached variant.

Each side exports its own ONNX where the exporters differ (another environment whose torch,
ultralytics, onnx or onnxslim versions differ from this one's, or another commit): the exporter is part
of what is compared. A reference environment without an exporter loads this environment's export,
and the result says so.

A worker that dies, hangs or computes other outputs than the PyTorch reference is an error naming its
side; nothing half-measured becomes a verdict.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastnas_bench.backends._lib.agreement import compare_outputs
from fastnas_bench.errors import BadInputError
from fastnas_bench.measure.inject import injected_slowdown
from fastnas_bench.measure.stats import CONFIDENCE, batch_interval
from fastnas_bench.measure.timing import timing_slot
from fastnas_bench.variants.variant import Variant

WORKER = Path(__file__).with_name("ab_worker.py")
#: The ABBA rounds of a session start with A or with B, in a random order fixed by this seed.
ORDER_SEED = 20261202


class ABWorkerError(RuntimeError):
    """A side's worker died, hung, or failed a command; the message names the side."""


@dataclass(frozen=True)
class ABPlan:
    """How much an A/B comparison measures, fixed before the first sample.

    Attributes:
        sessions: Worker restarts; the side that starts first alternates.
        rounds: ABBA rounds per session.
        calls_per_slot: Timed calls in each A or B slot of a round.
        warmup_calls: Untimed calls after each (re)start.
        batch_rounds: Rounds per batch of the interval (see :func:`~fastnas_bench.measure.stats.batch_interval`).
        timeout_s: Longest a worker may take to answer one command.
    """

    # Four restarts: a PyTorch A/A of one model read 0.946 and 0.989 in two sessions (per-process
    # effects of a few percent), which only more restarts average out.
    sessions: int = 4
    rounds: int = 20
    calls_per_slot: int = 2
    warmup_calls: int = 5
    # Batches of 10 rounds keep the interval's coverage at its nominal level for a lag-1
    # autocorrelation of 0.6 between rounds (scripted AR(1) rounds, tests/test_ab.py: 0.95); batches
    # of 5 under-covered at 0.7 (0.82 for 0.95).
    batch_rounds: int = 10
    timeout_s: float = 300.0

    def orders(self, seed: int = ORDER_SEED) -> list[list[int]]:
        """Per session and round: 0 for A-B-B-A, 1 for B-A-A-B (drawn before any sample)."""
        rng = np.random.default_rng(seed)
        return [[int(v) for v in rng.integers(0, 2, self.rounds)] for _ in range(self.sessions)]


#: The plan of each backend. PyTorch worker processes differ from each other by several percent (the
#: B/A of 12 one-process-pair sessions of an A/A here: sd 6%, 0.93-1.13), far more than rounds within a
#: process do, so PyTorch spends its time on restarts: 16 sessions of 5 rounds (~95 s for yolov8n).
AB_PLANS = {"onnxruntime": ABPlan(), "pytorch": ABPlan(sessions=16, rounds=5, batch_rounds=5)}


@dataclass(frozen=True)
class Reference:
    """What side A runs: ``self``, another Python environment, or a git commit of this checkout.

    Attributes:
        text: As the user gave it (``self``, a path, a git ref).
        kind: ``self``, ``env`` or ``git``.
        python: The side's interpreter (this one for ``self`` and ``git``).
        commit: The full commit id of a ``git`` reference.
        worker_source: The worker script of a ``git`` reference, as of that commit.
    """

    text: str
    kind: Literal["self", "env", "git"]
    python: str
    commit: str | None = None
    worker_source: str | None = None

    @property
    def exports(self) -> bool:
        """Whether side A's worker can make its own export (workers before protocol 2 cannot)."""
        if self.worker_source is None:
            return True
        found = re.search(r"^PROTOCOL_VERSION = (\d+)", self.worker_source, re.MULTILINE)
        return found is not None and int(found.group(1)) >= 2

    def __str__(self) -> str:
        return f"{self.text} (commit {self.commit[:12]})" if self.commit else self.text


@dataclass(frozen=True)
class Side:
    """One side of the comparison.

    Attributes:
        label: ``A`` (reference) or ``B`` (current).
        python: The interpreter of the side's environment.
        model: The artifact the side loads (ONNX for ONNX Runtime, a stock checkpoint for PyTorch).
        slowdown: Share of each call to burn on the CPU afterwards (an injected regression; 0 for none).
        worker_source: The side's worker script (``None``: this package's).
        export_from: A stock checkpoint the side exports its own ONNX from before timing (``model`` is
            then where that export is written).
    """

    label: str
    python: str
    model: Path
    slowdown: float = 0.0
    worker_source: str | None = None
    export_from: Path | None = None


@dataclass(frozen=True)
class ABResult:
    """B/A latency from paired rounds: > 1 means side B is slower.

    Attributes:
        ratio: exp(mean of the batch medians of the per-round log ratios).
        ci_low, ci_high: The interval of ``ratio`` at ``confidence``.
        confidence: Two-sided coverage of the interval.
        rounds: Rounds in all sessions.
        batches: Batches of the interval.
        session_ratios: B/A of each session on its own (median of its rounds): the between-run spread.
        lag1_autocorrelation: Of the per-round log ratios within sessions (what the batches must absorb).
        a_p50_ms, b_p50_ms: Median slot time per call of each side (context).
        versions: Package versions each side reported.
        exports: Per side, whose ONNX export it ran where the sides' exporters differ (empty: one export).
    """

    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    rounds: int
    batches: int
    session_ratios: tuple[float, ...]
    lag1_autocorrelation: float
    a_p50_ms: float
    b_p50_ms: float
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        sessions = ", ".join(f"{r:.3f}" for r in self.session_ratios)
        exports = "; ".join(f"{side}: {what}" for side, what in sorted(self.exports.items()))
        return (f"B/A {self.ratio:.3f} ({self.confidence:.1%} CI [{self.ci_low:.3f}, {self.ci_high:.3f}], "
                f"{self.rounds} ABBA rounds in {len(self.session_ratios)} sessions: {sessions}; "
                f"lag-1 autocorrelation {self.lag1_autocorrelation:+.2f}; "
                f"A {self.a_p50_ms:.2f} ms, B {self.b_p50_ms:.2f} ms"
                + (f"; exports: {exports}" if exports else "") + ")")


#: Where the worker script sits in a commit of this project.
WORKER_IN_REPO = "src/fastnas_bench/measure/ab_worker.py"


def python_of(reference: str) -> str:
    """The interpreter of a reference environment: ``self`` (this one), a venv folder, or a python path.

    Raises:
        BadInputError: naming a reference that is no Python interpreter.
    """
    if reference == "self":
        return sys.executable
    path = Path(reference).expanduser()
    candidate = path / "bin" / "python" if path.is_dir() else path
    if not candidate.is_file() or not os.access(candidate, os.X_OK):
        raise BadInputError(f"A/B reference {reference!r} is neither 'self', a venv folder nor a python executable")
    return str(candidate)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def resolve_reference(text: str, repo: Path | None = None) -> Reference:
    """Side A from what the user gave: ``self``, an existing venv folder or python executable, or a git
    ref (commit, branch, tag, ``HEAD~1``) of the checkout at ``repo`` (default: the working directory).

    Raises:
        BadInputError: naming a reference that is none of these, or a commit without the A/B worker.
    """
    if text == "self":
        return Reference(text, "self", sys.executable)
    if Path(text).expanduser().exists():
        return Reference(text, "env", python_of(text))
    repo = repo or Path.cwd()
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{text}^{{commit}}")
    if found.returncode != 0:
        raise BadInputError(f"A/B reference {text!r} is neither 'self', a venv folder, a python executable nor a "
                            f"git commit of {repo}")
    commit = found.stdout.strip()
    source = _git(repo, "show", f"{commit}:{WORKER_IN_REPO}")
    if source.returncode != 0:
        raise BadInputError(f"A/B reference {text!r} (commit {commit[:12]}) has no A/B worker ({WORKER_IN_REPO}); "
                            "compare with a venv of that version instead")
    return Reference(text, "git", sys.executable, commit, source.stdout)


def exporter_versions(python: str) -> dict[str, str]:
    """Versions of the packages that write an ONNX export in the environment of ``python`` ("absent" where
    not installed)."""
    from fastnas_bench.measure.ab_worker import EXPORTER_PACKAGES

    code = ("import json, sys\nfrom importlib import metadata\nfound = {}\nfor n in sys.argv[1:]:\n"
            "    try:\n        found[n] = metadata.version(n)\n    except metadata.PackageNotFoundError:\n"
            "        found[n] = 'absent'\nprint(json.dumps(found))")
    done = subprocess.run([python, "-c", code, *EXPORTER_PACKAGES], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ABWorkerError(f"side A ({python}): cannot read its package versions: "
                            f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return dict(json.loads(done.stdout))


class _Worker:
    """A side's worker process: one JSON command out, one JSON reply back, with a deadline."""

    def __init__(self, side: Side, threads: int, timeout_s: float, work: Path) -> None:
        self.side = side
        self.timeout_s = timeout_s
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        # OMP_WAIT_POLICY is left alone: PASSIVE put PyTorch's OpenMP threads to sleep after every
        # parallel region and doubled the yolov8n worker's latency here (57 -> 108 ms), which no
        # deployment runs; libgomp's default spins only briefly before sleeping, and ORT's spinning
        # is off in its session options.
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   YOLO_OFFLINE="true", YOLO_AUTOINSTALL="false")
        # The script runs from a copy in the comparison's scratch folder: run from the package, its
        # folder would lead sys.path and shadow top-level modules named like ours (stats, timing).
        script = work / f"ab_worker_{side.label}.py"
        if not script.exists():
            script.write_text(side.worker_source if side.worker_source is not None else WORKER.read_text())
        self._stderr = tempfile.TemporaryFile(mode="w+")
        try:
            self.proc = subprocess.Popen([side.python, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._stderr, text=True, env=env)
        except OSError as e:
            self._stderr.close()
            raise ABWorkerError(f"side {side.label} ({side.python}): cannot start the worker: {e}") from None
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().strip().splitlines() if ln.strip()]
        return lines[-1] if lines else "no output"

    def request(self, **cmd: Any) -> dict[str, Any]:
        what = f"side {self.side.label} ({self.side.python})"
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            line = self._lines.get(timeout=self.timeout_s)
        except queue.Empty:
            self.proc.kill()
            raise ABWorkerError(f"{what}: no answer to {cmd['op']!r} within {self.timeout_s:.0f} s; worker killed") from None
        except (BrokenPipeError, OSError):
            line = None
        if line is None:
            try:
                code: int | None = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = None
            raise ABWorkerError(f"{what}: worker exited (code {code}) during {cmd['op']!r}: {self._stderr_tail()}")
        try:
            reply = json.loads(line)
        except ValueError:
            self.proc.kill()
            raise ABWorkerError(f"{what}: answered {cmd['op']!r} with something other than JSON: {line.strip()[:120]!r}") from None
        if not reply.get("ok"):
            raise ABWorkerError(f"{what}: {cmd['op']!r} failed: {reply.get('error')}")
        return dict(reply)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.timeout_s = 10.0  # a worker still busy (after an interrupt, say) gets a short grace, then is killed
            try:
                self.request(op="quit")
                self.proc.wait(timeout=10)
            except (ABWorkerError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a dead worker's pipe breaks on the final flush
                    stream.close()
        self._stderr.close()


@contextmanager
def _started(side: Side, backend: str, inputs: Path, threads: int, plan: ABPlan, work: Path,
             reference: np.ndarray) -> Iterator[tuple[_Worker, dict[str, str]]]:
    """A loaded, output-checked, warmed-up worker for ``side``."""
    worker = _Worker(side, threads, plan.timeout_s, work)
    try:
        output = work / f"output-{side.label}.npy"
        reply = worker.request(op="load", backend=backend, model=str(side.model), inputs=str(inputs),
                               output=str(output), threads=threads, warmup_calls=plan.warmup_calls,
                               slowdown=side.slowdown)
        _, failure = compare_outputs(np.load(output), reference, "fp32")
        if failure:
            raise ABWorkerError(f"side {side.label} ({side.python}): outputs disagree with the PyTorch reference: "
                                f"{failure}")
        yield worker, dict(reply["versions"])
    finally:
        worker.close()


def lag1_autocorrelation(sessions: list[list[float]]) -> float:
    """Pooled lag-1 autocorrelation of the rounds within each session (pairs never span a restart)."""
    centred = [np.asarray(s, dtype=float) - np.mean(s) for s in sessions if len(s) > 2]
    numerator = sum(float(np.dot(c[:-1], c[1:])) for c in centred)
    denominator = sum(float(np.dot(c, c)) for c in centred)
    return numerator / denominator if denominator > 0 else 0.0


def _export(side: Side, threads: int, plan: ABPlan, work: Path, imgsz: int, batch: int) -> str:
    """The side's own ONNX export at ``side.model``, made once in a worker of its environment."""
    assert side.export_from is not None
    worker = _Worker(side, threads, plan.timeout_s, work)
    try:
        reply = worker.request(op="export", checkpoint=str(side.export_from), out=str(side.model), imgsz=imgsz,
                               batch=batch)
    finally:
        worker.close()
    return "own export (" + ", ".join(f"{k} {v}" for k, v in sorted(reply["versions"].items())) + ")"


def run_ab(a: Side, b: Side, backend: str, images: np.ndarray, reference: np.ndarray, threads: int,
           plan: ABPlan = ABPlan(), confidence: float = CONFIDENCE,
           progress: Callable[[str], None] | None = None, exports_note: dict[str, str] | None = None) -> ABResult:
    """Time side B against side A on ``backend`` in paired rounds (see the module docstring).

    Args:
        a, b: The reference and the current side.
        backend: ``onnxruntime`` or ``pytorch``.
        images: The input batch (float32 NCHW in [0, 1]).
        reference: The PyTorch fp32 output on ``images`` that both sides must reproduce.
        threads: Intra-op threads of each side.
        plan: Sessions, rounds and calls, fixed before the first sample.
        confidence: Two-sided coverage of the interval (family-wise corrected by the caller).
        progress: Receives one line per session.
        exports_note: Per side, whose export it loads where that is not its own (for the result).

    Raises:
        ABWorkerError: a side died, hung, failed or disagreed on outputs.
    """
    orders = plan.orders()
    sessions: list[list[float]] = []
    slots: dict[str, list[float]] = {"A": [], "B": []}
    versions: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="fastnas-ab-") as tmp:
        work = Path(tmp)
        inputs = work / "inputs.npy"
        np.save(inputs, np.ascontiguousarray(images, dtype=np.float32))
        exports = {}
        for side in (a, b):
            if side.export_from is not None:
                exports[side.label] = _export(side, threads, plan, work, imgsz=images.shape[-1], batch=images.shape[0])
        for s, order in enumerate(orders):
            first, second = (a, b) if s % 2 == 0 else (b, a)
            with _started(first, backend, inputs, threads, plan, work, reference) as (w1, v1), \
                    _started(second, backend, inputs, threads, plan, work, reference) as (w2, v2):
                workers = {first.label: w1, second.label: w2}
                versions.update({first.label: v1, second.label: v2})
                log_ratios = []
                for start_with_b in order:
                    sequence = "BAAB" if start_with_b else "ABBA"
                    took = {"A": 0.0, "B": 0.0}
                    for label in sequence:
                        seconds = workers[label].request(op="time", calls=plan.calls_per_slot)["seconds"]
                        took[label] += sum(seconds)
                        slots[label].append(sum(seconds) / len(seconds))
                    log_ratios.append(math.log(took["B"] / took["A"]))
                sessions.append(log_ratios)
            if progress is not None:
                progress(f"A/B {backend}: session {s + 1}/{plan.sessions}: B/A {math.exp(float(np.median(log_ratios))):.3f}")
    center, low, high, batches = batch_interval(sessions, plan.batch_rounds, confidence)
    return ABResult(
        ratio=math.exp(center), ci_low=math.exp(low), ci_high=math.exp(high), confidence=confidence,
        rounds=sum(len(s) for s in sessions), batches=batches,
        session_ratios=tuple(math.exp(float(np.median(s))) for s in sessions),
        lag1_autocorrelation=lag1_autocorrelation(sessions),
        a_p50_ms=float(np.median(slots["A"])) * 1e3, b_p50_ms=float(np.median(slots["B"])) * 1e3, versions=versions,
        exports={**exports, **(exports_note or {})},
    )


#: Backends a worker can run (CPU): what the reference environment must hold for each.
WORKER_BACKENDS = {"onnxruntime": "onnxruntime, numpy", "pytorch": "torch, ultralytics, numpy"}


def compare_variant(variant: Variant, backend: str, batch: int, imgsz: int, threads: int, reference: Reference,
                    onnx: Callable[[Variant, int, int], Path], work_dir: Path, *, plan: ABPlan | None = None,
                    confidence: float = CONFIDENCE, images: np.ndarray | None = None,
                    progress: Callable[[str], None] | None = None) -> ABResult:
    """This environment (B) against ``reference`` (A) on one variant, backend and batch.

    PyTorch: both sides load the variant's stock Ultralytics checkpoint (which a reference environment
    without this package can load). ONNX Runtime: both sides load this environment's cached export,
    unless the exporters differ (see the module docstring): then each side exports its own from that
    checkpoint, or side A, holding no exporter, loads side B's. Slowdowns injected for side A or B
    (``FASTNAS_BENCH_INJECT_SLOWDOWN``) burn CPU in that side's worker. ``plan`` defaults to the
    backend's (:data:`AB_PLANS`).

    Raises:
        BadInputError: for a backend no worker runs.
        ABWorkerError: see :func:`run_ab`.
    """
    from fastnas_bench.backends._lib.agreement import check_images
    from fastnas_bench.backends.pytorch import reference_output
    from fastnas_bench.measure.ab_worker import EXPORTER_PACKAGES
    from fastnas_bench.versions import versions_of
    from fastnas_bench.yolo.stock import export_stock_checkpoint

    if backend not in WORKER_BACKENDS:
        raise BadInputError(f"A/B workers run {', '.join(WORKER_BACKENDS)} on the CPU, not {backend!r}")
    own_exports = False
    note: dict[str, str] = {}
    if backend == "onnxruntime":
        ours = versions_of(EXPORTER_PACKAGES)
        theirs = exporter_versions(reference.python) if reference.kind == "env" else ours
        if reference.kind == "git" or theirs != ours:
            if "absent" in (theirs.get("torch"), theirs.get("ultralytics"), theirs.get("onnx")):
                note = {"A": "B's export (no exporter in its environment)"}
            elif not reference.exports:
                note = {"A": "B's export (its commit's worker predates per-side exports)"}
            else:
                own_exports = True
    # Each artifact is made once: the stock checkpoint where a worker loads or exports it, the cached
    # ONNX export only where both sides load it.
    stock = export_stock_checkpoint(variant.weights, work_dir / f"{variant.name}-stock.pt") \
        if backend == "pytorch" or own_exports else None
    shared = stock if backend == "pytorch" else None if own_exports else onnx(variant, imgsz, batch)
    models = {label: shared or work_dir / f"{variant.name}-bs{batch}-{label}.onnx" for label in ("A", "B")}
    export_from = stock if own_exports else None
    batch_images = images if images is not None else check_images(batch, imgsz)
    output = reference_output(variant.weights, batch_images)
    a, b = (Side(label, python, models[label], injected_slowdown(backend, variant.name, side=label),
                 reference.worker_source if label == "A" else None, export_from)
            for label, python in (("A", reference.python), ("B", sys.executable)))
    # The workers time without the slot (they run without this package); holding it here keeps another
    # run on this host from timing beside them.
    with timing_slot():
        return run_ab(a, b, backend, batch_images, output, threads, plan or AB_PLANS[backend], confidence, progress,
                      note)
