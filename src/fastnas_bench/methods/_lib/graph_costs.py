"""In-graph costs: the latency table's isolated-layer timings calibrated against the whole network as
the backend runs it.

A convolution timed alone is not what the whole graph pays for it. Alone, ONNX Runtime reorders its
input into and its output out of the NCHWc layout and runs its SiLU; in the graph, neighbouring
convolutions share one layout and the reorders, activations, Split, Concat, Resize, MaxPool and the
C2f shortcut Add are nodes of their own, whose size follows the widths too. A table that keeps all
of that as one constant measured at full width promises a narrowed network more saving than it gets
(measured on ONNX Runtime over 150 configurations: predicted ratios 0.027 too low on average).

So the whole network is profiled by the backend's own profiler at a few realizable width
configurations (:func:`calibration_configs`), in rotation, and fitted:

- every convolution: its in-graph kernel time against the table's interpolated entry at the same
  widths, one scale factor per convolution (least squares through zero);
- every other node is anchored, in execution order, between the convolution before it and the one
  after it, and charged to the one that drives it: its time taken proportional to the previous
  convolution's output width (an activation, a Split, an output reorder, a MaxPool, a Resize, an
  Add), to the next convolution's input width (a Concat, an input reorder), or constant (the head's
  box decoding, whose size is anchors × bins), whichever of the three fits its measured times best;
- what an inference takes beyond its kernels: a constant.

The profiler costs time of its own, about as much per node whatever the node's size, inside the
spans it records and between them (measured here: 0.07-0.09 ms per node, the profiled networks
19-32% slower than their unprofiled twins); left in, it reads as time no width removes and
compresses every predicted saving. So each configuration is also timed without the profiler in the
same rotation: the profiler's cost per node, (profiled − unprofiled wall time) / nodes, is taken off
every node's time before the fit, and the constant is the one that makes the fitted model
proportional to the unprofiled wall times (least squares over the configurations), not the
profiled session's time between kernels. Where part of the profiler's cost lies between the spans,
that per-node figure takes a little too much off every node (a small node can read 0); the fitted
constant takes the total back, so the whole stays right and only the split between nodes is
approximate (measured: the fit's slope of measured on predicted ratios 1.06, against 1.18 without
the twins).

A configuration's cost is then the sum of those terms, in the table's units (scaled so that the
full network reads the table's measured full time). Pure: no model, no timing; the profiles come
from :func:`fastnas_bench.methods._lib.latency_table.in_graph_calibrator`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

#: Op types of the convolution nodes the table's layers become (a Conv with a fused activation is FusedConv).
CONV_OPS = frozenset({"Conv", "FusedConv"})
#: Every hparam at the same position of its ladder of choices (1 widest, 0 narrowest): the network's extremes
#: and evenly spaced uniform cuts between them.
UNIFORM_POSITIONS = (1.0, 0.75, 0.5, 0.25, 0.0)
#: Configurations with every hparam at a random choice (seeded): uniform cuts alone would move every
#: width together and could not tell a node driven by one convolution from one driven by its neighbour.
RANDOM_CONFIGS = 3
#: A node's time is proportional to the width of this side of its anchor convolution.
INPUT_SIDE, OUTPUT_SIDE, CONSTANT = 0, 1, -1


@dataclass(frozen=True)
class Charge:
    """One node outside the table's convolutions, charged to the convolution that drives it.

    Attributes:
        key: Where it runs: ``op_type@previous conv>next conv#k`` (k: its rank among such nodes).
        anchor: The convolution its time follows ("" for a constant).
        side: :data:`INPUT_SIDE` or :data:`OUTPUT_SIDE` of ``anchor``, or :data:`CONSTANT`.
        full_ms: Its time with ``anchor`` at full width (profile ms).
    """

    key: str
    anchor: str
    side: int
    full_ms: float


@dataclass(frozen=True)
class ProfiledConfig:
    """One width configuration as the backend's profiler saw it.

    Attributes:
        active: Convolution name → its (input, output) width at this configuration.
        node_ms: Node → median kernel ms per inference, in execution order.
        node_op: Node → op type.
        overhead_ms: Median wall time per inference less kernel time.
        wall_ms: Median wall time per inference.
        plain_wall_ms: Median wall time per inference without the profiler (same rotation), where measured.
    """

    active: Mapping[str, tuple[int, int]]
    node_ms: Mapping[str, float]
    node_op: Mapping[str, str]
    overhead_ms: float
    wall_ms: float
    plain_wall_ms: float | None = None


@dataclass(frozen=True)
class GraphCosts:
    """The fitted in-graph model of a network's latency (see the module's docstring).

    Attributes:
        conv_scale: Convolution → in-graph kernel ms per ms of its table entry.
        charges: Every other node's fitted time and the convolution it follows.
        overhead_ms: What an inference takes beyond its kernel times (profile ms): fitted to the
            unprofiled wall times where measured (it can be negative: it also takes back what the
            per-node correction left), else the profiled session's time outside the kernels.
        profiler_node_ms: The profiler's own cost per node, taken off every node's time before the fit
            (0 where the profiles came without unprofiled wall times).
        units: Table ms per profile ms: the table's measured full time over the model's full cost.
        configs: Width configurations profiled.
        inferences: Timed inferences of each.
        fit_errors: Per configuration profiled, the model's latency ratio to full width less the
            measured wall ratio, unprofiled where measured (how well the fit reproduces what it was
            fitted on).
    """

    conv_scale: dict[str, float]
    charges: tuple[Charge, ...]
    overhead_ms: float
    units: float
    configs: int
    inferences: int
    fit_errors: tuple[float, ...]
    profiler_node_ms: float = 0.0

    def cost_ms(self, layer_ms: Callable[[str, int, int], float], active: Mapping[str, tuple[int, int]],
                full: Mapping[str, tuple[int, int]]) -> float:
        """Latency (table ms) of a network whose convolutions have the ``active`` widths.

        Args:
            layer_ms: The table's interpolated entry of a convolution at (input, output) widths.
            full: Each convolution's full (input, output) widths.
        """
        return self.units * _profile_cost(self.conv_scale, self.charges, self.overhead_ms, layer_ms, active, full)

    def to_json(self) -> dict[str, Any]:
        return {"conv_scale": self.conv_scale, "charges": [asdict(c) for c in self.charges],
                "overhead_ms": self.overhead_ms, "units": self.units, "configs": self.configs,
                "inferences": self.inferences, "fit_errors": list(self.fit_errors),
                "profiler_node_ms": self.profiler_node_ms}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GraphCosts:
        return cls({n: float(s) for n, s in data["conv_scale"].items()}, tuple(Charge(**c) for c in data["charges"]),
                   float(data["overhead_ms"]), float(data["units"]), int(data["configs"]), int(data["inferences"]),
                   tuple(float(e) for e in data["fit_errors"]), float(data["profiler_node_ms"]))


def _profile_cost(conv_scale: Mapping[str, float], charges: Sequence[Charge], overhead_ms: float,
                  layer_ms: Callable[[str, int, int], float], active: Mapping[str, tuple[int, int]],
                  full: Mapping[str, tuple[int, int]]) -> float:
    convs = sum(scale * layer_ms(name, *active[name]) for name, scale in conv_scale.items())
    nodes = sum(c.full_ms * _width_ratio(c.anchor, c.side, active, full) for c in charges)
    return overhead_ms + convs + nodes


def _width_ratio(anchor: str, side: int, active: Mapping[str, tuple[int, int]],
                 full: Mapping[str, tuple[int, int]]) -> float:
    return 1.0 if side == CONSTANT else active[anchor][side] / full[anchor][side]


def calibration_configs(choices: Mapping[str, Sequence[int]], seed: int = 0) -> list[dict[str, int]]:
    """The width configurations to profile: every hparam at each of :data:`UNIFORM_POSITIONS` of its
    ladder (the full network first), then :data:`RANDOM_CONFIGS` seeded random ones, each distinct
    configuration once. Every width is one of its hparam's choices, so every configuration is one the
    network can take."""
    ladders = {h: sorted(set(c)) for h, c in sorted(choices.items())}
    configs = [{h: ladder[round(position * (len(ladder) - 1))] for h, ladder in ladders.items()}
               for position in UNIFORM_POSITIONS]
    rng = np.random.default_rng(seed)
    configs += [{h: int(rng.choice(ladder)) for h, ladder in ladders.items()} for _ in range(RANDOM_CONFIGS)]
    # On short ladders two positions can land on the same rungs: profile each configuration once.
    unique: dict[tuple[tuple[str, int], ...], dict[str, int]] = {}
    for config in configs:
        unique.setdefault(tuple(sorted(config.items())), config)
    return list(unique.values())


def conv_module(node: str) -> str | None:
    """The torch module a convolution node of an exported graph came from, or ``None`` for a node that
    is none (ORT keeps the exporter's scope names and appends to them:
    ``/model.22/cv2.2/cv2.2.0/conv/Conv_output_0_nchwc`` → ``model.22.cv2.2.0.conv``; a scope that
    extends its parent's name, ``cv2.2`` then ``cv2.2.0``, is the child's full name)."""
    parts = [part for part in node.split("/") if part]
    if len(parts) < 2 or not parts[-1].startswith("Conv"):
        return None
    names: list[str] = []
    for part in parts[:-1]:
        if names and part.startswith(names[-1] + "."):
            names[-1] = part
        else:
            names.append(part)
    return ".".join(names)


def anchored_nodes(config: ProfiledConfig, convs: Sequence[str]) -> tuple[dict[str, float], dict[str, tuple[str, str]]]:
    """The configuration's kernel times keyed so that they match across configurations.

    A table convolution's node is keyed by its module name; every other node by its op type, the
    table convolutions that run before and after it in execution order, and its rank among nodes of
    that op between the same two (ORT's own names of the layout reorders it inserts are numbered per
    session, so they cannot be matched by name).

    Returns:
        (key → ms, key of a non-convolution → (previous convolution, next convolution), "" where none).
    """
    known = set(convs)
    order = [(node, config.node_op.get(node, "?"), _table_conv(node, config.node_op.get(node, "?"), known))
             for node in config.node_ms]
    times: dict[str, float] = {}
    neighbours: dict[str, tuple[str, str]] = {}
    seen: Counter[tuple[str, str, str]] = Counter()
    previous = ""
    pending: list[tuple[str, str]] = []  # (node, op) since the last convolution
    # The sentinel (a "convolution" named "") flushes the nodes after the last convolution.
    for node, op, conv in [*order, ("", "", "")]:
        if conv is None:
            pending.append((node, op))
            continue
        for waiting, waiting_op in pending:
            rank = seen[(waiting_op, previous, conv)]
            seen[(waiting_op, previous, conv)] += 1
            key = f"{waiting_op}@{previous}>{conv}#{rank}"
            times[key] = config.node_ms[waiting]
            neighbours[key] = (previous, conv)
        pending = []
        if conv:
            times[conv] = times.get(conv, 0.0) + config.node_ms[node]
            previous = conv
    return times, neighbours


def _table_conv(node: str, op: str, known: set[str]) -> str | None:
    module = conv_module(node) if op in CONV_OPS else None
    return module if module in known else None


def _through_zero(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of ``y`` on ``x`` through the origin, and its residual sum of squares."""
    xx = float(x @ x)
    slope = float(x @ y) / xx if xx > 0 else 0.0
    return slope, float(((y - slope * x) ** 2).sum())


