"""The pruned variant must be faster than the baseline on the same backend, batch and run."""

from __future__ import annotations

import pytest

from fastnas_bench.backends import BackendUnavailable
from fastnas_bench.checks import check_speedup
from fastnas_bench.measure import Measurer
from fastnas_bench.settings import BackendTarget, BenchSettings


def test_speedup(measurer: Measurer, bench_settings: BenchSettings, target: BackendTarget, batch_size: int) -> None:
    pruned_name = bench_settings.profile.pruned.name
    try:
        base = measurer.measure(target, "baseline", batch_size)
        pruned = measurer.measure(target, pruned_name, batch_size)
    except BackendUnavailable as e:
        pytest.skip(str(e))
    bound = bench_settings.profile.min_speedup[target.backend]
    message = check_speedup(f"{target.id} bs{batch_size}", base.summary, pruned.summary, bound)
    if message:
        pytest.fail(message)
