"""The latency table: every convolution's measured latency over its input/output widths, on the target backend.

What narrowing a layer saves on a backend is not its FLOPs share: an 80×80 px convolution costs
a 2-core CPU far more per FLOP than a 20×20 px one, and narrow convolutions use a vector unit
worse than wide ones. So each convolution of the network is timed on its own, as the backend runs
it (Conv+BN fused, SiLU, at its real spatial size and batch), at a grid of input × output widths
(narrowest, middle, full of each), and interpolated bilinearly between them (HALP's per-layer
latency lookup table, made two-dimensional because a conv's cost is its input times its output).
Every grid width is one the network can take: the middle is the realizable width nearest the
midpoint, never the midpoint itself. At channel divisor 16 the midpoint is often an odd multiple
of 8 (24, 40, 72, 136) that no configuration has, and there ONNX Runtime's NCHWc kernels, which
block channels by 16 on AVX-512, run a partly empty block: such an entry would read the real
widths interpolated from it too slow.

Why per layer and not the whole model with one layer narrowed at a time: on this project's 2-core
VM a paired whole-model ratio has a per-round noise of about 6.6%, while narrowing one layer saves
0-5% of the model; a 6-round table of that kind read entries of ±10-30% (measured), and a
selection then picks the layers whose noise read fastest. A single layer timed alone carries the
same relative noise on a figure 20-100× smaller.

Every layer timing is a median ratio to a fixed reference workload timed in alternation with it,
so the machine's drift over the minutes a table takes cancels; the backend's per-call overhead
(an empty graph's time) is subtracted from each layer. On a backend whose whole graph can be
profiled per node (ONNX Runtime), the layer timings are then calibrated in the graph: the network is
profiled at a few realizable configurations, each convolution's entries scaled to what the graph
pays for it, and the concatenations, splits, activations, pooling, upsampling and layout reorders
charged to the convolution whose width drives them (:mod:`fastnas_bench.methods._lib.graph_costs`).
Elsewhere what the convolutions do not cover is the full model's measured time minus the table's
sum at full width, kept as a constant.

The table is an artifact: cached per source weights, search space, backend, precision, batch,
image size, threads, machine class, the timing host's vector extension and runtime versions;
built once, with progress shown.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fastnas_bench import progress
from fastnas_bench.backends.registry import BACKEND_NAMES, get_backend_class, layer_timing_backends
from fastnas_bench.compat.modelopt import hparam_choices, set_widths, widths_selected
from fastnas_bench.errors import BadInputError
from fastnas_bench.host import cpu_isa
from fastnas_bench.keys import digest
from fastnas_bench.measure.nodes import ModelProfile, NodePlan
from fastnas_bench.measure.timing import abba_rounds, time_rounds
from fastnas_bench.methods._lib.graph_costs import (
    RANDOM_CONFIGS,
    UNIFORM_POSITIONS,
    GraphCosts,
    ProfiledConfig,
    calibration_configs,
    fit_graph_costs,
)
from fastnas_bench.variants.cache import ArtifactCache
from fastnas_bench.variants.spec import LatencyBudget
from fastnas_bench.versions import LATENCY_TABLE, versions_of

log = logging.getLogger(__name__)

TABLE_FILE = "latency_table.json"
#: Bumped when what a table holds or how it is measured changes; part of its key.
#: 2: grid widths are realizable widths (no midpoint such as 40 channels that no configuration takes).
#: 3: calibrated in the whole graph where the backend profiles per node (see ``graph``).
TABLE_VERSION = 3
#: Alternating (layer, reference) rounds per table entry, fixed in advance.
LAYER_ROUNDS = 25
#: Alternating (model, reference) rounds of the full model's own time.
MODEL_ROUNDS = 25
#: Timed inferences of each profiled configuration of the in-graph calibration (A B ... B A rotations),
#: after warm-up ones; fixed in advance.
GRAPH_PLAN = NodePlan(rounds=40, warmup=5)


@dataclass(frozen=True)
class ConvShape:
    """One convolution of the network: fixed geometry and the widths it can take.

    Attributes:
        kernel, stride, padding: Square geometry.
        height, width: Spatial size of its input at the table's image size.
        in_choices, out_choices: Every input/output width some configuration gives it (ascending;
            a one-element tuple where no hparam reaches that side).
        act: Whether a SiLU follows it (Ultralytics' Conv block) or not (the head's last 1×1s).
    """

    kernel: int
    stride: int
    padding: int
    height: int
    width: int
    in_choices: tuple[int, ...]
    out_choices: tuple[int, ...]
    act: bool

    def __post_init__(self) -> None:
        # Read back from JSON as lists: kept as sorted tuples so that equal shapes compare equal.
        for side in ("in_choices", "out_choices"):
            widths = tuple(sorted({int(w) for w in getattr(self, side)}))
            if not widths or widths[0] < 1:
                raise ValueError(f"{side} {getattr(self, side)!r}: a convolution needs one positive width at least")
            object.__setattr__(self, side, widths)

    @property
    def in_full(self) -> int:
        return self.in_choices[-1]

    @property
    def out_full(self) -> int:
        return self.out_choices[-1]

    def grid(self) -> list[tuple[int, int]]:
        """Widths to time: narrowest, middle and full of the input times the same of the output,
        each a width the network can take (see :func:`grid_widths`)."""
        return [(i, o) for i in grid_widths(self.in_choices) for o in grid_widths(self.out_choices)]


def grid_widths(choices: Sequence[int]) -> list[int]:
    """Narrowest, middle and full of ``choices``, the middle the choice nearest their midpoint
    (the narrower of two equally near; none where there are only two choices)."""
    ordered = sorted(set(choices))
    lo, hi = ordered[0], ordered[-1]
    inner = ordered[1:-1]
    if not inner:
        return ordered
    middle = min(inner, key=lambda w: (abs(2 * w - lo - hi), w))
    return [lo, middle, hi]


def _axis(values: Sequence[int], x: float) -> tuple[int, int, float]:
    """Bracketing grid values around ``x`` and the weight of the upper one (clamped to the grid)."""
    if x <= values[0]:
        return values[0], values[0], 0.0
    for lo, hi in itertools.pairwise(values):
        if x <= hi:
            return lo, hi, (x - lo) / (hi - lo)
    return values[-1], values[-1], 0.0


@dataclass(frozen=True)
class LatencyTable:
    """Per-convolution latency (ms) at grid widths, plus what the convolutions do not cover.

    Attributes:
        layers: conv name → {(in, out): ms}.
        shapes: conv name → its geometry.
        other_ms: Full model's time minus the convolutions' sum at full width (≥ 0).
        full_ms: Full model's time as measured with the table (reference-normalised ms).
        build_seconds: Wall time of the measurement.
        graph: The in-graph calibration, where the backend profiles its graph per node; with it a
            configuration's cost is the calibrated model's, not the layers' sum plus ``other_ms``.
    """

    layers: dict[str, dict[tuple[int, int], float]]
    shapes: dict[str, ConvShape]
    other_ms: float
    full_ms: float
    build_seconds: float = 0.0
    graph: GraphCosts | None = None

    def layer_ms(self, name: str, cin: int, cout: int) -> float:
        """Bilinear interpolation of the layer's grid at (cin, cout)."""
        grid = self.layers[name]
        ins = sorted({i for i, _ in grid})
        outs = sorted({o for _, o in grid})
        i0, i1, wi = _axis(ins, cin)
        o0, o1, wo = _axis(outs, cout)
        return ((1 - wi) * (1 - wo) * grid[(i0, o0)] + wi * (1 - wo) * grid[(i1, o0)]
                + (1 - wi) * wo * grid[(i0, o1)] + wi * wo * grid[(i1, o1)])

    def full_widths(self) -> dict[str, tuple[int, int]]:
        """Every convolution's full (in, out) widths."""
        return {n: (s.in_full, s.out_full) for n, s in self.shapes.items()}

    def layers_cost_ms(self, active: Mapping[str, tuple[int, int]]) -> float:
        """The isolated layers' sum plus the constant rest: the cost without the in-graph calibration."""
        return self.other_ms + sum(self.layer_ms(n, *active[n]) for n in self.layers)

    def cost_ms(self, active: Mapping[str, tuple[int, int]]) -> float:
        """Predicted latency of a network whose convolutions have the ``active`` (in, out) widths."""
        if self.graph is None:
            return self.layers_cost_ms(active)
        return self.graph.cost_ms(self.layer_ms, active, self.full_widths())

    def to_json(self) -> dict[str, Any]:
        return {"layers": {n: [[i, o, ms] for (i, o), ms in g.items()] for n, g in self.layers.items()},
                "shapes": {n: asdict(s) for n, s in self.shapes.items()},
                "other_ms": self.other_ms, "full_ms": self.full_ms, "build_seconds": self.build_seconds,
                **({"graph": self.graph.to_json()} if self.graph is not None else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyTable:
        return cls({n: {(int(i), int(o)): float(ms) for i, o, ms in g} for n, g in data["layers"].items()},
                   {n: ConvShape(**s) for n, s in data["shapes"].items()},
                   float(data["other_ms"]), float(data["full_ms"]), float(data["build_seconds"]),
                   GraphCosts.from_json(data["graph"]) if "graph" in data else None)


def conv_shapes(net: Any, hparams: Mapping[str, Any], imgsz: int, batch: int) -> dict[str, ConvShape]:
    """Every Conv2d of search-space ``net``: its input size (one traced forward at full width) and
    every input/output width a configuration of ``hparams`` gives it (see :func:`realizable_widths`)."""
    import torch

    convs = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    parents = dict(net.named_modules())
    widest = {k: max(hparam_choices(hp)) for k, hp in hparams.items()}
    set_widths(net, widest)
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, n=n: sizes.__setitem__(n, tuple(args[0].shape[-2:])))
             for n, m in convs.items()]
    try:
        with torch.inference_mode():
            net.eval()(torch.zeros(batch, 3, imgsz, imgsz))
    finally:
        for h in hooks:
            h.remove()
    full = {n: (int(m.in_channels), int(m.out_channels)) for n, m in convs.items()}
    set_widths(net, {k: min(hparam_choices(hp)) for k, hp in hparams.items()})
    narrow = {n: (int(m.in_channels), int(m.out_channels)) for n, m in convs.items()}
    set_widths(net, widest)
    widths = realizable_widths(net, hparams, list(convs))
    for n in convs:
        ins, outs = widths[n]
        # Widths are additive where layers are coupled (a concatenation's input is the sum of its
        # parts); a search space where they are not would give a grid of widths it never takes.
        if (ins[0], outs[0]) != narrow[n] or (ins[-1], outs[-1]) != full[n]:
            raise RuntimeError(f"{n}: widths {ins} × {outs} from one hparam at a time, but {narrow[n]} with every "
                               f"hparam narrowest and {full[n]} at full width: the hparams do not narrow it additively")
    shapes = {}
    for n, m in convs.items():
        if m.groups != 1:
            raise NotImplementedError(f"{n}: grouped convolutions are not in the latency table")
        parent = parents.get(n.rsplit(".", 1)[0]) if "." in n else None
        act = parent is not None and getattr(parent, "conv", None) is m and not isinstance(
            getattr(parent, "act", torch.nn.Identity()), torch.nn.Identity)
        shapes[n] = ConvShape(kernel=int(m.kernel_size[0]), stride=int(m.stride[0]), padding=int(m.padding[0]),
                              height=sizes[n][0], width=sizes[n][1], in_choices=widths[n][0],
                              out_choices=widths[n][1], act=act)
    return shapes


