"""Per-call timing and summary statistics of latency samples (pytest-benchmark has no percentiles).

Every timed block holds this host's timing slot: two runs on one machine (two CI runners of two machine
classes on one box, or a build's latency table beside a benchmark) would each measure the other, so the
second waits for the first's block to end, saying so.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastnas_bench import progress

#: A lock file path for the host's timing slot (default: ``<tmp>/fastnas-bench-timing.lock``), or ``off``.
TIMING_LOCK_ENV = "FASTNAS_BENCH_TIMING_LOCK"
_locks: dict[str, Any] = {}
_locks_guard = threading.Lock()


@contextlib.contextmanager
def timing_slot() -> Iterator[None]:
    """Hold the host-wide timing slot for a timed block; nested blocks of one process share it."""
    setting = os.environ.get(TIMING_LOCK_ENV, "")
    if setting == "off":
        yield
        return
    from filelock import FileLock, Timeout

    path = setting or str(Path(tempfile.gettempdir()) / "fastnas-bench-timing.lock")
    with _locks_guard:
        # One lock object per path: filelock counts re-entries of an object, so an ABBA block's inner
        # per-call timing does not wait for the block itself.
        lock = _locks.setdefault(path, FileLock(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        progress.report(f"waiting for another run on this host to finish timing (holder of {path})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


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


def time_rounds(fn: Callable[[], None], warmup_rounds: int, rounds: int) -> list[float]:
    """Per-call wall times in seconds after ``warmup_rounds`` untimed calls (perf_counter_ns)."""
    samples = []
    with timing_slot():
        for _ in range(warmup_rounds):
            fn()
        for _ in range(rounds):
            start = time.perf_counter_ns()
            fn()
            samples.append((time.perf_counter_ns() - start) / 1e9)
    return samples


def abba_rounds(first: Callable[[], None], second: Callable[[], None], rounds: int) -> tuple[list[float], list[float]]:
    """Per-call seconds of ``first`` and ``second`` timed in ``rounds`` A B B A rounds (two each per round).

    A drift of a shared machine within a round cancels in each side's sum, and each side runs once
    after itself and once after the other. Returns (A samples, B samples) in round order.
    """
    samples: tuple[list[float], list[float]] = ([], [])
    with timing_slot():
        for _ in range(rounds):
            for side, run in ((0, first), (1, second), (1, second), (0, first)):
                samples[side].extend(time_rounds(run, 0, 1))
    return samples
