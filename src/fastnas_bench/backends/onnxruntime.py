"""ONNX Runtime backend: CPU EP with a fixed thread count; CUDA EP with IO binding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from fastnas_bench.backends.base import Backend, BackendUnavailable, Device, Precision
from fastnas_bench.backends.registry import register
from fastnas_bench.versions import package_version

_PROVIDERS: dict[str, str] = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
#: ORT's allow_spinning session setting for benchmark sessions ("0": idle workers sleep).
SPINNING = "0"


def mixed_install() -> str | None:
    """Why an environment with both ORT wheels cannot be trusted, or ``None``.

    ``onnxruntime`` and ``onnxruntime-gpu`` install the same ``onnxruntime`` module; whichever was
    installed last wins, usually without the CUDA provider, so a GPU run would skip ORT-CUDA.
    """
    if "absent" in (package_version("onnxruntime"), package_version("onnxruntime-gpu")):
        return None
    return ("both onnxruntime and onnxruntime-gpu are installed and share one module; keep one: "
            "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu (or onnxruntime)")


def session_options(threads: int) -> Any:
    """The session options of every timed ORT session (benchmarks and latency tables alike)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle intra-op workers spin by default and steal the cores of whatever runs next: two
    # sessions timed in turn read IQRs of 4-13 ms on a 30 ms model with spinning, < 1.2 ms without.
    options.add_session_config_entry("session.intra_op.allow_spinning", SPINNING)
    options.add_session_config_entry("session.inter_op.allow_spinning", SPINNING)
    return options


@register("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """An ORT InferenceSession on the variant's ONNX export."""

    needs_onnx = True
    # Layers are timed through ORT's CPU provider only: on CUDA the latency-aware cut uses PyTorch.
    times_layers: ClassVar[tuple[Device, ...]] = ("cpu",)
    # ORT's profiler times every node of the CPU provider's optimised graph (``fastnas-bench nodes``).
    profiles_nodes: ClassVar[tuple[Device, ...]] = ("cpu",)
    # The export is fp32; an fp16 session would need an fp16 export of its own.
    precisions: ClassVar[dict[str, tuple[Precision, ...]]] = {"cpu": ("fp32",), "cuda": ("fp32",)}

    @classmethod
    def probe(cls, device: Device) -> str | None:
        both = mixed_install()
        if both:
            return both
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed"
        if _PROVIDERS[device] not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} has no {_PROVIDERS[device]} (install onnxruntime-gpu)"
        return None

    @classmethod
    def layer_runner(cls, module: Any, x: Any, threads: int, device: Device, precision: Precision) -> Callable[[], None]:
        import io

        import onnxruntime as ort
        import torch

        buffer = io.BytesIO()
        torch.onnx.export(module.eval(), (x,), buffer, input_names=["x"], output_names=["y"],  # type: ignore[arg-type]
                          opset_version=17, dynamo=False)
        session = ort.InferenceSession(buffer.getvalue(), session_options(threads), providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}

        def call() -> None:
            session.run(None, feed)

        return call

    def _load(self) -> None:
        import onnxruntime as ort

        reason = self.probe(self.request.device)
        if reason:
            raise BackendUnavailable(reason)
        if self.request.precision != "fp32":
            raise BackendUnavailable("the ONNX export is fp32; ORT runs it as fp32 only")
        options = session_options(self.request.threads)
        wanted = _PROVIDERS[self.request.device]
        self.session = ort.InferenceSession(str(self.request.onnx), options, providers=[wanted])
        # ORT falls back to the CPU provider silently when a provider fails to initialise.
        if self.session.get_providers()[0] != wanted:
            raise BackendUnavailable(f"onnxruntime fell back to {self.session.get_providers()} instead of {wanted}")
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.binding = self.session.io_binding()
        self._ort = ort

    def _set_input(self, images: np.ndarray) -> None:
        self.binding.clear_binding_inputs()
        self.binding.clear_binding_outputs()
        if self.request.device == "cuda":
            # Keep the input resident on the GPU so the timed call measures compute, not H2D copies.
            self._input_value = self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(images), "cuda", 0)
            self.binding.bind_ortvalue_input(self.input_name, self._input_value)
            self.binding.bind_output(self.output_name, "cuda", 0)
        else:
            self.binding.bind_cpu_input(self.input_name, np.ascontiguousarray(images))
            self.binding.bind_output(self.output_name, "cpu")

    def _run(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def _synchronize(self) -> None:
        if self.request.device == "cuda":
            self.binding.synchronize_outputs()

    def _output(self) -> np.ndarray:
        return np.asarray(self.binding.copy_outputs_to_cpu()[0], dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(onnxruntime=self._ort.__version__, providers=self.session.get_providers(),
                    allow_spinning=self.session.get_session_options().get_session_config_entry(
                        "session.intra_op.allow_spinning"))
        if self.request.device == "cpu":
            info["threads"] = self.request.threads
        return info
