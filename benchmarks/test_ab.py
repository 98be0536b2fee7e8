"""Did a change of environment make inference slower? This environment (B) against a reference one (A).

``--ab-reference`` names side A: ``self`` (an A/A run, which must pass), a venv folder or a python
executable holding, say, the previous onnxruntime. Each (backend, variant, batch) is timed in paired
A-B-B-A / B-A-A-B rounds by two long-lived worker processes restarted a fixed number of times
(:mod:`fastnas_bench.measure.ab`); the verdict fails only when the whole interval of B/A lies above the
tolerance, and the intervals of one run are corrected for their number (family-wise).
"""

from __future__ import annotations

import pytest

from fastnas_bench.backends.base import BackendTarget
from fastnas_bench.config.settings import BenchSettings
from fastnas_bench.measure.ab import WORKER_BACKENDS
from fastnas_bench.pytest_plugin.outcomes import report_outcome
from fastnas_bench.pytest_plugin.session import BenchSession
from fastnas_bench.verdicts.outcome import not_slower
from fastnas_bench.verdicts.records import TestKey


def test_ab(ab_compare, bench_settings: BenchSettings, bench_session: BenchSession, request, target: BackendTarget,
            variant_name: str, batch_size: int, timing_disabled: str | None) -> None:
    if bench_settings.ab_reference is None:
        pytest.skip("no A/B reference: give --ab-reference self|VENV|PYTHON|GIT-REF to compare this environment with it")
    if timing_disabled:
        pytest.skip(timing_disabled)
    if bench_settings.device != "cpu" or target.backend not in WORKER_BACKENDS or target.precision != "fp32":
        pytest.skip(f"A/B workers run {', '.join(WORKER_BACKENDS)} at fp32 on the CPU; not {target.id} on "
                    f"{bench_settings.device}")
    result = ab_compare(target.backend, variant_name, batch_size)
    outcome = not_slower(result, bench_settings.ab_tolerance)
    bench_session.ab_results[TestKey("test_ab", target.id, variant_name, batch_size).format()] = (result, outcome.value)
    versions = "; ".join(f"{side}: " + ", ".join(f"{k} {v}" for k, v in sorted(found.items()))
                         for side, found in sorted(result.versions.items()))
    report_outcome(request, outcome, f"{target.id} {variant_name} bs{batch_size}: {result.describe()} vs allowed "
                                     f"≤ {1 + bench_settings.ab_tolerance:.2f} ({versions})")
