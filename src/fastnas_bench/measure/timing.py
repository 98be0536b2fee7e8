"""Per-call timing and summary statistics of latency samples (pytest-benchmark has no percentiles)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


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
    for _ in range(warmup_rounds):
        fn()
    samples = []
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
    for _ in range(rounds):
        for side, run in ((0, first), (1, second), (1, second), (0, first)):
            samples[side].extend(time_rounds(run, 0, 1))
    return samples
