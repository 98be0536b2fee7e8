"""Per-call timing and summary statistics of latency samples (pytest-benchmark has no percentiles).

Every timed block holds this host's timing slot (:func:`timing_slot`): two runs on one machine (two CI
runners of two machine classes on one box, or a build's latency probe beside a benchmark) would each
measure the other, so the second waits for the first's block to end, saying so. A build takes the slot
only where it times (the latency probe and latency-table rows time through this module); its pruning,
training and export run without it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastnas_bench import progress
from fastnas_bench.errors import BadInputError

#: A lock file path for the host's timing slot (default: :func:`default_timing_lock_path`), or ``off``.
TIMING_LOCK_ENV = "FASTNAS_BENCH_TIMING_LOCK"
_LOCK_NAME = "fastnas-bench-timing.lock"
# Created writable by every account, so runs of several users on one host can share the slot (umask
# would otherwise leave it writable by its creator only).
_LOCK_MODE = 0o666


def default_timing_lock_path() -> Path:
    """``/var/tmp/fastnas-bench-timing.lock``, or the same name in :func:`tempfile.gettempdir` where
    there is no ``/var/tmp`` (Windows).

    Fixed per host rather than taken from ``TMPDIR``: two runs with different temp directories must
    still find the same lock.
    """
    shared = Path("/var/tmp")
    return (shared if os.name == "posix" and shared.is_dir() else Path(tempfile.gettempdir())) / _LOCK_NAME


def timing_lock_path() -> Path | None:
    """The lock file of this host's timing slot, or ``None`` where ``FASTNAS_BENCH_TIMING_LOCK=off``."""
    setting = os.environ.get(TIMING_LOCK_ENV, "")
    if setting == "off":
        return None
    return Path(os.path.abspath(setting)) if setting else default_timing_lock_path()


@dataclass
class _Slot:
    """One process's hold of one lock file.

    The file lock is taken once, by the outermost block; nested blocks of the holding thread only
    count. This does not rely on filelock's own re-entrance, which differs across its versions (a
    second lock object on the same path deadlocks in some and raises in others). Another thread of
    the process waits on ``guard`` as another process waits on the file.
    """

    lock: Any  # filelock.FileLock
    guard: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0
    holder: int | None = None  # the holding thread's ident, while depth > 0


# Keyed by process as well: a forked child gets fresh slots, and waits for its parent like any process.
_slots: dict[tuple[int, Path], _Slot] = {}
_slots_guard = threading.Lock()


def _check_lock_path(path: Path) -> None:
    """Fail at once, naming the path, where filelock would fail obscurely or retry forever."""
    how = f"set {TIMING_LOCK_ENV} to a lock file this account can write, or to 'off'"
    if path.is_dir():
        raise BadInputError(f"timing lock {path} is a directory; {how}")
    if not path.parent.is_dir():
        raise BadInputError(f"timing lock directory {path.parent} does not exist; create it or {how}")
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise BadInputError(f"timing lock {path} is not writable by this account (another user's?); {how}")
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        raise BadInputError(f"timing lock directory {path.parent} is not writable by this account; {how}")


def _acquire_file_lock(lock: Any, path: Path) -> None:
    from filelock import Timeout

    _check_lock_path(path)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            progress.report(f"waiting for another run on this host to finish timing (holder of {path})")
            lock.acquire()
    except OSError as exc:
        # E.g. a lock file another account owns in a sticky directory such as /var/tmp, which recent
        # filelock versions refuse even when its mode lets everyone write.
        raise BadInputError(f"cannot lock the timing lock {path} ({exc.strerror or exc}); set {TIMING_LOCK_ENV} "
                            "to a lock file this account can write (in a directory that is not sticky), "
                            "or to 'off'") from exc


def timing_slot_held() -> bool:
    """Whether this thread is inside a :func:`timing_slot` block (always ``False`` with the slot off)."""
    path = timing_lock_path()
    slot = _slots.get((os.getpid(), path)) if path is not None else None
    return slot is not None and slot.holder == threading.get_ident()


