"""``fastnas-bench frontier``: measured latency vs FLOPs of sampled width configurations of the cpu profile's
search space, on each backend, resumable.

The network is the cpu profile's YOLOv8n built from its YAML, untrained: a configuration's latency does
not depend on its weights, so no source needs training. The steps, each reusing the suite's own parts:

1. the FastNAS search space (:func:`~fastnas_bench.methods._lib.search_space.searchable`) and, per backend
   whose layers a table can time, its latency table (cached like the latency-aware method's);
2. the plan: configurations sampled (:mod:`~fastnas_bench.frontier.sampling`), each with its FLOPs ratio
   (Ultralytics' count of the exported subnet) and the tables' predicted latency ratios, kept in
   ``configs.json`` and reused by a rerun with the same settings;
3. each configuration timed against the full-width network on every backend by the latency probe (the
   variants' own exporter and backend classes, ABBA rounds fixed in advance), each result stored as it
   finishes (:mod:`~fastnas_bench.frontier.results`);
4. per backend the Pareto set, the best efficiency near FLOPs 0.64 and the table's rank correlation,
   written as Markdown and a plot.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from fastnas_bench import progress
from fastnas_bench.backends.registry import get_backend_class
from fastnas_bench.errors import BadInputError
from fastnas_bench.frontier.analysis import Point
from fastnas_bench.frontier.report import MARKDOWN_FILE, PLOT_FILE, BackendFrontier, write_markdown, write_plot
from fastnas_bench.frontier.results import ResultStore, measure_all
from fastnas_bench.frontier.sampling import (
    FAMILIES,
    FLOPS_WINDOW,
    SAMPLING_VERSION,
    FrontierConfig,
    check_sensitivity_map,
    family_counts,
    macs_loss,
    sample_configs,
)
from fastnas_bench.frontier.settings import BATCH, BATCH_ROUNDS, PROFILE, FrontierSettings
from fastnas_bench.fsutil import atomic_write_text
from fastnas_bench.keys import digest
from fastnas_bench.measure.probe import LatencyProbe, LatencyRatio, export_onnx_module
from fastnas_bench.versions import BUILD, MEASUREMENT, versions_of

log = logging.getLogger(__name__)

PLAN_FILE = "configs.json"
RESULTS_DIR = "results"
#: Why the FastNAS-like family is not sampled without a map: say it in every report that lacks it.
FASTNAS_NOTE = ("FastNAS-like configurations are not sampled: they need FastNAS's sensitivity map of a trained "
                "source and this network is untrained; give --sensitivity-map (e.g. the cpu profile's "
                "search/*/fastnas_search.pth in the variant cache)")


@dataclass(frozen=True)
class Plan:
    """The configurations of one run and what is known of them before any timing.

    Attributes:
        key: Digest of everything the sampling depends on.
        configs: The sampled configurations.
        predicted: backend → config digest → the backend's latency table's predicted ratio.
        notes: What the sampling left out, and why.
        predicted_layers: backend → config digest → the same table's prediction without its in-graph
            calibration, for backends whose table has one (what the calibration changes).
    """

    key: str
    configs: tuple[FrontierConfig, ...]
    predicted: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    predicted_layers: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "configs": [c.to_json() for c in self.configs],
                "predicted": {b: dict(p) for b, p in self.predicted.items()}, "notes": list(self.notes),
                "predicted_layers": {b: dict(p) for b, p in self.predicted_layers.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(str(data["key"]), tuple(FrontierConfig.from_json(c) for c in data["configs"]),
                   {b: {d: float(r) for d, r in p.items()} for b, p in data["predicted"].items()},
                   tuple(data["notes"]),
                   {b: {d: float(r) for d, r in p.items()} for b, p in data.get("predicted_layers", {}).items()})


def load_or_make_plan(path: Path, key: str, make: Callable[[], Plan]) -> Plan:
    """The plan stored at ``path`` where its key is ``key``, else ``make()``'s, stored atomically."""
    if path.is_file():
        try:
            stored = Plan.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            log.warning("plan %s is unreadable (%s); sampling again", path, e)
        else:
            if stored.key == key:
                progress.report(f"frontier: reusing the {len(stored.configs)} configurations of {path}")
                return stored
            progress.report(f"frontier: {path} was sampled with other settings; sampling again")
    plan = make()
    atomic_write_text(path, json.dumps(plan.to_json(), indent=1, sort_keys=True))
    return plan


class _ReusedExport:
    """Ultralytics' ONNX export, once per model for every backend that loads ONNX: a subnet is timed on
    each backend in a row, and an export takes seconds. The file stays in the first probe's folder until
    that probe's next candidate, after the other backends have loaded it."""

    def __init__(self) -> None:
        self._last: tuple[nn.Module, Path] | None = None

    def __call__(self, model: nn.Module, out_dir: Path, imgsz: int, batch: int) -> Path:
        if self._last is not None and self._last[0] is model and self._last[1].is_file():
            return self._last[1]
        path = export_onnx_module(model, out_dir, imgsz, batch)
        self._last = (model, path)
        return path


