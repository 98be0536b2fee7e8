from __future__ import annotations

import pytest

from fastnas_bench.errors import BadInputError
from fastnas_bench.variants.profiles import PROFILES
from fastnas_bench.variants.spec import VariantSpec, parse_flops_target, parse_model


def test_key_is_stable_and_content_addressed() -> None:
    a = VariantSpec(method="fastnas", flops_target=0.66, finetune_epochs=3)
    assert a.key() == VariantSpec(method="fastnas", flops_target="66%", finetune_epochs=3).key()  # type: ignore[arg-type]
    assert a.key() != VariantSpec(method="fastnas", flops_target=0.5, finetune_epochs=3).key()
    assert a.key() != VariantSpec(method="fastnas", flops_target=0.66, finetune_epochs=3, seed=1).key()
    assert a.key().startswith("yolov8n-fastnas66-")


def test_pruned_variants_share_one_source() -> None:
    a = VariantSpec(method="fastnas", flops_target=0.66, finetune_epochs=3, channel_divisor=16)
    b = VariantSpec(method="fastnas", flops_target=0.5, finetune_epochs=9, channel_divisor=8)
    assert a.source().key() == b.source().key()
    assert a.source().finetune_epochs == 0 and a.source() == a.source().source()


def test_baseline_gets_the_same_finetune_budget() -> None:
    pruned = VariantSpec(method="fastnas", flops_target=0.66, finetune_epochs=30, channel_divisor=16)
    control = pruned.baseline()
    assert control.name == "baseline" and control.finetune_epochs == 30 and control.flops_target is None
    assert control.source() == pruned.source()
    assert control.key() != pruned.source().key()


def test_seeds_rebuild_the_finetune_not_the_source() -> None:
    """A build seed is another fine-tune of the same source (the stand-in for pretrained weights), so
    baseline and pruned of one seed pair up and every seed prunes the same network."""
    pruned = VariantSpec(method="fastnas", flops_target=0.66, finetune_epochs=30, channel_divisor=16)
    seeded = pruned.with_seed(3)
    assert seeded.seed == 3 and seeded.key() != pruned.key()
    assert seeded.source() == pruned.source() and seeded.source().seed == 0
    assert seeded.baseline().seed == 3 and seeded.baseline().key() != pruned.baseline().key()


def test_the_generated_dataset_is_part_of_the_key() -> None:
    """An entry holds its val figures: another generated dataset (the val split grew) is another entry."""
    from unittest import mock

    spec = VariantSpec(method="fastnas", flops_target=0.66, finetune_epochs=3)
    with mock.patch("fastnas_bench.variants.spec.GeneratedDataConfig", lambda: mock.Mock(key=lambda: "other")):
        other = spec.key()
    assert other != spec.key()
    assert VariantSpec(data="coco128.yaml").key() == VariantSpec(data="coco128.yaml").key()


def test_spec_is_frozen() -> None:
    spec = VariantSpec()
    with pytest.raises(AttributeError):
        spec.imgsz = 320  # type: ignore[misc]


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", "abc", "nan", "0%", "100%"])
def test_bad_flops_target_names_value(value: str) -> None:
    with pytest.raises(BadInputError, match=value.replace("%", "")):
        parse_flops_target(value)


def test_flops_target_accepts_fraction_and_percent() -> None:
    assert parse_flops_target("66%") == pytest.approx(0.66)
    assert parse_flops_target("0.5") == 0.5


@pytest.mark.parametrize("value", ["yolov8q", "z", "resnet50", ""])
def test_unknown_scale(value: str) -> None:
    with pytest.raises(BadInputError, match="unknown YOLOv8 model scale"):
        parse_model(value)


@pytest.mark.parametrize("value,expected", [("n", "yolov8n"), ("yolov8m.pt", "yolov8m"), ("YOLOv8S", "yolov8s")])
def test_model_names_normalise(value: str, expected: str) -> None:
    assert parse_model(value) == expected


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"method": "fastnas"}, "needs a flops_target"),
        ({"flops_target": 0.5}, "baseline spec takes no"),
        ({"imgsz": 100}, "imgsz 100"),
        ({"weights": "model.onnx"}, "model.onnx"),
        ({"method": "magic", "flops_target": 0.5}, "magic"),
        ({"seed": -1}, "seed -1 must be ≥ 0"),
        ({"seed": 2}, "seed 2: the source is one for every seed"),
    ],
)
def test_bad_specs(kwargs: dict, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        VariantSpec(**kwargs)


def test_profiles_have_a_speedup_bound_and_the_reference_target() -> None:
    for profile in PROFILES.values():
        assert profile.min_speedup > 1
        assert profile.pruned.flops_target == pytest.approx(0.66)
    assert PROFILES["paper"].pruned.model == "yolov8m" and PROFILES["paper"].pruned.finetune_epochs == 50
