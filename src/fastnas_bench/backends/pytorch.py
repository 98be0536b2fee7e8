"""PyTorch eager backend: fused Conv+BN, ``inference_mode``; CPU fp32, CUDA fp32/fp16."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fastnas_bench.backends.base import Backend, BackendUnavailable, Device, register


def reference_output(weights: Any, images: np.ndarray) -> np.ndarray:
    """The fp32 CPU output of the unfused checkpoint: the reference every backend must match."""
    from fastnas_bench.build import load_model

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

    @classmethod
    def probe(cls, device: Device) -> str | None:
        if device == "cuda" and not torch.cuda.is_available():
            return "PyTorch sees no CUDA device (torch.cuda.is_available() is False)"
        return None

    def _load(self) -> None:
        from fastnas_bench.build import load_model

        reason = self.probe(self.request.device)
        if reason:
            raise BackendUnavailable(reason)
        if self.request.device == "cpu":
            if self.request.precision != "fp32":
                raise BackendUnavailable("PyTorch CPU runs fp32 only")
            torch.set_num_threads(self.request.threads)
        self.device = torch.device(self.request.device)
        self.dtype = torch.float16 if self.request.precision == "fp16" else torch.float32
        model = load_model(self.request.weights).fuse(verbose=False)  # type: ignore[operator]
        self.model = model.to(self.device, self.dtype).eval()
        self._input: torch.Tensor | None = None
        self._last: torch.Tensor | None = None

    def _set_input(self, images: np.ndarray) -> None:
        self._input = torch.from_numpy(images).to(self.device, self.dtype)

    def _run(self) -> None:
        with torch.inference_mode():
            self._last = _primary(self.model(self._input))

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _output(self) -> np.ndarray:
        assert self._last is not None
        return self._last.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["torch"] = torch.__version__
        if self.device.type == "cpu":
            info["threads"] = torch.get_num_threads()
        return info
