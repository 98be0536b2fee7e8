"""OpenVINO backend: the ONNX export converted to OpenVINO IR (cached), compiled for the CPU at fp32.

The IR is read by OpenVINO's ONNX frontend from the same ONNX export the ORT backend loads and
kept in the artifact cache, keyed by the export's content and the OpenVINO version. It is compiled
with the latency hint, one stream and the session's thread count, and run through one
``InferRequest`` reused for every call. What the compiled model reports it uses is read back, and a
model that did not get what was asked (fp32, the threads, one stream) is refused, never timed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from fastnas_bench.backends.base import Backend, BackendUnavailable, Device, Precision
from fastnas_bench.backends.registry import register
from fastnas_bench.keys import digest, sha256_file
from fastnas_bench.versions import OPENVINO_IR, versions_of

log = logging.getLogger(__name__)

#: Whether a CPU run includes OpenVINO without --backends; False makes it opt-in (--backends openvino).
RUNS_BY_DEFAULT_ON_CPU = True

#: The IR's graph file; its weights are ``model.bin`` beside it.
IR_FILE = "model.xml"
#: Bumped whenever convert_ir changes how an IR is made; part of every IR's key.
CONVERT_SETTINGS_VERSION = 2  # 2: the runtime's ONNX frontend, not convert_model
#: Streams of a timed model: one, so a call runs on all of its threads (the latency hint's own choice too).
STREAMS = 1
#: OpenVINO's name of the precision every compiled model must report (``INFERENCE_PRECISION_HINT``).
INFERENCE_PRECISION = "f32"

#: What :meth:`OpenVINOBackend.describe` records, read back from the compiled model: describe key → property.
COMPILED_SETTINGS: dict[str, str] = {
    "performance_hint": "PERFORMANCE_HINT",
    "threads": "INFERENCE_NUM_THREADS",
    "streams": "NUM_STREAMS",
    "inference_precision": "INFERENCE_PRECISION_HINT",
    "cpu_pinning": "ENABLE_CPU_PINNING",
    "hyper_threading": "ENABLE_HYPER_THREADING",
}


def import_openvino() -> ModuleType:
    """``import openvino``, turning every failure (missing wheel, unloadable libraries) into a reason."""
    # `import openvino` imports its converter (openvino.tools.ovc), which sends a usage event at import
    # unless the user opted out; a benchmark run must not phone home. Without the telemetry package ovc
    # falls back to its own no-op stub (ovc/telemetry_utils.py), so it is hidden unless already imported.
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    try:
        import openvino as ov
    except (ImportError, OSError) as e:
        raise BackendUnavailable(f"OpenVINO is not importable ({type(e).__name__}: {e}); pip install openvino") from None
    return ov


def ir_key(onnx: Path) -> str:
    """Key of the IR converted from ``onnx``: the export's content, the conversion settings and OpenVINO's
    version, so a re-exported model or another OpenVINO never meets an old IR."""
    onnx_sha = sha256_file(onnx)
    settings = {"onnx_sha256": onnx_sha, "settings": CONVERT_SETTINGS_VERSION, "versions": versions_of(OPENVINO_IR)}
    return f"openvino-ir-{onnx_sha[:16]}-{digest(settings)}"


def convert_ir(ov: ModuleType, onnx: Path) -> Any:
    """The ``openvino.Model`` of ``onnx``, read by the runtime's own ONNX frontend.

    Not ``openvino.convert_model``: the runtime's reader needs none of the converter's options for an ONNX
    file, and keeps the converter's usage telemetry out of the picture (see :func:`import_openvino`).
    """
    return ov.Core().read_model(str(onnx))


def compile_config(ov: ModuleType, threads: int) -> dict[str, Any]:
    """CPU compile properties of every timed model."""
    import openvino.properties as props
    import openvino.properties.hint as hints

    return {
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        props.inference_num_threads: threads,
        props.num_streams: STREAMS,
        # The CPU plugin computes in bf16 by default where the CPU has AMX or AVX512-BF16 (a Xeon with
        # AMX reads back bf16 without this): an "fp32" target computes in fp32, as the others' fp32 does.
        hints.inference_precision: ov.Type.f32,
        # ORT's and PyTorch's threads are not pinned: pinned OpenVINO threads would be timed under
        # other scheduling than theirs.
        hints.enable_cpu_pinning: False,
        # Off, the plugin uses one logical CPU per two-thread core: fewer than the logical CPUs the
        # thread count (and the other backends' threads) is made of. It reads back False where a core
        # has one thread.
        hints.enable_hyper_threading: True,
    }


def _plain(value: Any) -> Any:
    """A property value as JSON: an element type by its name (``f32``), an enum by its member's name."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    if hasattr(value, "name") and not isinstance(value, str):
        return value.name
    return value


