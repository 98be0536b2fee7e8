"""Per-run summaries of saved pytest-benchmark runs: each run against its own baseline.

Reads the JSON files pytest-benchmark writes (``--benchmark-autosave`` / ``--benchmark-json``): the
``test_latency`` entries through the :class:`~fastnas_bench.verdicts.records.LatencyInfo` they carry,
and the paired-round :class:`~fastnas_bench.verdicts.records.SpeedupRecord` s the suite adds to each
run. On a shared machine the absolute latencies of two runs are not comparable; ratios within one
run are.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastnas_bench.errors import BadInputError
from fastnas_bench.measure.stats import efficiency
from fastnas_bench.verdicts.records import LatencyInfo, SpeedupRecord, TestKey

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

    @classmethod
    def of(cls, run: str, info: LatencyInfo) -> Row:
        return cls(
            run=run, target=info.target, variant=info.variant, method=info.method, batch=info.batch,
            params=info.params, gflops=info.gflops, map50_95=info.map50_95, recall=info.recall,
            ap_small=info.ap_small, latency_p50_ms=info.latency_p50_ms, latency_p90_ms=info.latency_p90_ms,
            samples_ms=tuple(info.latency_samples_ms), flops_target=info.flops_target,
            channel_divisor=info.channel_divisor, cut_for=info.cut_for or cut_for(info.variant),
        )


def read_run(path: Path) -> dict[str, Any]:
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
    return rows_of(read_run(path), path)


def rows_of(doc: dict[str, Any], path: Path) -> list[Row]:
    rows = []
    for bench in doc["benchmarks"]:
        info = bench.get("extra_info", {})
        if bench.get("name", "").split("[")[0] != "test_latency" or "latency_p50_ms" not in info:
            continue
        rows.append(Row.of(path.stem, _latency_info(info)))
    if not rows:
        raise BadInputError(f"{path} holds no fastnas-bench test_latency results")
    return rows


def _latency_info(info: dict[str, Any]) -> LatencyInfo:
    """A saved ``test_latency`` entry; runs saved before some fields existed read with their defaults."""
    defaults: dict[str, Any] = {"method": "baseline" if info.get("variant") == "baseline" else "fastnas", "imgsz": 0,
                "flops_ratio": float("nan"), "ap_small": None, "n_samples": len(info.get("latency_samples_ms", ())),
                "latency_p99_ms": float("nan"), "latency_iqr_ms": float("nan"), "latency_min_ms": float("nan"),
                "latency_samples_ms": []}
    return LatencyInfo.from_json({**defaults, **info})


def speedups_of(doc: dict[str, Any]) -> dict[str, SpeedupRecord]:
    """The interleaved-round speedups the suite adds to a saved run (empty for older runs)."""
    return {k: SpeedupRecord.from_json(v) for k, v in doc.get("fastnas_bench", {}).get("speedups", {}).items()}


def cut_for(variant: str) -> str | None:
    """``fastnas-latency@onnxruntime-lat75`` → ``onnxruntime-lat75`` (the budget it was cut to); else ``None``."""
    return variant.partition("@")[2] or None


def summarize(rows: list[Row], speedups: dict[str, SpeedupRecord] | None = None) -> dict[str, Any]:
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
    interleaved = {(key.target, key.variant, key.batch): v for k, v in (speedups or {}).items()
                   if (key := TestKey.parse(k)) is not None}
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
            if (eff := efficiency(r.latency_p50_ms / b.latency_p50_ms, r.gflops / base_gflops)) is not None:
                entry["efficiency"] = eff
        inter = interleaved.get((r.target, r.variant, r.batch))
        if inter is not None:
            entry["interleaved_speedup"] = inter.speedup
            entry["interleaved_efficiency"] = inter.efficiency
            entry["interleaved_baseline_p50_ms"] = inter.baseline_p50_ms
            entry["interleaved_p50_ms"] = inter.pruned_p50_ms
            if inter.ci_low is not None:
                entry["interleaved_ci_low"], entry["interleaved_ci_high"] = inter.ci_low, inter.ci_high
        v["latency"][f"{r.target} bs{r.batch}"] = entry
    return {"run": run, "variants": variants}


def best_speedup(lat: dict[str, Any]) -> tuple[float | None, float | None, str]:
    """(speedup, efficiency, source): interleaved rounds where the run has them, else separate timings."""
    if "interleaved_speedup" in lat:
        return lat["interleaved_speedup"], lat.get("interleaved_efficiency"), "interleaved"
    return lat.get("speedup"), lat.get("efficiency"), "separate"


def divisor_groups(summary: dict[str, Any]) -> dict[tuple[str, float], dict[int, str]]:
    """Variants of one method and FLOPs target built with several channel divisors: {divisor: name}."""
    groups: dict[tuple[str, float], dict[int, str]] = defaultdict(dict)
    for name, v in summary["variants"].items():
        if v["method"] != "baseline" and v["channel_divisor"] is not None and v["flops_target"] is not None:
            groups[(v["method"], v["flops_target"])][int(v["channel_divisor"])] = name
    return {k: dict(sorted(g.items())) for k, g in groups.items() if len(g) > 1}


def pareto_series(summary: dict[str, Any]) -> dict[str, list[tuple[float, float, str]]]:
    """(relative latency, mAP50-95, variant) per method, backend and batch, each with the baseline at 1.0.

    Relative latency is 1 / speedup, from interleaved rounds where the run has them, so that
    drift between separately timed variants does not bend the front.
    """
    variants = summary["variants"]
    series: dict[tuple[str, str, int], list[tuple[float, float, str]]] = defaultdict(list)
    for name, v in variants.items():
        for lat in v["latency"].values():
            value = best_speedup(lat)[0]
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


