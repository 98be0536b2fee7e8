"""Bad inputs to the pipeline fail at once with one line naming the value, and write nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastnas_bench.errors import BadInputError
from fastnas_bench.variants.build import build_variant, resolve_data
from fastnas_bench.variants.cache import ArtifactCache
from fastnas_bench.variants.spec import VariantSpec
from fastnas_bench.yolo.models import load_model


def test_missing_or_invalid_data(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    with pytest.raises(BadInputError, match="data YAML not found: .*nope.yaml"):
        resolve_data(str(tmp_path / "nope.yaml"), cache)
    with pytest.raises(BadInputError, match="'images.txt' must be a dataset YAML"):
        resolve_data("images.txt", cache)
    # Left to Ultralytics, which downloads it when online; offline that is a one-line error.
    with pytest.raises(BadInputError, match="dataset 'coco128.yaml' is not available: .*"):
        resolve_data("coco128.yaml", cache)


def test_unreadable_weights(tmp_path: Path, tiny_dataset: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    spec = VariantSpec(weights=str(tmp_path / "missing.pt"), data=str(tiny_dataset))
    with pytest.raises(BadInputError, match="weights file .*missing.pt is not a readable file"):
        build_variant(spec, cache)
    # Nothing half-written: only the dataset's split lists, which are complete by construction.
    assert {p.name for p in cache.root.iterdir() if not p.name.startswith(".")} <= {"datasets"}
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match="garbage.pt could not be loaded"):
        load_model(garbage)
