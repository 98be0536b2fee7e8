"""PyTorch eager backend: fused Conv+BN, ``inference_mode``; CPU fp32, CUDA fp32/fp16."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from fastnas_bench.backends.base import Backend, BackendUnavailable, Device, Precision
from fastnas_bench.backends.registry import register

# torch loads when a backend is used, not when the registry is read (option parsing, --help).
if TYPE_CHECKING:
    import torch


def reference_output(weights: Any, images: np.ndarray) -> np.ndarray:
    """The fp32 CPU output of the unfused checkpoint: the reference every backend must match."""
    import torch

    from fastnas_bench.yolo.models import load_model

    model = load_model(weights)
    with torch.inference_mode():
        out = model(torch.from_numpy(images))
    return _primary(out).float().numpy().astype(np.float64)


def _primary(out: Any) -> torch.Tensor:
    # Ultralytics' Detect head returns (predictions, raw feature maps) in eval mode.
    return out[0] if isinstance(out, (tuple, list)) else out


@register("pytorch")
class PyTorchBackend(Backend):
    """Eager PyTorch, as deployed by Ultralytics' own predictor (Conv+BN fused)."""

    times_layers: ClassVar[tuple[Device, ...]] = ("cpu", "cuda")

    @classmethod
    def layer_runner(cls, module: Any, x: Any, threads: int, device: Device, precision: Precision) -> Callable[[], None]:
        import torch

        torch.set_num_threads(threads)
        dtype = torch.float16 if precision == "fp16" else torch.float32
        module = module.eval().to(device, dtype)
        x = x.to(device, dtype)
        cuda = device.startswith("cuda")

        def call() -> None:
            with torch.inference_mode():
                module(x)
            if cuda:  # the wall time must be the device's time, as in the benchmark's runner
                torch.cuda.synchronize()

        return call

    @classmethod
    def probe(cls, device: Device) -> str | None:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            return "PyTorch sees no CUDA device (torch.cuda.is_available() is False)"
        return None

    def _load(self) -> None:
        import torch

        from fastnas_bench.yolo.models import load_model

        # The eager check only: a subclass's own probe (a test compile) runs once per session, not per load.
        reason = PyTorchBackend.probe(self.request.device)
        if reason:
            raise BackendUnavailable(reason)
        if self.request.device == "cpu":
            if self.request.precision != "fp32":
                raise BackendUnavailable("PyTorch CPU runs fp32 only")
            torch.set_num_threads(self.request.threads)
        else:
            # Fixed shapes: let cuDNN pick its fastest algorithms, as a deployment would. And "fp32"
            # means fp32: cuDNN and matmul TF32 (on by default for convolutions) off; fp16 is the
            # reduced-precision target.
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.device = torch.device(self.request.device)
        self.dtype = torch.float16 if self.request.precision == "fp16" else torch.float32
        model = load_model(self.request.weights).fuse(verbose=False)  # type: ignore[operator]
        self.model = model.to(self.device, self.dtype).eval()
        self._input: torch.Tensor | None = None
        self._last: torch.Tensor | None = None

    def runner(self, images: np.ndarray) -> Callable[[], None]:
        """On CUDA, also record each call's GPU time with CUDA events into ``gpu_times_ms``.

        The events bracket the launches on the current stream and the end event is recorded
        before the host waits, so the figure is the GPU's span for the call, launch gaps included.
        """
        import torch

        if self.device.type != "cuda":
            return super().runner(images)
        self._set_input(images)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self.gpu_times_ms: list[float] = []

        def timed_call() -> None:
            start.record()
            self._run()
            end.record()
            end.synchronize()
            self.gpu_times_ms.append(start.elapsed_time(end))

        return timed_call

    def _set_input(self, images: np.ndarray) -> None:
        import torch

        self._input = torch.from_numpy(images).to(self.device, self.dtype)

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            self._last = _primary(self.model(self._input))

    def _synchronize(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _output(self) -> np.ndarray:
        assert self._last is not None
        return self._last.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        import torch

        info = super().describe()
        info["torch"] = torch.__version__
        if self.device.type == "cpu":
            info["threads"] = torch.get_num_threads()
        else:
            info.update(cudnn_benchmark=torch.backends.cudnn.benchmark, cudnn_tf32=torch.backends.cudnn.allow_tf32,
                        matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
        return info
