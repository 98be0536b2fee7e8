"""Pass/fail checks: small functions returning a failure message (measured vs bound) or ``None``.

Each is asserted inside its own test, so the failing test is the one named in the report.
"""

from __future__ import annotations

from fastnas_bench.timing import LatencySummary


def speedup(baseline: LatencySummary, pruned: LatencySummary) -> float:
    """Baseline median latency over pruned median latency (> 1 means the pruned model is faster)."""
    return baseline.latency_p50_ms / pruned.latency_p50_ms


def check_speedup(label: str, baseline: LatencySummary, pruned: LatencySummary, min_speedup: float) -> str | None:
    value = speedup(baseline, pruned)
    if value >= min_speedup:
        return None
    return (
        f"{label}: speedup {value:.3f}x < required {min_speedup:.3f}x "
        f"(baseline p50 {baseline.latency_p50_ms:.2f} ms, pruned p50 {pruned.latency_p50_ms:.2f} ms)"
    )


def check_flops_ratio(baseline_gflops: float, pruned_gflops: float, target: float) -> str | None:
    ratio = pruned_gflops / baseline_gflops
    if ratio <= target:
        return None
    return f"FLOPs ratio {ratio:.4f} > target {target:.4f} (pruned {pruned_gflops:.3f} / baseline {baseline_gflops:.3f} GFLOPs)"


def check_drop(metric: str, baseline: float, pruned: float, max_drop: float) -> str | None:
    drop = baseline - pruned
    if drop <= max_drop:
        return None
    return f"{metric} drop {drop:.4f} > allowed {max_drop:.4f} (baseline {baseline:.4f}, pruned {pruned:.4f})"


def check_agreement(metric: str, reference: float, other: float, tolerance: float, label: str) -> str | None:
    diff = abs(reference - other)
    if diff <= tolerance:
        return None
    return f"{label}: {metric} {other:.4f} differs from PyTorch {reference:.4f} by {diff:.4f} > {tolerance:.4f}"


def check_matched_flops(method: str, ratio: float, fastnas_ratio: float, tolerance: float) -> str | None:
    if abs(ratio - fastnas_ratio) <= tolerance:
        return None
    return f"{method}: FLOPs ratio {ratio:.4f} is not within ±{tolerance:.2f} of FastNAS's {fastnas_ratio:.4f}"


def efficiency(latency_ratio: float, flops_ratio: float) -> float:
    """(1 - latency ratio) / (1 - FLOPs ratio): 1.0 means the FLOPs cut became latency in full."""
    return (1.0 - latency_ratio) / (1.0 - flops_ratio)
