"""The pruned variant must be faster than the baseline on the same backend, batch and run."""

from __future__ import annotations

import pytest

from fastnas_bench.backends import BackendUnavailable
from fastnas_bench.checks import check_speedup, efficiency, speedup
from fastnas_bench.measure import Measurer
from fastnas_bench.settings import BackendTarget, BenchSettings


def test_speedup(measurer: Measurer, bench_settings: BenchSettings, baselines, request, baseline_variant,
                 pruned_variant, target: BackendTarget, batch_size: int) -> None:
    pruned_name = bench_settings.profile.pruned.name
    try:
        # Timed in alternating rounds, so machine drift cannot favour either variant.
        base, pruned = measurer.measure_interleaved(target, ("baseline", pruned_name), batch_size)
    except BackendUnavailable as e:
        pytest.skip(str(e))
    bound = bench_settings.profile.min_speedup[target.backend]
    value = speedup(base, pruned)
    flops_ratio = pruned_variant.gflops / baseline_variant.gflops
    baselines.produced[request.node.name] = {
        "speedup": value, "min_speedup": bound, "flops_ratio": flops_ratio,
        "efficiency": efficiency(1 / value, flops_ratio),
        "baseline_p50_ms": base.latency_p50_ms, "pruned_p50_ms": pruned.latency_p50_ms,
        "baseline_iqr_ms": base.latency_iqr_ms, "pruned_iqr_ms": pruned.latency_iqr_ms,
    }
    message = check_speedup(f"{target.id} bs{batch_size}", base, pruned, bound)
    if message:
        pytest.fail(message)
