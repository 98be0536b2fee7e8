"""A pruned checkpoint leaves as one stock Ultralytics loads, predicts, validates and exports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fastnas_bench.errors import BadInputError
from fastnas_bench.yolo.stock import export_stock_checkpoint
from fastnas_bench.yolo.stock_probe import run_stock_probe


@pytest.fixture(scope="module")
def traceable_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Ultralytics checkpoint holding a re-classed (traceable) yolov8n with narrowed C2f blocks,
    as a FastNAS variant's model.pt does."""
    from ultralytics.nn.tasks import DetectionModel

    from fastnas_bench.traceable import make_traceable

    model = make_traceable(DetectionModel("yolov8n.yaml", nc=5, verbose=False))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": model, "ema": None, "train_args": {"task": "detect", "imgsz": 160}}, path)
    return path


def test_stock_ultralytics_loads_the_export_without_this_package(traceable_checkpoint: Path, tiny_dataset: Path,
                                                                  tmp_path: Path) -> None:
    os.environ.setdefault("YOLO_OFFLINE", "true")
    raw = run_stock_probe(traceable_checkpoint, tiny_dataset, 160, tmp_path)
    assert raw.returncode != 0 and "fastnas_bench" in raw.stderr  # what users hit today
    out = export_stock_checkpoint(traceable_checkpoint, tmp_path / "stock.pt")
    result = run_stock_probe(out, tiny_dataset, 160, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "STOCK-OK" in result.stdout


def test_bad_inputs_name_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match="junk.pt is not a readable checkpoint"):
        export_stock_checkpoint(junk, tmp_path / "out.pt")
    torch.save({"weights": 1}, junk)
    with pytest.raises(BadInputError, match="junk.pt is not an Ultralytics checkpoint"):
        export_stock_checkpoint(junk, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()  # nothing written on failure
