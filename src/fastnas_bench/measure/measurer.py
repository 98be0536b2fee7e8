"""One latency measurement: load a backend, check its outputs, time it, summarise.

Independent of pytest fixtures so the harness can be tested with a fake backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastnas_bench.backends._lib.agreement import Agreement, check_images
from fastnas_bench.backends.base import Backend, BackendRequest, BackendTarget, BackendUnavailable
from fastnas_bench.backends.registry import get_backend_class
from fastnas_bench.compat import pytest_benchmark as benchmark_compat
from fastnas_bench.host import gpu_state
from fastnas_bench.measure.ab_worker import burn
from fastnas_bench.measure.inject import INJECT_SLOWDOWN_ENV, injected_slowdown
from fastnas_bench.measure.stats import PairedSpeedup, paired_speedup
from fastnas_bench.measure.timing import LatencySummary, abba_rounds, summarize_seconds, time_rounds, timing_slot
from fastnas_bench.variants.cache import ArtifactCache
from fastnas_bench.variants.variant import Variant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeasurePlan:
    """How a session measures, fixed before the first sample.

    Attributes:
        device: ``cpu`` or ``cuda``.
        threads: CPU threads given to every backend.
        imgsz: Input side in pixels.
        warmup_rounds: Untimed calls before timing.
        rounds: Timed calls of one latency measurement.
        speedup_rounds: ABBA rounds of one paired speedup.
        speedup_batch_rounds: Consecutive rounds per batch of its interval: rounds of a shared machine
            come in bursts, and batches of 10 keep the interval's coverage up to a lag-1
            autocorrelation of 0.7 (tests/test_ab.py); 90 rounds make 9 batches.
        rebuild: Rebuild backend artifacts (engines) once (``--rebuild-variants``).
    """

    device: str
    threads: int
    imgsz: int
    warmup_rounds: int
    rounds: int
    speedup_rounds: int
    rebuild: bool = False
    speedup_batch_rounds: int = 10


@dataclass(frozen=True)
class Measurement:
    """The samples and summary of one (target, variant, batch) measurement."""

    target: BackendTarget
    variant: str
    batch: int
    samples_s: tuple[float, ...]
    summary: LatencySummary
    agreement: Agreement
    backend_info: dict[str, Any] = field(default_factory=dict)
    calibration_ms: float | None = None
    #: CUDA-event GPU time of each timed call (PyTorch backends on CUDA), beside the wall time.
    gpu_samples_ms: tuple[float, ...] | None = None
    #: NVML clocks, temperature, power, throttle reasons right before and after timing (CUDA).
    gpu_state: dict[str, Any] | None = None


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


def _slowed(fn: Callable[[], None], fraction: float, threads: int = 1) -> Callable[[], None]:
    """``fn`` followed by ``fraction`` of its own duration of CPU work: a slower model loads the machine
    as a real regression would, where a sleep would leave the cores to the other side of a pair."""

    def slowed() -> None:
        start = time.perf_counter()
        fn()
        burn((time.perf_counter() - start) * fraction, threads)

    return slowed


class Measurer:
    """Measures and remembers latencies for one session.

    Args:
        plan: Device, threads, image size and rounds of every measurement.
        variant: Returns the built variant for a name (``baseline``, ``fastnas66``).
        onnx: Returns the ONNX export of a variant at (imgsz, batch).
        reference: Returns the PyTorch fp32 reference output for (weights, images).
        cache: Artifact cache for backend artifacts.
        images: Returns the real images of the output check for (batch, imgsz); default:
            Ultralytics' bundled photos.
        backend_class: Looks up a backend class by name (a fake in the harness tests).
    """

    def __init__(
        self,
        plan: MeasurePlan,
        variant: Callable[[str], Variant],
        onnx: Callable[[Variant, int, int], Path],
        reference: Callable[[Path, Any], Any],
        cache: ArtifactCache | None,
        images: Callable[[int, int], Any] = check_images,
        backend_class: Callable[[str], type[Backend]] = get_backend_class,
    ) -> None:
        self.plan = plan
        self._variant = variant
        self._onnx = onnx
        self._reference = reference
        self._cache = cache
        self._images = images
        self._backend_class = backend_class
        self._probes: dict[str, str | None] = {}
        self.measurements: dict[tuple[str, str, int], Measurement] = {}
        self.speedups: dict[tuple[str, str, int], PairedSpeedup] = {}
        self._prepared: dict[tuple[str, str, int], tuple[Callable[[], None], Agreement, Backend]] = {}
        self._calibration: Calibration | None = None

    def calibration_ms(self) -> float:
        """The reference workload's median now (see :class:`Calibration`)."""
        if self._calibration is None:
            self._calibration = Calibration(self.plan.device, self.plan.threads)
        return self._calibration.measure_ms()

    def unavailable_reason(self, target: BackendTarget) -> str | None:
        """Why ``target`` cannot run here (probed once per session, for real), or ``None``."""
        if target.backend not in self._probes:
            cls = self._backend_class(target.backend)
            self._probes[target.backend] = cls.probe(self.plan.device)  # type: ignore[arg-type]
        return self._probes[target.backend]

    def _prepare(
        self, target: BackendTarget, variant_name: str, batch: int
    ) -> tuple[Callable[[], None], Agreement, Backend]:
        """Load, output-check and return a timed callable for one combination, once per session.

        Every test of the combination then times the same loaded (and, for compiled backends,
        compiled) runtime: loading is not repeated, and no test times a colder copy than another.

        Raises:
            BackendUnavailable: the backend cannot run here (the caller skips with the reason).
            OutputMismatch: the backend's outputs disagree with the PyTorch reference.
        """
        key = (target.id, variant_name, batch)
        if key in self._prepared:
            return self._prepared[key]
        reason = self.unavailable_reason(target)
        if reason:
            raise BackendUnavailable(f"{target.backend} on {self.plan.device}: {reason}")
        plan = self.plan
        variant = self._variant(variant_name)
        cls = self._backend_class(target.backend)
        onnx = self._onnx(variant, plan.imgsz, batch) if cls.needs_onnx else None
        request = BackendRequest(
            weights=variant.weights, onnx=onnx, device=plan.device,  # type: ignore[arg-type]
            precision=target.precision, batch=batch, imgsz=plan.imgsz,  # type: ignore[arg-type]
            threads=plan.threads, cache=self._cache, rebuild=plan.rebuild,
        )
        backend = cls(request)
        images = self._images(batch, plan.imgsz)
        agreement = backend.check_outputs(images, self._reference(variant.weights, images))
        run = backend.runner(images)
        fraction = injected_slowdown(target.backend, variant_name)
        if fraction:
            log.warning("slowing every %s %s call by %.0f%% (%s)", target.backend, variant_name, fraction * 100,
                        INJECT_SLOWDOWN_ENV)
            run = _slowed(run, fraction, plan.threads)
        self._prepared[key] = run, agreement, backend
        return self._prepared[key]

    def check(self, target: BackendTarget, variant_name: str, batch: int) -> Agreement:
        """Load and output-check one combination and run it once, untimed (timing disabled).

        Returns:
            How the outputs compared with the PyTorch reference.
        """
        run, agreement, _ = self._prepare(target, variant_name, batch)
        run()
        return agreement

    def measure(self, target: BackendTarget, variant_name: str, batch: int, benchmark: Any | None = None) -> Measurement:
        """Measure (or, without ``benchmark``, reuse a measurement of) one combination.

        With a pytest-benchmark fixture the timing goes through ``benchmark.pedantic`` so the run
        is saved and comparable; without it (a check run on its own) the same rounds are timed
        directly.
        """
        key = (target.id, variant_name, batch)
        if benchmark is None and key in self.measurements:
            return self.measurements[key]
        plan = self.plan
        run, agreement, backend = self._prepare(target, variant_name, batch)
        # One slot from the first calibration to the last: the calibrations and GPU states describe the
        # machine these rounds ran on only if no other run on this host timed in between. (Inner timed
        # blocks nest in it.)
        with timing_slot():
            calib_before = self.calibration_ms()
            # Right before timing: after loading, compiling and the output check.
            state_before = gpu_state() if plan.device == "cuda" else None
            if benchmark is not None:
                benchmark.pedantic(run, rounds=plan.rounds, warmup_rounds=plan.warmup_rounds, iterations=1)
                samples = benchmark_compat.timed_samples_s(benchmark)
            else:
                samples = time_rounds(run, plan.warmup_rounds, plan.rounds)
            state_after = gpu_state() if plan.device == "cuda" else None
            calib_ms = (calib_before + self.calibration_ms()) / 2
        gpu_ms = getattr(backend, "gpu_times_ms", None)
        record = Measurement(
            target=target, variant=variant_name, batch=batch, samples_s=tuple(samples),
            summary=summarize_seconds(samples), agreement=agreement, backend_info=backend.describe(),
            calibration_ms=calib_ms, gpu_samples_ms=tuple(gpu_ms[-len(samples):]) if gpu_ms else None,
            gpu_state={"before": state_before, "after": state_after} if state_before or state_after else None,
        )
        self.measurements[key] = record
        return record

    def paired_speedup(self, target: BackendTarget, variant_name: str, batch: int) -> PairedSpeedup:
        """Baseline vs ``variant_name`` from one fixed block of ABBA rounds, measured once per session
        (the bound check and the regression gate judge the same measurement)."""
        key = (target.id, variant_name, batch)
        if key not in self.speedups:
            base, variant = self.interleaved_samples(target, ("baseline", variant_name), batch)
            self.speedups[key] = paired_speedup(base, variant, batch_rounds=self.plan.speedup_batch_rounds)
        return self.speedups[key]

    def interleaved_samples(
        self, target: BackendTarget, variant_names: tuple[str, str], batch: int
    ) -> tuple[list[float], list[float]]:
        """Time two variants in ABBA rounds on the same backend and batch (seconds).

        Each of the plan's ``speedup_rounds`` rounds times A, B, B, A: a drift of a shared
        machine within a round cancels in each side's sum, and each side runs once after itself
        and once after the other, so neither pays more often for what the other leaves behind.
        The number of rounds is fixed before the first sample (see :mod:`fastnas_bench.measure.stats`).

        Returns:
            (A samples, B samples), two per round each, in round order.
        """
        first, second = (self._prepare(target, name, batch)[0] for name in variant_names)
        with timing_slot():  # warm-up and rounds as one block
            for run in (first, second):
                time_rounds(run, self.plan.warmup_rounds, 0)
            return abba_rounds(first, second, self.plan.speedup_rounds)