def fit_graph_costs(profiled: Sequence[ProfiledConfig], layer_ms: Callable[[str, int, int], float],
                    full: Mapping[str, tuple[int, int]], full_ms: float, inferences: int) -> GraphCosts:
    """Fit the in-graph model to profiled configurations (the first at full width).

    Args:
        profiled: The configurations, each with its profile; ``profiled[0]`` the full network.
        layer_ms: The table's interpolated entry of a convolution at (input, output) widths.
        full: Each table convolution's full (input, output) widths.
        full_ms: The table's measured time of the full network (its units).
        inferences: Timed inferences behind each profile (recorded with the fit).

    Raises:
        ValueError: fewer than two configurations, or the first is not at full width.
        RuntimeError: a table convolution that no profile shows (the graph does not match the table).
    """
    if len(profiled) < 2:
        raise ValueError(f"{len(profiled)} profiled configuration(s): a fit needs the full network and another")
    if any(profiled[0].active[n] != w for n, w in full.items()):
        raise ValueError("the first profiled configuration must be the full network")
    profiled, profiler_node_ms, walls = _without_profiler(profiled)
    convs = sorted(full)
    anchored = [anchored_nodes(config, convs) for config in profiled]
    _check_every_conv_ran(convs, anchored, profiled)
    conv_scale = _conv_scales(convs, anchored, profiled, layer_ms)
    charges = _charges(anchored, profiled, full)
    kernels_ms = [_profile_cost(conv_scale, charges, 0.0, layer_ms, c.active, full) for c in profiled]
    overhead_ms = _overhead_ms(kernels_ms, walls, profiled)
    modelled = [overhead_ms + k for k in kernels_ms]
    fit_errors = tuple(round(float(m / modelled[0] - wall / walls[0]), 4) for m, wall in zip(modelled, walls))
    return GraphCosts(conv_scale=conv_scale, charges=tuple(charges), overhead_ms=overhead_ms,
                      units=full_ms / modelled[0], configs=len(profiled), inferences=inferences, fit_errors=fit_errors,
                      profiler_node_ms=profiler_node_ms)


