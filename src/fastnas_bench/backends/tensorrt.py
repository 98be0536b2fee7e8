"""TensorRT backend: engine built from the ONNX export, cached, run with ``execute_async_v3``.

Written against the documented Python API of TensorRT 10.x and 11.x. The differences are found
by feature, not by version string: 11.x networks are always strongly typed and have no
``BuilderFlag.FP16``, so an FP16 engine there is built from an FP16 ONNX made by modelopt's
AutoCast; on 10.x the FP16 builder flag is used on the FP32 ONNX.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from fastnas_bench.backends.base import Backend, BackendUnavailable, Device
from fastnas_bench.backends.registry import register
from fastnas_bench.fsutil import atomic_write_bytes
from fastnas_bench.keys import sha256_file

log = logging.getLogger(__name__)

ENGINE_FILE = "model.engine"
WORKSPACE_BYTES = 4 << 30
#: Bumped whenever build_engine changes how an engine is built (flags, workspace, typing); part of
#: every engine's cache key.
BUILDER_SETTINGS_VERSION = 2


def import_tensorrt() -> ModuleType:
    """``import tensorrt``, turning every failure (missing wheel, unloadable libraries) into a reason."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:
        raise BackendUnavailable(f"TensorRT is not importable ({type(e).__name__}: {e}); install the 'gpu' extra") from None
    return trt


def has_weak_typing(trt: ModuleType) -> bool:
    """True on TensorRT 10.x, where precision is a builder flag; False on strongly typed 11.x."""
    return hasattr(trt.BuilderFlag, "FP16")


def network_flags(trt: ModuleType) -> int:
    """Creation flags: strongly typed where the flag exists and weak typing is gone (11.x)."""
    if not has_weak_typing(trt) and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def fp16_onnx(onnx_path: Path, out_dir: Path) -> Path:
    """An FP16 copy of the ONNX (FP32 I/O kept) for strongly typed builds, via modelopt AutoCast."""
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    converted = convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True)
    out = out_dir / "model_fp16.onnx"
    onnx.save(converted, str(out))
    return out


def build_engine(
    trt: ModuleType, onnx_path: Path, precision: str, timing_cache: Path, work_dir: Path
) -> bytes:
    """Build a serialized engine from ``onnx_path``, reading and updating ``timing_cache``.

    Raises:
        RuntimeError: with the parser's errors if the ONNX does not parse, or if the build fails.
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp32":
        # TF32 is on by default on Ampere and newer: an "fp32" engine would run 10-bit-mantissa
        # tensor-core math. Off, so fp32 means fp32 (the fp16 target is the reduced-precision one).
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision == "fp16":
        if has_weak_typing(trt):
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            onnx_path = fp16_onnx(onnx_path, work_dir)

    cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path.name}")

    # Timing caches only grow; write the merged cache atomically so a crash cannot truncate it.
    atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


@register("tensorrt")
class TensorRTBackend(Backend):
    """A TensorRT engine executed on one CUDA stream with device-resident I/O."""

    needs_onnx = True
    devices = ("cuda",)
    marks = ("tensorrt",)

    @classmethod
    def probe(cls, device: Device) -> str | None:
        if device != "cuda":
            return "TensorRT runs on CUDA only (use --gpu)"
        try:
            trt = import_tensorrt()
            builder = trt.Builder(trt.Logger(trt.Logger.ERROR))  # fails without a usable GPU/driver
            if builder is None:
                return "TensorRT could not create a builder (no usable CUDA device?)"
        except BackendUnavailable as e:
            return str(e)
        except (RuntimeError, TypeError) as e:
            return f"TensorRT cannot create a builder: {e}"
        return None

    def _load(self) -> None:
        import torch

        trt = import_tensorrt()
        self.trt = trt
        engine_bytes = self._engine_bytes(trt, torch.cuda.get_device_name(0))
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the cached engine")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.buffers: dict[str, Any] = {}
        self.input_name = ""
        self.output_names: list[str] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            self.buffers[name] = self._alloc(shape, dtype)
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.input_name = name
            else:
                self.output_names.append(name)
        if not self.input_name or not self.output_names:
            raise RuntimeError("the engine has no input or no output tensor")

    def _engine_bytes(self, trt: ModuleType, gpu_name: str) -> bytes:
        req = self.request
        if req.cache is None or req.onnx is None:
            raise ValueError("TensorRT needs an artifact cache and an ONNX export")
        # Keyed by what the engine is built from and how: the ONNX file's content, the builder
        # settings, TensorRT, the GPU and the precision; a re-exported ONNX never meets an old engine.
        onnx_sha = sha256_file(req.onnx)[:16]
        tag = (f"trt-{onnx_sha}-builder{BUILDER_SETTINGS_VERSION}-trt{trt.__version__}-"
               f"{gpu_name.replace(' ', '_')}-{req.precision}")
        timing_cache = req.cache.root / "tensorrt" / f"timing-{gpu_name.replace(' ', '_')}-{trt.__version__}.cache"
        onnx_path = req.onnx

        def builder(tmp: Path) -> dict[str, Any]:
            (tmp / ENGINE_FILE).write_bytes(build_engine(trt, onnx_path, req.precision, timing_cache, tmp))
            for leftover in tmp.glob("*.onnx"):
                leftover.unlink()
            return {"tensorrt": trt.__version__, "gpu": gpu_name, "precision": req.precision, "onnx_sha256": onnx_sha,
                    "builder_settings": BUILDER_SETTINGS_VERSION, "tf32": False}

        req.cache.get_or_build(tag, builder, rebuild=req.rebuild)
        return (req.cache.path(tag) / ENGINE_FILE).read_bytes()

    @staticmethod
    def _alloc(shape: tuple[int, ...], dtype: np.dtype) -> Any:
        import torch

        torch_dtype = torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
        return torch.empty(shape, dtype=torch_dtype, device="cuda")

    def _set_input(self, images: np.ndarray) -> None:
        import torch

        target = self.buffers[self.input_name]
        target.copy_(torch.from_numpy(images).to(target.device, target.dtype))
        torch.cuda.synchronize()  # the copy ran on the default stream; the engine runs on ours

    def _run(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def _synchronize(self) -> None:
        self.stream.synchronize()

    def _output(self) -> np.ndarray:
        # The predictions tensor is the largest output (the engine may expose feature maps too).
        name = max(self.output_names, key=lambda n: self.buffers[n].numel())
        return self.buffers[name].float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["tensorrt"] = self.trt.__version__
        info["tf32"] = False  # cleared for fp32 engines (build_engine); fp16 engines are fp16
        return info
