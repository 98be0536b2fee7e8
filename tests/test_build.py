"""A cached derived entry is rebuilt when the builds it came from changed."""

from __future__ import annotations

from pathlib import Path

from fastnas_bench.variants.build import stale_reason
from fastnas_bench.variants.profiles import PROFILES
from fastnas_bench.variants.variant import MODEL_FILE, Variant


def _source(sha: str) -> Variant:
    return Variant(spec=PROFILES["cpu"].pruned.source(), path=Path("/nowhere"), meta={"files": {MODEL_FILE: sha}})


def test_fresh_entry_is_not_stale() -> None:
    meta = {"matched_flops_ratio": 0.658, "source_sha256": "a" * 64}
    assert stale_reason(meta, _source("a" * 64), 0.658) is None
    assert stale_reason({"source_sha256": "a" * 64}, _source("a" * 64), None) is None


def test_rival_matched_to_an_old_fastnas_ratio_is_stale() -> None:
    reason = stale_reason({"matched_flops_ratio": 0.62, "source_sha256": "a" * 64}, _source("a" * 64), 0.658)
    assert reason == "built to match FLOPs ratio 0.62, FastNAS now reaches 0.658"


def test_entry_pruned_from_a_rebuilt_source_is_stale() -> None:
    reason = stale_reason({"source_sha256": "b" * 64}, _source("a" * 64), None)
    assert reason is not None and "bbbbbbbbbbbb" in reason and "aaaaaaaaaaaa" in reason