def _check_every_conv_ran(convs: Sequence[str], anchored: Sequence[tuple[dict[str, float], Any]],
                          profiled: Sequence[ProfiledConfig]) -> None:
    unseen = [n for n in convs if not any(n in times for times, _ in anchored)]
    if unseen:
        seen = [n for n, op in profiled[0].node_op.items() if op in CONV_OPS][:3]
        raise RuntimeError(f"convolutions {unseen[:5]} (of {len(unseen)}) run in no profiled graph, whose "
                           f"convolution nodes are named like {seen}: the exported graph does not match the "
                           "latency table")


def _conv_scales(convs: Sequence[str], anchored: Sequence[tuple[dict[str, float], Any]],
                 profiled: Sequence[ProfiledConfig], layer_ms: Callable[[str, int, int], float]) -> dict[str, float]:
    """Per convolution, in-graph kernel ms per ms of its table entry over the configurations."""
    scales = {}
    for name in convs:
        measured = np.array([times.get(name, 0.0) for times, _ in anchored])
        table = np.array([layer_ms(name, *config.active[name]) for config in profiled])
        scales[name] = _through_zero(measured, table)[0]
    return scales


def _charges(anchored: Sequence[tuple[dict[str, float], dict[str, tuple[str, str]]]],
             profiled: Sequence[ProfiledConfig], full: Mapping[str, tuple[int, int]]) -> list[Charge]:
    """Every non-convolution node charged to the width among its candidates that fits its times best."""
    neighbours = {key: pair for _, found in anchored for key, pair in found.items()}
    charges = []
    for key, (previous, following) in sorted(neighbours.items()):
        measured = np.array([times.get(key, 0.0) for times, _ in anchored])
        candidates = [("", CONSTANT)]
        if previous:
            candidates.append((previous, OUTPUT_SIDE))
        if following:
            candidates.append((following, INPUT_SIDE))
        # The simplest first: a width-driven charge replaces the constant only where it fits strictly better.
        fits = [(_through_zero(measured, np.array([_width_ratio(anchor, side, c.active, full) for c in profiled])),
                 anchor, side) for anchor, side in candidates]
        (slope, _), anchor, side = min(fits, key=lambda fit: fit[0][1])
        charges.append(Charge(key=key, anchor=anchor, side=side, full_ms=slope))
    return charges