def run_frontier(settings: FrontierSettings, out: Path, cache_dir: str | None = None) -> list[Path]:
    """Measure the frontier into ``out`` (resuming what is there); returns the report, plot and plan paths."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from fastnas_bench.compat.modelopt import hparam_choices
    from fastnas_bench.host import machine_class
    from fastnas_bench.methods._lib.latency_table import (
        active_widths,
        cached_table,
        conv_shapes,
        table_builder,
        table_key,
    )
    from fastnas_bench.methods._lib.search_space import searchable, subnet
    from fastnas_bench.variants.cache import ensure_cache_root
    from fastnas_bench.variants.data import SHAPE_CLASSES
    from fastnas_bench.variants.profiles import PROFILES
    from fastnas_bench.variants.spec import LatencyBudget
    from fastnas_bench.yolo.models import model_gflops

    sensitivity = _read_sensitivity_map(settings)  # before anything heavy: a wrong file costs nothing
    spec = PROFILES[PROFILE].pruned
    # The cpu profile trains on the generated dataset: its head's class convolutions are that many wide.
    nc = len(SHAPE_CLASSES)
    source_id = "untrained-" + digest({"model": spec.model, "nc": nc, "channel_divisor": spec.channel_divisor})
    torch.manual_seed(0)  # weights do not change latency; a fixed draw keeps the exports identical across runs
    progress.report(f"frontier: building the {spec.model} search space (channel divisor {spec.channel_divisor})")
    model = DetectionModel(f"{spec.model}.yaml", nc=nc, verbose=False).eval()
    # A model built from YAML lacks what a trained checkpoint's carries and Ultralytics' exporter reads.
    setattr(model, "task", "detect")  # noqa: B010 - nn.Module's __setattr__ types it as a tensor or module
    net, hparams = searchable(model, spec.channel_divisor)
    choices = {h: sorted(int(w) for w in hparam_choices(hp)) for h, hp in hparams.items()}
    source = subnet(net, {})
    source_gflops = model_gflops(source, settings.imgsz)
    shapes = conv_shapes(net, hparams, settings.imgsz, BATCH)
    machine = machine_class("cpu")

    def flops_ratio(widths: dict[str, int]) -> float:
        return model_gflops(subnet(net, widths), settings.imgsz) / source_gflops

    def active(widths: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        return active_widths(net, widths, list(shapes))

    def budget(backend: str) -> LatencyBudget:
        # The probe and the table read a budget's measurement settings only; the frontier has no target.
        return LatencyBudget(target=0.5, backend=backend, machine=machine, imgsz=settings.imgsz, batch=BATCH,
                             threads=settings.threads, device="cpu")

    if sensitivity is not None:
        check_sensitivity_map(choices, sensitivity, str(settings.sensitivity_checkpoint()))
    cache = ensure_cache_root(cache_dir)
    table_backends = [b for b in settings.backends if "cpu" in get_backend_class(b).times_layers]
    with tempfile.TemporaryDirectory(prefix="fastnas-frontier-") as work:
        export = _ReusedExport()
        probes = {b: LatencyProbe(source, budget(b), Path(work) / b, export=export) for b in settings.backends}
        keys = {b: table_key(source_id, choices, budget(b)) for b in table_backends}

        def build(backend: str) -> Callable[[], Any]:
            return table_builder(shapes, budget(backend), probes[backend].reference_call, net, choices,
                                 Path(work) / f"{backend}-in-graph")

        greedy_backend = table_backends[0] if table_backends else None
        plan_key = digest({"configs": settings.configs, "seed": settings.seed, "source": source_id, "choices": choices,
                           "imgsz": settings.imgsz, "window": FLOPS_WINDOW, "sampling": SAMPLING_VERSION,
                           "tables": keys, "greedy": greedy_backend, "versions": versions_of(BUILD),
                           # Only with a map, so plans sampled without one stay valid.
                           **({"fastnas_map": digest(sensitivity)} if sensitivity is not None else {})})

        def make_plan() -> Plan:
            # The tables serve the sampling and the predictions only: a resumed run with its plan needs none.
            tables = {b: cached_table(cache, keys[b], build(b)) for b in table_backends}
            costs = {b: (lambda w, t=t: t.cost_ms(active(w))) for b, t in tables.items()}
            notes = [FASTNAS_NOTE if sensitivity is None else
                     f"FastNAS-like configurations are FastNAS's threshold rule over the sensitivity map in "
                     f"{settings.sensitivity_checkpoint()}"]
            greedy = None
            if greedy_backend is None:
                notes.append(f"latency-greedy configurations are not sampled: none of {', '.join(settings.backends)} "
                             "has a latency table (their layers cannot be timed alone)")
            else:
                notes.append(f"latency-greedy configurations walk the {greedy_backend} latency table")
                greedy = (macs_loss(choices, shapes, active), costs[greedy_backend])
            counts = family_counts(settings.configs, greedy is not None, sensitivity is not None)
            progress.report(f"frontier: sampling {settings.configs} configurations ({counts}); each FLOPs count "
                            "exports a subnet")
            configs = sample_configs(settings.configs, settings.seed, choices, flops_ratio, greedy,
                                     sensitivity=sensitivity)
            full = {b: cost({}) for b, cost in costs.items()}
            predicted = {b: {c.digest: cost(dict(c.widths)) / full[b] for c in configs} for b, cost in costs.items()}
            layers_full = {b: t.layers_cost_ms(active({})) for b, t in tables.items()}
            layers = {b: {c.digest: t.layers_cost_ms(active(dict(c.widths))) / layers_full[b] for c in configs}
                      for b, t in tables.items() if t.graph is not None}
            return Plan(plan_key, tuple(configs), predicted, tuple(notes), layers)

        plan = load_or_make_plan(out / PLAN_FILE, plan_key, make_plan)
        store = ResultStore(out / RESULTS_DIR, {
            "source": source_id, "imgsz": settings.imgsz, "batch": BATCH, "threads": settings.threads,
            "rounds": settings.rounds, "batch_rounds": BATCH_ROUNDS, "precision": "fp32", "machine": machine, "versions": versions_of(MEASUREMENT)})
        measured = measure_all(plan.configs, settings.backends,
                               _SubnetMeasure(lambda widths: subnet(net, widths), probes, settings.rounds), store)

    fronts = [BackendFrontier.of(b, points_of(plan, measured, b)) for b in settings.backends]
    families = {f: sum(c.family == f for c in plan.configs) for f in FAMILIES}
    header = [
        f"Search space: {spec.model} built from its YAML, untrained ({nc} classes, the `{PROFILE}` profile's; latency "
        f"does not depend on weights), FastNAS channel divisor {spec.channel_divisor}, {len(choices)} prunable widths.",
        "",
        f"{len(plan.configs)} configurations with FLOPs ratio in [{FLOPS_WINDOW[0]:.2f}, {FLOPS_WINDOW[1]:.2f}] "
        f"(seed {settings.seed}): " + ", ".join(f"{f} {n}" for f, n in families.items()) + ". "
        + " ".join(f"{n[0].upper()}{n[1:]}." for n in plan.notes),
        "",
        f"FLOPs ratio: Ultralytics' count of the exported subnet at {settings.imgsz} px. Latency ratio: "
        f"{settings.rounds} paired ABBA rounds against the full-width network, with its 95% batch-means "
        f"interval (batches of {BATCH_ROUNDS} consecutive rounds: rounds are autocorrelated); {settings.imgsz} px, batch {BATCH}, {settings.threads} threads, machine class `{machine}`.",
    ]
    return [write_markdown(out / MARKDOWN_FILE, header, fronts), write_plot(out / PLOT_FILE, fronts), out / PLAN_FILE]


def _read_sensitivity_map(settings: FrontierSettings) -> dict[str, dict[int, float]] | None:
    """The FastNAS sensitivity map ``settings`` names (checked against the search space once it is built);
    ``None`` without one."""
    if settings.sensitivity_map is None:
        return None
    from fastnas_bench.compat.modelopt import read_sensitivity_map

    path = settings.sensitivity_checkpoint()
    refusal = (f"sensitivity map {path}: holds no FastNAS sensitivity map (expected the checkpoint of a FastNAS "
               "search)")
    stored = read_sensitivity_map(path)  # None where torch cannot read the file
    try:
        # As stored: FastNAS's own selection reads the raw values (the latency-aware method clips negatives).
        sensitivity = {str(h): {int(w): float(v) for w, v in row.items()} for h, row in (stored or {}).items()}
    except (AttributeError, TypeError, ValueError) as e:  # rows that are not width -> score mappings
        raise BadInputError(f"{refusal}: {type(e).__name__}") from e
    if not sensitivity:
        raise BadInputError(refusal)
    return sensitivity


class _SubnetMeasure:
    """Times a configuration on a backend: its subnet built once for all backends in a row."""

    def __init__(self, build: Callable[[dict[str, int]], nn.Module], probes: Mapping[str, LatencyProbe],
                 rounds: int) -> None:
        self._build = build
        self._probes = probes
        self._rounds = rounds
        self._last: tuple[str, nn.Module] | None = None

    def __call__(self, config: FrontierConfig, backend: str) -> LatencyRatio:
        if self._last is None or self._last[0] != config.digest:
            self._last = (config.digest, self._build(dict(config.widths)))
        return self._probes[backend].ratio(self._last[1], self._rounds, batch_rounds=BATCH_ROUNDS)


def points_of(plan: Plan, measured: Mapping[tuple[str, str], LatencyRatio], backend: str) -> list[Point]:
    """The plan's configurations measured on ``backend``, as analysis points."""
    predicted = plan.predicted.get(backend, {})
    layers = plan.predicted_layers.get(backend, {})
    return [Point(c.digest, c.family, c.flops_ratio, r.ratio, r.ratio_low, r.ratio_high, predicted.get(c.digest),
                  layers.get(c.digest))
            for c in plan.configs if (r := measured.get((c.digest, backend))) is not None]