def realizable_widths(net: Any, hparams: Mapping[str, Any],
                      names: Sequence[str]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every (input, output) width each named convolution of search-space ``net`` takes under ``hparams``.

    Each hparam is set alone to each of its choices; what it takes off a convolution's side is
    recorded, and the side's widths are its full width less any sum of one narrowing per hparam
    (a concatenation narrows by the sum of what its parts lose).

    Returns:
        conv name → (ascending input widths, ascending output widths).
    """
    full = active_widths(net, {}, names)
    # (conv, 0 for input | 1 for output) → the channels some configuration takes off that side.
    cuts: dict[tuple[str, int], set[int]] = {(n, side): {0} for n in names for side in (0, 1)}
    for h, hp in sorted(hparams.items()):
        by_h: dict[tuple[str, int], set[int]] = {key: {0} for key in cuts}
        for w in hparam_choices(hp):
            for n, widths in active_widths(net, {h: w}, names).items():
                for side in (0, 1):
                    by_h[(n, side)].add(full[n][side] - widths[side])
        cuts = {key: {a + b for a in cut for b in by_h[key]} for key, cut in cuts.items()}
    return {n: (tuple(sorted(full[n][0] - c for c in cuts[(n, 0)])), tuple(sorted(full[n][1] - c for c in cuts[(n, 1)])))
            for n in names}


def active_widths(net: Any, config: Mapping[str, int], names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(in, out) of each named convolution of search-space ``net`` at ``config`` (others at full width)."""
    with widths_selected(net, config):
        return {n: (int(net.get_submodule(n).in_channels), int(net.get_submodule(n).out_channels)) for n in names}


def _layer(shape: ConvShape, cin: int, cout: int) -> Any:
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(cin, cout, shape.kernel, shape.stride, shape.padding, bias=True)
    return torch.nn.Sequential(conv, torch.nn.SiLU()) if shape.act else conv


def layer_caller(backend: str, threads: int, device: str = "cpu",
                 precision: str = "fp32") -> Callable[[Any, Any], Callable[[], None]]:
    """How ``backend`` runs one module on one input on ``device``: a zero-argument call, loaded and ready.

    Raises:
        BadInputError: for a backend whose single layers this table cannot time (see
            :attr:`~fastnas_bench.backends.base.Backend.times_layers`), or that cannot on ``device``.
    """
    if backend not in BACKEND_NAMES or device not in get_backend_class(backend).times_layers:
        raise BadInputError(f"latency tables time single layers on {device} with "
                            f"{', '.join(layer_timing_backends(device))} only, not {backend!r}")
    cls = get_backend_class(backend)
    return lambda module, x: cls.layer_runner(module, x, threads, device, precision)  # type: ignore[arg-type]


def ratio_to_reference(call: Callable[[], None], reference: Callable[[], None], rounds: int) -> float:
    """Median over ``rounds`` of call time / reference time, the two timed in alternation (ABBA)."""
    time_rounds(call, 2, 0)
    ref, timed = abba_rounds(reference, call, rounds)
    return float(np.median([(b1 + b2) / (a1 + a2) for a1, a2, b1, b2 in zip(ref[::2], ref[1::2], timed[::2], timed[1::2])]))


def build_table(shapes: Mapping[str, ConvShape], budget: LatencyBudget, full_model: Callable[[], None],
                caller: Callable[[Any, Any], Callable[[], None]] | None = None,
                measure: Callable[[Callable[[], None], Callable[[], None], int], float] = ratio_to_reference,
                calibrate: Callable[[LatencyTable], GraphCosts] | None = None,
                ) -> LatencyTable:
    """Time every convolution at its grid widths, and the full model, against one reference workload.

    Args:
        shapes: The network's convolutions.
        budget: Backend, batch, threads of the measurement.
        full_model: One call of the full network as the backend runs it (from the latency probe).
        caller: Builds a timed call of a module on an input (default: the budget's backend).
        measure: Times a call against the reference (a scripted one in tests).
        calibrate: Fits the in-graph model to the timed table (see :func:`in_graph_calibrator`), or
            ``None`` for a backend that does not profile its graph per node.
    """
    import torch

    started = time.perf_counter()
    make = caller or layer_caller(budget.backend, budget.threads, budget.device, budget.precision)
    torch.manual_seed(0)
    # The reference: a mid-sized convolution on the same backend, timed beside every entry.
    reference = make(torch.nn.Conv2d(64, 64, 3, 1, 1), torch.rand(budget.batch, 64, 40, 40))
    ref_ms = float(np.median(time_rounds(reference, 5, 30))) * 1e3
    empty = make(torch.nn.Conv2d(1, 1, 1), torch.rand(1, 1, 1, 1))
    overhead = measure(empty, reference, LAYER_ROUNDS)
    plan = [(n, i, o) for n, s in sorted(shapes.items()) for i, o in s.grid()]
    layers: dict[str, dict[tuple[int, int], float]] = {n: {} for n in shapes}
    for done, (n, cin, cout) in enumerate(plan, 1):
        progress.step(f"latency table ({budget.backend}): layer timings", done, len(plan))
        s = shapes[n]
        call = make(_layer(s, cin, cout), torch.rand(budget.batch, cin, s.height, s.width))
        layers[n][(cin, cout)] = max(0.0, measure(call, reference, LAYER_ROUNDS) - overhead) * ref_ms
    full_ms = measure(full_model, reference, MODEL_ROUNDS) * ref_ms
    table = LatencyTable(layers, dict(shapes), 0.0, full_ms)
    conv_full = table.cost_ms({n: (s.in_full, s.out_full) for n, s in shapes.items()})
    other = max(0.0, full_ms - conv_full)
    log.info("latency table: full model %.2f ms, convolutions %.2f ms, other %.2f ms (reference %.2f ms)",
             full_ms, conv_full, other, ref_ms)
    table = LatencyTable(layers, dict(shapes), other, full_ms)
    if calibrate is not None:
        table = replace(table, graph=calibrate(table))
    return replace(table, build_seconds=round(time.perf_counter() - started, 1))


def table_builder(shapes: Mapping[str, ConvShape], budget: LatencyBudget, full_model: Callable[[], None], net: Any,
                  choices: Mapping[str, Sequence[int]], work_dir: Path) -> Callable[[], LatencyTable]:
    """How a table of search-space ``net`` is measured for ``budget`` (for :func:`cached_table`): its layers
    timed alone, then calibrated in the whole graph where the backend profiles it per node (see
    :func:`in_graph_calibrator`; ``work_dir`` holds that calibration's exports)."""
    calibrate = in_graph_calibrator(net, choices, budget, work_dir)
    return lambda: build_table(shapes, budget, full_model, calibrate=calibrate)


def in_graph_calibrator(net: Any, choices: Mapping[str, Sequence[int]], budget: LatencyBudget, work_dir: Path,
                        export: Callable[[Any, Path, int, int], Path] | None = None,
                        profile: Callable[[Sequence[Path], NodePlan], list[ModelProfile]] | None = None,
                        ) -> Callable[[LatencyTable], GraphCosts] | None:
    """How a table of ``budget``'s backend is calibrated in the whole graph, or ``None`` where the backend
    does not profile its graph per node (see :attr:`~fastnas_bench.backends.base.Backend.profiles_nodes`).

    The calibration exports search-space ``net`` at each of
    :func:`~fastnas_bench.methods._lib.graph_costs.calibration_configs` (every width one the network can
    take) with the benchmark's exporter, profiles them in rotation with the benchmarks' session options
    under the host's timing slot (:data:`GRAPH_PLAN`), and fits
    :func:`~fastnas_bench.methods._lib.graph_costs.fit_graph_costs`.

    Args:
        choices: hparam → its width choices.
        work_dir: Scratch directory for the exports.
        export: Writes a model's ONNX into a directory (default: the latency probe's exporter).
        profile: Profiles the exported networks in rotation, with unprofiled twins (default:
            :func:`~fastnas_bench.measure.node_profile.profile_models`; a scripted one in tests).
    """
    if budget.device not in get_backend_class(budget.backend).profiles_nodes:
        return None
    from fastnas_bench.measure.node_profile import profile_models
    from fastnas_bench.measure.probe import export_onnx_module
    from fastnas_bench.methods._lib.search_space import subnet

    write = export or export_onnx_module
    run = profile or (lambda paths, plan: profile_models(paths, plan, plain_wall=True))
    plan = replace(GRAPH_PLAN, threads=budget.threads)

    def calibrate(table: LatencyTable) -> GraphCosts:
        configs = calibration_configs(choices)
        names = list(table.shapes)
        paths, actives = [], []
        for index, widths in enumerate(configs):
            progress.step(f"latency table ({budget.backend}): exporting in-graph calibration networks", index + 1,
                          len(configs))
            folder = work_dir / f"calibration-{index}"
            folder.mkdir(parents=True, exist_ok=True)
            paths.append(write(subnet(net, widths), folder, budget.imgsz, budget.batch))
            actives.append(active_widths(net, widths, names))
        progress.report(f"latency table ({budget.backend}): profiling {len(configs)} networks in the whole graph, "
                        "each with an unprofiled twin")
        profiles = run(paths, plan)
        profiled = [ProfiledConfig(active, p.node_ms, p.node_op, p.overhead_ms, p.wall_ms, p.plain_wall_ms)
                    for active, p in zip(actives, profiles)]
        graph = fit_graph_costs(profiled, table.layer_ms, table.full_widths(), table.full_ms, plan.timed_inferences)
        log.info("in-graph calibration: %d configurations, fitted ratios less measured %s", graph.configs,
                 list(graph.fit_errors))
        return graph

    return calibrate


def table_key(source_sha256: str, search_space: Mapping[str, Sequence[int]], budget: LatencyBudget,
              isa: str | None = None) -> str:
    """Cache key: everything that changes a measured entry (the budget's target does not).

    Args:
        isa: Widest vector extension of the host that times a CPU table (default: this host's,
            :func:`fastnas_bench.host.cpu_isa`). The CPU kernels dispatch on it (ORT's NCHWc blocks are
            8 channels on AVX2, 16 on AVX-512), so a table timed on one must never serve the other; a
            CPU machine class names it too, but a budget's machine is a label the key does not parse.
            A CUDA table's kernels do not depend on it, so it is no part of their key.
    """
    blob = {
        "source_sha256": source_sha256, "search_space": {h: sorted(c) for h, c in sorted(search_space.items())},
        "backend": budget.backend, "precision": budget.precision, "batch": budget.batch, "imgsz": budget.imgsz,
        "threads": budget.threads, "device": budget.device, "machine": budget.machine,
        **({"isa": isa if isa is not None else cpu_isa()} if budget.device == "cpu" else {}),
        **({"graph": [GRAPH_PLAN.rounds, GRAPH_PLAN.warmup, list(UNIFORM_POSITIONS), RANDOM_CONFIGS]}
           if budget.device in get_backend_class(budget.backend).profiles_nodes else {}),
        "rounds": [LAYER_ROUNDS, MODEL_ROUNDS], "version": TABLE_VERSION,
        "versions": versions_of(LATENCY_TABLE),
    }
    return f"latency-table-{budget.backend}-{budget.precision}-{budget.imgsz}px-bs{budget.batch}-{digest(blob)}"


def cached_table(cache: ArtifactCache, key: str, build: Callable[[], LatencyTable]) -> LatencyTable:
    """The table under ``key``, built once (locked, atomic, checksummed like every cache entry)."""

    def builder(tmp: Path) -> dict[str, Any]:
        progress.report(f"measuring latency table {key}; cached after this run")
        table = build()
        (tmp / TABLE_FILE).write_text(json.dumps(table.to_json(), indent=1, sort_keys=True))
        return {"kind": "latency-table", "table_seconds": table.build_seconds, "full_ms": table.full_ms,
                "other_ms": table.other_ms, "in_graph": table.graph is not None}

    cache.get_or_build(key, builder)
    return LatencyTable.from_json(json.loads((cache.path(key) / TABLE_FILE).read_text()))
