"""Per-node latency breakdown of two ONNX models from ONNX Runtime's profiler traces: where a pruned
model's time goes, and what width pruning does not remove.

Pure: parsing a trace (a list of Chrome-trace events, as ``InferenceSession.end_profiling`` writes it),
aggregating it per op type and per node, comparing two models and rendering the result. The sessions
that produce the traces live in :mod:`fastnas_bench.measure.node_profile`.

Units: a trace's ``ts`` and ``dur`` are microseconds; every figure here is milliseconds (``_ms``) or
a fraction (``_share``, ``ratio``).
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fastnas_bench.errors import BadInputError

#: Timed inferences per model, fixed in advance (25 A B B A blocks). Not yet sized from a measured spread:
#: a median of 50 shrugs off a handful of disturbed inferences at one event per node per inference.
DEFAULT_ROUNDS = 50
#: Untimed inferences per model first: ORT's first runs allocate its arena and pack weights.
DEFAULT_WARMUP = 10
#: The project's reference machine class is a 2-core VM; the benchmarks' ORT sessions use 2 threads there.
DEFAULT_THREADS = 2
#: Nodes listed by baseline time.
TOP_NODES = 15

_KERNEL_SUFFIX = "_kernel_time"
_US_PER_MS = 1000.0


@dataclass(frozen=True)
class NodePlan:
    """What one breakdown measures, validated on construction.

    Attributes:
        rounds: Timed inferences per model (an odd count is rounded up: an A B B A block runs each
            model twice; see :attr:`timed_inferences`).
        warmup: Untimed inferences per model before the first timed one.
        threads: ORT intra-op threads of both sessions.
    """

    rounds: int = DEFAULT_ROUNDS
    warmup: int = DEFAULT_WARMUP
    threads: int = DEFAULT_THREADS

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise BadInputError(f"rounds {self.rounds} must be at least 1")
        if self.warmup < 0:
            raise BadInputError(f"warmup {self.warmup} must not be negative")
        if self.threads < 1:
            raise BadInputError(f"threads {self.threads} must be at least 1")

    @property
    def blocks(self) -> int:
        """Rotations (A B B A for two models, A B C C B A for three): each runs each model twice."""
        return (self.rounds + 1) // 2

    @property
    def timed_inferences(self) -> int:
        """Timed inferences per model: ``rounds``, rounded up to even."""
        return 2 * self.blocks


@dataclass(frozen=True)
class KernelTime:
    """One node's kernel time in one inference.

    Attributes:
        node: ORT's name of the node in the optimised graph (``_kernel_time`` stripped); an NCHWc
            layout transform ORT inserts has a name of its own, e.g. ``ReorderOutput_token_3``.
        op_type: The kernel's op (``args.op_name``): ``Conv``, ``ReorderInput``, ``Concat``, ...
        provider: The execution provider that ran it.
        dur_ms: Kernel time.
    """

    node: str
    op_type: str
    provider: str
    dur_ms: float


@dataclass(frozen=True)
class TracedRuns:
    """The timed inferences of one trace.

    Attributes:
        runs: Per timed inference, in order, its kernel times.
        run_ms: Per timed inference, ORT's own ``model_run`` time (empty where the trace has none).
    """

    runs: tuple[tuple[KernelTime, ...], ...]
    run_ms: tuple[float, ...]


def parse_trace(events: Sequence[Mapping[str, Any]], warmup: int, timed: int) -> TracedRuns:
    """The kernel times of the ``timed`` inferences that follow ``warmup`` untimed ones in a profiler trace.

    Each inference is the trace's ``model_run`` event (category ``Session``), and a node's kernel-time
    event (category ``Node``, name ``<node>_kernel_time``) belongs to the inference whose ``model_run``
    span contains its start. That assigns every event whatever the graph does, a node that runs
    twice or not at all in an inference included (ORT 1.32 writes ``model_run``). A trace without them
    falls back to counting: the k-th kernel time of a node belongs to the k-th inference, which holds
    where every node runs once per inference. The first ``warmup`` inferences are dropped either way;
    a count other than ``warmup + timed`` (e.g. events the profiler dropped) is an error, not a guess.

    Raises:
        BadInputError: the trace holds another number of inferences than ``warmup + timed``, or a
            kernel time lies outside every ``model_run`` span.
    """
    kernels = sorted((e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith(_KERNEL_SUFFIX)),
                     key=lambda e: float(e["ts"]))
    spans = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"]))
                   for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    per_run: list[list[KernelTime]]
    if spans:
        starts = [start for start, _ in spans]
        per_run = [[] for _ in spans]
        for event in kernels:
            ts = float(event["ts"])
            index = bisect.bisect_right(starts, ts) - 1
            if index < 0 or ts > spans[index][1]:
                raise BadInputError(f"kernel time {event['name']!r} at {ts:.0f} µs lies in no model_run of the trace")
            per_run[index].append(_kernel_time(event))
    else:
        seen: Counter[str] = Counter()
        by_index: defaultdict[int, list[KernelTime]] = defaultdict(list)
        for event in kernels:
            kernel = _kernel_time(event)
            by_index[seen[kernel.node]].append(kernel)
            seen[kernel.node] += 1
        per_run = [by_index[i] for i in range(max(seen.values(), default=0))]
    if len(per_run) != warmup + timed:
        raise BadInputError(f"trace holds {len(per_run)} inferences, expected {warmup + timed} "
                            f"({warmup} warm-up + {timed} timed)")
    run_ms = tuple((end - start) / _US_PER_MS for start, end in spans[warmup:])
    return TracedRuns(runs=tuple(tuple(run) for run in per_run[warmup:]), run_ms=run_ms)


def _kernel_time(event: Mapping[str, Any]) -> KernelTime:
    args = event.get("args", {})
    return KernelTime(node=str(event["name"]).removesuffix(_KERNEL_SUFFIX), op_type=str(args.get("op_name", "?")),
                      provider=str(args.get("provider", "?")), dur_ms=float(event["dur"]) / _US_PER_MS)


def per_inference_ms(runs: Iterable[Sequence[KernelTime]], by: str) -> dict[str, list[float]]:
    """Per key (``"op_type"`` or ``"node"``), its summed kernel time in each inference, in order; a key
    absent from an inference counts 0 ms there (so every list is as long as ``runs``)."""
    runs = list(runs)
    totals: dict[str, list[float]] = {}
    for index, run in enumerate(runs):
        for kernel in run:
            totals.setdefault(getattr(kernel, by), [0.0] * len(runs))[index] += kernel.dur_ms
    return totals


@dataclass(frozen=True)
class ModelProfile:
    """One model's time, per op type and per node, over its timed inferences.

    Attributes:
        inferences: Timed inferences.
        op_ms: Per op type, its median per-inference kernel time.
        op_share: Per op type, its part of the model's kernel time summed over the timed inferences
            (the shares add up to 1, which medians would not).
        node_ms: Per node, its median per-inference kernel time.
        node_op: Per node, its op type.
        nodes_ms: Median per-inference sum of all kernel times.
        wall_ms: Median wall time of a ``session.run`` call (profiler on), from the caller's clock.
        overhead_ms: Median per-inference wall time less kernel time, paired inference by inference:
            what the session spends outside the kernels (scheduling, allocation, input/output copies).
        run_ms: Median of ORT's own ``model_run`` span, or ``None`` where the trace has none.
        providers: The execution providers that ran a kernel.
        plain_wall_ms: Median wall time of the same model in a session without the profiler, timed in
            the same rotation, where it was asked for.
    """

    inferences: int
    op_ms: dict[str, float]
    op_share: dict[str, float]
    node_ms: dict[str, float]
    node_op: dict[str, str]
    nodes_ms: float
    wall_ms: float
    overhead_ms: float
    run_ms: float | None
    providers: tuple[str, ...]
    plain_wall_ms: float | None = None


def summarize(traced: TracedRuns, wall_ms: Sequence[float]) -> ModelProfile:
    """Aggregate one model's timed inferences; ``wall_ms`` holds the caller's wall time of each, in order.

    Raises:
        BadInputError: no timed inference, or not one wall time per inference.
    """
    if not traced.runs:
        raise BadInputError("no timed inference to summarise")
    if len(wall_ms) != len(traced.runs):
        raise BadInputError(f"{len(wall_ms)} wall times for {len(traced.runs)} timed inferences")
    by_op = per_inference_ms(traced.runs, "op_type")
    by_node = per_inference_ms(traced.runs, "node")
    nodes_each = [sum(k.dur_ms for k in run) for run in traced.runs]
    grand_ms = sum(nodes_each)
    op_ms = {op: statistics.median(values) for op, values in by_op.items()}
    return ModelProfile(
        inferences=len(traced.runs),
        op_ms=dict(sorted(op_ms.items(), key=lambda item: -item[1])),
        op_share={op: (sum(values) / grand_ms if grand_ms > 0 else 0.0) for op, values in by_op.items()},
        node_ms={node: statistics.median(values) for node, values in by_node.items()},
        node_op={k.node: k.op_type for run in traced.runs for k in run},
        nodes_ms=statistics.median(nodes_each),
        wall_ms=statistics.median(wall_ms),
        overhead_ms=statistics.median(w - n for w, n in zip(wall_ms, nodes_each)),
        run_ms=statistics.median(traced.run_ms) if traced.run_ms else None,
        providers=tuple(sorted({k.provider for run in traced.runs for k in run})),
    )


@dataclass(frozen=True)
class OpRow:
    """One op type in both models (0 ms where a model has none of it).

    Attributes:
        ratio: Pruned / baseline ms; ``None`` where the baseline spends no time on the op type.
        saved_ms: Baseline less pruned ms (negative: the pruned model spends more).
    """

    op_type: str
    baseline_ms: float
    pruned_ms: float
    ratio: float | None
    saved_ms: float
    baseline_share: float
    pruned_share: float


@dataclass(frozen=True)
class NodeRow:
    """One of the baseline's slowest nodes and its namesake in the pruned model (``None`` where it has none)."""

    node: str
    op_type: str
    baseline_ms: float
    pruned_ms: float | None
    ratio: float | None


