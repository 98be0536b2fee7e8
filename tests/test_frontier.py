"""The latency frontier with fakes (no model, no timing): sampling, the resumable results, the analysis, the
report files and the command's option checks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fastnas_bench.cli import main
from fastnas_bench.frontier.analysis import Point, best_efficiency, frontier, spearman
from fastnas_bench.frontier.report import BackendFrontier, write_markdown, write_plot
from fastnas_bench.frontier.results import ResultStore, measure_all
from fastnas_bench.frontier.run import Plan, load_or_make_plan, points_of
from fastnas_bench.frontier.sampling import (
    FLOPS_WINDOW,
    FrontierConfig,
    check_sensitivity_map,
    conv_macs,
    family_counts,
    fastnas_widths,
    greedy_path,
    macs_loss,
    sample_configs,
    widths_digest,
)
from fastnas_bench.frontier.settings import FrontierSettings
from fastnas_bench.measure.probe import LatencyRatio
from fastnas_bench.methods._lib.greedy import greedy_select
from fastnas_bench.methods._lib.latency_table import ConvShape

CHOICES = {f"model.{i}.conv.out_channels": list(range(16, 16 * (2 + i % 4) + 1, 16)) for i in range(8)}
FULL = {h: max(c) for h, c in CHOICES.items()}
# Latency weight per hparam: the first layers (high resolution) cost the most per channel.
WEIGHT_MS = {h: 8.0 - i for i, h in enumerate(sorted(CHOICES))}


def fake_flops_ratio(widths: dict[str, int]) -> float:
    """FLOPs go as the square of the width fractions (a conv's input times its output)."""
    return float(np.mean([(widths[h] / FULL[h]) ** 2 for h in CHOICES]))


def fake_cost_ms(widths: dict[str, int]) -> float:
    return 2.0 + sum(WEIGHT_MS[h] * widths.get(h, FULL[h]) / FULL[h] for h in CHOICES)


FAKE_LOSS = {h: {w: 1 - (w / FULL[h]) ** 2 for w in ladder} for h, ladder in CHOICES.items()}


def _sample(n: int, seed: int, greedy: bool = True) -> list[FrontierConfig]:
    return sample_configs(n, seed, CHOICES, fake_flops_ratio, (FAKE_LOSS, fake_cost_ms) if greedy else None)


def test_sampling_is_deterministic_per_seed_and_lands_in_the_flops_window() -> None:
    first = _sample(40, seed=3)
    assert first == _sample(40, seed=3)
    assert first != _sample(40, seed=4)
    assert len(first) == 40 and len({c.digest for c in first}) == 40
    assert all(FLOPS_WINDOW[0] <= c.flops_ratio <= FLOPS_WINDOW[1] for c in first)
    assert all(c.flops_ratio == pytest.approx(fake_flops_ratio(dict(c.widths))) for c in first)
    families = {c.family for c in first}
    assert families == {"uniform", "latency-greedy", "random"}


def test_every_sampled_width_is_a_choice_of_its_hparam() -> None:
    for config in _sample(30, seed=0):
        widths = dict(config.widths)
        assert set(widths) == set(CHOICES)
        assert all(w in CHOICES[h] for h, w in widths.items()), config


def test_uniform_configurations_take_one_fraction_of_every_width() -> None:
    uniform = [dict(c.widths) for c in _sample(40, seed=0) if c.family == "uniform"]
    assert uniform
    for widths in uniform:
        # The same fraction of each full width: every hparam's width is the choice nearest one common fraction.
        fractions = [widths[h] / FULL[h] for h in CHOICES]
        spread = max(fractions) - min(fractions)
        assert spread <= max(16 / FULL[h] for h in CHOICES) + 1e-9, widths


def test_without_a_latency_table_the_greedy_family_is_left_out_and_random_fills_in() -> None:
    configs = _sample(20, seed=1, greedy=False)
    assert family_counts(20, greedy=False)["latency-greedy"] == 0
    assert len(configs) == 20 and "latency-greedy" not in {c.family for c in configs}


# A FastNAS-like sensitivity map: score lost per choice, growing as a layer narrows; the early layers
# (high resolution, most latency per channel here) are the least sensitive.
FAKE_SENSITIVITY = {h: {w: (1 - w / FULL[h]) * (0.02 + 0.01 * i) for w in CHOICES[h]}
                    for i, h in enumerate(sorted(CHOICES))}


def test_fastnas_like_configurations_are_fastnas_threshold_rule_at_the_maps_values() -> None:
    selections = fastnas_widths(CHOICES, FAKE_SENSITIVITY)
    thresholds = sorted({v for row in FAKE_SENSITIVITY.values() for v in row.values()})
    assert len(selections) == len(thresholds)
    for t, widths in zip(thresholds, selections):
        # modelopt's BinarySearcher: every mapped hparam at its narrowest choice losing at most t.
        assert widths == {h: min(w for w, v in FAKE_SENSITIVITY[h].items() if v <= t) for h in CHOICES}
    flops = [fake_flops_ratio(w) for w in selections]
    assert flops == sorted(flops, reverse=True) and selections[0] == FULL  # widest first; 0 loss keeps full width


def test_hparams_outside_the_map_stay_at_full_width_as_in_fastnas() -> None:
    mapped = sorted(CHOICES)[:3]
    for widths in fastnas_widths(CHOICES, {h: FAKE_SENSITIVITY[h] for h in mapped}):
        assert all(widths[h] == FULL[h] for h in CHOICES if h not in mapped)


def test_a_sensitivity_map_adds_the_fastnas_like_family_in_the_window() -> None:
    configs = sample_configs(40, 3, CHOICES, fake_flops_ratio, (FAKE_LOSS, fake_cost_ms), sensitivity=FAKE_SENSITIVITY)
    fastnas_like = [c for c in configs if c.family == "fastnas-like"]
    assert len(configs) == 40 and len(fastnas_like) == family_counts(40, True, True)["fastnas-like"] == 4
    allowed = {json.dumps(w, sort_keys=True) for w in fastnas_widths(CHOICES, FAKE_SENSITIVITY)}
    assert all(json.dumps(dict(c.widths), sort_keys=True) in allowed for c in fastnas_like)
    assert all(FLOPS_WINDOW[0] <= c.flops_ratio <= FLOPS_WINDOW[1] for c in fastnas_like)
    # Without a map the other families sample as before: the random draws are the same.
    plain = _sample(40, seed=3)
    assert "fastnas-like" not in {c.family for c in plain}
    randoms = [c for c in configs if c.family == "random"]
    assert randoms == [c for c in plain if c.family == "random"][:len(randoms)]


@pytest.mark.parametrize(("sensitivity", "message"), [
    ({}, "it is empty"),
    ({"model.99.conv.out_channels": {16: 0.0}}, "hparam 'model.99.conv.out_channels' (and 0 more) is not in this search"),
    ({"model.0.conv.out_channels": {16: 0.0, 24: 0.1}}, "model.0.conv.out_channels width 24 is not one of its choices"),
    # A coarser divisor's map holds a subset of the widths: refused too, as modelopt refuses a stale map.
    ({"model.1.conv.out_channels": {32: 0.1, 48: 0.0}}, "model.1.conv.out_channels width 16 is missing from the map"),
])
def test_a_map_of_another_search_space_is_refused_naming_what_differs(sensitivity: dict[str, dict[int, float]],
                                                                      message: str) -> None:
    with pytest.raises(ValueError, match="^sensitivity map ckpt.pth: ") as info:
        check_sensitivity_map(CHOICES, sensitivity, "ckpt.pth")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_greedy_path_gives_what_greedy_select_gives_at_each_selection_cost() -> None:
    selections = greedy_path(CHOICES, FAKE_LOSS, fake_cost_ms, 6)
    assert len(selections) == 6
    costs = [fake_cost_ms(s) for s in selections]
    assert costs == sorted(costs)  # fastest first
    for s in selections:
        # The walk stopped at each selection is greedy_select at that selection's own cost.
        assert greedy_select(FAKE_LOSS, CHOICES, fake_cost_ms, fake_cost_ms(s)) == s


def test_greedy_path_reaches_a_floor_above_its_lowest_ratio_despite_rounding() -> None:
    # A calibrated table can read the narrowest network at a ratio above 0.4; 47.623 / 80.042 * 80.042
    # is 47.622999... in floating point, under the floor, which greedy_select would refuse as out of reach.
    assert 47.623 / 80.042 * 80.042 < 47.623
    ladders = {"a": [1, 2]}

    def cost_ms(widths: dict[str, int]) -> float:
        return 80.042 if widths["a"] == 2 else 47.623

    assert greedy_path(ladders, {"a": {1: 0.1, 2: 0.0}}, cost_ms, 3)[0] == {"a": 1}


def test_greedy_select_reports_every_step_when_asked() -> None:
    steps: list[tuple[dict[str, int], float]] = []
    target = 0.6 * fake_cost_ms(FULL)
    chosen = greedy_select(FAKE_LOSS, CHOICES, fake_cost_ms, target, on_step=lambda w, ms: steps.append((w, ms)))
    assert steps and steps[-1] == (chosen, fake_cost_ms(chosen))
    assert all(ms == pytest.approx(fake_cost_ms(w)) for w, ms in steps)
    assert all(ms > target for _, ms in steps[:-1])


def test_bad_sample_sizes_are_refused_naming_the_value() -> None:
    with pytest.raises(ValueError, match="configs 0"):
        _sample(0, seed=0)


def test_conv_macs_and_the_greedy_loss_from_them() -> None:
    assert conv_macs(3, 1, 1, 8, 8, 4, 2) == 9 * 4 * 2 * 64
    assert conv_macs(3, 2, 1, 8, 8, 4, 2) == 9 * 4 * 2 * 16
    shapes = {"a": ConvShape(3, 1, 1, 8, 8, (3,), (16, 32), True), "b": ConvShape(1, 1, 0, 8, 8, (16, 32), (8,), True)}

    def active(widths: dict[str, int]) -> dict[str, tuple[int, int]]:
        w = widths.get("h", 32)
        return {"a": (3, w), "b": (w, 8)}

    loss = macs_loss({"h": [16, 32]}, shapes, active)
    assert loss["h"][32] == 0.0
    assert loss["h"][16] == pytest.approx(0.5)  # both convolutions scale with h: half of it halves them


def _configs(n: int = 3) -> list[FrontierConfig]:
    return [FrontierConfig("random", (("h", 16 * (i + 1)),), 0.5 + 0.1 * i) for i in range(n)]


class FakeMeasure:
    """Scripted latency ratios; counts the (config, backend) pairs it is asked for."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_after = fail_after

    def __call__(self, config: FrontierConfig, backend: str) -> LatencyRatio:
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise KeyboardInterrupt
        self.calls.append((config.digest, backend))
        ratio = config.flops_ratio + (0.05 if backend == "b" else 0.0)
        return LatencyRatio(ratio, ratio - 0.02, ratio + 0.02, 20)


SETTINGS = {"imgsz": 640, "threads": 2, "rounds": 20, "versions": {"onnxruntime": "1.0"}}


def test_results_are_stored_as_they_finish_and_a_rerun_measures_only_what_is_missing(tmp_path: Path) -> None:
    configs = _configs()
    interrupted = FakeMeasure(fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        measure_all(configs, ("a", "b"), interrupted, ResultStore(tmp_path, SETTINGS))
    assert len(interrupted.calls) == 4
    again = FakeMeasure()
    results = measure_all(configs, ("a", "b"), again, ResultStore(tmp_path, SETTINGS))
    assert again.calls == [(configs[2].digest, "a"), (configs[2].digest, "b")]
    assert len(results) == 6
    assert results[(configs[1].digest, "b")].ratio == pytest.approx(0.65)
    third = FakeMeasure()
    assert measure_all(configs, ("a", "b"), third, ResultStore(tmp_path, SETTINGS)) == results
    assert third.calls == []
    assert not [p for p in tmp_path.rglob(".*")], "temporary files left behind"


def test_a_partly_written_or_foreign_result_is_measured_again(tmp_path: Path) -> None:
    configs = _configs(2)
    store = ResultStore(tmp_path, SETTINGS)
    measure_all(configs, ("a",), FakeMeasure(), store)
    path = store.path(configs[0].digest, "a")
    path.write_text(path.read_text()[:20])  # cut short
    foreign = store.path(configs[1].digest, "a")
    data = json.loads(foreign.read_text())
    data["key"]["settings"] = {"rounds": 6}
    foreign.write_text(json.dumps(data))
    fake = FakeMeasure()
    measure_all(configs, ("a",), fake, store)
    assert sorted(fake.calls) == sorted([(configs[0].digest, "a"), (configs[1].digest, "a")])
    assert store.get(configs[0].digest, "a") is not None


def test_other_measurement_settings_are_other_results(tmp_path: Path) -> None:
    configs = _configs(2)
    measure_all(configs, ("a",), FakeMeasure(), ResultStore(tmp_path, SETTINGS))
    fake = FakeMeasure()
    measure_all(configs, ("a",), fake, ResultStore(tmp_path, {**SETTINGS, "rounds": 30}))
    assert len(fake.calls) == 2


def test_a_plan_is_reused_only_under_its_key(tmp_path: Path) -> None:
    made: list[str] = []

    def make(key: str) -> Plan:
        made.append(key)
        return Plan(key, tuple(_configs()), {"a": {c.digest: 0.5 for c in _configs()}}, ("a note",))

    path = tmp_path / "configs.json"
    first = load_or_make_plan(path, "k1", lambda: make("k1"))
    assert load_or_make_plan(path, "k1", lambda: make("k1")) == first
    assert made == ["k1"]
    load_or_make_plan(path, "k2", lambda: make("k2"))
    path.write_text("{not json")
    load_or_make_plan(path, "k2", lambda: make("k2"))
    assert made == ["k1", "k2", "k2"]
    assert Plan.from_json(json.loads(path.read_text())).configs == first.configs


def _point(name: str, flops: float, latency: float, half: float = 0.02, predicted: float | None = None) -> Point:
    return Point(name, "random", flops, latency, latency - half, latency + half, predicted)


def test_frontier_keeps_the_points_nothing_beats_on_both_latency_and_flops_kept() -> None:
    a, b, c, d, e = (_point("a", 0.5, 0.55), _point("b", 0.6, 0.70), _point("c", 0.65, 0.68), _point("d", 0.8, 0.85),
                     _point("e", 0.7, 0.9))
    assert frontier([e, d, c, b, a]) == [a, c, d]
    assert frontier([]) == []
    twin = _point("a2", 0.5, 0.55)
    assert len(frontier([a, twin])) == 1


def test_best_efficiency_in_the_flops_window_with_its_interval() -> None:
    inside_low = _point("p1", 0.62, 0.70)
    inside_best = _point("p2", 0.66, 0.68)
    outside = _point("p3", 0.70, 0.50)
    pick = best_efficiency([inside_low, inside_best, outside])
    assert pick is not None and pick.point == inside_best and pick.candidates == 2
    assert pick.efficiency == pytest.approx(0.32 / 0.34)
    assert (pick.efficiency_low, pick.efficiency_high) == (pytest.approx(0.30 / 0.34), pytest.approx(0.34 / 0.34))
    assert best_efficiency([outside]) is None


def test_spearman_on_scripted_ranks() -> None:
    assert spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [1, 3, 2, 5, 4]) == pytest.approx(0.8)  # 1 - 6·4 / (5·24)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 2, 3], [4, 4, 4]) is None
    with pytest.raises(ValueError, match="do not pair"):
        spearman([1, 2, 3], [1, 2])


def test_report_and_plot_from_scripted_points(tmp_path: Path) -> None:
    configs = [FrontierConfig("random", (("h", w),), f) for w, f in ((16, 0.5), (32, 0.63), (48, 0.8))]
    configs.append(FrontierConfig("fastnas-like", (("h", 40),), 0.66))
    plan = Plan("k", tuple(configs), {"a": {c.digest: c.flops_ratio for c in configs}})
    measured = {(c.digest, b): LatencyRatio(r, r - 0.01, r + 0.01, 20)
                for c, r in zip(configs, (0.55, 0.62, 0.8, 0.76)) for b in ("a", "b")}
    fronts = [BackendFrontier.of(b, points_of(plan, measured, b)) for b in ("a", "b")]
    assert fronts[0].rank_correlation == pytest.approx(1.0) and fronts[0].rank_pairs == 4
    assert fronts[1].rank_correlation is None and "no latency table" in fronts[1].table_note
    assert fronts[0].best is not None and fronts[0].best.point.config == configs[1].digest
    # Per family, its own best in the window: where FastNAS's selections sit against the overall best.
    assert {f: p.point.config for f, p in fronts[0].family_best.items()} == {
        "fastnas-like": configs[3].digest, "random": configs[1].digest}
    text = write_markdown(tmp_path / "frontier.md", ["header"], fronts).read_text()
    assert "## a" in text and "## b" in text and "1.000 over 4 configurations" in text
    assert "per family: fastnas-like 0.706 [0.676, 0.735] (FLOPs 0.660, best of 1); random 1.027" in text
    assert f"`{configs[0].digest}`" in text
    assert write_plot(tmp_path / "frontier.png", fronts).stat().st_size > 0


def test_the_report_gives_the_tables_bias_with_and_without_its_in_graph_calibration(tmp_path: Path) -> None:
    configs = [FrontierConfig("random", (("h", w),), f) for w, f in ((16, 0.5), (32, 0.63), (48, 0.8))]
    # The calibrated table reads 0.01 under the measurement, its layers alone 0.04 under and out of rank order.
    plan = Plan("k", tuple(configs), {"a": {c.digest: r - 0.01 for c, r in zip(configs, (0.6, 0.7, 0.9))}}, (),
                {"a": {c.digest: r - 0.04 for c, r in zip(configs, (0.7, 0.6, 0.9))}})
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    old = {k: v for k, v in plan.to_json().items() if k != "predicted_layers"}  # a plan written before the field
    assert Plan.from_json(old).predicted_layers == {}
    measured = {(c.digest, "a"): LatencyRatio(r, r - 0.01, r + 0.01, 20) for c, r in zip(configs, (0.6, 0.7, 0.9))}
    front = BackendFrontier.of("a", points_of(plan, measured, "a"))
    assert front.prediction_bias == pytest.approx(0.01) and front.rank_correlation == pytest.approx(1.0)
    assert front.layers_bias == pytest.approx(0.04)  # the swapped pair's differences cancel
    assert front.layers_rank_correlation == pytest.approx(0.5)
    text = write_markdown(tmp_path / "frontier.md", [], [front]).read_text()
    assert "1.000 over 3 configurations; mean measured − predicted ratio +0.010" in text
    assert "without its in-graph calibration (isolated layers, the rest a constant): Spearman 0.500, mean " \
           "measured − predicted +0.040" in text
    plain = BackendFrontier.of("a", points_of(replace(plan, predicted_layers={}), measured, "a"))
    assert plain.layers_bias is None and "without its in-graph" not in write_markdown(
        tmp_path / "plain.md", [], [plain]).read_text()


def test_widths_digest_ignores_order() -> None:
    assert widths_digest({"a": 16, "b": 32}) == widths_digest({"b": 32, "a": 16})
    assert FrontierConfig.from_json(_configs(1)[0].to_json()) == _configs(1)[0]


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> list[FrontierSettings]:
    """``run_frontier`` replaced: records the settings it gets, measures nothing."""
    seen: list[FrontierSettings] = []

    def fake(settings: FrontierSettings, out: Path, cache_dir: str | None = None) -> list[Path]:
        seen.append(settings)
        return []

    monkeypatch.setattr("fastnas_bench.frontier.run.run_frontier", fake)
    return seen


def test_cli_defaults_reach_the_run(tmp_path: Path, no_run: list[FrontierSettings]) -> None:
    assert main(["frontier", "--out", str(tmp_path)]) == 0
    assert no_run == [FrontierSettings(("onnxruntime", "pytorch", "openvino"), 150, 20, 0, 640, 2)]
    assert main(["frontier", "--out", str(tmp_path), "--backends", "onnxruntime", "--configs", "5", "--rounds", "16",
                 "--seed", "7", "--imgsz", "320"]) == 0
    assert no_run[-1] == FrontierSettings(("onnxruntime",), 5, 16, 7, 320, 2)


@pytest.mark.parametrize(("args", "message"), [
    (["--configs", "0"], "'0' must be a positive integer"),
    (["--backends", "onnxruntime,nope"], "unknown backend(s) ['nope']"),
    (["--rounds", "x"], "'x' must be a positive integer"),
])
def test_cli_refuses_bad_values_at_parse_time(tmp_path: Path, no_run: list[FrontierSettings],
                                              capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frontier", "--out", str(tmp_path), *args])
    assert exit_info.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and message in errors[0]
    assert no_run == []


def test_cli_passes_a_sensitivity_map_file_or_its_folder(tmp_path: Path, no_run: list[FrontierSettings]) -> None:
    folder = tmp_path / "search" / "fastnas-x"
    folder.mkdir(parents=True)
    (folder / "fastnas_search.pth").write_bytes(b"")
    assert main(["frontier", "--out", str(tmp_path / "out"), "--sensitivity-map", str(folder)]) == 0
    assert no_run[-1].sensitivity_checkpoint() == folder / "fastnas_search.pth"
    assert main(["frontier", "--out", str(tmp_path / "out"), "--sensitivity-map",
                 str(folder / "fastnas_search.pth")]) == 0
    assert no_run[-1].sensitivity_checkpoint() == folder / "fastnas_search.pth"


def test_a_file_without_a_sensitivity_map_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The map is read, and refused, before the search space is built or anything timed."""
    import torch

    checkpoint = tmp_path / "fastnas_search.pth"
    torch.save({"best": {}}, checkpoint)
    monkeypatch.setattr("fastnas_bench.methods._lib.search_space.searchable", lambda *_: pytest.fail("got past the map"))
    assert main(["frontier", "--out", str(tmp_path / "out"), "--sensitivity-map", str(checkpoint)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"fastnas-bench: error: sensitivity map {checkpoint}: holds no FastNAS sensitivity map "
                       "(expected the checkpoint of a FastNAS search)")
    # Not a checkpoint at all: the same one line, naming what torch could not read.
    checkpoint.write_bytes(b"not a pickle")
    assert main(["frontier", "--out", str(tmp_path / "out"), "--sensitivity-map", str(checkpoint)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fastnas-bench: error: sensitivity map {checkpoint}: holds no")


@pytest.mark.parametrize(("args", "message"), [
    (["--rounds", "3"], "rounds 3 must be at least 15 (three batches of 5"),
    (["--sensitivity-map", "/nonexistent/fastnas_search.pth"], "sensitivity map /nonexistent/fastnas_search.pth: no such file"),
    (["--imgsz", "100"], "imgsz 100 must be a positive multiple of 32"),
    (["--backends", "tensorrt"], "backend(s) ['tensorrt'] do not run on the CPU"),
])
def test_cli_refuses_values_the_run_cannot_take_in_one_line(tmp_path: Path, no_run: list[FrontierSettings],
                                                            capsys: pytest.CaptureFixture[str], args: list[str],
                                                            message: str) -> None:
    assert main(["frontier", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("fastnas-bench: error:")
    assert no_run == []


def test_every_measurement_takes_the_batch_means_interval() -> None:
    """Rounds of a shared machine are autocorrelated: the sign-test interval, which takes them as
    independent, would read too narrow."""
    from fastnas_bench.frontier.run import _SubnetMeasure
    from fastnas_bench.frontier.settings import BATCH_ROUNDS
    from fastnas_bench.measure.probe import LatencyRatio

    calls: list[tuple[int, int | None]] = []

    class Probe:
        def ratio(self, model: object, rounds: int, batch_rounds: int | None = None) -> LatencyRatio:
            calls.append((rounds, batch_rounds))
            return LatencyRatio(0.8, 0.7, 0.9, rounds)

    measure = _SubnetMeasure(lambda widths: object(), {"onnxruntime": Probe()}, 20)  # type: ignore[dict-item]
    measure(_configs(1)[0], "onnxruntime")
    assert calls == [(20, BATCH_ROUNDS)]
