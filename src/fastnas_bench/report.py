"""Markdown/JSON/PNG report from saved pytest-benchmark runs of the suite.

Reads the JSON files pytest-benchmark writes (``--benchmark-autosave`` / ``--benchmark-json``);
only the ``test_latency`` entries are used, through the ``extra_info`` the suite records.
"""

from __future__ import annotations

import json
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
    batch: int
    params: int
    gflops: float
    map50_95: float
    recall: float
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
            run=path.stem, target=target, variant=info["variant"], batch=int(info["batch"]),
            params=int(info["params"]), gflops=float(info["gflops"]), map50_95=float(info["map50_95"]),
            recall=float(info["recall"]), latency_p50_ms=float(info["latency_p50_ms"]),
            latency_p90_ms=float(info["latency_p90_ms"]),
            samples_ms=tuple(float(v) for v in info.get("latency_samples_ms", ())),
        ))
    if not rows:
        raise BadInputError(f"{path} holds no fastnas-bench test_latency results")
    return rows


def _pct(new: float, old: float) -> str:
    return f"{(new / old - 1) * 100:+.1f}%"


def summarize(rows: list[Row]) -> dict[str, Any]:
    """Seed-style comparison of the baseline and the pruned variant of the newest run."""
    run = rows[-1].run
    latest = [r for r in rows if r.run == run]
    base = [r for r in latest if r.variant == "baseline"]
    pruned = [r for r in latest if r.variant != "baseline"]
    if not base or not pruned:
        raise BadInputError(f"run {run} lacks a baseline or a pruned latency result")
    b0, p0 = base[0], pruned[0]
    flops_ratio = p0.gflops / b0.gflops
    backends = []
    for b in base:
        match = next((p for p in pruned if p.target == b.target and p.batch == b.batch), None)
        if match is None:
            continue
        latency_ratio = match.latency_p50_ms / b.latency_p50_ms
        backends.append({
            "target": b.target, "batch": b.batch,
            "baseline_p50_ms": b.latency_p50_ms, "pruned_p50_ms": match.latency_p50_ms,
            "baseline_p90_ms": b.latency_p90_ms, "pruned_p90_ms": match.latency_p90_ms,
            "speedup": b.latency_p50_ms / match.latency_p50_ms,
            "efficiency": efficiency(latency_ratio, flops_ratio),
        })
    return {
        "run": run, "pruned_variant": p0.variant, "flops_ratio": flops_ratio,
        "baseline": {"params": b0.params, "gflops": b0.gflops, "map50_95": b0.map50_95, "recall": b0.recall},
        "pruned": {"params": p0.params, "gflops": p0.gflops, "map50_95": p0.map50_95, "recall": p0.recall},
        "backends": backends,
    }


def to_markdown(summary: dict[str, Any], runs: list[str]) -> str:
    b, p = summary["baseline"], summary["pruned"]
    lines = [
        f"# fastnas-bench report — run {summary['run']}",
        "",
        f"Runs read: {', '.join(runs)}",
        "",
        f"| Metric | Baseline | Pruned ({summary['pruned_variant']}) | Change |",
        "|---|---|---|---|",
        f"| Parameters | {b['params'] / 1e6:.2f}M | {p['params'] / 1e6:.2f}M | {_pct(p['params'], b['params'])} |",
        f"| GFLOPs (640 px) | {b['gflops']:.2f} | {p['gflops']:.2f} | {_pct(p['gflops'], b['gflops'])} |",
    ]
    for be in summary["backends"]:
        lines.append(
            f"| Latency {be['target']} bs{be['batch']} (ms, p50 / p90) | {be['baseline_p50_ms']:.2f} / "
            f"{be['baseline_p90_ms']:.2f} | {be['pruned_p50_ms']:.2f} / {be['pruned_p90_ms']:.2f} | "
            f"{_pct(be['pruned_p50_ms'], be['baseline_p50_ms'])} |"
        )
    lines += [
        f"| mAP50-95 | {b['map50_95']:.3f} | {p['map50_95']:.3f} | {(p['map50_95'] - b['map50_95']) * 100:+.1f}pp |",
        f"| Recall | {b['recall']:.3f} | {p['recall']:.3f} | {(p['recall'] - b['recall']) * 100:+.1f}pp |",
        "",
        "## FLOPs → latency efficiency",
        "",
        "efficiency = (1 − latency ratio) / (1 − FLOPs ratio); 1.0 means the FLOPs cut became latency in full "
        "(the reference experiment reached 0.58).",
        "",
        "| Backend | Batch | Speedup | Efficiency |",
        "|---|---|---|---|",
    ]
    for be in summary["backends"]:
        lines.append(f"| {be['target']} | {be['batch']} | {be['speedup']:.3f}x | {be['efficiency']:.2f} |")
    lines += ["", "![latency distributions](latency.png)", "", "![FLOPs vs latency](flops_latency.png)", ""]
    return "\n".join(lines)


def _plots(rows: list[Row], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = rows[-1].run
    latest = [r for r in rows if r.run == run]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labelled = [r for r in latest if r.samples_ms]
    ax.boxplot([r.samples_ms for r in labelled], showfliers=True)
    ax.set_xticks(range(1, len(labelled) + 1), [f"{r.target}\n{r.variant} bs{r.batch}" for r in labelled], fontsize=8)
    ax.set_ylabel("latency per call (ms)")
    ax.set_title(f"Latency distributions — run {run}")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    latency_png = out / "latency.png"
    fig.savefig(latency_png, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for target in sorted({(r.target, r.batch) for r in latest}):
        points = sorted((r.gflops, r.latency_p50_ms, r.variant) for r in latest if (r.target, r.batch) == target)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{target[0]} bs{target[1]}")
        for g, lat, name in points:
            ax.annotate(name, (g, lat), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("GFLOPs at 640 px")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("FLOPs vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    flops_png = out / "flops_latency.png"
    fig.savefig(flops_png, dpi=120)
    plt.close(fig)
    return [latency_png, flops_png]


def write_report(runs: list[Path], out: Path) -> list[Path]:
    """Write ``report.md``, ``report.json`` and the PNG plots into ``out``; return their paths."""
    rows = [row for path in runs for row in load_rows(path)]
    summary = summarize(rows)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "report.md"
    md.write_text(to_markdown(summary, [p.name for p in runs]))
    js = out / "report.json"
    js.write_text(json.dumps({"summary": summary, "rows": [asdict(r) for r in rows]}, indent=2))
    return [md, js, *_plots(rows, out)]
