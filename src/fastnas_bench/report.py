"""Markdown/JSON/PNG report from saved pytest-benchmark runs of the suite.

Reads the JSON files pytest-benchmark writes (``--benchmark-autosave`` / ``--benchmark-json``):
the ``test_latency`` entries, through the ``extra_info`` the suite records, and the interleaved
speedups the suite adds to each run. Every run is summarized against its own baseline: on a shared
machine the absolute latencies of two runs are not comparable, ratios within one run are.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastnas_bench.checks import efficiency
from fastnas_bench.errors import BadInputError

SEED_FLOPS_TARGET = 0.66  # the reference experiment's FLOPs budget


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
    flops_target: float | None = None
    channel_divisor: int | None = None
    #: For a variant cut to a latency budget: the budget's label, e.g. ``onnxruntime-lat75``.
    cut_for: str | None = None


def _read_run(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc["benchmarks"], list):
            raise TypeError("benchmarks")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{path} is not a readable pytest-benchmark JSON file ({type(e).__name__})") from None
    return dict(doc)


def load_rows(path: Path) -> list[Row]:
    """The suite's latency rows in one saved run.

    Raises:
        BadInputError: if the file is missing, not JSON, or holds no suite latency entries.
    """
    return _rows(_read_run(path), path)


def _rows(doc: dict[str, Any], path: Path) -> list[Row]:
    rows = []
    for bench in doc["benchmarks"]:
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
            flops_target=info.get("flops_target"), channel_divisor=info.get("channel_divisor"),
            cut_for=info.get("cut_for") or cut_for(info["variant"]),
        ))
    if not rows:
        raise BadInputError(f"{path} holds no fastnas-bench test_latency results")
    return rows


def _speedups(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The interleaved-round speedups the suite adds to a saved run (empty for older runs)."""
    return dict(doc.get("fastnas_bench", {}).get("speedups", {}))


def _target_ids() -> list[str]:
    """Every backend target id (``onnxruntime``, ``tensorrt-fp16``, ``torch-compile``), longest first."""
    from fastnas_bench.backends import BACKEND_NAMES

    return sorted({t for b in BACKEND_NAMES for t in (b, f"{b}-fp16")}, key=len, reverse=True)


def split_test_id(test_id: str) -> tuple[str, str, int] | None:
    """``test_speedup[tensorrt-fp16-fastnas66-bs8]`` → (``tensorrt-fp16``, ``fastnas66``, 8).

    Both targets and variant names may hold '-' (``fastnas-latency@onnxruntime-lat75``): the target
    is the longest known target id the inner id starts with.
    """
    inner = test_id.partition("[")[2].rstrip("]")
    rest, _, batch = inner.rpartition("-")
    if not batch.startswith("bs") or not batch[2:].isdigit():
        return None
    target = next((t for t in _target_ids() if rest.startswith(t + "-")), None)
    if target is None:
        return None
    return target, rest[len(target) + 1:], int(batch[2:])


def cut_for(variant: str) -> str | None:
    """``fastnas-latency@onnxruntime-lat75`` → ``onnxruntime-lat75`` (the budget it was cut to); else ``None``."""
    return variant.partition("@")[2] or None


def _pct(new: float, old: float) -> str:
    return f"{(new / old - 1) * 100:+.1f}%"


