"""Latency against the stored baseline of this machine class, with a statistical verdict."""

from __future__ import annotations

import pytest

from fastnas_bench.backends import BackendUnavailable
from fastnas_bench.baselines import normalized_samples, regression_verdict
from fastnas_bench.measure import Measurer
from fastnas_bench.settings import BackendTarget


def test_latency_regression(measurer: Measurer, baselines, variant, target: BackendTarget,
                            variant_name: str, batch_size: int) -> None:
    latency_id = f"test_latency[{target.id}-{variant_name}-bs{batch_size}]"
    try:
        record = measurer.measure(target, variant_name, batch_size)
    except BackendUnavailable as e:
        pytest.skip(str(e))
    current_ms = [s * 1e3 for s in record.samples_s]
    v = variant(variant_name)
    current = {
        "variant_key": v.meta["key"],
        "latency_p50_ms": record.summary.latency_p50_ms, "samples_ms": [round(x, 4) for x in current_ms],
        "calibration_ms": record.calibration_ms, "gflops": v.gflops, "map50_95": v.map50_95, "recall": v.recall,
    }
    baselines.produced[latency_id] = current
    if baselines.update:
        pytest.skip(f"recording {latency_id} as the new baseline (--update-baselines)")
    stored = baselines.stored.get(latency_id)
    if stored is None:
        pytest.skip(f"no stored baseline for {latency_id} in {baselines.path}; run with --update-baselines to create it")
    if stored.get("variant_key") != current["variant_key"]:
        # Another build of this variant (new pipeline, versions or spec): its latency is not comparable.
        pytest.skip(f"stored baseline for {latency_id} is for variant {stored.get('variant_key')}, this run built "
                    f"{current['variant_key']}; re-record with --update-baselines")
    # Compared in units of the calibration workload timed alongside, so a machine that is slower
    # this hour (shared host, CPU credits) does not read as a regression of the model.
    verdict = regression_verdict(normalized_samples(stored), normalized_samples(current), tolerance=baselines.tolerance)
    if verdict.regressed:
        pytest.fail("latency regression: " + verdict.describe(
            latency_id, stored["latency_p50_ms"], record.summary.latency_p50_ms, baselines.tolerance)
            + f"; calibration {current['calibration_ms']:.2f} ms now vs {stored.get('calibration_ms', float('nan')):.2f} ms stored")
