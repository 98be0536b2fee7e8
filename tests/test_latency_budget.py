"""Latency budgets: specs and options, FLOPs bisection to a measured latency, and the latency-aware
selection's aim correction, with scripted measurements."""

from __future__ import annotations

from dataclasses import replace

import pytest
from torch import nn

from fastnas_bench.config.options import parse_latency_targets
from fastnas_bench.config.settings import resolve_settings
from fastnas_bench.errors import BadInputError
from fastnas_bench.measure.probe import LatencyRatio, match_latency
from fastnas_bench.methods.fastnas_latency import _select_to
from fastnas_bench.variants.spec import LatencyBudget, VariantSpec

BUDGET = LatencyBudget(target=0.75, backend="onnxruntime", machine="cpu-class-a", threads=2)


def test_a_latency_spec_names_its_backend_and_keeps_other_keys_stable() -> None:
    flops = VariantSpec(method="fastnas", flops_target=0.66)
    cut = VariantSpec(method="fastnas-latency", latency=BUDGET)
    assert cut.name == "fastnas-latency@onnxruntime-lat75"
    assert VariantSpec(method="fastnas", latency=BUDGET).name == "fastnas@onnxruntime-lat75"
    # Specs without a budget hash as before the field existed (their cached entries stay valid).
    assert "latency" not in flops.key() and flops.key() == VariantSpec(method="fastnas", flops_target=0.66).key()
    assert cut.key() != VariantSpec(method="fastnas-latency", latency=replace(BUDGET, machine="other")).key()
    assert cut.source() == flops.source() and cut.baseline().latency is None


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "unstructured", "latency": BUDGET}, "takes a flops_target, not a latency budget"),
    ({"method": "fastnas", "flops_target": 0.66, "latency": BUDGET}, "not both"),
    ({"method": "fastnas"}, "needs a flops_target or a latency budget"),
    ({"method": "baseline", "latency": BUDGET}, "takes no flops_target or latency budget"),
])
def test_bad_latency_specs(kwargs: dict, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        VariantSpec(**kwargs)


@pytest.mark.parametrize("value", ["0", "1", "1.5", "x", "-10%"])
def test_bad_latency_targets_name_the_value(value: str) -> None:
    with pytest.raises(BadInputError, match=f"latency target '{value}'"):
        parse_latency_targets(value)


def test_options_make_one_variant_per_budget_backend_and_method() -> None:
    settings = resolve_settings({"methods": ("fastnas-latency", "fastnas"), "latency_targets": (0.75, 0.66),
                                 "latency_backends": ("onnxruntime", "pytorch")})
    assert settings.latency_names == (
        "fastnas-latency@onnxruntime-lat75", "fastnas@onnxruntime-lat75", "fastnas-latency@onnxruntime-lat66",
        "fastnas@onnxruntime-lat66", "fastnas-latency@pytorch-lat75", "fastnas@pytorch-lat75",
        "fastnas-latency@pytorch-lat66", "fastnas@pytorch-lat66")
    # The FLOPs variant of the profile stays; the latency-only method has none.
    assert settings.flops_names == ("fastnas66",) and settings.primary_pruned_name == "fastnas66"
    budget = settings.variants["fastnas@pytorch-lat66"].latency
    assert budget is not None and (budget.imgsz, budget.batch, budget.threads) == (
        settings.profile.bench_imgsz, settings.profile.batch_sizes[0], settings.threads)
    assert budget.machine == settings.machine != ""
    default = resolve_settings({"methods": ("fastnas-latency",), "latency_targets": (0.7,)})
    assert default.latency_names == ("fastnas-latency@onnxruntime-lat70",)


@pytest.mark.parametrize(("opts", "match"), [
    ({"methods": ("fastnas-latency",)}, "add --latency-targets"),
    ({"latency_backends": ("pytorch",)}, "add --latency-targets"),
    ({"methods": ("unstructured",), "latency_targets": (0.7,)}, "none of the methods unstructured takes"),
])
def test_contradictory_latency_options(opts: dict, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        resolve_settings(opts)


def _ratio(value: float) -> LatencyRatio:
    return LatencyRatio(value, value * 0.99, value * 1.01, 30)


def test_bisection_finds_the_largest_flops_target_that_meets_the_latency() -> None:
    # Latency falls with FLOPs at an efficiency of 0.5 (ratio = 0.5 + flops / 2).
    tried = []

    def prune_at(flops: float) -> nn.Module:
        tried.append(flops)
        module = nn.Identity()
        module.flops = flops  # type: ignore[assignment]
        return module

    model, flops, measured, history = match_latency(prune_at, lambda m: _ratio(0.5 + m.flops / 2), 0.75, steps=6)
    assert flops <= 0.5 and flops > 0.5 - 0.7 / 2**6 * 2 and measured.ratio <= 0.75
    assert model.flops == flops and len(tried) == len(history) == 6  # a fixed number of steps, whatever the outcome


def test_a_flops_target_the_method_cannot_reach_counts_as_too_low_and_none_reached_is_an_error() -> None:
    def prune_at(flops: float) -> nn.Module:
        if flops < 0.6:
            raise BadInputError(f"FLOPs target {flops:g} is out of reach")
        return nn.Identity()

    with pytest.raises(BadInputError, match="no FLOPs target in .* met latency target 0.5"):
        match_latency(prune_at, lambda m: _ratio(0.9), 0.5, steps=4)


def test_selection_costs_every_step_on_the_whole_configuration() -> None:
    # Two coupled layers: narrowing both saves less than the sum (a conv between them shrinks in
    # input and output). The selection used to add savings measured at full width and move its aim
    # to make up for it; the greedy one costs each step on the configuration it would make.
    loss = {"a": {16: 0.01, 32: 0.0}, "b": {16: 0.02, 32: 0.0}, "c": {8: 0.05, 16: 0.0}}
    space = {"a": [16, 32], "b": [16, 32], "c": [8, 16]}

    def cost(widths: dict[str, int]) -> float:
        a, b, c = widths.get("a", 32) == 16, widths.get("b", 32) == 16, widths.get("c", 16) == 8
        return 1.0 - 0.2 * a - 0.2 * b + 0.1 * (a and b) - 0.3 * c

    widths, predicted = _select_to(0.65, loss, space, cost, 1.0)
    # a first (0.05 lost per unit saved); after it, b saves 0.1 only (0.2 per unit), c 0.3 (0.17): c.
    assert widths == {"a": 16, "b": 32, "c": 8} and predicted == pytest.approx(0.5)


def test_where_the_table_predicts_nothing_under_the_aim_its_fastest_selection_is_measured() -> None:
    # The table reads this backend slower than it runs: at best 0.70 by its own figures.
    loss = {"a": {16: 0.01, 32: 0.0}, "b": {16: 0.02, 32: 0.0}}
    space = {"a": [16, 32], "b": [16, 32]}

    def cost(widths: dict[str, int]) -> float:
        return 1.0 - 0.15 * (widths.get("a", 32) == 16) - 0.15 * (widths.get("b", 32) == 16)

    widths, predicted = _select_to(0.66, loss, space, cost, 1.0)
    assert widths == {"a": 16, "b": 16} and predicted == pytest.approx(0.70)


@pytest.mark.parametrize(("opts", "match"), [
    ({"methods": ("fastnas-latency",), "latency_targets": (0.751, 0.749)}, "name the same percentage twice"),
    ({"methods": ("fastnas-latency",), "latency_targets": (0.7,), "latency_backends": ("torch-compile",)},
     "cannot cut for torch-compile"),
])
def test_latency_options_that_could_only_fail_after_a_build_fail_now(opts: dict, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        resolve_settings(opts)


def test_layer_tables_of_onnxruntime_on_cuda_are_refused_by_name() -> None:
    from fastnas_bench.methods._lib.latency_table import layer_caller

    with pytest.raises(BadInputError, match="on cuda with pytorch only, not .onnxruntime."):
        layer_caller("onnxruntime", 2, device="cuda")
    with pytest.raises(BadInputError, match="not 'tensorrt'"):
        layer_caller("tensorrt", 2)
