"""The OpenVINO backend on a tiny untrained YOLOv8n: agreement with PyTorch, the cached IR, its settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_real_backends import IMGSZ, tiny  # noqa: F401 - the module's tiny model and its ONNX export

from fastnas_bench import versions
from fastnas_bench.backends import openvino as ov_backend
from fastnas_bench.backends._lib.agreement import TOLERANCES, check_images
from fastnas_bench.backends.base import BackendRequest, BackendUnavailable
from fastnas_bench.backends.pytorch import reference_output
from fastnas_bench.backends.registry import default_backends
from fastnas_bench.variants.cache import ArtifactCache


def _request(model: tuple[Path, Path], cache: ArtifactCache | None, **kw: Any) -> BackendRequest:
    weights, onnx = model
    return BackendRequest(**{"weights": weights, "onnx": onnx, "device": "cpu", "precision": "fp32", "batch": 2,
                             "imgsz": IMGSZ, "threads": 1, "cache": cache, **kw})


@pytest.fixture(scope="module")
def confident(tiny: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:  # noqa: F811
    """The tiny model with class scores spread over [0, 1] (untrained, every score sits near 0.002, so
    no box would be compared and nothing detected), and its export: the agreement check in full."""
    import shutil

    import torch
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("confident")
    checkpoint = torch.load(tiny[0], weights_only=False)
    for branch in checkpoint["model"].model[-1].cv3:  # the Detect head's class-logit convolutions
        torch.nn.init.constant_(branch[-1].bias, -2.0)
        branch[-1].weight.data *= 1e7  # their untrained inputs are ~1e-7: logits then spread over units
    weights = folder / "model.pt"
    torch.save(checkpoint, weights)
    (folder / "export").mkdir()
    shutil.copyfile(weights, folder / "export" / "model.pt")
    onnx = YOLO(str(folder / "export" / "model.pt")).export(format="onnx", imgsz=IMGSZ, batch=2, dynamic=False,
                                                            simplify=True, device="cpu", verbose=False)
    return weights, Path(onnx)


@pytest.fixture(scope="module")
def available() -> None:
    reason = ov_backend.OpenVINOBackend.probe("cpu")
    if reason:
        pytest.skip(reason)


@pytest.mark.usefixtures("available")
def test_openvino_matches_the_reference_and_records_its_settings(confident: tuple[Path, Path], tmp_path: Path) -> None:
    runtime = ov_backend.OpenVINOBackend(_request(confident, ArtifactCache(tmp_path / "cache")))
    images = check_images(2, IMGSZ)
    # The suite's own fp32 check, as the measurer makes it before timing (raises OutputMismatch).
    agreement = runtime.check_outputs(images, reference_output(confident[0], images))
    assert agreement.box_err_px <= TOLERANCES["fp32"].box_px and agreement.score_err <= TOLERANCES["fp32"].score
    assert agreement.detections > 0  # boxes and detections were compared, not only near-zero scores
    run = runtime.runner(images)
    run()  # one call, as the timer makes
    info = runtime.describe()
    assert info["backend"] == "openvino" and info["precision"] == "fp32"
    assert info["threads"] == 1 and info["streams"] == 1 and info["performance_hint"] == "LATENCY"
    # Asked for explicitly: on CPUs with AMX or AVX512-BF16 the CPU plugin would otherwise compute in bf16.
    assert info["inference_precision"] == "f32" and info["cpu_pinning"] is False
    assert info["openvino"].startswith(versions.package_version("openvino"))


@pytest.mark.usefixtures("available")
def test_the_ir_is_converted_once_and_keyed_by_the_openvino_version(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    conversions: list[Path] = []
    real_convert = ov_backend.convert_ir

    def counting(ov: Any, onnx: Path) -> Any:
        conversions.append(onnx)
        return real_convert(ov, onnx)

    monkeypatch.setattr(ov_backend, "convert_ir", counting)
    cache = ArtifactCache(tmp_path / "cache")
    ov_backend.OpenVINOBackend(_request(tiny, cache))
    ov_backend.OpenVINOBackend(_request(tiny, cache))
    assert len(conversions) == 1  # the second load read the cached IR
    key = ov_backend.ir_key(tiny[1])
    meta = cache.read(key)
    assert meta is not None and meta["compress_to_fp16"] is False and (cache.path(key) / ov_backend.IR_FILE).is_file()

    real_version = versions.package_version
    monkeypatch.setattr(versions, "package_version", lambda name: "2099.1.0" if name == "openvino" else real_version(name))
    assert ov_backend.ir_key(tiny[1]) != key
    ov_backend.OpenVINOBackend(_request(tiny, cache))
    assert len(conversions) == 2  # another OpenVINO never reads an old IR


@pytest.mark.usefixtures("available")
def test_a_model_compiled_other_than_asked_is_refused(
    tiny: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs: OpenVINO caps its threads at the CPUs the process may use")
    real_config = ov_backend.compile_config
    monkeypatch.setattr(ov_backend, "compile_config", lambda ov, threads: real_config(ov, threads + 1))
    with pytest.raises(BackendUnavailable, match=r"OpenVINO compiled with \{'threads': 2\} instead of \{'threads': 1\}"):
        ov_backend.OpenVINOBackend(_request(tiny, None))


def test_unavailable_openvino_gives_a_one_line_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = ov_backend.OpenVINOBackend
    reason = cls.probe("cuda")
    assert reason and "\n" not in reason and "CPU" in reason
    request = BackendRequest(weights=tmp_path / "m.pt", onnx=tmp_path / "m.onnx", device="cuda", precision="fp32",
                             batch=1, imgsz=IMGSZ, threads=1)
    with pytest.raises(BackendUnavailable, match="openvino does not run on cuda"):
        cls(request)
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now fails as a missing wheel does
    reason = cls.probe("cpu")
    assert reason and reason.startswith("OpenVINO is not importable (ModuleNotFoundError") and "\n" not in reason
    with pytest.raises(BackendUnavailable, match="pip install openvino"):
        cls(BackendRequest(weights=tmp_path / "m.pt", onnx=tmp_path / "m.onnx", device="cpu", precision="fp32",
                           batch=1, imgsz=IMGSZ, threads=1))


def test_cpu_runs_include_openvino_by_default_cuda_runs_do_not() -> None:
    assert ("openvino" in default_backends("cpu")) is ov_backend.RUNS_BY_DEFAULT_ON_CPU
    assert "openvino" not in default_backends("cuda")


def test_a_run_sends_no_openvino_usage_telemetry(tmp_path: Path) -> None:
    """`import openvino` imports its converter, which sends a usage event unless the user opted out; the
    backend's import leaves the converter on its no-op stub (checked in a fresh process, with a fresh home)."""
    code = ("from fastnas_bench.backends.openvino import import_openvino\n"
            "import_openvino()\n"
            "import openvino.tools.ovc.telemetry_utils as t\n"
            "print(t.tm.__name__)\n")
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("CI", None)  # CI=true would opt out by itself
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("telemetry_stub")
    assert not (tmp_path / "intel").exists()  # no client id, no usage counter written