@register("openvino")
class OpenVINOBackend(Backend):
    """The variant's ONNX export as OpenVINO IR on the CPU plugin, through one reused InferRequest."""

    needs_onnx = True
    devices: ClassVar[tuple[Device, ...]] = ("cpu",)
    # Listed on CUDA too, so `--gpu --backends openvino` shows as a skip with the reason rather than vanishing.
    precisions: ClassVar[dict[str, tuple[Precision, ...]]] = {"cpu": ("fp32",), "cuda": ("fp32",)}
    default_devices: ClassVar[tuple[Device, ...]] = ("cpu",) if RUNS_BY_DEFAULT_ON_CPU else ()

    @classmethod
    def probe(cls, device: Device) -> str | None:
        if device != "cpu":
            return "OpenVINO runs on the CPU here (its GPU plugin drives Intel GPUs, not CUDA)"
        try:
            ov = import_openvino()
            # For real: a one-operation model compiled and run on the CPU plugin at fp32.
            x = ov.opset8.parameter([1, 4], ov.Type.f32, name="x")
            model = ov.Model([ov.opset8.relu(x)], [x], "probe")
            compiled = ov.Core().compile_model(model, "CPU", compile_config(ov, 1))
            compiled.create_infer_request().infer({0: np.ones((1, 4), dtype=np.float32)})
        except BackendUnavailable as e:
            return str(e)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return f"OpenVINO cannot compile for its CPU plugin ({first})"
        return None

    def _load(self) -> None:
        req = self.request
        reason = self.probe(req.device)
        if reason:
            raise BackendUnavailable(reason)
        if req.precision != "fp32":
            raise BackendUnavailable("the ONNX export is fp32; OpenVINO runs it as fp32 only")
        ov = import_openvino()
        core = ov.Core()
        self.compiled = core.compile_model(self._model(ov, core), "CPU", compile_config(ov, req.threads))
        self.settings = {key: _plain(self.compiled.get_property(name)) for key, name in COMPILED_SETTINGS.items()}
        wanted = {"inference_precision": INFERENCE_PRECISION, "threads": req.threads, "streams": STREAMS}
        wrong = {k: self.settings[k] for k, v in wanted.items() if self.settings[k] != v}
        if wrong:
            asked = {k: wanted[k] for k in wrong}
            raise BackendUnavailable(f"OpenVINO compiled with {wrong} instead of {asked}")
        self.infer_request = self.compiled.create_infer_request()
        self.version = ov.get_version()

    def _model(self, ov: ModuleType, core: Any) -> Any:
        """The IR of the request's ONNX export: from the artifact cache (converted once), or converted here
        where the request has no cache (a latency probe's throw-away exports)."""
        req = self.request
        if req.onnx is None:
            raise ValueError("OpenVINO needs an ONNX export")
        if req.cache is None:
            return convert_ir(ov, req.onnx)
        key = ir_key(req.onnx)
        onnx = req.onnx

        def builder(tmp: Path) -> dict[str, Any]:
            # save_model compresses weights to fp16 unless told not to: an fp32 model keeps fp32 weights.
            ov.save_model(convert_ir(ov, onnx), tmp / IR_FILE, compress_to_fp16=False)
            return {"openvino": ov.get_version(), "onnx_sha256": sha256_file(onnx),
                    "convert_settings": CONVERT_SETTINGS_VERSION, "compress_to_fp16": False}

        req.cache.get_or_build(key, builder, rebuild=req.rebuild)
        return core.read_model(req.cache.path(key) / IR_FILE)

    def _set_input(self, images: np.ndarray) -> None:
        target = self.infer_request.get_input_tensor(0)
        if tuple(target.shape) != images.shape:
            raise ValueError(f"images of shape {images.shape} for a model compiled for {tuple(target.shape)}")
        # Written once into the request's own input tensor; each timed call then reads it in place.
        target.data[...] = images

    def _run(self) -> None:
        # share_outputs: the results are views of the request's own output tensors, so a call copies
        # and allocates no output buffer (the copy is _output's, outside the timed region).
        self.infer_request.infer(share_outputs=True)

    def _output(self) -> np.ndarray:
        return np.array(self.infer_request.get_output_tensor(0).data, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(openvino=self.version, **self.settings)
        return info