@contextlib.contextmanager
def timing_slot() -> Iterator[None]:
    """Hold the host-wide timing slot for a timed block.

    The slot is a lock file (:func:`timing_lock_path`; ``FASTNAS_BENCH_TIMING_LOCK`` moves it or turns
    it ``off``), created with mode 0o666. Blocks nest: an inner block of the thread holding the slot
    enters at once. Another thread of this process, like another process, waits, saying so.

    Raises:
        BadInputError: the lock file or its directory is missing, not writable, or cannot be locked.
    """
    path = timing_lock_path()
    if path is None:
        yield
        return
    from filelock import FileLock

    with _slots_guard:
        key = (os.getpid(), path)
        if key not in _slots:
            # thread_local=False: the guard, not filelock, keeps the threads apart.
            _slots[key] = _Slot(FileLock(str(path), mode=_LOCK_MODE, thread_local=False))
        slot = _slots[key]
    if not slot.guard.acquire(blocking=False):
        progress.report(f"waiting for another thread of this process to finish timing (holder of {path})")
        slot.guard.acquire()
    try:
        if slot.depth == 0:
            _acquire_file_lock(slot.lock, path)
            slot.holder = threading.get_ident()
        slot.depth += 1
        try:
            yield
        finally:
            slot.depth -= 1
            if slot.depth == 0:
                slot.holder = None
                slot.lock.release()
    finally:
        slot.guard.release()


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles and spread in milliseconds.

    Attributes:
        n_samples: Number of timed rounds.
        latency_p50_ms: Median.
        latency_p90_ms: 90th percentile.
        latency_p99_ms: 99th percentile.
        latency_iqr_ms: Interquartile range (p75 - p25).
        latency_min_ms: Fastest round.
    """

    n_samples: int
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_iqr_ms: float
    latency_min_ms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize_seconds(samples_s: Sequence[float]) -> LatencySummary:
    """Summarise per-round durations given in seconds.

    Raises:
        ValueError: if there are no samples or any is not positive (a broken timer, not a result).
    """
    if len(samples_s) == 0:
        raise ValueError("no latency samples to summarise")
    ms = np.asarray(samples_s, dtype=float) * 1e3
    if not np.all(ms > 0):
        raise ValueError(f"non-positive latency sample(s): {ms[ms <= 0][:3].tolist()} ms")
    p25, p50, p75, p90, p99 = np.percentile(ms, [25, 50, 75, 90, 99])
    return LatencySummary(
        n_samples=int(ms.size),
        latency_p50_ms=float(p50),
        latency_p90_ms=float(p90),
        latency_p99_ms=float(p99),
        latency_iqr_ms=float(p75 - p25),
        latency_min_ms=float(ms.min()),
    )


def _call_s(fn: Callable[[], None]) -> float:
    """Wall seconds of one call of ``fn`` (perf_counter_ns); the caller holds the timing slot."""
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1e9


def time_rounds(fn: Callable[[], None], warmup_rounds: int, rounds: int) -> list[float]:
    """Per-call wall times in seconds after ``warmup_rounds`` untimed calls (perf_counter_ns)."""
    with timing_slot():
        for _ in range(warmup_rounds):
            fn()
        return [_call_s(fn) for _ in range(rounds)]


def abba_rounds(first: Callable[[], None], second: Callable[[], None], rounds: int) -> tuple[list[float], list[float]]:
    """Per-call seconds of ``first`` and ``second`` timed in ``rounds`` A B B A rounds (two each per round).

    A drift of a shared machine within a round cancels in each side's sum, and each side runs once
    after itself and once after the other. Returns (A samples, B samples) in round order.
    """
    a, b = rotation_rounds([first, second], rounds)
    return a, b


def rotation_rounds(calls: Sequence[Callable[[], None]], rounds: int) -> list[list[float]]:
    """Per-call seconds of each of ``calls`` timed in ``rounds`` rotations: every call in order, then in
    reverse (A B C C B A), so that each call runs twice per round and a drift within a round weighs on
    all alike (:func:`abba_rounds` is this with two calls). Returns one list per call, in round order.
    """
    samples: list[list[float]] = [[] for _ in calls]
    order = list(range(len(calls)))
    # One slot for the whole block: nothing but the calls themselves runs between two timed calls.
    with timing_slot():
        for _ in range(rounds):
            for index in order + order[::-1]:
                samples[index].append(_call_s(calls[index]))
    return samples