@dataclass(frozen=True)
class Breakdown:
    """Baseline against pruned: op types (baseline's slowest first, then those only the pruned model
    has), the baseline's slowest nodes, and both models' whole profiles."""

    ops: tuple[OpRow, ...]
    nodes: tuple[NodeRow, ...]
    baseline: ModelProfile
    pruned: ModelProfile


def _ratio(pruned_ms: float, baseline_ms: float) -> float | None:
    return pruned_ms / baseline_ms if baseline_ms > 0 else None


def compare(baseline: ModelProfile, pruned: ModelProfile, top: int = TOP_NODES) -> Breakdown:
    """Per op type and for the baseline's ``top`` slowest nodes, what the pruned model spends against it."""
    order = list(baseline.op_ms) + [op for op in pruned.op_ms if op not in baseline.op_ms]
    ops = tuple(OpRow(op_type=op, baseline_ms=baseline.op_ms.get(op, 0.0), pruned_ms=pruned.op_ms.get(op, 0.0),
                      ratio=_ratio(pruned.op_ms.get(op, 0.0), baseline.op_ms.get(op, 0.0)),
                      saved_ms=baseline.op_ms.get(op, 0.0) - pruned.op_ms.get(op, 0.0),
                      baseline_share=baseline.op_share.get(op, 0.0), pruned_share=pruned.op_share.get(op, 0.0))
                for op in order)
    slowest = sorted(baseline.node_ms.items(), key=lambda item: (-item[1], item[0]))[:top]
    nodes = tuple(NodeRow(node=node, op_type=baseline.node_op[node], baseline_ms=ms, pruned_ms=pruned.node_ms.get(node),
                          ratio=_ratio(pruned.node_ms[node], ms) if node in pruned.node_ms else None)
                  for node, ms in slowest)
    return Breakdown(ops=ops, nodes=nodes, baseline=baseline, pruned=pruned)