def summarize(rows: list[Row], speedups: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per-variant figures of the newest run in ``rows``, with speedup and efficiency against its baseline.

    Where ``speedups`` holds the interleaved-round figure of a (backend, variant, batch), it is
    attached as ``interleaved_speedup``/``interleaved_efficiency``: the drift-robust number.
    """
    run = rows[-1].run
    latest = [r for r in rows if r.run == run]
    base = {(r.target, r.batch): r for r in latest if r.variant == "baseline"}
    if not base:
        raise BadInputError(f"run {run} has no baseline latency result")
    base_gflops = next(iter(base.values())).gflops
    interleaved = {split_test_id(k): v for k, v in (speedups or {}).items()}
    variants: dict[str, dict[str, Any]] = {}
    for r in latest:
        v = variants.setdefault(r.variant, {
            "method": r.method, "cut_for": r.cut_for, "params": r.params, "gflops": r.gflops, "flops_ratio": r.gflops / base_gflops,
            "flops_target": r.flops_target, "channel_divisor": r.channel_divisor,
            "map50_95": r.map50_95, "recall": r.recall, "ap_small": r.ap_small, "latency": {},
        })
        b = base.get((r.target, r.batch))
        entry: dict[str, Any] = {"target": r.target, "batch": r.batch,
                                 "p50_ms": r.latency_p50_ms, "p90_ms": r.latency_p90_ms}
        if b is not None and r.variant != "baseline":
            entry["speedup"] = b.latency_p50_ms / r.latency_p50_ms
            if r.gflops < base_gflops:
                entry["efficiency"] = efficiency(r.latency_p50_ms / b.latency_p50_ms, r.gflops / base_gflops)
        inter = interleaved.get((r.target, r.variant, r.batch))
        if inter is not None:
            entry["interleaved_speedup"] = inter["speedup"]
            entry["interleaved_efficiency"] = inter.get("efficiency")
            entry["interleaved_baseline_p50_ms"] = inter["baseline_p50_ms"]
            entry["interleaved_p50_ms"] = inter["pruned_p50_ms"]
            if "ci_low" in inter:
                entry["interleaved_ci_low"], entry["interleaved_ci_high"] = inter["ci_low"], inter["ci_high"]
        v["latency"][f"{r.target} bs{r.batch}"] = entry
    return {"run": run, "variants": variants}


def _best_speedup(lat: dict[str, Any]) -> tuple[float | None, float | None, str]:
    """(speedup, efficiency, source): interleaved rounds where the run has them, else separate timings."""
    if "interleaved_speedup" in lat:
        return lat["interleaved_speedup"], lat.get("interleaved_efficiency"), "interleaved"
    return lat.get("speedup"), lat.get("efficiency"), "separate"


def _fmt_speedup(lat: dict[str, Any]) -> str:
    value, eff, source = _best_speedup(lat)
    if value is None:
        return ""
    text = f"{value:.2f}x{'' if source == 'interleaved' else '†'}"
    return text + (f", eff {eff:.2f}" if eff is not None else "")


def _seed_table(summary: dict[str, Any]) -> list[str]:
    variants = summary["variants"]
    fastnas = [n for n, v in variants.items() if v["method"] == "fastnas" and not v.get("cut_for")]
    if not fastnas:
        return []
    # In a sweep, the variant nearest the reference's 66% target is the one to set beside it.
    pruned_name = min(fastnas, key=lambda n: abs((variants[n]["flops_target"] or SEED_FLOPS_TARGET) - SEED_FLOPS_TARGET))
    b, p = variants["baseline"], variants[pruned_name]
    lines = [
        f"| Metric | Baseline | Pruned ({pruned_name}) | Change |",
        "|---|---|---|---|",
        f"| Parameters | {b['params'] / 1e6:.2f}M | {p['params'] / 1e6:.2f}M | {_pct(p['params'], b['params'])} |",
        f"| GFLOPs (640 px) | {b['gflops']:.2f} | {p['gflops']:.2f} | {_pct(p['gflops'], b['gflops'])} |",
    ]
    for key, lat in b["latency"].items():
        if key not in p["latency"]:
            continue
        pl = p["latency"][key]
        if "interleaved_speedup" in pl:
            # The headline uses the paired rounds: the separately timed medians were minutes apart.
            value = pl["interleaved_speedup"]
            interval = (f", CI [{pl['interleaved_ci_low']:.2f}, {pl['interleaved_ci_high']:.2f}]"
                        if "interleaved_ci_low" in pl else "")
            lines.append(f"| Latency {key} (ms, p50, paired rounds) | {pl['interleaved_baseline_p50_ms']:.2f} | "
                         f"{pl['interleaved_p50_ms']:.2f} | {(1 / value - 1) * 100:+.1f}% ({value:.2f}x{interval}) |")
        else:
            lines.append(f"| Latency {key} (ms, p50, timed separately†) | {lat['p50_ms']:.2f} | {pl['p50_ms']:.2f} | "
                         f"{_pct(pl['p50_ms'], lat['p50_ms'])} |")
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
        "### Speedup, paired ABBA rounds (the gated figure)",
        "",
        "Baseline and variant timed in A B B A rounds within one test, so machine drift cannot favour "
        "either side; the speedup is the median of the per-round paired ratios with its distribution-free "
        "interval. These are the figures `test_speedup` and `test_speedup_regression` judge.",
        "",
        "| Test | Speedup | Interval | Rounds | Bound | Outcome | FLOPs ratio | Efficiency |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for test_id, r in speedups.items():
        eff = f"{r['efficiency']:.2f}" if r.get("efficiency") is not None else "—"
        interval = f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if "ci_low" in r else "—"
        lines.append(f"| {test_id} | {r['speedup']:.3f}x | {interval} | {r.get('rounds', '—')} | {r['bound']:.2f}x | "
                     f"{r.get('outcome', '—')} | {r['flops_ratio']:.3f} | {eff} |")
    return lines


def _latency_keys(variants: Iterable[dict[str, Any]]) -> list[str]:
    """The ``"<backend> bs<N>"`` columns present, by backend, then batch as a number."""
    entries = {k: (lat["target"], lat["batch"]) for v in variants for k, lat in v["latency"].items()}
    return sorted(entries, key=entries.__getitem__)


def _variants_table(summary: dict[str, Any]) -> list[str]:
    variants = summary["variants"]
    keys = _latency_keys(variants.values())
    lines = [
        "",
        "### All variants",
        "",
        "Latency p50 / p90 in ms from the separately timed `test_latency` runs; then speedup over the "
        "baseline (same backend and batch) and efficiency = (1 − latency ratio) / (1 − FLOPs ratio), 1.0 "
        "meaning the FLOPs cut became latency in full (the reference experiment reached 0.58). Speedups "
        "come from the interleaved rounds where the run has them; † marks a ratio of the separate timings.",
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
            extra = _fmt_speedup(lat)
            cells.append(f"{lat['p50_ms']:.1f} / {lat['p90_ms']:.1f}" + (f", {extra}" if extra else ""))
        ap_small = f"{v['ap_small']:.3f}" if v["ap_small"] is not None else "—"
        lines.append(f"| {name} | {v['params'] / 1e6:.2f}M | {v['gflops']:.2f} | {v['flops_ratio']:.3f} | "
                     + " | ".join(cells) + f" | {v['map50_95']:.3f} | {ap_small} | {v['recall']:.3f} |")
    return lines


def _latency_comparison(summary: dict[str, Any]) -> list[str]:
    """Variants cut to the same latency budget, side by side, on every backend the run timed them on."""
    cut = {n: v for n, v in summary["variants"].items() if v.get("cut_for")}
    if not cut:
        return []
    lines = [
        "",
        "### Latency budgets: latency-aware FastNAS vs FLOPs FastNAS vs l2struct at equal measured speed",
        "",
        ("Each variant was cut to the budget on the backend it names (`fastnas-latency`: knapsack over FastNAS's "
         "sensitivity map and a measured latency table; `fastnas`/`l2struct`: FLOPs target bisected until the "
         "measured latency met it), then fine-tuned with the same budget. Speedups are paired ABBA figures with "
         "their 95% interval; a row whose backend is not the one it was cut for shows what the cut does elsewhere."),
        "",
        "| Cut for | Measured on | Method | FLOPs ratio | Speedup [95% CI] | Efficiency | mAP50-95 | Recall | AP_small |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for v in cut.values():
        for lat in v["latency"].values():
            value, eff, source = _best_speedup(lat)
            if value is None:
                continue
            interval = (f" [{lat['interleaved_ci_low']:.3f}, {lat['interleaved_ci_high']:.3f}]"
                        if source == "interleaved" and "interleaved_ci_low" in lat else "†")
            measured_on = f"{lat['target']} bs{lat['batch']}"
            same = v["cut_for"].rsplit("-lat", 1)[0] == lat["target"]
            ap_small = "—" if v["ap_small"] is None else f"{v['ap_small']:.3f}"
            line = (f"| {v['cut_for']} | {measured_on}{'' if same else ' (other backend)'} | {v['method']} | "
                    f"{v['flops_ratio']:.3f} | {value:.3f}x{interval} | {'—' if eff is None else f'{eff:.2f}'} | "
                    f"{v['map50_95']:.3f} | {v['recall']:.3f} | {ap_small} |")
            rows.append((v["cut_for"], not same, measured_on, v["method"], line))
    lines += [row[-1] for row in sorted(rows, key=lambda r: r[:4])]
    return lines


def divisor_groups(summary: dict[str, Any]) -> dict[tuple[str, float], dict[int, str]]:
    """Variants of one method and FLOPs target built with several channel divisors: {divisor: name}."""
    groups: dict[tuple[str, float], dict[int, str]] = defaultdict(dict)
    for name, v in summary["variants"].items():
        if v["method"] != "baseline" and v["channel_divisor"] is not None and v["flops_target"] is not None:
            groups[(v["method"], v["flops_target"])][int(v["channel_divisor"])] = name
    return {k: dict(sorted(g.items())) for k, g in groups.items() if len(g) > 1}


def _divisor_study(summary: dict[str, Any]) -> list[str]:
    variants = summary["variants"]
    lines: list[str] = []
    for (method, target), by_divisor in divisor_groups(summary).items():
        keys = _latency_keys(variants[name] for name in by_divisor.values())
        lines += [
            "",
            f"### Channel-divisor study: {method}, FLOPs target {target:g}",
            "",
            "Each cell: p50 ms (separate timing), then speedup over the baseline and efficiency.",
            "",
            "| Divisor | Variant | Params | FLOPs ratio | " + " | ".join(keys) + " | mAP50-95 |",
            "|---" * (5 + len(keys)) + "|",
        ]
        for divisor, name in by_divisor.items():
            v = variants[name]
            cells = [f"{v['latency'][k]['p50_ms']:.1f}, {_fmt_speedup(v['latency'][k])}" if k in v["latency"] else "—"
                     for k in keys]
            lines.append(f"| {divisor} | {name} | {v['params'] / 1e6:.2f}M | {v['flops_ratio']:.3f} | "
                         + " | ".join(cells) + f" | {v['map50_95']:.3f} |")
        lines.append("")
        for key in keys:
            ranked = [(_best_speedup(variants[n]["latency"][key])[0], d) for d, n in by_divisor.items()
                      if key in variants[n]["latency"]]
            ranked = [(s, d) for s, d in ranked if s is not None]
            if ranked:
                best, divisor = max(ranked)
                lines.append(f"- {key}: divisor {divisor} is fastest at {best:.2f}x "
                             f"(range {min(ranked)[0]:.2f}x–{best:.2f}x)")
    return lines


def _batch_scaling(summary: dict[str, Any]) -> list[str]:
    variants = summary["variants"]
    batches = sorted({lat["batch"] for v in variants.values() for lat in v["latency"].values()})
    if len(batches) < 2:
        return []
    lines = [
        "",
        "### Batch-size scaling",
        "",
        "Per-image p50 latency (interleaved rounds where the run has them), speedup and efficiency by batch "
        "size: where efficiency climbs with the batch, fixed per-call overheads were hiding the FLOPs cut.",
        "",
        "| Backend | Variant | Batch | Baseline ms/image | Variant ms/image | Speedup | Efficiency |",
        "|---|---|---|---|---|---|---|",
    ]
    base = variants["baseline"]["latency"]
    for name, v in variants.items():
        if name == "baseline":
            continue
        for key, lat in sorted(v["latency"].items(), key=lambda kv: (kv[1]["target"], kv[1]["batch"])):
            if key not in base:
                continue
            value, eff, source = _best_speedup(lat)
            if source == "interleaved":
                b_ms, v_ms = lat["interleaved_baseline_p50_ms"], lat["interleaved_p50_ms"]
            else:
                b_ms, v_ms = base[key]["p50_ms"], lat["p50_ms"]
            n = lat["batch"]
            lines.append(f"| {lat['target']} | {name} | {n} | {b_ms / n:.2f} | {v_ms / n:.2f} | "
                         f"{value:.2f}x{'' if source == 'interleaved' else '†'} | "
                         f"{'—' if eff is None else f'{eff:.2f}'} |")
    return lines


def _speedups_across_runs(all_speedups: list[dict[str, dict[str, Any]]]) -> list[str]:
    """Median and range of each interleaved speedup that several runs measured: the repeatable figure."""
    by_test: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for speedups in all_speedups:
        for test_id, r in speedups.items():
            by_test[test_id].append(r)
    repeated = {k: v for k, v in by_test.items() if len(v) > 1}
    if not repeated:
        return []
    lines = [
        "## Interleaved speedups across runs",
        "",
        "| Test | Runs | Speedup, median | Range | FLOPs ratio | Efficiency, median |",
        "|---|---|---|---|---|---|",
    ]
    for test_id, results in repeated.items():
        values = sorted(r["speedup"] for r in results)
        effs = sorted(r["efficiency"] for r in results if r.get("efficiency") is not None)
        eff = f"{statistics.median(effs):.2f}" if effs else "—"
        lines.append(f"| {test_id} | {len(values)} | {statistics.median(values):.3f}x | "
                     f"{values[0]:.3f}x–{values[-1]:.3f}x | {results[-1]['flops_ratio']:.3f} | {eff} |")
    return lines + [""]


def to_markdown(reports: list[tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]], runs: list[str]) -> str:
    """The report for ``(summary, speedups, plot file names)`` per run, oldest first."""
    lines = ["# fastnas-bench report", "", f"Runs read: {', '.join(runs)}", ""]
    if len(reports) > 1:
        lines += ["Each run is summarized against its own baseline: absolute latencies of different runs are not "
                  "comparable on a shared machine, ratios within a run are.", ""]
        lines += _speedups_across_runs([speedups for _, speedups, _ in reports])
    for summary, speedups, plots in reports:
        lines += [f"## Run {summary['run']}", ""]
        lines += _seed_table(summary)
        lines += _speedup_table(speedups)
        lines += _variants_table(summary)
        lines += _latency_comparison(summary)
        lines += _divisor_study(summary)
        lines += _batch_scaling(summary)
        lines.append("")
        for plot in plots:
            lines += [f"![{plot}]({plot})", ""]
    return "\n".join(lines)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plots(summary: dict[str, Any], rows: list[Row], out: Path, prefix: str) -> list[Path]:
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
    paths.append(_save(fig, out / f"{prefix}latency.png"))

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
    paths.append(_save(fig, out / f"{prefix}flops_latency.png"))

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
    paths.append(_save(fig, out / f"{prefix}pareto.png"))
    return paths


def pareto_series(summary: dict[str, Any]) -> dict[str, list[tuple[float, float, str]]]:
    """(relative latency, mAP50-95, variant) per method, backend and batch, each with the baseline at 1.0.

    Relative latency is 1 / speedup, from interleaved rounds where the run has them, so that
    drift between separately timed variants does not bend the front.
    """
    variants = summary["variants"]
    series: dict[tuple[str, str, int], list[tuple[float, float, str]]] = defaultdict(list)
    for name, v in variants.items():
        for lat in v["latency"].values():
            value = _best_speedup(lat)[0]
            if name == "baseline" or value is None:
                continue
            method = v["method"] if not v.get("cut_for") else f"{v['method']} (latency-cut)"
            key = (method, lat["target"], lat["batch"])
            if not series[key]:
                series[key].append((1.0, variants["baseline"]["map50_95"], "baseline"))
            series[key].append((1.0 / value, v["map50_95"], name))
    return {f"{method} · {target} bs{batch}": points for (method, target, batch), points in sorted(series.items())}


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The points no other point beats on both latency (lower) and accuracy (higher), fastest first."""
    front: list[tuple[float, float, str]] = []
    for point in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or point[1] > front[-1][1]:
            front.append(point)
    return front


def write_report(runs: list[Path], out: Path) -> list[Path]:
    """Write ``report.md``, ``report.json`` and the PNG plots of every run into ``out``; return their paths.

    With several runs the plots of each carry its index (``2-pareto.png``).
    """
    out.mkdir(parents=True, exist_ok=True)
    reports, documents, pngs = [], [], []
    for i, path in enumerate(runs, start=1):
        doc = _read_run(path)  # run files hold every round's samples: read each once
        rows, speedups = _rows(doc, path), _speedups(doc)
        summary = summarize(rows, speedups)
        plots = _plots(summary, rows, out, prefix=f"{i}-" if len(runs) > 1 else "")
        pngs += plots
        reports.append((summary, speedups, [p.name for p in plots]))
        documents.append({"summary": summary, "speedups": speedups, "rows": [asdict(r) for r in rows]})
    md = out / "report.md"
    md.write_text(to_markdown(reports, [p.name for p in runs]))
    js = out / "report.json"
    # ``summary`` is the newest run's, for readers of single-run reports.
    js.write_text(json.dumps({"summary": documents[-1]["summary"], "runs": documents}, indent=2))
    return [md, js, *pngs]
