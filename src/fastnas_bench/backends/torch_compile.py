"""PyTorch compiled by ``torch.compile`` (Inductor): CUDA graphs on CUDA, C++/OpenMP kernels on CPU.

At batch 1 a large GPU runs eager PyTorch launch-bound: the host issues one kernel at a time and the
GPU idles between them. The reference blames that overhead for FLOPs cuts that do not become
latency (§6.1); eager against compiled on the same GPU tests the claim, and stands in for TensorRT
where TensorRT is absent.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastnas_bench.backends.base import BackendUnavailable, Device
from fastnas_bench.backends.pytorch import PyTorchBackend
from fastnas_bench.backends.registry import register

# "reduce-overhead" captures the compiled graph in CUDA graphs (one launch per call); CPU has no
# graphs, and "max-autotune-no-cudagraphs" there only lengthens the compile.
MODES: dict[str, str] = {"cuda": "reduce-overhead", "cpu": "default"}


@register("torch-compile")
class TorchCompileBackend(PyTorchBackend):
    """The eager backend's fused model, compiled once per (variant, precision, batch)."""

    # Compiling takes minutes on a 2-core CPU: CPU runs ask for it by name (--backends).
    default_devices = ("cuda",)
    # A latency table of eager layers would not be what this backend runs.
    times_layers: ClassVar[tuple[Device, ...]] = ()

    @classmethod
    def probe(cls, device: Device) -> str | None:
        reason = super().probe(device)
        if reason:
            return reason
        import torch

        # For real: Inductor needs a working C++ compiler on CPU and Triton on CUDA.
        try:
            fn = torch.compile(lambda x: torch.nn.functional.relu(x) * 2, mode=MODES[device], dynamic=False)
            with torch.inference_mode():
                fn(torch.ones(4, device=device))
        except Exception as e:  # noqa: BLE001 - Inductor fails in many ways; all mean "cannot compile here"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return f"torch.compile cannot build kernels here ({type(e).__name__}: {first})"
        return None

    def _load(self) -> None:
        import torch

        super()._load()
        try:
            self.model = torch.compile(self.model, mode=MODES[self.request.device], dynamic=False, fullgraph=False)
        except RuntimeError as e:
            raise BackendUnavailable(f"torch.compile: {e}") from None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["compile_mode"] = MODES[self.request.device]
        return info
