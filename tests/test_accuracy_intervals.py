"""Accuracy drops with intervals: the paired bootstrap over images, on scripted per-image statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastnas_bench.verdicts.accuracy import RECALL_CONF, PairedDrop, drop_within, metrics_of, paired_drops
from fastnas_bench.verdicts.outcome import Outcome
from fastnas_bench.yolo.per_image import PerImageStats


def _images(rng: np.random.Generator, n: int, hit: np.ndarray, conf_scale: float = 1.0, names: str = "img") -> PerImageStats:
    """Scripted validation: image i holds 3 objects of class i % 2; object j is found (a true positive at
    every IoU up to 0.80) where ``hit[i, j]``, with a confidence in [0.3, 1); each image also gets two
    false positives at confidence in [0, 0.3); every confidence is then multiplied by ``conf_scale``."""
    tp, conf, pred_cls, target_cls = [], [], [], []
    for i in range(n):
        found = int(hit[i].sum())
        flags = np.zeros((found + 2, 10), dtype=bool)
        flags[:found, :7] = True
        tp.append(flags)
        conf.append((np.concatenate([rng.uniform(0.3, 1.0, found), rng.uniform(0.0, 0.3, 2)]) * conf_scale).astype(np.float32))
        pred_cls.append(np.full(found + 2, i % 2, dtype=np.float32))
        target_cls.append(np.full(3, i % 2, dtype=np.float32))
    return PerImageStats(tuple(f"{names}{i}.jpg" for i in range(n)), tp, conf, pred_cls, target_cls)


def _pair(seed: int, n: int, p_base: float, p_lost: float) -> tuple[PerImageStats, PerImageStats]:
    """The variant misses what the baseline misses, and loses each other object with chance ``p_lost``
    (how a pruned model relates to its source: mostly the same hits, a few more misses)."""
    rng = np.random.default_rng(seed)
    base_hit = rng.random((n, 3)) < p_base
    variant_hit = base_hit & (rng.random((n, 3)) >= p_lost)
    return _images(rng, n, base_hit), _images(rng, n, variant_hit)


def test_recall_is_taken_at_one_fixed_confidence() -> None:
    rng = np.random.default_rng(0)
    hit = np.ones((4, 3), dtype=bool)
    confident = _images(rng, 4, hit)
    # The same ranking, every confidence below the fixed cut: the same AP and the same recall at its own
    # best-F1 point (Ultralytics' recall), but at the cut a deployment uses it finds nothing.
    timid = _images(rng, 4, hit, conf_scale=RECALL_CONF / 1.01)
    assert metrics_of(*_pooled(confident))["recall_at_conf"] == 1.0
    assert metrics_of(*_pooled(timid))["recall_at_conf"] == 0.0
    assert metrics_of(*_pooled(timid))["map50"] == pytest.approx(metrics_of(*_pooled(confident))["map50"], abs=0.02)


def _pooled(stats: PerImageStats) -> tuple[np.ndarray, ...]:
    return tuple(np.concatenate(getattr(stats, k)) for k in ("tp", "conf", "pred_cls", "target_cls"))


def test_a_draw_is_weights_on_one_sorted_validation_and_reproduces_ultralytics() -> None:
    """The bootstrap scores a draw as a weight per image on the validation sorted once; with every weight
    1 that is Ultralytics' ap_per_class to the last bit, and for a draw with repeats it is what
    ap_per_class gives on the drawn images' rows concatenated (repeats included)."""
    from fastnas_bench.verdicts.accuracy import _Packed

    base, _ = _pair(7, 40, 0.7, 0.0)
    packed = _Packed(base)
    assert packed.everything() == metrics_of(*_pooled(base))
    rng = np.random.default_rng(3)
    for _ in range(5):
        draw = rng.integers(0, 40, 40)
        weighted = packed.metrics(np.bincount(draw, minlength=40).astype(float))
        rows = metrics_of(*_sample(base, draw))
        assert weighted == pytest.approx(rows, abs=1e-6)


def test_the_pairing_needs_the_same_images() -> None:
    base, variant = _pair(1, 8, 0.8, 0.1)
    other = _images(np.random.default_rng(2), 8, np.ones((8, 3), dtype=bool), names="other")
    with pytest.raises(ValueError, match="same images, in the same order: got 8 and 8 images, first differing: "
                                         "'img0.jpg' vs 'other0.jpg'"):
        paired_drops(base, other, resamples=10)
    assert paired_drops(base, variant, resamples=10)["map50_95"].images == 8


def test_pairing_narrows_the_interval_of_a_difference() -> None:
    """Images hard for the baseline are hard for the variant: the paired interval of the drop is far
    narrower than treating the two validations as independent would give."""
    base, variant = _pair(3, 64, 0.7, 0.1)
    paired = paired_drops(base, variant, resamples=300, seed=1)["recall_at_conf"]
    rng = np.random.default_rng(1)
    unpaired = []
    for _ in range(300):  # independent draws for each model
        a, b = rng.integers(0, 64, 64), rng.integers(0, 64, 64)
        unpaired.append(metrics_of(*_sample(base, a))["recall_at_conf"] - metrics_of(*_sample(variant, b))["recall_at_conf"])
    paired_width = paired.ci_high - paired.ci_low
    assert paired_width < 0.6 * (np.percentile(unpaired, 97.5) - np.percentile(unpaired, 2.5))


