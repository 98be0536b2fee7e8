"""A search split carved from train, disjoint from the reported val split.

Every choice a build makes from accuracy — FastNAS's widths, the trainer's best epoch — is made on
the *search* split; the mAP and recall the suite reports come from the *val* split, which no
choice has seen and no fine-tune trained on. The search split is every ``SEARCH_EVERY``-th training
image (sorted by path); those images leave train, and also leave val.

A dataset that validates on its training images (COCO128's val is its train) gets a held-out val
carved from train the same way, at the next offset: every ``SEARCH_EVERY``-th image starting from the
second. Those images leave train; the other shared images leave val. So the three splits never share
an image (COCO128: 64 train, 32 search, 32 val).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from fastnas_bench.errors import BadInputError
from fastnas_bench.fsutil import atomic_directory
from fastnas_bench.keys import digest

#: One training image in this many goes to the search split (25%).
SEARCH_EVERY = 4
# Ultralytics' image suffixes (``ultralytics.data.utils.IMG_FORMATS``), kept here so that listing
# a split does not import Ultralytics.
_IMAGE_SUFFIXES = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"})


@dataclass(frozen=True)
class DataSplits:
    """The two views of one dataset that a build uses.

    Attributes:
        select_yaml: train = train minus search, val = the search split. Training (best-epoch
            choice) and pruning methods (scores, calibration) use this one.
        report_yaml: train = the same, val = val minus search. Reported accuracy comes from it.
        train_images: Images left for training.
        search_images: Images in the search split.
        val_images: Images in the reported val split.
    """

    select_yaml: Path
    report_yaml: Path
    train_images: int
    search_images: int
    val_images: int


def list_images(entry: str | list[str], root: Path) -> list[Path]:
    """Image files of a split as a dataset YAML names it: a folder, a ``.txt`` list, or a list of both.

    Raises:
        BadInputError: naming an entry that does not exist or holds no image.
    """
    if isinstance(entry, list):
        return [p for item in entry for p in list_images(item, root)]
    path = Path(entry) if Path(entry).is_absolute() else root / entry
    if path.is_dir():
        images = sorted(p.resolve() for p in path.rglob("*") if p.suffix[1:].lower() in _IMAGE_SUFFIXES)
    elif path.is_file() and path.suffix == ".txt":
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        images = [(path.parent / ln).resolve() if not Path(ln).is_absolute() else Path(ln) for ln in lines]
    else:
        raise BadInputError(f"dataset split {entry!r} is neither a folder nor a .txt list of images ({path})")
    if not images:
        raise BadInputError(f"dataset split {entry!r} holds no images ({path})")
    return images


def carve_search_split(dataset: dict, parent: Path) -> DataSplits:
    """Write the select/report YAMLs of ``dataset`` (a resolved dataset dict) under ``parent`` once.

    ``dataset`` is what Ultralytics' ``check_det_dataset`` returns: absolute ``train``/``val``
    entries and ``names``. The lists are written to a temporary folder and renamed into place.

    Raises:
        BadInputError: when train has fewer than ``SEARCH_EVERY`` images or val holds nothing but
            search images.
    """
    root = Path(dataset.get("path") or ".")
    train = list_images(dataset["train"], root)
    val = list_images(dataset["val"], root)
    if len(train) < SEARCH_EVERY:
        raise BadInputError(f"train split has {len(train)} images; a search split needs at least {SEARCH_EVERY}")
    ordered = sorted(train)
    search = ordered[::SEARCH_EVERY]
    held_out = set(search)
    train_set = set(train)
    if train_set & set(val):
        # Validating on training images reports nothing held out: carve a val split from train too.
        carved = set(ordered[1::SEARCH_EVERY])
        val = [p for p in val if p not in train_set or p in carved]
        held_out |= carved
    train_left = [p for p in train if p not in held_out]
    val_left = [p for p in val if p not in set(search)]
    if not val_left:
        raise BadInputError(f"every val image of {root} is also a search image; give the dataset its own val split")
    lists = {"train.txt": train_left, "search.txt": search, "val.txt": val_left}
    listing = "\n".join(f"{k}:{p}" for k, paths in lists.items() for p in paths)
    final = parent / f"splits-{digest(listing, 12)}"
    splits = DataSplits(final / "select.yaml", final / "report.yaml", len(train_left), len(search), len(val_left))
    if splits.report_yaml.is_file():
        return splits
    # A concurrent process may write them too: its lists are identical by construction.
    with atomic_directory(final, exist_ok=True) as tmp:
        for name, paths in lists.items():
            (tmp / name).write_text("".join(f"{p}\n" for p in paths))
        names = dataset["names"]
        for yaml_name, val_list in (("select.yaml", "search.txt"), ("report.yaml", "val.txt")):
            doc = {"path": str(final), "train": "train.txt", "val": val_list, "names": names}
            (tmp / yaml_name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return splits
