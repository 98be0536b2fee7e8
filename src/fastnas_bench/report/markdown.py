"""The report's Markdown: the reference-style headline table, then every table a run supports."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from fastnas_bench.report.summary import SEED_FLOPS_TARGET, best_speedup, divisor_groups
from fastnas_bench.verdicts.records import SpeedupRecord


def _pct(new: float, old: float) -> str:
    return f"{(new / old - 1) * 100:+.1f}%"


def _fmt_speedup(lat: dict[str, Any]) -> str:
    value, eff, source = best_speedup(lat)
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


def _speedup_table(speedups: dict[str, SpeedupRecord]) -> list[str]:
    if not speedups:
        return []
    return [
        "",
        "### Speedup, paired ABBA rounds (the gated figure)",
        "",
        "Baseline and variant timed in A B B A rounds within one test, so machine drift cannot favour "
        "either side; the speedup comes from the per-round paired ratios, with an interval over batches of "
        "consecutive rounds (rounds are autocorrelated). These are the figures `test_speedup` and "
        "`test_speedup_regression` judge.",
        "",
        *_speedup_rows(speedups),
    ]


def _speedup_rows(speedups: dict[str, SpeedupRecord]) -> list[str]:
    """The paired speedups' table alone (header and rows)."""
    lines = [
        "| Test | Speedup | Interval | Rounds | Bound | Outcome | FLOPs ratio | Efficiency |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for test_id, r in speedups.items():
        eff = f"{r.efficiency:.2f}" if r.efficiency is not None else "—"
        interval = f"[{r.ci_low:.3f}, {r.ci_high:.3f}]" if r.ci_low is not None and r.ci_high is not None else "—"
        lines.append(f"| {test_id} | {r.speedup:.3f}x | {interval} | {r.rounds or '—'} | {r.bound:.2f}x | "
                     f"{r.outcome or '—'} | {r.flops_ratio:.3f} | {eff} |")
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
        ("Each variant was cut to the budget on the backend it names (`fastnas-latency`: a greedy walk over FastNAS's "
         "sensitivity map, each step costed whole by a measured latency table; `fastnas`/`l2struct`: FLOPs target bisected until the "
         "measured latency met it), then fine-tuned with the same budget. Speedups are paired ABBA figures with "
         "their 95% interval; a row whose backend is not the one it was cut for shows what the cut does elsewhere."),
        "",
        "| Cut for | Measured on | Method | FLOPs ratio | Speedup [95% CI] | Efficiency | mAP50-95 | Recall | AP_small |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for v in cut.values():
        for lat in v["latency"].values():
            value, eff, source = best_speedup(lat)
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
            ranked = [(best_speedup(variants[n]["latency"][key])[0], d) for d, n in by_divisor.items()
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
            value, eff, source = best_speedup(lat)
            if source == "interleaved":
                b_ms, v_ms = lat["interleaved_baseline_p50_ms"], lat["interleaved_p50_ms"]
            else:
                b_ms, v_ms = base[key]["p50_ms"], lat["p50_ms"]
            n = lat["batch"]
            lines.append(f"| {lat['target']} | {name} | {n} | {b_ms / n:.2f} | {v_ms / n:.2f} | "
                         f"{value:.2f}x{'' if source == 'interleaved' else '†'} | "
                         f"{'—' if eff is None else f'{eff:.2f}'} |")
    return lines


def _speedups_across_runs(all_speedups: list[dict[str, SpeedupRecord]],
                          classes: Sequence[str | None] = ()) -> list[str]:
    """Median and range of each interleaved speedup that several runs measured: the repeatable figure.

    Where ``classes`` names each run's machine class, runs pool only within their class: one machine's
    spread says nothing of another's speedup.
    """
    by_test: dict[tuple[str | None, str], list[SpeedupRecord]] = defaultdict(list)
    for i, speedups in enumerate(all_speedups):
        machine = classes[i] if i < len(classes) else None
        for test_id, r in speedups.items():
            by_test[(machine, test_id)].append(r)
    repeated = {k: v for k, v in by_test.items() if len(v) > 1}
    if not repeated:
        return []
    fleet = any(machine is not None for machine, _ in repeated)
    lines = [
        "## Interleaved speedups across runs" + (" of one machine class" if fleet else ""),
        "",
        ("| Machine class " if fleet else "") + "| Test | Runs | Speedup, median | Range | FLOPs ratio | Efficiency, median |",
        ("|---" if fleet else "") + "|---|---|---|---|---|---|",
    ]
    for (machine, test_id), results in repeated.items():
        values = sorted(r.speedup for r in results)
        effs = sorted(r.efficiency for r in results if r.efficiency is not None)
        eff = f"{statistics.median(effs):.2f}" if effs else "—"
        lines.append((f"| {machine or '—'} " if fleet else "") +
                     f"| {test_id} | {len(values)} | {statistics.median(values):.3f}x | "
                     f"{values[0]:.3f}x–{values[-1]:.3f}x | {results[-1].flops_ratio:.3f} | {eff} |")
    return lines + [""]


def headline_markdown(summary: dict[str, Any], speedups: dict[str, SpeedupRecord]) -> list[str]:
    """One run's headline: the reference-style table, or where the run has no FastNAS variant its paired speedups."""
    table = _seed_table(summary) or (_speedup_rows(speedups) if speedups else [])
    if not table:
        return [f"## fastnas-bench: run {summary['run']}", "", "No pruned variant against the baseline in this run.", ""]
    return [f"## fastnas-bench: run {summary['run']}", "", *table, ""]


def to_markdown(reports: list[tuple[dict[str, Any], dict[str, SpeedupRecord], list[str]]], runs: list[str],
                fleet: Sequence[str] = (), classes: Sequence[str | None] = ()) -> str:
    """The report for ``(summary, speedups, plot file names)`` per run, oldest first, after the ``fleet``
    section's lines where the runs span several machine classes (``classes``: each run's, or none)."""
    lines = ["# fastnas-bench report", "", f"Runs read: {', '.join(runs)}", ""]
    if fleet:
        lines += [*fleet, ""]
    if len(reports) > 1:
        lines += ["Each run is summarized against its own baseline: absolute latencies of different runs are not "
                  "comparable on a shared machine, ratios within a run are.", ""]
        lines += _speedups_across_runs([speedups for _, speedups, _ in reports], classes)
    for i, (summary, speedups, plots) in enumerate(reports):
        machine = classes[i] if i < len(classes) else None
        lines += [f"## Run {summary['run']}" + (f" ({machine})" if machine else ""), ""]
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