def _sample(stats: PerImageStats, idx: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.concatenate([getattr(stats, k)[i] for i in idx]) for k in ("tp", "conf", "pred_cls", "target_cls"))


def test_the_bootstrap_interval_covers_the_true_drop() -> None:
    """Scripted validations whose expected recall drop is known (p_base × p_lost): over repeated
    validation sets, the 90% interval holds it about 90% of the time."""
    truth = 0.8 * 0.1
    covered = 0
    reps = 60
    for seed in range(reps):
        drop = paired_drops(*_pair(100 + seed, 48, 0.8, 0.1), confidence=0.90, resamples=150, seed=seed)["recall_at_conf"]
        covered += drop.ci_low <= truth <= drop.ci_high
    assert covered / reps >= 0.8  # 0.9 nominal; 60 sets of 150 draws each


def _seeded_pair(seed: int, n: int, builds: int, lost_sd: float) -> tuple[list[PerImageStats], list[PerImageStats]]:
    """``builds`` fine-tunes of baseline and variant on the same ``n`` images: each build redraws its
    hits around the image's difficulty, and the variant's chance of losing an object moves from build to
    build (sd ``lost_sd`` around 0.1): the build-to-build noise a single build cannot show."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random((n, 3))
    bases, variants = [], []
    for _ in range(builds):
        base_hit = difficulty < 0.8 + rng.normal(0, 0.02)
        p_lost = float(np.clip(0.1 + rng.normal(0, lost_sd), 0, 1))
        variants.append(_images(rng, n, base_hit & (rng.random((n, 3)) >= p_lost)))
        bases.append(_images(rng, n, base_hit))
    return bases, variants


def test_seeds_are_paired_and_must_match() -> None:
    bases, variants = _seeded_pair(1, 16, 3, 0.03)
    with pytest.raises(ValueError, match="as many baseline builds as variant builds: got 3 and 2"):
        paired_drops(bases, variants[:2], resamples=10)
    drops = paired_drops(bases, variants, resamples=50)
    per_seed = [paired_drops(b, v, resamples=10)["recall_at_conf"].drop for b, v in zip(bases, variants)]
    recall = drops["recall_at_conf"]
    assert recall.builds == 3 and recall.drop == pytest.approx(np.mean(per_seed))
    assert recall.seed_sd == pytest.approx(np.std(per_seed, ddof=1))
    assert "16 images and 3 seeds" in recall.describe()


def test_the_seeded_interval_covers_the_mean_drop_when_builds_vary() -> None:
    """Builds whose drop moves from seed to seed: the interval over images alone misses the expected
    drop far more often than its 10%; the seeded interval (images and seeds) holds it about 90% of the
    time. 30 repetitions of 5 builds each."""
    truth = 0.8 * 0.1  # expected recall drop: what the baseline finds, times the mean chance of losing it
    reps, covered, covered_images_only = 30, 0, 0
    for rep in range(reps):
        bases, variants = _seeded_pair(200 + rep, 40, 5, 0.05)
        seeded = paired_drops(bases, variants, confidence=0.90, resamples=40, seed=rep)["recall_at_conf"]
        covered += seeded.ci_low <= truth <= seeded.ci_high
        one = paired_drops(bases[0], variants[0], confidence=0.90, resamples=60, seed=rep)["recall_at_conf"]
        covered_images_only += one.ci_low <= truth <= one.ci_high
    assert covered / reps >= 0.8
    assert covered_images_only / reps < covered / reps - 0.15


def test_a_bound_from_seeds_is_an_upper_prediction_bound() -> None:
    from scipy.stats import t

    from fastnas_bench.verdicts.accuracy import build_spread

    spread = build_spread([0.02, 0.03, 0.04, 0.03, 0.03])
    assert spread.mean == pytest.approx(0.03) and spread.sd == pytest.approx(np.sqrt(0.0002 / 4))
    assert spread.upper == pytest.approx(0.03 + t.ppf(0.95, 4) * spread.sd * np.sqrt(1.2))
    with pytest.raises(ValueError, match="≥ 2 seeds, got 1"):
        build_spread([0.03])
    # Over many sets of 5 normal builds, one more build exceeds the bound about 5% of the time.
    rng = np.random.default_rng(0)
    exceeded = np.mean([rng.normal() > build_spread(rng.normal(size=5)).upper for _ in range(4000)])
    assert 0.03 < exceeded < 0.07


def test_a_drop_fails_only_when_its_whole_interval_is_beyond_the_bound() -> None:
    def drop(low: float, high: float) -> PairedDrop:
        return PairedDrop("map50_95", 0.4, 0.4 - (low + high) / 2, (low + high) / 2, low, high, 0.95, 512, 1000)

    assert drop_within(drop(0.01, 0.04), 0.05) is Outcome.PASS
    assert drop_within(drop(0.03, 0.07), 0.05) is Outcome.UNDECIDED
    assert drop_within(drop(0.06, 0.09), 0.05) is Outcome.FAIL
    assert "paired bootstrap over 512 images" in drop(0.01, 0.04).describe()


def test_per_image_stats_round_trip(tmp_path: Path) -> None:
    base, _ = _pair(5, 6, 0.5, 0.0)
    base.save(tmp_path / "s.npz")
    back = PerImageStats.load(tmp_path / "s.npz")
    assert back.images == base.images
    for key in ("tp", "conf", "pred_cls", "target_cls"):
        assert all(np.array_equal(x, y) for x, y in zip(getattr(back, key), getattr(base, key)))
