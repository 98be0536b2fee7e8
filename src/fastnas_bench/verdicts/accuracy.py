"""How much accuracy a pruned model lost, with an interval: a paired bootstrap over validation images.

Two models validated on the same images differ by a number that depends on which images were drawn:
at 32 images the mAP50-95 drop of fastnas66 read 0.0235 with a 95% interval of [-0.0015, 0.0502].
The bootstrap draws images with replacement, applies the *same* draw to both models (pairing: an image
hard for one is mostly hard for the other, so the difference varies far less than either figure) and
recomputes each model's metrics the way Ultralytics' ``ap_per_class`` does on that draw. The draws give
the drop's standard error; the interval is drop ± z·SE, which is what the verdict judges: fail only when
the whole interval lies above the bound, pass when it lies at or under it, undecided in between. At 512
images the draws are near normal: fastnas66's mAP50-95 drop read [+0.0206, +0.0345] as a percentile
interval over 1000 draws and [+0.0205, +0.0349] as the normal one. Unlike a percentile interval, the
normal one needs no draws out in the thin tails a family-wise confidence asks for, so
:data:`RESAMPLES` draws serve any confidence.

With several builds per model (``--seeds N``: the same variant fine-tuned with N seeds, baseline and
pruned paired by seed), the drop is the mean of the per-seed drops and its interval adds how much a
rebuild moves it: Student's t on the standard error √(V_images + s²_seeds / N), where V_images is the
bootstrap variance of the mean drop (one image draw shared by every seed) and s²_seeds the variance of
the per-seed drops on all images, with Welch-Satterthwaite's degrees of freedom (N - 1 when the seeds
dominate). Like the pigeonhole bootstrap for crossed designs (Owen, 2007, Ann. Appl. Stat.) it counts the
seed-by-image interaction in both terms, so it errs wide.

Recall is taken at a fixed confidence (:data:`RECALL_CONF`) for both models, beside Ultralytics' figure,
which is each model's recall at its own best-F1 confidence (two operating points, not one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastnas_bench.verdicts.outcome import Outcome
from fastnas_bench.yolo.per_image import STAT_KEYS, PerImageStats

#: Confidence at which recall is compared: Ultralytics' predict default, where a deployment would cut.
RECALL_CONF = 0.25
#: Bootstrap draws, fixed before any is looked at: a standard error from 400 draws is within ±7% of
#: its limit (95%), so the interval's ends move by under a tenth of its half-width between draw seeds;
#: about 13 s per comparison at 512 images on this project's 2-core VM.
RESAMPLES = 400
#: The metrics the paired bootstrap reports, by name.
METRICS = ("map50_95", "map50", "recall_at_conf")


def metrics_of(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray) -> dict[str, float]:
    """mAP50-95, mAP50 (Ultralytics' ``ap_per_class``, means over the classes with ground truth) and
    recall at :data:`RECALL_CONF` and IoU 0.5 (mean over the same classes) of pooled prediction rows:
    the reference the bootstrap's weighted draws (:class:`_Packed`) are tested against."""
    from ultralytics.utils.metrics import ap_per_class

    if target_cls.size == 0:
        return {name: 0.0 for name in METRICS}
    ap = ap_per_class(tp, conf, pred_cls, target_cls)[5]
    classes, counts = np.unique(target_cls, return_counts=True)
    kept = conf >= RECALL_CONF
    hits = np.asarray([np.count_nonzero(tp[kept & (pred_cls == c), 0]) for c in classes], dtype=float)
    return {"map50_95": float(ap.mean()) if ap.size else 0.0, "map50": float(ap[:, 0].mean()) if ap.size else 0.0,
            "recall_at_conf": float(np.mean(hits / counts))}


def metrics_of_stats(stats: PerImageStats) -> dict[str, float]:
    """The :data:`METRICS` of one validation on all its images."""
    return _Packed(stats).everything()


class _Packed:
    """One model's validation sorted once, as Ultralytics' ``ap_per_class`` sorts it (by confidence), so
    that a draw of images is a weight per image (how often it was drawn) and each class's precision-
    recall curve a weighted cumulative sum, instead of a new concatenation and sort per draw (4x faster
    at 512 images and 60 000 predictions). The AP of each curve is Ultralytics' own ``compute_ap``; with
    every weight 1 the result is ``ap_per_class``'s to the last bit (tests/test_accuracy_intervals.py)."""

    def __init__(self, stats: PerImageStats) -> None:
        tp, conf, pred_cls, target_cls = (np.concatenate(getattr(stats, key)) for key in STAT_KEYS)
        n = len(stats.images)
        pred_image = np.repeat(np.arange(n), [len(c) for c in stats.conf])
        target_image = np.repeat(np.arange(n), [len(t) for t in stats.target_cls])
        order = np.argsort(-conf)  # ap_per_class's own sort, so ties fall in its order
        self.images = n
        self.classes = np.unique(target_cls)
        tp, conf, pred_cls, pred_image = tp[order].astype(float), conf[order], pred_cls[order], pred_image[order]
        self.rows = []
        for c in self.classes:
            rows = pred_cls == c
            # Per class: each prediction's flags (n x 10), image, and whether it clears RECALL_CONF.
            self.rows.append((tp[rows], pred_image[rows], conf[rows] >= RECALL_CONF, target_image[target_cls == c]))

    def metrics(self, weights: np.ndarray) -> dict[str, float]:
        """The metrics of the images drawn ``weights`` times each (0: not drawn), pooled, as one
        validation of the drawn images (repeats included) would give them."""
        from ultralytics.utils.metrics import compute_ap

        aps, recalls = [], []
        for flags, pred_image, confident, target_image in self.rows:
            labels = float(weights[target_image].sum())
            if labels == 0:
                continue  # a class without ground truth in the draw is not averaged, as in ap_per_class
            w = weights[pred_image]
            drawn = w > 0
            flags, w = flags[drawn], w[drawn][:, None]
            recalls.append(float((flags[:, 0:1] * w)[confident[drawn]].sum()) / labels)
            if flags.shape[0] == 0:
                aps.append(np.zeros(10))
                continue
            tpc = (flags * w).cumsum(0)
            fpc = ((1 - flags) * w).cumsum(0)
            recall, precision = tpc / (labels + 1e-16), tpc / (tpc + fpc)  # ap_per_class's curves
            aps.append(np.asarray([compute_ap(recall[:, j], precision[:, j])[0] for j in range(flags.shape[1])]))
        if not aps:
            return {name: 0.0 for name in METRICS}
        ap = np.asarray(aps)
        return {"map50_95": float(ap.mean()), "map50": float(ap[:, 0].mean()), "recall_at_conf": float(np.mean(recalls))}

    def everything(self) -> dict[str, float]:
        return self.metrics(np.ones(self.images))


@dataclass(frozen=True)
class PairedDrop:
    """Baseline minus variant of one metric on the same images, with its interval.

    Attributes:
        metric: ``map50_95``, ``map50`` or ``recall_at_conf``.
        baseline, variant: Each model's value on all images (the mean over builds).
        drop: ``baseline - variant`` (positive: the variant lost accuracy).
        ci_low, ci_high: Interval of the drop at ``confidence``: normal with the bootstrap's standard
            error for one build; for several, Student's t with the builds' spread added (module docstring).
        confidence: Two-sided coverage.
        images: Validation images (both models saw the same).
        resamples: Bootstrap draws.
        builds: Builds per model (seeds), paired by seed.
        seed_sd: Standard deviation of the per-seed drops (``None`` for one build).
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
    builds: int = 1
    seed_sd: float | None = None

    def describe(self) -> str:
        over = f"{self.images} images" if self.builds == 1 else f"{self.images} images and {self.builds} seeds, seed sd {self.seed_sd:.4f}"
        return (f"{self.metric} drop {self.drop:+.4f} ({self.confidence:.1%} CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}], "
                f"paired bootstrap over {over}; baseline {self.baseline:.4f}, variant {self.variant:.4f})")


def _same_images(a: PerImageStats, b: PerImageStats, what: str) -> None:
    if a.images != b.images:
        first = next((f"{x!r} vs {y!r}" for x, y in zip(a.images, b.images) if x != y), "none")
        raise ValueError(f"{what} needs both validated on the same images, in the same order: got {len(a.images)} and "
                         f"{len(b.images)} images, first differing: {first}")


def paired_drops(baseline: PerImageStats | Sequence[PerImageStats], variant: PerImageStats | Sequence[PerImageStats],
                 confidence: float = 0.95, resamples: int | None = None, seed: int = 0) -> dict[str, PairedDrop]:
    """The drop of each of :data:`METRICS` from ``baseline`` to ``variant``, paired over images
    (``resamples`` draws, default :data:`RESAMPLES`) and, given one validation per
    build seed on each side, paired by seed (``baseline[i]`` and ``variant[i]`` share seed ``i``).

    Raises:
        ValueError: if the validations were not all on the same images, or the sides' builds differ in number.
    """
    bases = [baseline] if isinstance(baseline, PerImageStats) else list(baseline)
    variants = [variant] if isinstance(variant, PerImageStats) else list(variant)
    if not bases or len(bases) != len(variants):
        raise ValueError(f"pairing by seed needs as many baseline builds as variant builds: got {len(bases)} and {len(variants)}")
    for other in (*bases[1:], *variants):
        _same_images(bases[0], other, "a paired bootstrap")
    n, k = len(bases[0].images), len(bases)
    resamples = resamples or RESAMPLES
    packed = [(_Packed(b), _Packed(v)) for b, v in zip(bases, variants)]
    full = [(b.everything(), v.everything()) for b, v in packed]
    rng = np.random.default_rng(seed)
    # draws[metric][r, s]: seed s's drop on draw r; one image draw is shared by every seed.
    draws = {name: np.empty((resamples, k)) for name in METRICS}
    for r in range(resamples):
        sample = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        for s, (b, v) in enumerate(packed):
            base, var = b.metrics(sample), v.metrics(sample)
            for name in METRICS:
                draws[name][r, s] = base[name] - var[name]
    result = {}
    for name in METRICS:
        base_all = float(np.mean([f[0][name] for f in full]))
        var_all = float(np.mean([f[1][name] for f in full]))
        drop = base_all - var_all
        per_seed = np.asarray([f[0][name] - f[1][name] for f in full])
        image_var = float(np.var(draws[name].mean(axis=1), ddof=1))
        seed_var = float(np.var(per_seed, ddof=1)) / k if k > 1 else 0.0
        half = _t_quantile(confidence, _welch_df(image_var, seed_var, k)) * math.sqrt(image_var + seed_var)
        result[name] = PairedDrop(name, base_all, var_all, drop, drop - half, drop + half, confidence, n, resamples,
                                  builds=k, seed_sd=float(np.std(per_seed, ddof=1)) if k > 1 else None)
    return result


def _welch_df(image_var: float, seed_var: float, builds: int) -> float:
    """Welch-Satterthwaite degrees of freedom of image_var + seed_var (the bootstrap's term has
    as many as it has draws: taken as infinite)."""
    if seed_var <= 0:
        return math.inf
    return (image_var + seed_var) ** 2 / (seed_var**2 / (builds - 1))


def _t_quantile(confidence: float, df: float) -> float:
    from scipy.stats import norm, t

    q = 1 - (1 - confidence) / 2
    return float(norm.ppf(q) if math.isinf(df) else t.ppf(q, df))


#: One-sided confidence of the bounds derived from per-seed builds (:func:`build_spread`).
BOUND_CONFIDENCE = 0.95


@dataclass(frozen=True)
class BuildSpread:
    """How a figure moves from build to build: N seeds' values on the same val images.

    Attributes:
        mean, sd: Over the seeds (sd with N - 1).
        upper: One-sided upper prediction bound at :data:`BOUND_CONFIDENCE` for one more build of
            unchanged code: mean + t(N - 1) · sd · √(1 + 1/N). A bound set here is exceeded by a
            rebuild's figure on these images in 5% of builds; a verdict that fails only when the whole
            interval of a drop lies above it fails far less often.
        seeds: N.
    """

    mean: float
    sd: float
    upper: float
    seeds: int


def build_spread(values: Sequence[float]) -> BuildSpread:
    """:class:`BuildSpread` of per-seed figures.

    Raises:
        ValueError: for fewer than two seeds (no spread to measure).
    """
    from scipy.stats import t

    n = len(values)
    if n < 2:
        raise ValueError(f"a build-to-build spread needs ≥ 2 seeds, got {n}")
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    return BuildSpread(mean, sd, mean + float(t.ppf(BOUND_CONFIDENCE, n - 1)) * sd * math.sqrt(1 + 1 / n), n)


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

    diff = abs(_Packed(reference).everything()["map50_95"] - _Packed(other).everything()["map50_95"])
    differing = sum(confident(reference, i) != confident(other, i) for i in range(len(reference.images)))
    return Agreement(diff, len(reference.images), differing)
