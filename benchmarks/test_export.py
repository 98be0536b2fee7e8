"""What users take away: the pruned variant as a checkpoint stock Ultralytics loads."""

from __future__ import annotations

import pytest

from fastnas_bench.variants.variant import Variant


def test_pruned_checkpoint_loads_in_stock_ultralytics(pruned_variant: Variant, artifact_cache, tmp_path) -> None:
    """`fastnas-bench export` output: YOLO(...).predict/.val/.export in a process without this package."""
    from fastnas_bench.variants.build import resolve_data
    from fastnas_bench.yolo.stock import export_stock_checkpoint
    from fastnas_bench.yolo.stock_probe import run_stock_probe

    spec = pruned_variant.spec
    out = export_stock_checkpoint(pruned_variant.path, tmp_path / f"{spec.name}.pt")
    data = resolve_data(spec.data, artifact_cache).report_yaml
    result = run_stock_probe(out, data, spec.imgsz, tmp_path)
    if result.returncode != 0:
        pytest.fail(f"stock Ultralytics rejected the exported {spec.name}: {result.stderr.strip().splitlines()[-1]}")
    assert "STOCK-OK" in result.stdout
