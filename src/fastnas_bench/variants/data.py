"""Offline detection data: a deterministic generated dataset and dataset-YAML resolution.

The generated dataset is a real YOLO-format detection dataset (images + label files + YAML) so
Ultralytics' own loaders, trainer and validator run on it unchanged. Objects are drawn at three
size bands that straddle the COCO area thresholds (32² and 96² pixels at the stored image size),
so per-size accuracy means something.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from fastnas_bench.errors import BadInputError
from fastnas_bench.fsutil import atomic_directory
from fastnas_bench.keys import digest

log = logging.getLogger(__name__)

#: Class names of the generated dataset; each is a distinct shape so the task is learnable.
SHAPE_CLASSES: tuple[str, ...] = ("square", "disc", "triangle", "cross", "ring")

#: Scheme prefix that selects the generated dataset in a spec's ``data`` field.
GENERATED_PREFIX = "generated"

# Object side length bands in pixels at the stored image size: small < 32, medium 32..96, large.
_SIZE_BANDS_PX: dict[str, tuple[int, int]] = {"small": (12, 30), "medium": (34, 90), "large": (100, 150)}


@dataclass(frozen=True)
class GeneratedDataConfig:
    """Parameters of the generated dataset; all of them are part of its identity.

    Attributes:
        train_images: Number of training images (a quarter become the search split, see
            :mod:`fastnas_bench.variants.splits`, leaving 96 to train on by default).
        val_images: Number of validation images. 512: the paired-bootstrap interval of a mAP50-95
            drop is about 4x narrower than at 32 (README, "Accuracy drops with intervals"); the
            training images come first from the same stream, so they are the same for any count.
        image_px: Side of the square images in pixels.
        seed: Random seed; the same config always yields byte-identical files.
    """

    train_images: int = 128
    val_images: int = 512
    image_px: int = 320
    seed: int = 0

    def __post_init__(self) -> None:
        if self.train_images < 1 or self.val_images < 1:
            raise BadInputError(f"generated dataset needs ≥1 train and val image, got {self}")
        if self.image_px < 160:
            raise BadInputError(f"generated image_px must be ≥ 160, got {self.image_px}")

    def key(self) -> str:
        """Short content hash naming the dataset directory."""
        return digest(asdict(self), 12)


def _draw_object(draw: ImageDraw.ImageDraw, cls: int, box: tuple[int, int, int, int], rgb: tuple[int, ...]) -> None:
    x0, y0, x1, y1 = box
    w = x1 - x0
    line_px = max(2, w // 6)
    name = SHAPE_CLASSES[cls]
    if name == "square":
        draw.rectangle(box, fill=rgb)
    elif name == "disc":
        draw.ellipse(box, fill=rgb)
    elif name == "triangle":
        draw.polygon([(x0 + w // 2, y0), (x1, y1), (x0, y1)], fill=rgb)
    elif name == "cross":
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        draw.rectangle((cx - line_px, y0, cx + line_px, y1), fill=rgb)
        draw.rectangle((x0, cy - line_px, x1, cy + line_px), fill=rgb)
    else:  # ring
        draw.ellipse(box, outline=rgb, width=line_px)


def _render_image(rng: np.random.Generator, image_px: int) -> tuple[Image.Image, list[str]]:
    """One image with 2-7 non-overlapping objects, mixed size bands; returns image and YOLO label lines."""
    background = rng.integers(40, 200, size=3)
    noise = rng.normal(0, 12, size=(image_px, image_px, 3))
    pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    boxes: list[tuple[int, int, int, int]] = []
    labels: list[str] = []
    bands = list(_SIZE_BANDS_PX)
    for _ in range(int(rng.integers(2, 8))):
        # Small objects are drawn twice as often: they are the hard case worth measuring.
        band = bands[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        lo, hi = _SIZE_BANDS_PX[band]
        side = int(rng.integers(lo, min(hi, image_px - 2) + 1))
        for _attempt in range(20):
            x0 = int(rng.integers(0, image_px - side))
            y0 = int(rng.integers(0, image_px - side))
            box = (x0, y0, x0 + side, y0 + side)
            if all(box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3] for b in boxes):
                break
        else:
            continue
        cls = int(rng.integers(0, len(SHAPE_CLASSES)))
        # Contrast against the background keeps the task about shape, not about luck.
        rgb = tuple(int(c) for c in (background + 128 + rng.integers(-40, 40, size=3)) % 256)
        _draw_object(draw, cls, box, rgb)
        boxes.append(box)
        cx, cy = (box[0] + box[2]) / 2 / image_px, (box[1] + box[3]) / 2 / image_px
        labels.append(f"{cls} {cx:.6f} {cy:.6f} {side / image_px:.6f} {side / image_px:.6f}")
    return image, labels


def _write_split(root: Path, split: str, count: int, rng: np.random.Generator, image_px: int) -> None:
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    for i in range(count):
        image, labels = _render_image(rng, image_px)
        image.save(root / "images" / split / f"{i:05d}.png")
        (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(labels) + "\n")


def generate_dataset(parent: Path, config: GeneratedDataConfig) -> Path:
    """Write the generated dataset under ``parent`` (once) and return its YAML path.

    The directory is built in a temporary sibling and renamed into place, so a crash never leaves a
    half-written dataset that a later run would trust.

    Args:
        parent: Directory that holds generated datasets (created if missing).
        config: Dataset parameters.

    Returns:
        Path to ``data.yaml`` of the dataset.
    """
    final = parent / f"generated-{config.key()}"
    data_yaml = final / "data.yaml"
    if data_yaml.is_file():
        return data_yaml
    # A concurrent process may write it too: its copy is identical by construction.
    with atomic_directory(final, exist_ok=True) as tmp:
        rng = np.random.default_rng(config.seed)
        _write_split(tmp, "train", config.train_images, rng, config.image_px)
        _write_split(tmp, "val", config.val_images, rng, config.image_px)
        spec = {
            "path": str(final),
            "train": "images/train",
            "val": "images/val",
            "names": dict(enumerate(SHAPE_CLASSES)),
        }
        (tmp / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    log.info("generated dataset %s", final)
    return data_yaml


def validate_data_yaml(path: Path) -> Path:
    """Check that a local dataset YAML exists and names train/val splits.

    Raises:
        BadInputError: naming the file and what is wrong with it.
    """
    if not path.is_file():
        raise BadInputError(f"data YAML not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise BadInputError(f"data YAML {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(spec, dict) or not {"train", "val", "names"} <= spec.keys():
        raise BadInputError(f"data YAML {path} must be a mapping with 'train', 'val' and 'names' keys")
    return path
