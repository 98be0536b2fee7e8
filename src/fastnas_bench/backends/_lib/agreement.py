"""Does a backend compute what the PyTorch fp32 reference computes? Checked where it matters.

A YOLOv8 output holds box coordinates in pixels (up to the image size) and class scores in
[0, 1]; one error relative to the largest value would let scores drift by half a pixel's worth.
Boxes are compared in pixels and scores absolutely, over the anchors that score at all, and the
detections left after NMS must be the same, on real images the detector was meant to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastnas_bench.compat.ultralytics import non_max_suppression

# Anchors whose best reference score is below this are background: their boxes are never used.
SCORED = 0.01
# Detections at or above this confidence must match one for one (0.25 is Ultralytics' default
# threshold; the margin keeps a detection that sits on the threshold from flipping the verdict).
MATCH_CONF = 0.30


@dataclass(frozen=True)
class Tolerance:
    """Largest acceptable differences from the fp32 reference.

    Attributes:
        box_px: Box coordinate, pixels.
        score: Class score, absolute.
        match_iou: Lowest IoU of a detection with its reference counterpart.
    """

    box_px: float
    score: float
    match_iou: float


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(box_px=0.05, score=2e-3, match_iou=0.98),
    "fp16": Tolerance(box_px=2.0, score=2e-2, match_iou=0.85),
}


@dataclass(frozen=True)
class Agreement:
    box_err_px: float
    score_err: float
    detections: int


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in ``a`` with every one in ``b``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def _detections(out: np.ndarray) -> list[np.ndarray]:
    """Per image, Ultralytics' NMS at ``MATCH_CONF``: rows of x1, y1, x2, y2, conf, class."""
    import torch

    return [d.numpy() for d in non_max_suppression(torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)),
                                                   conf_thres=MATCH_CONF, iou_thres=0.7)]


def compare_outputs(out: np.ndarray, ref: np.ndarray, precision: str) -> tuple[Agreement, str | None]:
    """Compare a ``(batch, 4 + classes, anchors)`` output with the reference.

    Returns:
        The measured differences, and a one-line failure naming the worst one (``None`` if it agrees).
    """
    tol = TOLERANCES[precision]
    if out.shape != ref.shape:
        return Agreement(np.inf, np.inf, 0), f"output shape {out.shape} != reference {ref.shape}"
    if not np.all(np.isfinite(out)):
        return Agreement(np.inf, np.inf, 0), "non-finite values in the output"
    scored = ref[:, 4:].max(axis=1) >= SCORED  # (batch, anchors)
    box_diff = np.abs(out[:, :4] - ref[:, :4]).max(axis=1)
    box_err = float(box_diff[scored].max()) if scored.any() else 0.0
    score_err = float(np.abs(out[:, 4:] - ref[:, 4:]).max())
    ref_dets, out_dets = _detections(ref), _detections(out)
    agreement = Agreement(box_err, score_err, sum(len(d) for d in ref_dets))
    if box_err > tol.box_px:
        return agreement, f"box error {box_err:.3g} px > {tol.box_px:g} px (on anchors scoring ≥ {SCORED})"
    if score_err > tol.score:
        return agreement, f"class-score error {score_err:.3g} > {tol.score:g}"
    for i, (r, o) in enumerate(zip(ref_dets, out_dets)):
        if len(r) != len(o):
            return agreement, f"image {i}: {len(o)} detections ≥ {MATCH_CONF} vs {len(r)} in the reference"
        if len(r):
            iou = _iou(r[:, :4], o[:, :4])
            same_class = r[:, None, 5] == o[None, :, 5]
            best = np.where(same_class, iou, 0).max(axis=1)
            if best.min() < tol.match_iou:
                return agreement, (f"image {i}: a reference detection has no same-class match above IoU "
                                   f"{tol.match_iou} (best {best.min():.3f})")
    return agreement, None


def check_images(batch: int, imgsz: int, val_list: Path | None = None) -> np.ndarray:
    """A fixed float32 NCHW RGB batch in [0, 1] of real images, letterboxed to ``imgsz``.

    The first images of ``val_list`` (a split list the variant was validated on) where given, so
    the detector sees what it was trained to detect; else Ultralytics' bundled ``bus.jpg`` and
    ``zidane.jpg``. Cycled to fill the batch.
    """
    import cv2
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import ASSETS

    paths: list[Path] = []
    if val_list is not None and val_list.is_file():
        paths = [Path(p) for p in val_list.read_text().split()[:max(batch, 2)]]
    if not paths:
        paths = [ASSETS / "bus.jpg", ASSETS / "zidane.jpg"]
    letterbox = LetterBox(new_shape=(imgsz, imgsz), auto=False)
    images = []
    for i in range(batch):
        bgr = cv2.imread(str(paths[i % len(paths)]))
        if bgr is None:
            raise FileNotFoundError(f"cannot read check image {paths[i % len(paths)]}")
        boxed = letterbox(image=bgr)
        images.append(boxed[:, :, ::-1].transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(images), dtype=np.float32) / 255.0