def _overhead_ms(kernels_ms: Sequence[float], walls: Sequence[float], profiled: Sequence[ProfiledConfig]) -> float:
    """The model's constant: with unprofiled wall times, the one that makes the model proportional to
    them (least squares: kernels_k = scale · wall_k − overhead); else the profiled sessions' time
    between kernels."""
    if all(config.plain_wall_ms is not None for config in profiled):
        design = np.column_stack([np.asarray(walls, dtype=float), -np.ones(len(walls))])
        return float(np.linalg.lstsq(design, np.asarray(kernels_ms, dtype=float), rcond=None)[0][1])
    return float(np.mean([config.overhead_ms for config in profiled]))


def _without_profiler(profiled: Sequence[ProfiledConfig]) -> tuple[list[ProfiledConfig], float, list[float]]:
    """The configurations with the profiler's cost per node taken off every node's time, that cost, and
    each configuration's wall time without the profiler; unchanged, 0 and the profiled wall times where
    some configuration lacks an unprofiled one."""
    if any(config.plain_wall_ms is None for config in profiled):
        return list(profiled), 0.0, [config.wall_ms for config in profiled]
    walls = [float(config.plain_wall_ms) for config in profiled]  # type: ignore[arg-type]
    # A profiled run faster than the unprofiled one is noise, not a negative cost.
    per_node = max(0.0, float(np.mean([(config.wall_ms - wall) / max(1, len(config.node_ms))
                                       for config, wall in zip(profiled, walls)])))
    return ([replace(config, node_ms={n: max(0.0, ms - per_node) for n, ms in config.node_ms.items()})
             for config in profiled], per_node, walls)
