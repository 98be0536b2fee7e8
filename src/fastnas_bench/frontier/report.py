"""The frontier's Markdown table and plot, one section and one panel per backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastnas_bench.frontier.analysis import (
    EFFICIENCY_FLOPS,
    EFFICIENCY_HALF_WIDTH,
    EfficiencyPick,
    Point,
    best_efficiency,
    frontier,
    spearman,
)
from fastnas_bench.frontier.sampling import FAMILIES
from fastnas_bench.fsutil import atomic_write_text
from fastnas_bench.report.plots import save_figure

MARKDOWN_FILE = "frontier.md"
PLOT_FILE = "frontier.png"


@dataclass(frozen=True)
class BackendFrontier:
    """One backend's figures.

    Attributes:
        backend: Its name.
        points: Every measured configuration.
        front: The Pareto set (:func:`~fastnas_bench.frontier.analysis.frontier`), fastest first.
        best: The most efficient point of the FLOPs window, ``None`` where none is in it.
        rank_correlation: Spearman's rho of measured vs table-predicted ratios, ``None`` without a table.
        rank_pairs: Configurations the rank correlation is over.
        table_note: Why there is no rank correlation, where there is none.
        family_best: Per sampling family with a point in the FLOPs window, its most efficient one there
            (where, e.g., FastNAS's own selections sit against the best any family reached).
        prediction_bias: Mean of measured less table-predicted ratio (> 0: the table promises more saving
            than the backend delivers), ``None`` without a table.
        layers_rank_correlation, layers_bias: The same two for the table's prediction without its
            in-graph calibration, ``None`` where it has none.
    """

    backend: str
    points: tuple[Point, ...]
    front: tuple[Point, ...]
    best: EfficiencyPick | None
    rank_correlation: float | None
    rank_pairs: int = 0
    table_note: str = ""
    family_best: Mapping[str, EfficiencyPick] = field(default_factory=dict)
    prediction_bias: float | None = None
    layers_rank_correlation: float | None = None
    layers_bias: float | None = None

    @classmethod
    def of(cls, backend: str, points: Sequence[Point]) -> BackendFrontier:
        predicted = [p for p in points if p.predicted_ratio is not None]
        rho = spearman([p.latency_ratio for p in predicted], [p.predicted_ratio for p in predicted])  # type: ignore[misc]
        note = ("no latency table times this backend's layers" if not predicted
                else "fewer than 3 pairs, or one side constant" if rho is None else "")
        by_family: dict[str, EfficiencyPick] = {
            f: pick for f in FAMILIES if (pick := best_efficiency([p for p in points if p.family == f]))}
        layers = _pairs(points, "layers_ratio")
        return cls(backend, tuple(points), tuple(frontier(points)), best_efficiency(points), rho, len(predicted), note,
                   by_family, prediction_bias=_bias(_pairs(points, "predicted_ratio")),
                   layers_rank_correlation=spearman(*zip(*layers)) if layers else None, layers_bias=_bias(layers))


def _pairs(points: Sequence[Point], predicted: str) -> list[tuple[float, float]]:
    """(measured, predicted) latency ratio of every point with a ``predicted`` ratio (a Point attribute)."""
    return [(p.latency_ratio, ratio) for p in points if (ratio := getattr(p, predicted)) is not None]


def _bias(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Mean of measured less predicted, ``None`` for no pair."""
    return sum(m - p for m, p in pairs) / len(pairs) if pairs else None


def write_markdown(path: Path, header: Sequence[str], backends: Sequence[BackendFrontier]) -> Path:
    """The report: ``header`` lines (what was measured, how), then per backend its figures and Pareto set."""
    lo, hi = EFFICIENCY_FLOPS - EFFICIENCY_HALF_WIDTH, EFFICIENCY_FLOPS + EFFICIENCY_HALF_WIDTH
    lines = ["# Measured latency frontier", "", *header, ""]
    for b in backends:
        lines += [f"## {b.backend}", "", f"- measured configurations: {len(b.points)}"]
        lines.append("- Spearman rank correlation, measured vs latency-table ratio: "
                     + (f"{b.rank_correlation:.3f} over {b.rank_pairs} configurations" if b.rank_correlation is not None
                        else f"n/a ({b.table_note})")
                     + (f"; mean measured − predicted ratio {b.prediction_bias:+.3f}" if b.prediction_bias is not None
                        else ""))
        if b.layers_bias is not None:
            rho = f"{b.layers_rank_correlation:.3f}" if b.layers_rank_correlation is not None else "n/a"
            lines.append(f"- the same table without its in-graph calibration (isolated layers, the rest a constant): "
                         f"Spearman {rho}, mean measured − predicted {b.layers_bias:+.3f}")
        if b.best is None:
            lines.append(f"- best efficiency at FLOPs ratio {lo:.2f}–{hi:.2f}: no configuration in that window")
        else:
            p = b.best.point
            lines.append(f"- best efficiency at FLOPs ratio {lo:.2f}–{hi:.2f}: {b.best.efficiency:.3f} "
                         f"[{b.best.efficiency_low:.3f}, {b.best.efficiency_high:.3f}] (FLOPs {p.flops_ratio:.3f}, "
                         f"latency {p.latency_ratio:.3f}, {p.family} `{p.config}`; best of {b.best.candidates}, so it "
                         "reads high: remeasure before quoting)")
        if b.family_best:
            lines.append(f"- best efficiency at FLOPs ratio {lo:.2f}–{hi:.2f} per family: " + "; ".join(
                f"{f} {pick.efficiency:.3f} [{pick.efficiency_low:.3f}, {pick.efficiency_high:.3f}] "
                f"(FLOPs {pick.point.flops_ratio:.3f}, best of {pick.candidates})" for f, pick in b.family_best.items()))
        lines += ["", "Pareto set (no configuration is both faster and keeps more FLOPs), fastest first:", "",
                  "| FLOPs ratio | latency ratio [95% CI] | efficiency | family | config |",
                  "|---:|---|---:|---|---|"]
        for p in b.front:
            eff = f"{p.efficiency:.3f}" if p.efficiency is not None else "n/a"
            lines.append(f"| {p.flops_ratio:.3f} | {p.latency_ratio:.3f} [{p.ratio_low:.3f}, {p.ratio_high:.3f}] | "
                         f"{eff} | {p.family} | `{p.config}` |")
        lines.append("")
    return atomic_write_text(path, "\n".join(lines))


def write_plot(path: Path, backends: Sequence[BackendFrontier]) -> Path:
    """Latency ratio vs FLOPs ratio per backend: every point with its interval by family, the Pareto set,
    the line where latency falls as FLOPs do, and the efficiency window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(backends), figsize=(5.2 * len(backends), 4.6), squeeze=False, sharey=True)
    colors: Mapping[str, str] = dict(zip(FAMILIES, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, b in zip(axes[0], backends):
        for family in FAMILIES:
            pts = [p for p in b.points if p.family == family]
            if pts:
                yerr = [[p.latency_ratio - p.ratio_low for p in pts], [p.ratio_high - p.latency_ratio for p in pts]]
                ax.errorbar([p.flops_ratio for p in pts], [p.latency_ratio for p in pts], yerr=yerr,
                            fmt="o", ms=3, lw=0.6, alpha=0.7, color=colors[family], label=family)
        ax.step([p.flops_ratio for p in b.front], [p.latency_ratio for p in b.front], where="pre", color="black",
                lw=1, label="Pareto set")
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8, label="latency ∝ FLOPs")
        ax.axvspan(EFFICIENCY_FLOPS - EFFICIENCY_HALF_WIDTH, EFFICIENCY_FLOPS + EFFICIENCY_HALF_WIDTH, color="grey",
                   alpha=0.12)
        if b.points:
            ax.set_xlim(min(p.flops_ratio for p in b.points) - 0.03, max(p.flops_ratio for p in b.points) + 0.03)
        ax.set_title(b.backend)
        ax.set_xlabel("FLOPs ratio (Ultralytics' count)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("latency ratio to full width (paired, 95% CI)")
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, path)
