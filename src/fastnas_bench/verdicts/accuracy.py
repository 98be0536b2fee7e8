"""How much accuracy a pruned model lost, with an interval: a paired bootstrap over validation images.

Two models validated on the same images differ by a number that depends on which images were drawn:
at 32 images the mAP50-95 drop of fastnas66 read 0.0235 with a 95% interval of [-0.0015, 0.0502].
The bootstrap draws images with replacement, applies the *same* draw to both models (pairing: an image
hard for one is mostly hard for the other, so the difference varies far less than either figure) and
recomputes each model's metrics with Ultralytics' own ``ap_per_class`` on that draw. The drop's
percentile interval over the draws is what the verdict judges: fail only when the whole interval lies
above the bound, pass when it lies at or under it, undecided in between.

Recall is taken at a fixed confidence (:data:`RECALL_CONF`) for both models, beside Ultralytics' figure,
which is each model's recall at its own best-F1 confidence (two operating points, not one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastnas_bench.verdicts.outcome import Outcome
from fastnas_bench.yolo.per_image import STAT_KEYS, PerImageStats

#: Confidence at which recall is compared: Ultralytics' predict default, where a deployment would cut.
RECALL_CONF = 0.25
#: Bootstrap draws at least; more where the interval's tails are thin (see :func:`resamples_for`).
RESAMPLES = 1000
#: Draws expected beyond each end of a percentile interval: fewer make its ends jump between seeds.
DRAWS_PER_TAIL = 20
#: The metrics the paired bootstrap reports, by name.
METRICS = ("map50_95", "map50", "recall_at_conf")


def metrics_of(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray) -> dict[str, float]:
    """mAP50-95, mAP50 (Ultralytics' ``ap_per_class``, means over the classes with ground truth) and
    recall at :data:`RECALL_CONF` and IoU 0.5 (mean over the same classes)."""
    from ultralytics.utils.metrics import ap_per_class

    if target_cls.size == 0:
        return {name: 0.0 for name in METRICS}
    ap = ap_per_class(tp, conf, pred_cls, target_cls)[5]
    classes, counts = np.unique(target_cls, return_counts=True)
    kept = conf >= RECALL_CONF
    hits = np.asarray([np.count_nonzero(tp[kept & (pred_cls == c), 0]) for c in classes], dtype=float)
    return {"map50_95": float(ap.mean()) if ap.size else 0.0, "map50": float(ap[:, 0].mean()) if ap.size else 0.0,
            "recall_at_conf": float(np.mean(hits / counts))}


class _Packed:
    """One model's per-image arrays concatenated once, so a draw of images is one fancy index."""

    def __init__(self, stats: PerImageStats) -> None:
        self.arrays = [np.concatenate(getattr(stats, key)) for key in STAT_KEYS]
        self.counts = [np.asarray([len(a) for a in getattr(stats, key)]) for key in STAT_KEYS]
        self.starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in self.counts]

    def metrics(self, images: np.ndarray) -> dict[str, float]:
        """The metrics of ``images`` (indices, with repeats) pooled, as one validation of them would give."""
        picked = []
        for array, counts, starts in zip(self.arrays, self.counts, self.starts):
            lengths = counts[images]
            # Rows start..start+length of each drawn image, in draw order.
            offsets = np.repeat(starts[images] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
            picked.append(array[np.arange(int(lengths.sum())) + offsets])
        return metrics_of(*picked)


@dataclass(frozen=True)
class PairedDrop:
    """Baseline minus variant of one metric on the same images, with its bootstrap interval.

    Attributes:
        metric: ``map50_95``, ``map50`` or ``recall_at_conf``.
        baseline, variant: Each model's value on all images.
        drop: ``baseline - variant`` (positive: the variant lost accuracy).
        ci_low, ci_high: Percentile interval of the drop over the draws, at ``confidence``.
        confidence: Two-sided coverage.
        images: Validation images (both models saw the same).
        resamples: Bootstrap draws.
    """

    metric: str
    baseline: float
    variant: float
    drop: float
    ci_low: float
    ci_high: float
    confidence: float
    images: int
    resamples: int

    def describe(self) -> str:
        return (f"{self.metric} drop {self.drop:+.4f} ({self.confidence:.1%} CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}], "
                f"paired bootstrap over {self.images} images; baseline {self.baseline:.4f}, variant {self.variant:.4f})")


def resamples_for(confidence: float) -> int:
    """Draws for a two-sided percentile interval at ``confidence``: ≥ :data:`RESAMPLES`, and ≥
    :data:`DRAWS_PER_TAIL` expected in each tail (a family-wise corrected interval has thin tails)."""
    import math

    return max(RESAMPLES, math.ceil(DRAWS_PER_TAIL / ((1 - confidence) / 2)))


def _same_images(a: PerImageStats, b: PerImageStats, what: str) -> None:
    if a.images != b.images:
        first = next((f"{x!r} vs {y!r}" for x, y in zip(a.images, b.images) if x != y), "none")
        raise ValueError(f"{what} needs both validated on the same images, in the same order: got {len(a.images)} and "
                         f"{len(b.images)} images, first differing: {first}")


def paired_drops(baseline: PerImageStats, variant: PerImageStats, confidence: float = 0.95,
                 resamples: int | None = None, seed: int = 0) -> dict[str, PairedDrop]:
    """The drop of each of :data:`METRICS` from ``baseline`` to ``variant``, paired over images
    (``resamples`` draws; default :func:`resamples_for` ``confidence``).

    Raises:
        ValueError: if the two were not validated on the same images.
    """
    _same_images(baseline, variant, "a paired bootstrap")
    resamples = resamples or resamples_for(confidence)
    n = len(baseline.images)
    packed_base, packed_var = _Packed(baseline), _Packed(variant)
    everything = np.arange(n)
    base_all, var_all = packed_base.metrics(everything), packed_var.metrics(everything)
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(resamples) for name in METRICS}
    for r in range(resamples):
        sample = rng.integers(0, n, n)
        base, var = packed_base.metrics(sample), packed_var.metrics(sample)
        for name in METRICS:
            draws[name][r] = base[name] - var[name]
    tail = (1 - confidence) / 2 * 100
    return {name: PairedDrop(name, base_all[name], var_all[name], base_all[name] - var_all[name],
                             float(np.percentile(draws[name], tail)), float(np.percentile(draws[name], 100 - tail)),
                             confidence, n, resamples)
            for name in METRICS}


