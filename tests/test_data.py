from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fastnas_bench.errors import BadInputError
from fastnas_bench.variants.data import SHAPE_CLASSES, GeneratedDataConfig, generate_dataset, validate_data_yaml


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "data.yaml"}


def test_generation_is_deterministic(tmp_path: Path) -> None:
    config = GeneratedDataConfig(train_images=4, val_images=2, image_px=160, seed=3)
    a = generate_dataset(tmp_path / "a", config).parent
    b = generate_dataset(tmp_path / "b", config).parent
    assert _tree_bytes(a) == _tree_bytes(b)
    other = generate_dataset(tmp_path / "c", GeneratedDataConfig(train_images=4, val_images=2, image_px=160, seed=4)).parent
    assert _tree_bytes(a) != _tree_bytes(other)


def test_yolo_layout_and_labels(tiny_dataset: Path) -> None:
    spec = yaml.safe_load(tiny_dataset.read_text())
    root = Path(spec["path"])
    assert spec["names"] == dict(enumerate(SHAPE_CLASSES))
    images = sorted((root / "images" / "train").glob("*.png"))
    assert len(images) == 8
    for image in images:
        label = root / "labels" / "train" / f"{image.stem}.txt"
        rows = [list(map(float, row.split())) for row in label.read_text().splitlines() if row]
        assert rows, f"{label} has no objects"
        for cls, cx, cy, w, h in rows:
            assert 0 <= cls < len(SHAPE_CLASSES) and cls == int(cls)
            assert 0 < w <= 1 and 0 < h <= 1 and 0 <= cx - w / 2 and cx + w / 2 <= 1


def test_all_coco_size_bands_are_present(tmp_path: Path) -> None:
    config = GeneratedDataConfig(train_images=40, val_images=1, image_px=320)
    root = generate_dataset(tmp_path, config).parent
    areas = []
    for label in (root / "labels" / "train").glob("*.txt"):
        for row in label.read_text().splitlines():
            _, _, _, w, h = map(float, row.split())
            areas.append(w * h * config.image_px**2)
    small = sum(a < 32**2 for a in areas)
    large = sum(a > 96**2 for a in areas)
    assert small > 0.3 * len(areas), "small objects must be common enough for AP_small to mean something"
    assert len(areas) - small - large > 0 and large > 0


def test_bad_configs_and_yamls(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="image_px"):
        GeneratedDataConfig(image_px=64)
    with pytest.raises(BadInputError, match="missing.yaml"):
        validate_data_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(BadInputError, match="bad.yaml is not valid YAML"):
        validate_data_yaml(bad)
    incomplete = tmp_path / "inc.yaml"
    incomplete.write_text("train: images\n")
    with pytest.raises(BadInputError, match="'train', 'val' and 'names'"):
        validate_data_yaml(incomplete)
