"""Markdown/JSON/PNG report from saved pytest-benchmark runs of the suite.

Reads the JSON files pytest-benchmark writes (``--benchmark-autosave`` / ``--benchmark-json``);
only the ``test_latency`` entries are used, through the ``extra_info`` the suite records.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastnas_bench.checks import efficiency
from fastnas_bench.errors import BadInputError


@dataclass(frozen=True)
class Row:
    """One latency benchmark of one run."""

    run: str
    target: str
    variant: str
    method: str
    batch: int
    params: int
    gflops: float
    map50_95: float
    recall: float
    ap_small: float | None
    latency_p50_ms: float
    latency_p90_ms: float
    samples_ms: tuple[float, ...]


def load_rows(path: Path) -> list[Row]:
    """The suite's latency rows in one saved run.

    Raises:
        BadInputError: if the file is missing, not JSON, or holds no suite latency entries.
    """
    try:
        doc = json.loads(path.read_text())
        benchmarks = doc["benchmarks"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{path} is not a readable pytest-benchmark JSON file ({type(e).__name__})") from None
    rows = []
    for bench in benchmarks:
        info: dict[str, Any] = bench.get("extra_info", {})
        if bench.get("name", "").split("[")[0] != "test_latency" or "latency_p50_ms" not in info:
            continue
        target = info["backend"] if info["precision"] == "fp32" else f"{info['backend']}-{info['precision']}"
        rows.append(Row(
            run=path.stem, target=target, variant=info["variant"],
            method=info.get("method", "baseline" if info["variant"] == "baseline" else "fastnas"),
            batch=int(info["batch"]), params=int(info["params"]), gflops=float(info["gflops"]),
            map50_95=float(info["map50_95"]), recall=float(info["recall"]), ap_small=info.get("ap_small"),
            latency_p50_ms=float(info["latency_p50_ms"]), latency_p90_ms=float(info["latency_p90_ms"]),
            samples_ms=tuple(float(v) for v in info.get("latency_samples_ms", ())),
        ))
    if not rows:
        raise BadInputError(f"{path} holds no fastnas-bench test_latency results")
    return rows


def load_speedups(path: Path) -> dict[str, dict[str, Any]]:
    """The interleaved-round speedups the suite adds to a saved run (empty for older runs)."""
    doc = json.loads(path.read_text())
    return dict(doc.get("fastnas_bench", {}).get("speedups", {}))


def _pct(new: float, old: float) -> str:
    return f"{(new / old - 1) * 100:+.1f}%"


def summarize(rows: list[Row]) -> dict[str, Any]:
    """Per-variant figures of the newest run, with speedup and efficiency against its baseline."""
    run = rows[-1].run
    latest = [r for r in rows if r.run == run]
    base = {(r.target, r.batch): r for r in latest if r.variant == "baseline"}
    if not base:
        raise BadInputError(f"run {run} has no baseline latency result")
    base_gflops = next(iter(base.values())).gflops
    variants: dict[str, dict[str, Any]] = {}
    for r in latest:
        v = variants.setdefault(r.variant, {
            "method": r.method, "params": r.params, "gflops": r.gflops, "flops_ratio": r.gflops / base_gflops,
            "map50_95": r.map50_95, "recall": r.recall, "ap_small": r.ap_small, "latency": {},
        })
        b = base.get((r.target, r.batch))
        entry: dict[str, Any] = {"p50_ms": r.latency_p50_ms, "p90_ms": r.latency_p90_ms}
        if b is not None and r.variant != "baseline":
            entry["speedup"] = b.latency_p50_ms / r.latency_p50_ms
            if r.gflops < base_gflops:
                entry["efficiency"] = efficiency(r.latency_p50_ms / b.latency_p50_ms, r.gflops / base_gflops)
        v["latency"][f"{r.target} bs{r.batch}"] = entry
    return {"run": run, "variants": variants}


def _seed_table(summary: dict[str, Any]) -> list[str]:
    variants = summary["variants"]
    pruned_name = next((n for n, v in variants.items() if v["method"] == "fastnas"), None)
    if pruned_name is None:
        return []
    b, p = variants["baseline"], variants[pruned_name]
    lines = [
        f"| Metric | Baseline | Pruned ({pruned_name}) | Change |",
        "|---|---|---|---|",
        f"| Parameters | {b['params'] / 1e6:.2f}M | {p['params'] / 1e6:.2f}M | {_pct(p['params'], b['params'])} |",
        f"| GFLOPs (640 px) | {b['gflops']:.2f} | {p['gflops']:.2f} | {_pct(p['gflops'], b['gflops'])} |",
    ]
    for key, lat in b["latency"].items():
        if key in p["latency"]:
            lines.append(f"| Latency {key} (ms, p50) | {lat['p50_ms']:.2f} | {p['latency'][key]['p50_ms']:.2f} | "
                         f"{_pct(p['latency'][key]['p50_ms'], lat['p50_ms'])} |")
    lines += [
        f"| mAP50-95 | {b['map50_95']:.3f} | {p['map50_95']:.3f} | {(p['map50_95'] - b['map50_95']) * 100:+.1f}pp |",
        f"| Recall | {b['recall']:.3f} | {p['recall']:.3f} | {(p['recall'] - b['recall']) * 100:+.1f}pp |",
    ]
    return lines


def _speedup_table(speedups: dict[str, dict[str, Any]]) -> list[str]:
    if not speedups:
        return []
    lines = [
        "",
        "## Speedup, interleaved rounds (the gated figure)",
        "",
        "Baseline and variant timed in alternating rounds within one test, so machine drift cannot favour "
        "either side; these are the figures `test_speedup` asserts on.",
        "",
        "| Test | Baseline p50 (ms) | Variant p50 (ms) | Speedup | Bound | FLOPs ratio | Efficiency |",
        "|---|---|---|---|---|---|---|",
    ]
    for test_id, r in speedups.items():
        eff = f"{r['efficiency']:.2f}" if r.get("efficiency") is not None else "—"
        lines.append(f"| {test_id} | {r['baseline_p50_ms']:.2f} | {r['pruned_p50_ms']:.2f} | {r['speedup']:.3f}x | "
                     f"{r['bound']:.2f}x | {r['flops_ratio']:.3f} | {eff} |")
    return lines


def to_markdown(summary: dict[str, Any], runs: list[str], speedups: dict[str, dict[str, Any]] | None = None) -> str:
    variants = summary["variants"]
    keys = sorted({k for v in variants.values() for k in v["latency"]})
    lines = [f"# fastnas-bench report — run {summary['run']}", "", f"Runs read: {', '.join(runs)}", ""]
    lines += _seed_table(summary)
    lines += _speedup_table(speedups or {})
    lines += [
        "",
        "## All variants (separately timed `test_latency` runs)",
        "",
        "Latency p50 / p90 in ms; speedup = baseline p50 / variant p50 (same backend, batch and run); "
        "efficiency = (1 − latency ratio) / (1 − FLOPs ratio), 1.0 meaning the FLOPs cut became latency in "
        "full (the reference experiment reached 0.58).",
        "",
        "| Variant | Params | GFLOPs | FLOPs ratio | " + " | ".join(keys) + " | mAP50-95 | AP_small | Recall |",
        "|---" * (8 + len(keys) - 1) + "|",
    ]
    for name, v in variants.items():
        cells = []
        for key in keys:
            lat = v["latency"].get(key)
            if lat is None:
                cells.append("—")
                continue
            cell = f"{lat['p50_ms']:.1f} / {lat['p90_ms']:.1f}"
            if "speedup" in lat:
                cell += f", {lat['speedup']:.2f}x"
            if "efficiency" in lat:
                cell += f", eff {lat['efficiency']:.2f}"
            cells.append(cell)
        ap_small = f"{v['ap_small']:.3f}" if v["ap_small"] is not None else "—"
        lines.append(f"| {name} | {v['params'] / 1e6:.2f}M | {v['gflops']:.2f} | {v['flops_ratio']:.3f} | "
                     + " | ".join(cells) + f" | {v['map50_95']:.3f} | {ap_small} | {v['recall']:.3f} |")
    lines += ["", "![latency distributions](latency.png)", "", "![FLOPs vs latency](flops_latency.png)", "",
              "![Pareto: latency vs mAP50-95](pareto.png)", ""]
    return "\n".join(lines)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plots(rows: list[Row], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = rows[-1].run
    latest = [r for r in rows if r.run == run]
    paths = []

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(latest)), 4.5))
    labelled = [r for r in latest if r.samples_ms]
    ax.boxplot([r.samples_ms for r in labelled])
    ax.set_xticks(range(1, len(labelled) + 1), [f"{r.target}\n{r.variant}\nbs{r.batch}" for r in labelled], fontsize=7)
    ax.set_ylabel("latency per call (ms)")
    ax.set_title(f"Latency distributions — run {run.split('_')[0]}")
    ax.grid(axis="y", alpha=0.3)
    paths.append(_save(fig, out / "latency.png"))

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    by_target: dict[tuple[str, int], list[Row]] = defaultdict(list)
    for r in latest:
        by_target[(r.target, r.batch)].append(r)
    for (target, batch), group in sorted(by_target.items()):
        group.sort(key=lambda r: r.gflops)
        ax.scatter([r.gflops for r in group], [r.latency_p50_ms for r in group], label=f"{target} bs{batch}")
        for r in group:
            ax.annotate(r.variant, (r.gflops, r.latency_p50_ms), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("GFLOPs at 640 px")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("FLOPs vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(_save(fig, out / "flops_latency.png"))

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    lines: dict[tuple[str, int, str], list[Row]] = defaultdict(list)
    for r in latest:
        lines[(r.target, r.batch, r.method)].append(r)
    baselines = {(r.target, r.batch): r for r in latest if r.method == "baseline"}
    for (target, batch, method), group in sorted(lines.items()):
        if method == "baseline":
            continue
        b = baselines.get((target, batch))
        points = sorted(([b] if b else []) + group, key=lambda r: r.latency_p50_ms)
        ax.plot([r.latency_p50_ms for r in points], [r.map50_95 for r in points], marker="o",
                label=f"{method} · {target} bs{batch}")
    for (target, batch), b in baselines.items():
        ax.scatter([b.latency_p50_ms], [b.map50_95], marker="*", s=120, color="black", zorder=3)
    ax.set_xlabel("median latency (ms)")
    ax.set_ylabel("mAP50-95")
    ax.set_title("Pareto: latency vs accuracy (★ baseline)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / "pareto.png"))
    return paths


def write_report(runs: list[Path], out: Path) -> list[Path]:
    """Write ``report.md``, ``report.json`` and the PNG plots into ``out``; return their paths."""
    rows = [row for path in runs for row in load_rows(path)]
    summary = summarize(rows)
    speedups = load_speedups(runs[-1])
    out.mkdir(parents=True, exist_ok=True)
    md = out / "report.md"
    md.write_text(to_markdown(summary, [p.name for p in runs], speedups))
    js = out / "report.json"
    js.write_text(json.dumps({"summary": summary, "speedups": speedups, "rows": [asdict(r) for r in rows]}, indent=2))
    return [md, js, *_plots(rows, out)]
