"""Pass/fail checks: small functions returning a failure message (measured vs bound) or ``None``.

Each is asserted inside its own test, so the failing test is the one named in the report.
"""

from __future__ import annotations


def check_flops_ratio(baseline_gflops: float, pruned_gflops: float, target: float) -> str | None:
    ratio = pruned_gflops / baseline_gflops
    if ratio <= target:
        return None
    return f"FLOPs ratio {ratio:.4f} > target {target:.4f} (pruned {pruned_gflops:.3f} / baseline {baseline_gflops:.3f} GFLOPs)"


def check_relative_drop(metric: str, baseline: float, pruned: float, max_rel_drop: float) -> str | None:
    """The drop as a share of the baseline's value; a baseline of 0 cannot lose anything."""
    if baseline <= 0 or (baseline - pruned) / baseline <= max_rel_drop:
        return None
    return (f"{metric} fell {(baseline - pruned) / baseline:.1%} > allowed {max_rel_drop:.0%} "
            f"(baseline {baseline:.4f}, pruned {pruned:.4f})")


def check_matched_flops(method: str, ratio: float, fastnas_ratio: float, tolerance: float) -> str | None:
    if abs(ratio - fastnas_ratio) <= tolerance:
        return None
    return f"{method}: FLOPs ratio {ratio:.4f} is not within ±{tolerance:.2f} of FastNAS's {fastnas_ratio:.4f}"