def drop_within(drop: PairedDrop, bound: float) -> Outcome:
    """Is the drop at most ``bound``? Fail only when the whole interval lies above it (the variant surely
    lost more), pass when the whole interval lies at or under it, undecided otherwise."""
    if drop.ci_low > bound:
        return Outcome.FAIL
    if drop.ci_high <= bound:
        return Outcome.PASS
    return Outcome.UNDECIDED


@dataclass(frozen=True)
class Agreement:
    """Two validations of one model (PyTorch and an export) on the same inputs, compared image by image.

    Attributes:
        map50_95_diff: |mAP50-95 of one − of the other|.
        images: Images compared.
        differing_images: Images where the number of confident detections (confidence ≥
            :data:`RECALL_CONF`) or of confident true positives at IoU 0.5 differs.
    """

    map50_95_diff: float
    images: int
    differing_images: int


def detection_agreement(reference: PerImageStats, other: PerImageStats) -> Agreement:
    """How far ``other`` is from ``reference``, overall and per image.

    Raises:
        ValueError: if the two were not validated on the same images.
    """
    _same_images(reference, other, "an agreement")

    def confident(stats: PerImageStats, i: int) -> tuple[int, int]:
        kept = stats.conf[i] >= RECALL_CONF
        return int(kept.sum()), int(stats.tp[i][kept, 0].sum())

    everything = np.arange(len(reference.images))
    diff = abs(_Packed(reference).metrics(everything)["map50_95"] - _Packed(other).metrics(everything)["map50_95"])
    differing = sum(confident(reference, i) != confident(other, i) for i in range(len(everything)))
    return Agreement(diff, len(everything), differing)
