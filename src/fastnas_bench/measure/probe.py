"""Measured latency of a candidate network relative to its unpruned source, on a real backend.

What a latency-cut variant is cut by: the candidate is saved as a checkpoint, exported by
Ultralytics' own exporter where the backend runs ONNX, loaded by the same backend class the
benchmarks time, and timed against the source in ABBA rounds (see :mod:`fastnas_bench.measure.stats`).
So the latency the pruning aims at is the latency the benchmark later measures, exporter and
session settings included.
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fastnas_bench.backends.base import Backend, BackendRequest, BackendUnavailable
from fastnas_bench.backends.registry import get_backend_class
from fastnas_bench.compat.ultralytics import export_module
from fastnas_bench.errors import BadInputError
from fastnas_bench.host import machine_class
from fastnas_bench.measure.stats import PairedSpeedup, paired_speedup
from fastnas_bench.measure.timing import abba_rounds, time_rounds
from fastnas_bench.variants.spec import LatencyBudget

log = logging.getLogger(__name__)

WARMUP_CALLS = 3


def export_onnx_module(model: nn.Module, out_dir: Path, imgsz: int, batch: int) -> Path:
    """Static-shape FP32 ONNX of an in-memory model by Ultralytics' exporter (the benchmark's
    exporter and settings: see :func:`fastnas_bench.yolo.export.export_onnx`)."""
    net = copy.deepcopy(model).float().eval()
    # The exporter writes next to the checkpoint the model came from; point it into out_dir.
    out = export_module(net, out_dir / "model.pt", {"format": "onnx", "imgsz": imgsz, "batch": batch,
                                                    "dynamic": False, "simplify": True, "device": "cpu",
                                                    "verbose": False})
    return Path(out)


@dataclass(frozen=True)
class LatencyRatio:
    """A candidate's latency over its source's, from ABBA rounds: 1 / the paired speedup."""

    ratio: float
    ratio_low: float
    ratio_high: float
    rounds: int

    @classmethod
    def of(cls, estimate: PairedSpeedup) -> LatencyRatio:
        return cls(1 / estimate.speedup, 1 / estimate.ci_high, 1 / estimate.ci_low, estimate.rounds)

    def describe(self) -> str:
        return f"{self.ratio:.3f} [{self.ratio_low:.3f}, {self.ratio_high:.3f}] over {self.rounds} paired rounds"


class LatencyProbe:
    """Times candidates against a fixed reference (the unpruned source) on one backend.

    Args:
        reference: The unpruned source network.
        budget: Backend, precision, imgsz, batch, threads and device of the measurement.
        work_dir: Scratch directory for checkpoints and exports (emptied per candidate).
        backend_class: Looks up a backend class by name (a fake in tests).
        export: Writes a model's ONNX export into a directory (a fake in tests).
    """

    def __init__(self, reference: nn.Module, budget: LatencyBudget, work_dir: Path,
                 backend_class: Callable[[str], type[Backend]] = get_backend_class,
                 export: Callable[[nn.Module, Path, int, int], Path] = export_onnx_module) -> None:
        here = machine_class(budget.device)
        if here != budget.machine:
            raise BadInputError(f"latency budget measured on machine class {budget.machine!r} cannot be cut on "
                                f"{here!r}: a latency cut only holds where it was measured")
        self.budget = budget
        self.work_dir = work_dir
        self._cls = backend_class(budget.backend)
        self._export = export
        reason = self._cls.probe(budget.device)  # type: ignore[arg-type]
        if reason:
            raise BadInputError(f"cannot cut for {budget.backend} on {budget.device}: {reason}")
        rng = np.random.default_rng(0)
        # Latency of these networks does not depend on pixel values (NMS is not in the graph).
        self._images = rng.random((budget.batch, 3, budget.imgsz, budget.imgsz), dtype=np.float32)
        self._reference = self._runner(reference, "reference")

    def _runner(self, model: nn.Module, name: str) -> Callable[[], None]:
        folder = self.work_dir / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        weights = folder / "model.pt"
        torch.save({"model": copy.deepcopy(model).float().eval()}, weights)
        onnx = self._export(model, folder, self.budget.imgsz, self.budget.batch) if self._cls.needs_onnx else None
        request = BackendRequest(weights=weights, onnx=onnx, device=self.budget.device,  # type: ignore[arg-type]
                                 precision=self.budget.precision, batch=self.budget.batch,  # type: ignore[arg-type]
                                 imgsz=self.budget.imgsz, threads=self.budget.threads)
        try:
            run = self._cls(request).runner(self._images)
        except BackendUnavailable as e:
            raise BadInputError(f"cannot cut for {self.budget.backend} on {self.budget.device}: {e}") from None
        time_rounds(run, WARMUP_CALLS, 0)
        return run

    @property
    def reference_call(self) -> Callable[[], None]:
        """One call of the reference (unpruned) network as the backend runs it."""
        return self._reference

    def ratio(self, model: nn.Module, rounds: int, batch_rounds: int | None = None) -> LatencyRatio:
        """``model``'s latency over the reference's, from ``rounds`` ABBA rounds fixed in advance.

        Args:
            batch_rounds: ``None``: the sign-test interval (independent rounds); else the batch-means
                interval over batches of this many consecutive rounds (see :func:`paired_speedup`).
        """
        candidate = self._runner(model, "candidate")
        return LatencyRatio.of(paired_speedup(*abba_rounds(self._reference, candidate, rounds),
                                              batch_rounds=batch_rounds))


def match_latency(
    prune_at: Callable[[float], nn.Module], measure: Callable[[nn.Module], LatencyRatio], target: float,
    steps: int, low: float = 0.3,
) -> tuple[nn.Module, float, LatencyRatio, list[dict[str, Any]]]:
    """Bisect a FLOPs target until the pruned network's measured latency ratio meets ``target``.

    The largest FLOPs target (to ``(1 - low) / 2**steps``) whose measured ratio is ≤ ``target``:
    FLOPs-constrained pruning at the same measured speed as a latency-cut variant. ``steps`` is
    fixed in advance; a FLOPs target the method cannot reach counts as "too low".

    Returns:
        (model, FLOPs target, its measured ratio, one record per step).

    Raises:
        BadInputError: when no FLOPs target tried meets the latency target.
    """
    lo, hi = low, 1.0
    best: tuple[nn.Module, float, LatencyRatio] | None = None
    history: list[dict[str, Any]] = []
    flops = min(max(target, low), 1.0)  # a first guess: a FLOPs cut as deep as the latency cut
    for _ in range(steps):
        try:
            model = prune_at(flops)
        except BadInputError as e:
            history.append({"flops_target": flops, "error": str(e)})
            lo, flops = flops, (flops + hi) / 2
            continue
        measured = measure(model)
        history.append({"flops_target": round(flops, 4), "latency_ratio": round(measured.ratio, 4),
                        "ci": [round(measured.ratio_low, 4), round(measured.ratio_high, 4)]})
        log.info("FLOPs target %.4f: latency ratio %s", flops, measured.describe())
        if measured.ratio <= target:
            if best is None or flops > best[1]:
                best = (model, flops, measured)
            lo = flops
        else:
            hi = flops
        flops = (lo + hi) / 2
    if best is None:
        raise BadInputError(f"no FLOPs target in [{low:g}, 1) met latency target {target:g} in {steps} steps: "
                            f"{history}")
    return best[0], best[1], best[2], history
