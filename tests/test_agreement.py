"""The output check sees box pixels and class scores separately, and the detections after NMS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastnas_bench.backends._lib.agreement import check_images, compare_outputs


def _reference(seed: int = 0) -> np.ndarray:
    """(1, 4 + 5 classes, 200 anchors): xywh boxes in 640-px space, three confident detections."""
    rng = np.random.default_rng(seed)
    out = np.zeros((1, 9, 200), dtype=np.float32)
    out[0, :2] = rng.uniform(50, 590, (2, 200))
    out[0, 2:4] = rng.uniform(10, 60, (2, 200))
    out[0, 4:] = rng.uniform(0, 0.005, (5, 200))
    for anchor, cls, conf, x in ((10, 0, 0.90, 100), (20, 3, 0.70, 300), (30, 1, 0.50, 500)):
        out[0, :4, anchor] = (x, 320, 40, 40)
        out[0, 4 + cls, anchor] = conf
    return out


def test_identical_outputs_agree() -> None:
    agreement, failure = compare_outputs(_reference(), _reference(), "fp32")
    assert failure is None and agreement.detections == 3 and agreement.box_err_px == 0


def test_a_005_score_error_fails_at_fp32() -> None:
    # Relative to the largest output value (a ~600 px coordinate), 0.05 is 8e-5: the old check passed it.
    out = _reference()
    out[0, 4 + 3, 20] -= 0.05
    _, failure = compare_outputs(out, _reference(), "fp32")
    assert failure and "class-score error 0.05" in failure
    assert compare_outputs(out, _reference(), "fp16")[1] is not None  # beyond fp16's 0.02 too


def test_box_pixels_and_lost_detections_fail() -> None:
    out = _reference()
    out[0, 0, 10] += 0.5  # half a pixel on a confident anchor
    _, failure = compare_outputs(out, _reference(), "fp32")
    assert failure and "box error 0.5 px" in failure
    out = _reference()
    out[0, 0, 150] += 5.0  # background anchor (score < 0.01): its box is never used
    assert compare_outputs(out, _reference(), "fp32")[1] is None
    out = _reference()
    out[0, 4 + 1, 30] = 0.2  # a 0.3 score error: beyond fp16's tolerance too
    _, failure = compare_outputs(out, _reference(), "fp16")
    assert failure and "class-score error" in failure


def test_detections_must_match_after_nms() -> None:
    ref = _reference()
    out = ref.copy()
    out[0, 4 + 1, 30] = 0.49  # within fp16's score tolerance
    assert compare_outputs(out, ref, "fp16")[1] is None
    ref[0, 4 + 1, 30] = 0.31  # on the edge: the backend's 0.295 drops below the match threshold
    out = ref.copy()
    out[0, 4 + 1, 30] = 0.295
    _, failure = compare_outputs(out, ref, "fp16")
    assert failure and "2 detections ≥ 0.3 vs 3 in the reference" in failure


def test_shapes_and_non_finite_values_fail() -> None:
    assert "shape" in (compare_outputs(np.zeros((1, 9, 10)), np.zeros((1, 9, 11)), "fp32")[1] or "")
    bad = _reference()
    bad[0, 5, 5] = np.nan
    assert "non-finite" in (compare_outputs(bad, _reference(), "fp32")[1] or "")


def test_check_images_are_real_letterboxed_photos() -> None:
    images = check_images(3, 320)
    assert images.shape == (3, 3, 320, 320) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.1  # a photo, not noise
    assert np.array_equal(images[0], images[2]) and not np.array_equal(images[0], images[1])



def test_check_images_come_from_the_val_list(tmp_path: Path) -> None:
    from ultralytics.utils import ASSETS

    val_list = tmp_path / "val.txt"
    val_list.write_text(f"{ASSETS / 'zidane.jpg'}\n")
    assert np.array_equal(check_images(1, 320, val_list=val_list)[0], check_images(2, 320)[1])
    val_list.write_text(f"{tmp_path / 'missing.png'}\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        check_images(1, 320, val_list=val_list)
