"""One latency measurement: load a backend, check its outputs, time it, summarise.

Independent of pytest fixtures so the harness can be tested with a fake backend.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastnas_bench.backends import Backend, BackendUnavailable, get_backend_class
from fastnas_bench.backends.base import BackendRequest, sample_images
from fastnas_bench.build import Variant
from fastnas_bench.cache import ArtifactCache
from fastnas_bench.errors import BadInputError
from fastnas_bench.settings import BackendTarget, BenchSettings
from fastnas_bench.timing import LatencySummary, summarize_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatencyRecord:
    """The samples and summary of one (target, variant, batch) measurement."""

    target: BackendTarget
    variant: str
    batch: int
    samples_s: tuple[float, ...]
    summary: LatencySummary
    output_rel_err: float
    backend_info: dict[str, Any] = field(default_factory=dict)
    calibration_ms: float | None = None


#: Test-only hook: ``FASTNAS_BENCH_INJECT_DELAY_MS="onnxruntime=5"`` adds a sleep to every timed call
#: of that backend, to show that the regression verdict catches a slowed backend.
INJECT_DELAY_ENV = "FASTNAS_BENCH_INJECT_DELAY_MS"
# Untimed calls of a variant before each of its timed calls in interleaved rounds (see interleaved_samples).
SETTLE_CALLS = 1


def injected_delay_s(backend: str) -> float:
    """Seconds of artificial delay requested for ``backend`` via :data:`INJECT_DELAY_ENV`."""
    spec = os.environ.get(INJECT_DELAY_ENV, "")
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, ms = item.partition("=")
        try:
            delay_ms = float(ms)
        except ValueError:
            raise BadInputError(f"{INJECT_DELAY_ENV} item {item!r} must look like backend=milliseconds") from None
        if name == backend:
            return delay_ms / 1e3
    return 0.0


class Calibration:
    """A fixed convolution workload timed next to each measurement: the machine's current speed.

    Shared and burstable machines change speed by large factors over minutes (CPU credits, other
    tenants). Dividing a latency by this reference, timed in the same minute on the same device and
    threads, cancels what the two have in common, so a stored baseline stays comparable.
    """

    def __init__(self, device: str, threads: int, rounds: int = 15) -> None:
        import torch

        torch.manual_seed(0)
        self.device = torch.device(device)
        self.net = torch.nn.Sequential(
            *[torch.nn.Conv2d(64, 64, 3, padding=1) for _ in range(3)]
        ).eval().to(self.device)
        self.x = torch.rand(1, 64, 80, 80, device=self.device)
        self.threads = threads
        self.rounds = rounds

    def _once(self) -> None:
        import torch

        with torch.inference_mode():
            self.net(self.x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def measure_ms(self) -> float:
        """Median milliseconds of the reference workload now."""
        import torch

        if self.device.type == "cpu":
            torch.set_num_threads(self.threads)
        samples = time_rounds(self._once, 3, self.rounds)
        return float(sorted(samples)[len(samples) // 2] * 1e3)


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


def _slowed(fn: Callable[[], None], delay_s: float) -> Callable[[], None]:
    def slowed() -> None:
        fn()
        time.sleep(delay_s)

    return slowed


class Measurer:
    """Measures and remembers latencies for one session.

    Args:
        settings: Session settings.
        variant: Returns the built variant for a name (``baseline``, ``fastnas66``).
        onnx: Returns the ONNX export of a variant at (imgsz, batch).
        reference: Returns the PyTorch fp32 reference output for (weights, images).
        cache: Artifact cache for backend artifacts.
        backend_class: Looks up a backend class by name (a fake in the harness tests).
    """

    def __init__(
        self,
        settings: BenchSettings,
        variant: Callable[[str], Variant],
        onnx: Callable[[Variant, int, int], Path],
        reference: Callable[[Path, Any], Any],
        cache: ArtifactCache | None,
        backend_class: Callable[[str], type[Backend]] = get_backend_class,
    ) -> None:
        self.settings = settings
        self._variant = variant
        self._onnx = onnx
        self._reference = reference
        self._cache = cache
        self._backend_class = backend_class
        self._probes: dict[str, str | None] = {}
        self.records: dict[tuple[str, str, int], LatencyRecord] = {}
        self._calibration: Calibration | None = None

    def calibration_ms(self) -> float:
        """The reference workload's median now (see :class:`Calibration`)."""
        if self._calibration is None:
            self._calibration = Calibration(self.settings.device, self.settings.threads)
        return self._calibration.measure_ms()

    def unavailable_reason(self, target: BackendTarget) -> str | None:
        """Why ``target`` cannot run here (probed once per session, for real), or ``None``."""
        if target.backend not in self._probes:
            cls = self._backend_class(target.backend)
            self._probes[target.backend] = cls.probe(self.settings.device)  # type: ignore[arg-type]
        return self._probes[target.backend]

    def _prepare(self, target: BackendTarget, variant_name: str, batch: int) -> tuple[Callable[[], None], float, dict[str, Any]]:
        """Load, output-check and return a timed callable for one combination.

        Raises:
            BackendUnavailable: the backend cannot run here (the caller skips with the reason).
            OutputMismatch: the backend's outputs disagree with the PyTorch reference.
        """
        reason = self.unavailable_reason(target)
        if reason:
            raise BackendUnavailable(f"{target.backend} on {self.settings.device}: {reason}")
        profile = self.settings.profile
        variant = self._variant(variant_name)
        cls = self._backend_class(target.backend)
        onnx = self._onnx(variant, profile.bench_imgsz, batch) if cls.needs_onnx else None
        request = BackendRequest(
            weights=variant.weights, onnx=onnx, device=self.settings.device,  # type: ignore[arg-type]
            precision=target.precision, batch=batch, imgsz=profile.bench_imgsz,  # type: ignore[arg-type]
            threads=self.settings.threads, cache=self._cache,
            cache_key=f"{variant.meta['key']}-{profile.bench_imgsz}px-bs{batch}",
        )
        backend = cls(request)
        images = sample_images(batch, profile.bench_imgsz)
        rel_err = backend.check_outputs(images, self._reference(variant.weights, images))
        run = backend.runner(images)
        delay_s = injected_delay_s(target.backend)
        if delay_s:
            log.warning("injecting %.1f ms into every %s call (%s)", delay_s * 1e3, target.backend, INJECT_DELAY_ENV)
            run = _slowed(run, delay_s)
        return run, rel_err, backend.describe()

    def measure(self, target: BackendTarget, variant_name: str, batch: int, benchmark: Any | None = None) -> LatencyRecord:
        """Measure (or, without ``benchmark``, reuse a measurement of) one combination.

        With a pytest-benchmark fixture the timing goes through ``benchmark.pedantic`` so the run
        is saved and comparable; without it (a check run on its own) the same rounds are timed
        directly.
        """
        key = (target.id, variant_name, batch)
        if benchmark is None and key in self.records:
            return self.records[key]
        profile = self.settings.profile
        run, rel_err, info = self._prepare(target, variant_name, batch)
        calib_before = self.calibration_ms()
        if benchmark is not None:
            benchmark.pedantic(run, rounds=profile.rounds, warmup_rounds=profile.warmup_rounds, iterations=1)
            samples = list(benchmark.stats.stats.data)
        else:
            samples = time_rounds(run, profile.warmup_rounds, profile.rounds)
        calib_ms = (calib_before + self.calibration_ms()) / 2
        record = LatencyRecord(
            target=target, variant=variant_name, batch=batch, samples_s=tuple(samples),
            summary=summarize_seconds(samples), output_rel_err=rel_err, backend_info=info, calibration_ms=calib_ms,
        )
        self.records[key] = record
        return record

    def interleaved_samples(
        self, target: BackendTarget, variant_names: tuple[str, str], batch: int
    ) -> tuple[list[float], list[float]]:
        """Time two variants in alternating rounds (A B A B ...) on the same backend and batch (seconds).

        Alternation cancels slow drifts of a shared machine (other tenants, thermal state) that
        would otherwise bias a ratio of two measurements taken minutes apart. Each timed call
        follows ``SETTLE_CALLS`` untimed ones of the same variant: every ONNX Runtime session owns
        a thread pool whose workers spin after a run, and timing straight after the other
        session's run measured that contention (same model A/B on 2 cores: 101 ms alternating,
        69 ms with a settle call, 72-87 ms back to back), which shrinks every speedup toward 1.
        """
        profile = self.settings.profile
        runs = [self._prepare(target, name, batch)[0] for name in variant_names]
        for run in runs:
            time_rounds(run, profile.warmup_rounds, 0)
        samples: list[list[float]] = [[], []]
        for _ in range(profile.rounds):
            for i, run in enumerate(runs):
                samples[i] += time_rounds(run, SETTLE_CALLS, 1)
        return samples[0], samples[1]


def confirmed_pair(
    measure: Callable[[], tuple[list[float], list[float]]],
    passes: Callable[[LatencySummary, LatencySummary], bool],
) -> tuple[LatencySummary, LatencySummary, int]:
    """Summaries of one block of interleaved rounds, or of two pooled where the first fails ``passes``.

    A burst on a shared machine can sink one block of rounds (a pruned variant measured 1.04x in
    one block and 1.27x in the next here); a real change survives a second block, and the pooled
    verdict rests on twice the rounds.

    Returns:
        (baseline summary, variant summary, blocks timed).
    """
    base, variant = measure()
    first = summarize_seconds(base), summarize_seconds(variant)
    if passes(*first):
        return first[0], first[1], 1
    more_base, more_variant = measure()
    return summarize_seconds(base + more_base), summarize_seconds(variant + more_variant), 2
