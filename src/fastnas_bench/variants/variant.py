"""A built variant: its spec, its cache entry and the figures measured when it was built (accuracy included)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fastnas_bench.variants.spec import VariantSpec

MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class AccuracyRecord:
    """A variant's accuracy on the held-out val split, as Ultralytics' validator measured it at build time.

    ``ap_*``: COCO AP50-95 of small/medium/large objects (``None`` in entries built without it).
    """

    map50_95: float
    recall: float
    map50: float | None = None
    precision: float | None = None
    ap_small: float | None = None
    ap_medium: float | None = None
    ap_large: float | None = None

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> AccuracyRecord:
        """The figures a cache entry's ``meta.json`` holds (entries built before a field existed read ``None``)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in names})


@dataclass(frozen=True)
class Variant:
    """A built variant: its spec, its cache entry and the metadata measured at build time."""

    spec: VariantSpec
    path: Path
    meta: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def gflops(self) -> float:
        return float(self.meta["gflops"])

    @property
    def params(self) -> int:
        return int(self.meta["params"])

    @property
    def accuracy(self) -> AccuracyRecord:
        return AccuracyRecord.from_meta(self.meta)

    @property
    def map50_95(self) -> float:
        return self.accuracy.map50_95

    @property
    def recall(self) -> float:
        return self.accuracy.recall
