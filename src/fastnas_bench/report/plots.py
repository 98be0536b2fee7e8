"""The report's PNG plots: latency distributions, FLOPs vs latency, and the latency/accuracy Pareto front."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from fastnas_bench.report.summary import Row, pareto_front, pareto_series


def save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plots(summary: dict[str, Any], rows: list[Row], out: Path, prefix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = summary["run"]
    latest = [r for r in rows if r.run == run]
    paths = []

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(latest)), 4.5))
    labelled = [r for r in latest if r.samples_ms]
    ax.boxplot([r.samples_ms for r in labelled])
    ax.set_xticks(range(1, len(labelled) + 1), [f"{r.target}\n{r.variant}\nbs{r.batch}" for r in labelled], fontsize=7)
    ax.set_ylabel("latency per call (ms)")
    ax.set_title(f"Latency distributions — run {run.split('_')[0]}")
    ax.grid(axis="y", alpha=0.3)
    paths.append(save_figure(fig, out / f"{prefix}latency.png"))

    fig, ax = plt.subplots(figsize=(7, 4.8))
    by_target: dict[tuple[str, int], list[Row]] = defaultdict(list)
    for r in latest:
        by_target[(r.target, r.batch)].append(r)
    for (target, batch), group in sorted(by_target.items()):
        ax.scatter([r.gflops for r in group], [r.latency_p50_ms for r in group], label=f"{target} bs{batch}")
        for r in group:
            ax.annotate(r.variant, (r.gflops, r.latency_p50_ms), textcoords="offset points", xytext=(3, 3), fontsize=6)
    ax.set_xlabel("GFLOPs at 640 px")
    ax.set_ylabel("median latency (ms), separate timings")
    ax.set_title("FLOPs vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(save_figure(fig, out / f"{prefix}flops_latency.png"))

    fig, ax = plt.subplots(figsize=(7, 4.8))
    for (label, points), color in zip(pareto_series(summary).items(), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4):
        front = pareto_front(points)
        ax.scatter([p[0] for p in points], [p[1] for p in points], color=color, s=18)
        ax.plot([p[0] for p in front], [p[1] for p in front], marker="o", color=color, label=label)
        for x, y, name in points:
            if name != "baseline":
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
    baseline = summary["variants"]["baseline"]
    ax.scatter([1.0], [baseline["map50_95"]], marker="*", s=140, color="black", zorder=3)
    ax.set_xlabel("latency relative to the baseline (same backend and batch; lower is faster)")
    ax.set_ylabel("mAP50-95")
    ax.set_title("Pareto front: latency vs accuracy (★ baseline, line = non-dominated)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:  # a run of baseline timings alone has no series
        ax.legend(fontsize=7)
    paths.append(save_figure(fig, out / f"{prefix}pareto.png"))
    return paths


