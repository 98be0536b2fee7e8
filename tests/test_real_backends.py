"""The real CPU backends and FastNAS itself, on a tiny untrained YOLOv8n, in seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.backends._lib.agreement import check_images
from fastnas_bench.backends.base import BackendRequest
from fastnas_bench.backends.pytorch import reference_output
from fastnas_bench.backends.registry import get_backend_class

IMGSZ = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A yolov8n checkpoint (5 classes) and its static ONNX export at 64 px, batch 2."""
    from ultralytics import YOLO

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    weights = folder / "model.pt"
    torch.save({"model": DetectionModel("yolov8n.yaml", nc=5, verbose=False), "train_args": {"task": "detect"}}, weights)
    work = folder / "export"
    work.mkdir()
    shutil.copyfile(weights, work / "model.pt")
    onnx = YOLO(str(work / "model.pt")).export(format="onnx", imgsz=IMGSZ, batch=2, dynamic=False, simplify=True,
                                               device="cpu", verbose=False)
    return weights, Path(onnx)


@pytest.mark.parametrize("backend", ["pytorch", "onnxruntime"])
def test_cpu_backend_matches_the_reference_and_times(tiny: tuple[Path, Path], backend: str) -> None:
    weights, onnx = tiny
    cls = get_backend_class(backend)
    assert cls.probe("cpu") is None
    runtime = cls(BackendRequest(weights=weights, onnx=onnx if cls.needs_onnx else None, device="cpu",
                                 precision="fp32", batch=2, imgsz=IMGSZ, threads=1))
    images = check_images(2, IMGSZ)
    agreement = runtime.check_outputs(images, reference_output(weights, images))
    assert agreement.box_err_px < 0.05 and agreement.score_err < 2e-3
    run = runtime.runner(images)
    run()  # one synchronised call, as the timer makes
    assert runtime.describe()["backend"] == backend
    if backend == "onnxruntime":
        assert runtime.describe()["allow_spinning"] == "0"  # idle workers sleep: no stolen cores


def test_a_backend_that_computes_something_else_is_caught(tiny: tuple[Path, Path]) -> None:
    from fastnas_bench.backends.base import OutputMismatch

    weights, onnx = tiny
    cls = get_backend_class("onnxruntime")
    runtime = cls(BackendRequest(weights=weights, onnx=onnx, device="cpu", precision="fp32", batch=2, imgsz=IMGSZ,
                                 threads=1))
    images = check_images(2, IMGSZ)
    wrong = reference_output(weights, images)
    wrong[:, 4:] += 0.05  # class scores off by 0.05
    with pytest.raises(OutputMismatch, match="class-score error"):
        runtime.check_outputs(images, wrong)


def test_fastnas_prune_reaches_its_target_with_a_cheap_score(tiny_dataset: Path, tmp_path: Path) -> None:
    from ultralytics.data.utils import check_det_dataset

    from fastnas_bench.methods.base import PruneContext
    from fastnas_bench.methods.fastnas import FastNAS
    from fastnas_bench.variants.spec import VariantSpec
    from fastnas_bench.variants.splits import carve_search_split
    from fastnas_bench.yolo.models import model_gflops

    torch.manual_seed(0)
    source = DetectionModel("yolov8n.yaml", nc=5, verbose=False).eval()
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.inference_mode():
        reference = source(x)[0]

    def cheap_score(ctx: object):  # noqa: ANN202 - a score factory, as FastNAS takes one
        def score(model: torch.nn.Module) -> float:
            with torch.inference_mode():
                return -float((model.eval()(x.to(next(model.parameters()).device))[0] - reference).abs().mean())

        return score

    splits = carve_search_split(check_det_dataset(str(tiny_dataset)), tmp_path / "splits")
    spec = VariantSpec(imgsz=IMGSZ, batch=4, method="fastnas", flops_target=0.66, finetune_epochs=1, channel_divisor=16)
    ctx = PruneContext(spec=spec, data_yaml=splits.select_yaml, device="cpu", work_dir=tmp_path / "work",
                       cache_root=tmp_path / "cache", source_sha256="0" * 64)
    import warnings

    from fastnas_bench.methods import fastnas

    recalibrated: list[int] = []
    real = fastnas.recalibrate_batchnorm

    def counting(net: torch.nn.Module, batches: list) -> None:
        recalibrated.append(len(batches))
        real(net, batches)

    method = FastNAS(score=cheap_score, calib_batches=2)
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp.setattr(fastnas, "recalibrate_batchnorm", counting)
        pruned = method.prune(source, ctx)
    assert model_gflops(pruned) / model_gflops(source) <= 0.66
    assert method.notes["score_calls"] > 1
    # Every candidate is scored with its own BatchNorm statistics, never with modelopt's stale ones
    # (it would warn that its queue is not filled).
    assert recalibrated == [2] * method.notes["score_calls"]
    assert not [w for w in caught if "queue not filled" in str(w.message)]
    assert not any(type(m).__name__.startswith("Dynamic") for m in pruned.modules())
    with torch.inference_mode():
        assert pruned.eval()(x)[0].shape == reference.shape
    assert np.isfinite(method.notes["source_map50_95"])


def test_torch_compile_backend_compiles_the_fused_model(tiny: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled backend hands the eager backend's fused model to torch.compile (CUDA graphs on
    CUDA); the compile itself is replaced here: Inductor needs minutes on a 2-core CPU."""
    from fastnas_bench.backends import torch_compile

    calls: list[dict] = []

    def fake_compile(model, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    weights, _ = tiny
    runtime = get_backend_class("torch-compile")(BackendRequest(
        weights=weights, onnx=None, device="cpu", precision="fp32", batch=2, imgsz=IMGSZ, threads=1))
    images = check_images(2, IMGSZ)
    runtime.check_outputs(images, reference_output(weights, images))
    assert calls == [{"mode": "default", "dynamic": False, "fullgraph": False}]
    assert runtime.describe()["compile_mode"] == "default" and torch_compile.MODES["cuda"] == "reduce-overhead"

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("Compiler: cc not found\nmore")

    monkeypatch.setattr(torch, "compile", broken)
    assert torch_compile.TorchCompileBackend.probe("cpu") == (
        "torch.compile cannot build kernels here (RuntimeError: Compiler: cc not found)")
