"""The fleet table: the newest saved run of each machine class, one row per machine, backend, variant and batch.

Each run is read against its own baseline, as in the per-run report; only ratios (speedup, FLOPs
ratio, efficiency) are comparable across machines, the p50 latencies are there as context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastnas_bench.errors import BadInputError
from fastnas_bench.measure.stats import CONFIDENCE, efficiency
from fastnas_bench.report.plots import save_figure
from fastnas_bench.report.summary import rows_of, speedups_of
from fastnas_bench.verdicts.records import SpeedupRecord, TestKey

#: The test whose paired speedup is the gated one; its outcome is the row's verdict as it stands.
SPEEDUP_TEST = "test_speedup"


@dataclass(frozen=True)
class FleetRow:
    """One pruned variant against its run's baseline on one machine class, backend and batch.

    Attributes:
        machine_class: The run's machine class (``Intel_Xeon-2cores-avx512``, GPU + driver).
        target: Backend target id (``onnxruntime``, ``tensorrt-fp16``).
        variant: The pruned variant's name.
        batch: Batch size.
        speedup: Baseline/variant latency (> 1: the variant is faster).
        ci_low, ci_high: Its interval; ``None`` where the run holds no paired speedup.
        paired: ``True``: from the paired ABBA rounds; ``False``: the ratio of the separately timed p50s (†).
        flops_ratio: Variant/baseline GFLOPs; ``None`` where the run does not say.
        efficiency: (1 - latency ratio) / (1 - FLOPs ratio); ``None`` where undefined.
        baseline_p50_ms, pruned_p50_ms: Median call of each side, ms (of the paired rounds where ``paired``).
        verdict: ``PASS`` / ``FAIL`` / ``UNDECIDED`` from the stored outcome, the test named where it is not
            ``test_speedup``; ``None`` where nothing was judged.
        run: The run's name (file stem).
        run_at: When the run was saved, ISO 8601.
    """

    machine_class: str
    target: str
    variant: str
    batch: int
    speedup: float
    ci_low: float | None
    ci_high: float | None
    paired: bool
    flops_ratio: float | None
    efficiency: float | None
    baseline_p50_ms: float | None
    pruned_p50_ms: float | None
    verdict: str | None
    run: str
    run_at: str


def machine_class_of(doc: dict[str, Any], name: str) -> str:
    """The machine class the suite's plugin stored with the run.

    Raises:
        BadInputError: naming ``name`` where the run carries none (runs saved without the suite's plugin).
    """
    value = (doc.get("machine_info") or {}).get("fastnas_bench", {}).get("machine_class")
    if not isinstance(value, str) or not value:
        raise BadInputError(f"{name} has no machine_info.fastnas_bench.machine_class: cannot place it by machine")
    return value


def saved_at(doc: dict[str, Any], name: str) -> datetime:
    """When pytest-benchmark saved the run (its ``datetime`` field), as an aware UTC time.

    Raises:
        BadInputError: naming ``name`` where the field is missing or not ISO 8601.
    """
    try:
        at = datetime.fromisoformat(doc["datetime"])
    except (KeyError, TypeError, ValueError):
        raise BadInputError(f"{name} has no ISO 8601 'datetime' field: cannot tell which run is newest") from None
    # pytest-benchmark wrote naive UTC times before it wrote aware ones; both must compare.
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def machine_classes(docs: Sequence[tuple[str, dict[str, Any]]]) -> set[str]:
    """The machine classes the runs carry; runs without one are left out (the per-run report needs none)."""
    classes = set()
    for name, doc in docs:
        try:
            classes.add(machine_class_of(doc, name))
        except BadInputError:
            continue
    return classes


def newest_per_class(docs: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The newest run of each machine class, by class name; of two saved at the same time, the later given.

    Raises:
        BadInputError: naming a run without a machine class or a save time.
    """
    newest: dict[str, tuple[datetime, str, dict[str, Any]]] = {}
    for name, doc in docs:
        cls, at = machine_class_of(doc, name), saved_at(doc, name)
        if cls not in newest or at >= newest[cls][0]:
            newest[cls] = (at, name, doc)
    return {cls: (name, doc) for cls, (_, name, doc) in sorted(newest.items())}


def _finite(value: float | None) -> float | None:
    # Records of older runs hold NaN for fields they lacked; the table shows those as not measured.
    return value if value is not None and math.isfinite(value) else None


def _verdict(test: str, record: SpeedupRecord) -> str | None:
    if record.outcome is None:
        return None
    return record.outcome.upper() if test == SPEEDUP_TEST else f"{record.outcome.upper()} ({test})"


def run_rows(machine_class: str, name: str, doc: dict[str, Any]) -> list[FleetRow]:
    """The rows of one run: paired speedups where it has them, else the ratio of the separate p50s."""
    rows = rows_of(doc, Path(name))
    run, run_at = rows[0].run, saved_at(doc, name).isoformat(timespec="seconds")
    base = {(r.target, r.batch): r for r in rows if r.variant == "baseline"}
    timed = {(r.target, r.variant, r.batch): r for r in rows if r.variant != "baseline"}
    # One record per (target, variant, batch); the gated test_speedup wins over other tests of the same pair.
    paired: dict[tuple[str, str, int], tuple[str, SpeedupRecord]] = {}
    for test_id, record in speedups_of(doc).items():
        key = TestKey.parse(test_id)
        if key is None or key.variant == "baseline":
            continue
        where = (key.target, key.variant, key.batch)
        if where not in paired or key.test == SPEEDUP_TEST:
            paired[where] = (key.test, record)
    out = []
    for where in sorted(set(timed) | set(paired)):
        target, variant, batch = where
        b, v = base.get((target, batch)), timed.get(where)
        flops_ratio = v.gflops / b.gflops if v is not None and b is not None else None
        if where in paired:
            test, r = paired[where]
            flops = _finite(r.flops_ratio) or flops_ratio
            eff = r.efficiency if r.efficiency is not None or flops is None else efficiency(1 / r.speedup, flops)
            out.append(FleetRow(machine_class, target, variant, batch, r.speedup, r.ci_low, r.ci_high, True, flops,
                                eff, _finite(r.baseline_p50_ms), _finite(r.pruned_p50_ms), _verdict(test, r),
                                run, run_at))
        elif b is not None and v is not None:
            ratio = v.latency_p50_ms / b.latency_p50_ms
            eff = efficiency(ratio, flops_ratio) if flops_ratio is not None else None
            out.append(FleetRow(machine_class, target, variant, batch, 1 / ratio, None, None, False, flops_ratio,
                                eff, b.latency_p50_ms, v.latency_p50_ms, None, run, run_at))
        # A variant timed without a baseline on that backend and batch has nothing to be compared with.
    return out


def fleet_rows(docs: Sequence[tuple[str, dict[str, Any]]]) -> list[FleetRow]:
    """The table's rows: the newest run of each machine class, by class, backend, batch and variant.

    Args:
        docs: ``(name, saved run)`` pairs; ``name`` is the file or object the run was read from.

    Raises:
        BadInputError: naming a run without a machine class, a save time, or suite latency results.
    """
    rows = [row for cls, (name, doc) in newest_per_class(docs).items() for row in run_rows(cls, name, doc)]
    return sorted(rows, key=lambda r: (r.machine_class, r.target, r.batch, r.variant))


def no_runs_line(profile: str, machine_classes: Sequence[str], where: str) -> str:
    """What a report says where ``machine_classes`` of the fleet (none named: every class) have no saved run of
    ``profile`` yet in ``where`` (their runners have not run, or not got as far as saving one)."""
    of = f" from machine class {', '.join(machine_classes)}" if machine_classes else ""
    return f"No runs yet: {where} holds no saved run of profile {profile}{of}."


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _speedup_cell(r: FleetRow) -> str:
    if not r.paired:
        return f"{r.speedup:.2f}x†"
    if r.ci_low is None or r.ci_high is None:
        return f"{r.speedup:.2f}x"
    return f"{r.speedup:.2f}x [{r.ci_low:.2f}, {r.ci_high:.2f}]"


def fleet_markdown(rows: Sequence[FleetRow], heading: str = "## Fleet: newest run per machine class") -> list[str]:
    """The fleet section: what its marks mean, then one table over every machine class."""
    lines = [
        heading,
        "",
        f"Speedup over the baseline of the same run, backend and batch, from the paired ABBA rounds with their "
        f"{CONFIDENCE:.0%} interval; † marks a ratio of the separately timed p50s (the run holds no paired "
        "speedup there, so no verdict either). Efficiency = (1 − latency ratio) / (1 − FLOPs ratio). Latencies "
        "are each machine's own and compare only within a row.",
        "",
        "| Machine class | Backend | Batch | Variant | Speedup [interval] | FLOPs ratio | Efficiency | "
        "Baseline p50 ms | Pruned p50 ms | Verdict | Run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flops = "—" if r.flops_ratio is None else f"{r.flops_ratio:.3f}"
        eff = "—" if r.efficiency is None else f"{r.efficiency:.2f}"
        lines.append(f"| {r.machine_class} | {r.target} | {r.batch} | {r.variant} | {_speedup_cell(r)} | {flops} | "
                     f"{eff} | {_ms(r.baseline_p50_ms)} | {_ms(r.pruned_p50_ms)} | {r.verdict or '—'} | "
                     f"{r.run} ({r.run_at[:16].replace('T', ' ')}) |")
    return lines


def fleet_plot(rows: Sequence[FleetRow], path: Path) -> Path:
    """Speedup with its interval per machine class (a group of rows) and backend/variant/batch (a colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted({r.machine_class for r in rows})
    series = sorted({(r.target, r.batch, r.variant) for r in rows})
    step = 0.8 / max(1, len(series))  # the series share 0.8 of each class's unit of height
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles: dict[str, Any] = {}  # one legend entry per series, in the series' order
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.9 * len(classes) + 0.25 * len(rows))))
    for i, (target, batch, variant) in enumerate(series):
        color = colors[i % len(colors)]
        for r in rows:
            if (r.target, r.batch, r.variant) != (target, batch, variant):
                continue
            y = classes.index(r.machine_class) - 0.4 + step * (i + 0.5)
            handle: Any
            if r.paired and r.ci_low is not None and r.ci_high is not None:
                handle = ax.errorbar([r.speedup], [y], xerr=[[r.speedup - r.ci_low], [r.ci_high - r.speedup]],
                                     fmt="o", color=color, capsize=3)
            else:  # no interval: a hollow marker, so it does not read as a point estimate with one
                handle = ax.plot([r.speedup], [y], marker="o", mfc="none", ls="none", color=color)[0]
            handles.setdefault(f"{target} bs{batch} · {variant}", handle)
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.invert_yaxis()  # first class on top, as in the table
    ax.set_xlabel(f"speedup over the run's baseline ({CONFIDENCE:.0%} interval of the paired rounds; hollow: none)")
    ax.set_title("Speedup by machine class and backend (newest run of each)")
    ax.grid(axis="x", alpha=0.3)
    if handles:
        ax.legend(list(handles.values()), list(handles), fontsize=7)
    return save_figure(fig, path)


def row_of_json(row: FleetRow) -> dict[str, Any]:
    """The row as ``report.json`` holds it."""
    return asdict(row)
