"""The backend interface: load a variant, check its outputs, hand out a timed callable.

The base class owns the shared work once: the correctness check against the PyTorch reference and
the synchronised per-call runner. Subclasses implement three small hooks: ``_load``, ``_run``
and (for asynchronous devices) ``_synchronize``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from fastnas_bench.backends._lib.agreement import Agreement, compare_outputs
from fastnas_bench.variants.cache import ArtifactCache

Precision = Literal["fp32", "fp16"]
Device = Literal["cpu", "cuda"]


class BackendUnavailable(RuntimeError):
    """The backend cannot run here; the message names what is missing."""


class OutputMismatch(AssertionError):
    """A backend's outputs disagree with the PyTorch reference beyond tolerance."""


@dataclass(frozen=True)
class BackendTarget:
    """One backend at one precision; ``id`` is its test-id fragment (``pytorch``, ``tensorrt-fp16``)."""

    backend: str
    precision: str

    @property
    def id(self) -> str:
        return self.backend if self.precision == "fp32" else f"{self.backend}-{self.precision}"

    @staticmethod
    def ids(backends: tuple[str, ...]) -> tuple[str, ...]:
        """Every target id ``backends`` can take (fp32 and fp16 of each), longest first, for parsing ids."""
        return tuple(sorted({t for b in backends for t in (b, f"{b}-fp16")}, key=len, reverse=True))


@dataclass(frozen=True)
class BackendRequest:
    """What to load: artifacts plus the execution settings.

    Attributes:
        weights: Ultralytics checkpoint of the variant.
        onnx: ONNX export matching ``batch`` and ``imgsz`` (for ONNX-based backends).
        device: ``cpu`` or ``cuda``.
        precision: ``fp32`` or ``fp16``.
        batch: Batch size.
        imgsz: Square input side in pixels.
        threads: CPU intra-op threads (same for every backend, so the comparison is fair).
        cache: Artifact cache for backend-built artifacts (TensorRT engines, timing caches).
        rebuild: Rebuild such artifacts even if cached (``--rebuild-variants``).
    """

    weights: Path
    onnx: Path | None
    device: Device
    precision: Precision
    batch: int
    imgsz: int
    threads: int
    cache: ArtifactCache | None = None
    rebuild: bool = False


class Backend(ABC):
    """One loaded model on one runtime, ready to be checked and timed."""

    name: ClassVar[str]
    #: Whether the backend needs ``BackendRequest.onnx``.
    needs_onnx: ClassVar[bool] = False
    #: Devices this backend can run on.
    devices: ClassVar[tuple[Device, ...]] = ("cpu", "cuda")
    #: Precisions it is benchmarked at, per device.
    precisions: ClassVar[dict[str, tuple[Precision, ...]]] = {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}
    #: Devices on which a run includes it without --backends (one it cannot run on shows as a
    #: skip with the reason, so it does not vanish from the report).
    default_devices: ClassVar[tuple[Device, ...]] = ("cpu", "cuda")
    #: pytest markers its tests carry (declared in pyproject).
    marks: ClassVar[tuple[str, ...]] = ()
    #: Devices on which a latency table can time single layers the way this backend runs them
    #: (:meth:`layer_runner`); the latency-aware method cuts only for such a backend and device.
    times_layers: ClassVar[tuple[Device, ...]] = ()
    #: Devices on which the whole graph can be profiled per node, the way the benchmark runs it
    #: (:func:`fastnas_bench.measure.node_profile.profile_models`); there a latency table is calibrated
    #: in the graph instead of keeping what its layers leave out as a constant.
    profiles_nodes: ClassVar[tuple[Device, ...]] = ()

    def __init__(self, request: BackendRequest) -> None:
        if request.device not in self.devices:
            raise BackendUnavailable(f"{self.name} does not run on {request.device}")
        if self.needs_onnx and request.onnx is None:
            raise ValueError(f"{self.name} needs an ONNX export")
        self.request = request
        self._load()

    @classmethod
    def probe(cls, device: Device) -> str | None:
        """Try the runtime for real on ``device``; return why it is unusable, or ``None``."""
        return None

    @classmethod
    def layer_runner(cls, module: Any, x: Any, threads: int, device: Device, precision: Precision) -> Callable[[], None]:
        """One call of ``module`` (a torch layer) on ``x`` as this backend runs it, loaded and ready.

        Only on the devices of :attr:`times_layers`.
        """
        raise NotImplementedError(f"{cls.name} does not time single layers")

    @abstractmethod
    def _load(self) -> None:
        """Load the model; raise :class:`BackendUnavailable` if the runtime is missing."""

    @abstractmethod
    def _set_input(self, images: np.ndarray) -> None:
        """Place ``images`` (float32 NCHW in [0, 1]) where ``_run`` reads it (device, dtype)."""

    @abstractmethod
    def _run(self) -> None:
        """Run one inference on the current input (may return before the device finishes)."""

    @abstractmethod
    def _output(self) -> np.ndarray:
        """The primary output of the last run as float32 host array (boxes+scores tensor)."""

    def _synchronize(self) -> None:
        """Block until the device has finished the last run (no-op on CPU)."""

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Run once on ``images`` and return the primary output on the host."""
        self._set_input(images)
        self._run()
        self._synchronize()
        return self._output()

    def runner(self, images: np.ndarray) -> Callable[[], None]:
        """A zero-argument callable that runs one synchronised inference, for the timer.

        The input is placed once, outside the timed region; each call times compute only, and
        returns only after the device has finished (so wall time is device time).
        """
        self._set_input(images)
        run, sync = self._run, self._synchronize

        def timed_call() -> None:
            run()
            sync()

        return timed_call

    def check_outputs(self, images: np.ndarray, reference: np.ndarray) -> Agreement:
        """Compare this backend's output on ``images`` with the PyTorch fp32 reference.

        Returns:
            The box (px) and score differences and how many detections were matched.

        Raises:
            OutputMismatch: naming the check that failed (see :mod:`fastnas_bench.backends._lib.agreement`).
        """
        agreement, failure = compare_outputs(self.infer(images), reference, self.request.precision)
        if failure:
            raise OutputMismatch(f"{self.name} {self.request.precision}: {failure}")
        return agreement

    def describe(self) -> dict[str, Any]:
        """Facts about the runtime for ``extra_info`` (versions, providers, ...)."""
        return {"backend": self.name, "precision": self.request.precision, "device": self.request.device}
