"""TensorRT backend logic against a fake ``tensorrt`` module shaped like the 10.x and 11.x APIs."""

from __future__ import annotations

import enum
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fastnas_bench.backends import tensorrt as trt_backend
from fastnas_bench.backends.base import BackendUnavailable


def fake_trt(major: int, parse_ok: bool = True) -> types.ModuleType:
    """A minimal stand-in for the TensorRT Python API that records what the backend asks of it."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = f"{major}.0.0"
    trt.calls = []  # type: ignore[attr-defined]

    flags = {"TF32": 1} if major >= 11 else {"FP16": 0, "TF32": 1}
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", flags)  # type: ignore[attr-defined]
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NDCF", {"STRONGLY_TYPED": 5})  # type: ignore[attr-defined]
    trt.MemoryPoolType = enum.IntEnum("MPT", {"WORKSPACE": 0})  # type: ignore[attr-defined]

    class Logger:
        WARNING, ERROR = 2, 1

        def __init__(self, level: int) -> None:
            self.level = level

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+timing"

    class Config:
        def __init__(self) -> None:
            self.flags: list[int] = []
            self.cache: TimingCache | None = None

        def set_memory_pool_limit(self, pool: int, size: int) -> None:
            trt.calls.append(("pool", size))

        def set_flag(self, flag: int) -> None:
            self.flags.append(flag)
            trt.calls.append(("flag", flag.name))

        def clear_flag(self, flag: int) -> None:
            trt.calls.append(("clear_flag", flag.name))

        def create_timing_cache(self, data: bytes) -> TimingCache:
            trt.calls.append(("timing_cache_in", data))
            return TimingCache(data)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            assert self.cache is not None
            return self.cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> object:
            trt.calls.append(("network_flags", flags))
            return object()

        def create_builder_config(self) -> Config:
            return Config()

        def build_serialized_network(self, network: object, config: Config) -> bytes:
            return b"ENGINE"

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network: object, logger: Logger) -> None:
            pass

        def parse(self, data: bytes) -> bool:
            trt.calls.append(("parsed", data))
            return parse_ok

        def get_error(self, i: int) -> str:
            return "unsupported op Foo"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser  # type: ignore[attr-defined]
    return trt


def test_tensorrt10_uses_fp16_builder_flag(tmp_path: Path) -> None:
    trt = fake_trt(10)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"FP32-ONNX")
    timing = tmp_path / "t" / "timing.cache"
    engine = trt_backend.build_engine(trt, onnx, "fp16", timing, tmp_path)
    assert engine == b"ENGINE"
    assert ("network_flags", 0) in trt.calls and ("flag", "FP16") in trt.calls
    assert ("parsed", b"FP32-ONNX") in trt.calls
    assert timing.read_bytes() == b"+timing"  # created empty, written back after the build


def test_tensorrt11_is_strongly_typed_and_autocasts_fp16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trt = fake_trt(11)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"FP32-ONNX")

    def fake_autocast(path: Path, out_dir: Path) -> Path:
        out = out_dir / "model_fp16.onnx"
        out.write_bytes(b"FP16-ONNX")
        return out

    monkeypatch.setattr(trt_backend, "fp16_onnx", fake_autocast)
    timing = tmp_path / "timing.cache"
    timing.write_bytes(b"old")
    trt_backend.build_engine(trt, onnx, "fp16", timing, tmp_path)
    assert ("network_flags", 1 << 5) in trt.calls
    assert not [c for c in trt.calls if c[0] == "flag"]
    assert ("parsed", b"FP16-ONNX") in trt.calls
    assert ("timing_cache_in", b"old") in trt.calls and timing.read_bytes() == b"old+timing"


def test_fp32_means_fp32_tf32_is_cleared(tmp_path: Path) -> None:
    trt = fake_trt(10)
    (tmp_path / "m.onnx").write_bytes(b"x")
    trt_backend.build_engine(trt, tmp_path / "m.onnx", "fp32", tmp_path / "tc", tmp_path)
    assert not [c for c in trt.calls if c[0] == "flag"]
    assert ("clear_flag", "TF32") in trt.calls
    trt = fake_trt(10)
    trt_backend.build_engine(trt, tmp_path / "m.onnx", "fp16", tmp_path / "tc", tmp_path)
    assert ("clear_flag", "TF32") not in trt.calls


def test_engines_are_keyed_by_the_onnx_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastnas_bench.backends.base import BackendRequest
    from fastnas_bench.variants.cache import ArtifactCache

    trt = fake_trt(10)
    cache = ArtifactCache(tmp_path / "cache")
    built: list[bytes] = []
    monkeypatch.setattr(trt_backend, "build_engine",
                        lambda trt, onnx, precision, timing, work: built.append(onnx.read_bytes()) or b"E" + onnx.read_bytes())
    onnx = tmp_path / "m.onnx"

    def engine() -> bytes:
        backend = object.__new__(trt_backend.TensorRTBackend)
        backend.request = BackendRequest(weights=tmp_path / "w.pt", onnx=onnx, device="cuda", precision="fp32",
                                         batch=1, imgsz=640, threads=1, cache=cache)
        return backend._engine_bytes(trt, "NVIDIA H100")

    onnx.write_bytes(b"first export")
    assert engine() == b"Efirst export" and engine() == b"Efirst export" and len(built) == 1
    onnx.write_bytes(b"re-exported after a rebuild")  # same path, new content: a new engine
    assert engine() == b"Ere-exported after a rebuild" and len(built) == 2
    backend = object.__new__(trt_backend.TensorRTBackend)
    backend.request = BackendRequest(weights=tmp_path / "w.pt", onnx=onnx, device="cuda", precision="fp32",
                                     batch=1, imgsz=640, threads=1, cache=cache, rebuild=True)
    backend._engine_bytes(trt, "NVIDIA H100")
    assert len(built) == 3  # --rebuild-variants rebuilds the engine too


def test_parse_errors_are_reported(tmp_path: Path) -> None:
    trt = fake_trt(10, parse_ok=False)
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(RuntimeError, match="unsupported op Foo"):
        trt_backend.build_engine(trt, tmp_path / "m.onnx", "fp32", tmp_path / "tc", tmp_path)
    assert not (tmp_path / "tc").exists()


def test_probe_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "CUDA only" in (trt_backend.TensorRTBackend.probe("cpu") or "")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails like a missing wheel
    reason = trt_backend.TensorRTBackend.probe("cuda")
    assert reason and "TensorRT is not importable" in reason
    with pytest.raises(BackendUnavailable):
        trt_backend.import_tensorrt()


def test_weak_typing_detection() -> None:
    assert trt_backend.has_weak_typing(fake_trt(10))
    assert not trt_backend.has_weak_typing(fake_trt(11))
    assert trt_backend.network_flags(fake_trt(10)) == 0


def test_output_picks_the_predictions_tensor() -> None:
    import torch

    backend = object.__new__(trt_backend.TensorRTBackend)
    backend.output_names = ["feat", "output0"]
    backend.buffers = {"feat": torch.zeros(1, 4), "output0": torch.ones(1, 9, 100)}
    assert np.array_equal(backend._output(), np.ones((1, 9, 100), dtype=np.float32))
