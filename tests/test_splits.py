"""The search split: carved from train, disjoint from the reported val split, used for every choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fastnas_bench.errors import BadInputError
from fastnas_bench.variants.splits import SEARCH_EVERY, carve_search_split, list_images


def _lines(path: Path) -> set[str]:
    return set(path.read_text().split())


def _resolved(data_yaml: Path) -> dict:
    from ultralytics.data.utils import check_det_dataset

    return check_det_dataset(str(data_yaml))


def test_splits_are_disjoint_and_each_view_points_at_its_own(tiny_dataset: Path, tmp_path: Path) -> None:
    splits = carve_search_split(_resolved(tiny_dataset), tmp_path)
    folder = splits.select_yaml.parent
    train, search, val = (_lines(folder / f) for f in ("train.txt", "search.txt", "val.txt"))
    assert (len(train), len(search), len(val)) == (6, 2, 4) == (splits.train_images, splits.search_images,
                                                              splits.val_images)
    assert not train & search and not train & val and not search & val
    select, report = (yaml.safe_load(p.read_text()) for p in (splits.select_yaml, splits.report_yaml))
    assert (select["train"], select["val"]) == ("train.txt", "search.txt")
    assert (report["train"], report["val"]) == ("train.txt", "val.txt")
    # Ultralytics reads the views: the selection's val is the search split, the report's is val.
    assert _lines(Path(_resolved(splits.select_yaml)["val"])) == search
    # Deterministic: the same dataset gives the same folder, written once.
    assert carve_search_split(_resolved(tiny_dataset), tmp_path) == splits


def test_a_dataset_that_validates_on_train_gets_a_held_out_val_carved_from_train(tiny_dataset: Path,
                                                                               tmp_path: Path) -> None:
    """COCO128 validates on its training images: the reported val must still be images no fine-tune
    trained on and no choice saw."""
    coco128_like = tmp_path / "same.yaml"
    coco128_like.write_text(yaml.safe_dump({"path": str(tiny_dataset.parent), "train": "images/train",
                                            "val": "images/train", "names": {0: "a"}}))
    splits = carve_search_split(_resolved(coco128_like), tmp_path / "out")
    folder = splits.select_yaml.parent
    train, search, val = (_lines(folder / f) for f in ("train.txt", "search.txt", "val.txt"))
    assert not train & search and not train & val and not search & val
    assert (len(train), len(search), len(val)) == (4, 8 // SEARCH_EVERY, 8 // SEARCH_EVERY)
    assert train | search | val == {str(p) for p in list_images(str(tiny_dataset.parent / "images/train"), tmp_path)}


def test_bad_splits_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="dataset split 'nope' is neither a folder nor a .txt list"):
        list_images("nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="dataset split 'empty' holds no images"):
        list_images("empty", tmp_path)