@dataclass(frozen=True)
class NodeRunInfo:
    """What a breakdown was measured on, for its header.

    Attributes:
        baseline: The baseline ONNX file, as given.
        pruned: The pruned ONNX file, as given.
        machine_class: :func:`fastnas_bench.host.machine_class` of the CPU.
        onnxruntime: ORT's version.
        threads: Intra-op threads of both sessions.
        rounds: Timed inferences per model.
        warmup: Untimed inferences per model first.
    """

    baseline: str
    pruned: str
    machine_class: str
    onnxruntime: str
    threads: int
    rounds: int
    warmup: int


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def render_markdown(breakdown: Breakdown, info: NodeRunInfo) -> str:
    """The breakdown as a Markdown page: header, op-type table, totals, slowest nodes."""
    b, p = breakdown.baseline, breakdown.pruned
    lines = [
        "# Per-node latency breakdown: baseline vs pruned (ONNX Runtime, CPU)",
        "",
        f"- baseline: `{info.baseline}`",
        f"- pruned: `{info.pruned}`",
        f"- machine class `{info.machine_class}`, onnxruntime {info.onnxruntime}, {info.threads} thread(s), "
        f"{info.rounds} timed inferences per model after {info.warmup} warm-up, the two models alternating "
        "in A B B A blocks, ORT's profiler on",
        "- ms: median per inference; share: the op type's part of the model's kernel time over the timed "
        "inferences; op types are ORT's kernels after its graph optimisation: ReorderInput/ReorderOutput are "
        "its NCHWc layout transforms, an activation fused into a convolution counts as Conv, a fused "
        "Sigmoid·Mul (SiLU) may appear as QuickGelu",
        "",
        "| op type | baseline ms | pruned ms | pruned/baseline | saved ms | baseline share | pruned share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in breakdown.ops:
        lines.append(f"| {row.op_type} | {_ms(row.baseline_ms)} | {_ms(row.pruned_ms)} | {_times(row.ratio)} | "
                     f"{row.saved_ms:+.3f} | {_pct(row.baseline_share)} | {_pct(row.pruned_share)} |")
    totals = [("**kernels (sum of nodes)**", b.nodes_ms, p.nodes_ms),
              ("session overhead (wall − kernels)", b.overhead_ms, p.overhead_ms),
              ("**wall per inference**", b.wall_ms, p.wall_ms)]
    if b.run_ms is not None and p.run_ms is not None:
        totals.insert(1, ("ORT model_run", b.run_ms, p.run_ms))
    for label, base_ms, pruned_ms in totals:
        lines.append(f"| {label} | {_ms(base_ms)} | {_ms(pruned_ms)} | {_times(_ratio(pruned_ms, base_ms))} | "
                     f"{base_ms - pruned_ms:+.3f} | | |")
    lines += ["", "Totals are medians of their own per-inference values, so the rows above them need not add up "
              "to them exactly.", "",
              f"## The baseline's {len(breakdown.nodes)} slowest nodes", "",
              "| node | op type | baseline ms | pruned ms | pruned/baseline |", "|---|---|---:|---:|---:|"]
    for node in breakdown.nodes:
        lines.append(f"| `{node.node}` | {node.op_type} | {_ms(node.baseline_ms)} | {_ms(node.pruned_ms)} | "
                     f"{_times(node.ratio)} |")
    return "\n".join(lines) + "\n"


def breakdown_json(breakdown: Breakdown, info: NodeRunInfo) -> dict[str, Any]:
    """The breakdown and its header as plain JSON data (every figure in ms or as a fraction)."""
    return {"info": asdict(info), "ops": [asdict(r) for r in breakdown.ops], "nodes": [asdict(r) for r in breakdown.nodes],
            "baseline": asdict(breakdown.baseline), "pruned": asdict(breakdown.pruned)}
