"""FastNAS structured pruning with ``modelopt.torch.prune`` (mode ``fastnas``).

The baseline is re-classed as :class:`~fastnas_bench.traceable.TraceableDetectionModel` so the
tracer sees the real graph, converted to a search space (Detect head frozen), and searched under a
FLOPs constraint. The score of a candidate is Ultralytics' own validation mAP50-95 on the search
split (carved from train, never the reported val split); modelopt recalibrates BatchNorm statistics
per candidate from a queue of 50 training batches. The search checkpoint keeps the sensitivity map, so other FLOPs targets for the same
baseline reuse it without new score calls.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn
from ultralytics.nn.tasks import DetectionModel

from fastnas_bench import progress
from fastnas_bench.compat.modelopt import (
    SEARCH_CHECKPOINT_FILE,
    is_dynamic,
    is_unreachable_constraint_error,
    read_sensitivity_map,
    recalibrate_batchnorm,
)
from fastnas_bench.compat.ultralytics import map50_95
from fastnas_bench.errors import BadInputError
from fastnas_bench.methods._lib.latency_match import prune_to_latency
from fastnas_bench.methods._lib.search_space import search_space_config
from fastnas_bench.methods.base import PruneContext, PruneMethod
from fastnas_bench.methods.registry import register
from fastnas_bench.traceable import make_traceable
from fastnas_bench.variants.spec import VariantSpec
from fastnas_bench.yolo.models import REPORT_IMGSZ, model_gflops

log = logging.getLogger(__name__)

# Every candidate's BatchNorm statistics are recomputed before it is scored (``recalibrate_batchnorm``)
# from these batches: 12 of 8 are one pass over the generated dataset's 96 training images. They are
# letterboxed without augmentation, so a second pass would repeat the same images and add nothing to
# the momentum-free average. (Left to itself, modelopt recalibrates only from a queue of 50 batches,
# i.e. 4 passes here at 4x the cost; with a shorter queue it silently scores stale statistics.)
CALIB_BATCHES = 12
# BatchNorm statistics averaged over batches keep only within-batch variance: with 2 images a batch
# they came out far too small and a 0.21-mAP model scored 0.02 after recalibration. 8 restores it.
CALIB_BATCH_SIZE = 8
# Tightenings of the modelopt constraint allowed before giving up on the reported target.
CONSTRAINT_ATTEMPTS = 4
# Below this source mAP50-95 the candidates' score differences are noise.
MIN_USEFUL_SCORE = 0.05
# modelopt's own cut-off for "this choice costs nothing" in its sensitivity map.
NO_LOSS = 1e-5
# A FastNAS result this far below its FLOPs target is worth a warning (see ``lossless_choices``).
UNDERSHOOT_WARN = 0.05
# FLOPs target of the search that makes a sensitivity map when none exists (any target makes the
# same map; this is the reference experiment's).
MAP_SEARCH_FLOPS_TARGET = 0.66


class _UnfusedView(nn.Module):
    """Validator-facing view of a search-space model.

    Ultralytics' AutoBackend calls ``fuse()`` on anything that has it, which folds BatchNorm into
    the convolutions and destroys the search space. This view exposes what the validator reads
    (``stride``, ``names``) but no ``fuse``.
    """

    def __init__(self, model: DetectionModel) -> None:
        super().__init__()
        self.inner = model
        self.stride = model.stride
        self.names = model.names

    def forward(self, x: torch.Tensor, **_: Any) -> Any:
        return self.inner(x)


def _calibration_batches(ctx: PruneContext, count: int) -> list[torch.Tensor]:
    """``count`` letterboxed training batches (cycled if the split is small)."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(ctx.data_yaml))
    cfg = get_cfg(overrides={"imgsz": ctx.spec.imgsz, "data": str(ctx.data_yaml), "seed": ctx.spec.seed})
    dataset = build_yolo_dataset(cfg, data["train"], CALIB_BATCH_SIZE, data, mode="val")  # type: ignore[arg-type]
    loader = build_dataloader(dataset, CALIB_BATCH_SIZE, workers=0, shuffle=False)
    batches: list[torch.Tensor] = []
    while len(batches) < count:
        for batch in loader:
            batches.append(batch["img"].float().div_(255).to(ctx.device))
            if len(batches) == count:
                break
    return batches


class _MapScore:
    """FastNAS score: mAP50-95 on the search split (the select YAML's val) from one reused validator."""

    def __init__(self, ctx: PruneContext) -> None:
        from ultralytics.models.yolo.detect import DetectionValidator

        self.validator = DetectionValidator(
            save_dir=ctx.work_dir / "search-val",
            args={
                "data": str(ctx.data_yaml),
                "imgsz": ctx.spec.imgsz,
                "batch": 16,
                "split": "val",
                "device": ctx.device,
                "plots": False,
                "verbose": False,
            },
        )

    def __call__(self, model: nn.Module) -> float:
        return map50_95(self.validator(model=_UnfusedView(model)))  # type: ignore[arg-type]


class _Recalibrated:
    """A score of the candidate with its own BatchNorm statistics, not those of the last one calibrated."""

    def __init__(self, score: Callable[[nn.Module], float], batches: list[torch.Tensor]) -> None:
        self.score = score
        self.batches = batches

    def __call__(self, model: nn.Module) -> float:
        recalibrate_batchnorm(model, self.batches)
        return self.score(model)


class _CountedScore:
    """Counts and reports score calls, and keeps the unpruned network's score (modelopt's first call)."""

    def __init__(self, score: Callable[[nn.Module], float]) -> None:
        self.score = score
        self.calls = 0
        self.unpruned: float | None = None

    def __call__(self, model: nn.Module) -> float:
        self.calls += 1
        progress.step("FastNAS: score call", self.calls)
        value = float(self.score(model))
        if self.calls == 1:
            self.unpruned = value
        return value


@register("fastnas")
class FastNAS(PruneMethod):
    """modelopt FastNAS under a FLOPs constraint, scored by mAP50-95 on the search split."""

    version = 6  # 6: every candidate recalibrated explicitly before its score, one pass of the training split
    budget = "either"

    def __init__(self, score: Callable[[PruneContext], Callable[[nn.Module], float]] | None = None,
                 calib_batches: int = CALIB_BATCHES) -> None:
        """FastNAS with a score and a BatchNorm calibration budget.

        Args:
            score: Makes the score function from the context (default: mAP50-95 on the search
                split). Higher is better; the unit tests hand in a cheap one.
            calib_batches: BatchNorm calibration batches per candidate.
        """
        super().__init__()
        self._make_score = score or _MapScore
        self.calib_batches = calib_batches

    def prune(self, model: DetectionModel, ctx: PruneContext) -> DetectionModel:
        spec = ctx.spec
        calibration = _calibration_batches(ctx, self.calib_batches)
        score = _CountedScore(_Recalibrated(self._make_score(ctx), calibration))
        if spec.latency is not None:
            pruned, notes = prune_to_latency(
                lambda target: self._prune_to_flops(model, ctx, target, score, calibration), model, ctx, self.notes)
            self.notes.update(notes)
        else:
            assert spec.flops_target is not None  # guaranteed by VariantSpec
            pruned = self._prune_to_flops(model, ctx, spec.flops_target, score, calibration)
        self.notes.update(score_calls=score.calls, source_map50_95=score.unpruned)
        log.info("FastNAS search made %d score calls", score.calls)
        if score.unpruned is not None and score.unpruned < MIN_USEFUL_SCORE:
            # Sensitivities of a network that detects nothing are noise: the widths FastNAS picks
            # then say nothing about pruning. Say so loudly rather than let a table look normal.
            log.warning("the source scores mAP50-95 %.4f; the FastNAS ranking is meaningless below %.2f "
                        "(train the source longer)", score.unpruned, MIN_USEFUL_SCORE)
        return pruned

    def _prune_to_flops(self, model: DetectionModel, ctx: PruneContext, flops_target: float, score: _CountedScore,
                        calibration: list) -> DetectionModel:
        spec = ctx.spec
        source_gflops = model_gflops(model)
        # modelopt constrains FLOPs with its own counter; the suite reports (and asserts) them with
        # Ultralytics' counter, which weighs a few ops differently (a 0.50 target read 0.503). Tighten
        # the constraint until the reported ratio meets the target. The search checkpoint keeps the
        # sensitivity map, so a retry costs a binary search, not new score calls.
        constraint = flops_target
        for attempt in range(1, CONSTRAINT_ATTEMPTS + 1):
            pruned = self._search(model, ctx, constraint, score, calibration, flops_target)
            ratio = model_gflops(pruned) / source_gflops
            if ratio <= flops_target:
                break
            log.info("FastNAS attempt %d: reported FLOPs ratio %.4f > target %.4f; tightening", attempt, ratio, flops_target)
            constraint *= flops_target / ratio * 0.998
        else:
            raise BadInputError(
                f"FastNAS could not reach FLOPs target {flops_target:g} for {spec.model} with channel divisor "
                f"{spec.channel_divisor}: {CONSTRAINT_ATTEMPTS} tightened searches ended at ratio {ratio:.4f}"
            )
        self.notes.update(modelopt_constraint=constraint)
        free = lossless_choices(search_checkpoint(ctx, self.calib_batches))
        if free is not None:
            self.notes["lossless_choices"] = list(free)
            if ratio < flops_target - UNDERSHOOT_WARN:
                # FastNAS bisects a loss threshold; every choice that scored no loss is taken at the
                # lowest threshold, so no target above that subnet's FLOPs can be approached.
                log.warning("FastNAS reached FLOPs ratio %.3f for target %.2f: %d of %d pruning choices scored no "
                            "loss, so its smallest step already prunes that far (a finer score, e.g. more "
                            "validation images, would resolve it)", ratio, flops_target, *free)
        return pruned

    def _search(
        self, source: DetectionModel, ctx: PruneContext, constraint: float, score: _CountedScore, calibration: list,
        flops_target: float,
    ) -> DetectionModel:
        import modelopt.torch.nas as mtn
        import modelopt.torch.prune as mtp

        model = make_traceable(copy.deepcopy(source)).float().to(ctx.device)
        config = search_space_config(model, ctx.spec.channel_divisor)
        checkpoint = search_checkpoint(ctx, self.calib_batches)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        # FLOPs are constrained at the resolution they are reported at; scores use the search data.
        dummy_input = torch.zeros(1, 3, REPORT_IMGSZ, REPORT_IMGSZ, device=ctx.device)
        # The checkpoint is shared by every FLOPs target of this source; one search at a time.
        with FileLock(str(checkpoint) + ".lock"), _quiet_ultralytics(), _unreachable_as_bad_input(ctx.spec, flops_target):
            pruned, _ = mtp.prune(
                model=model,
                mode=[("fastnas", config)],
                constraints={"flops": f"{constraint * 100:.4f}%"},
                dummy_input=dummy_input,
                config={
                    "data_loader": calibration,
                    "collect_func": lambda batch: batch,
                    "max_iter_data_loader": self.calib_batches,
                    "score_func": score,
                    "checkpoint": str(checkpoint),
                    "verbose": False,
                },
            )
        pruned = mtn.export(pruned) if is_dynamic(pruned) else pruned
        return pruned.cpu()


@contextlib.contextmanager
def _unreachable_as_bad_input(spec: VariantSpec, flops_target: float):  # type: ignore[no-untyped-def]
    """modelopt's "constraints cannot be satisfied" (a 40-line table) as a one-line error naming the values."""
    try:
        yield
    except ValueError as e:
        if not is_unreachable_constraint_error(e):
            raise
        raise BadInputError(
            f"FLOPs target {flops_target:g} is out of reach for {spec.model} with channel divisor "
            f"{spec.channel_divisor}: the narrowest subnet FastNAS may pick is above it (try a smaller divisor)"
        ) from None


def lossless_choices(checkpoint: Path) -> tuple[int, int] | None:
    """(pruning choices that scored no loss, all pruning choices) from the search's sensitivity map.

    ``None`` where the checkpoint holds no map (another modelopt layout).
    """
    sensitivity = read_sensitivity_map(checkpoint)
    if sensitivity is None:
        return None
    # The full width of each hparam always reads 0; only the narrower choices say something.
    narrower = [v for choices in sensitivity.values() for c, v in choices.items() if c != max(choices)]
    return sum(1 for v in narrower if float(v) < NO_LOSS), len(narrower)


def sensitivity_map(model: DetectionModel, ctx: PruneContext, calib_batches: int = CALIB_BATCHES,
                    score: Callable[[PruneContext], Callable[[nn.Module], float]] | None = None,
                    ) -> dict[str, dict[int, float]]:
    """FastNAS's sensitivity map of ``model``: hparam → width → score lost with only it narrowed.

    Read from the search checkpoint every FastNAS variant of this source shares; where no search
    has run yet, one FastNAS search (at the FLOPs target below, which does not change the map)
    makes it. So a method built on the map costs no score calls beyond FastNAS's own.
    """
    from dataclasses import replace

    checkpoint = search_checkpoint(ctx, calib_batches)
    if not _has_map(checkpoint):
        progress.report("no FastNAS sensitivity map for this source yet: running the FastNAS search once")
        spec = replace(ctx.spec, method="fastnas", latency=None, flops_target=MAP_SEARCH_FLOPS_TARGET)
        try:
            FastNAS(score=score, calib_batches=calib_batches).prune(model, replace(ctx, spec=spec))
        except BadInputError:
            # A target out of reach fails the subnet, not necessarily the map: use the map if it was stored.
            if not _has_map(checkpoint):
                raise
    stored = read_sensitivity_map(checkpoint)
    if stored is None:
        # The search ran but left no map where modelopt 0.47 keeps it: another modelopt layout.
        raise RuntimeError(f"the FastNAS search checkpoint {checkpoint} holds no sensitivity map")
    return {name: {int(c): max(0.0, float(v)) for c, v in choices.items()} for name, choices in stored.items()}


def _has_map(checkpoint: Path) -> bool:
    return bool(read_sensitivity_map(checkpoint))


@contextlib.contextmanager
def _quiet_ultralytics():  # type: ignore[no-untyped-def]
    """Silence the per-candidate validator chatter (hundreds of calls) for the search's duration."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def search_checkpoint(ctx: PruneContext, calib_batches: int) -> Path:
    """The search checkpoint all FLOPs targets of one source share.

    Keyed by the source weights' checksum, so a rebuilt source never meets a stale sensitivity map,
    and by what else changes the scores: divisor, image size and BatchNorm calibration.
    """
    # "r": each candidate recalibrated before its score (maps made before were scored on stale statistics).
    calib = f"calib{calib_batches}x{CALIB_BATCH_SIZE}r"
    name = f"fastnas-{ctx.source_sha256[:16]}-div{ctx.spec.channel_divisor}-{ctx.spec.imgsz}px-{calib}"
    return ctx.cache_root / "search" / name / SEARCH_CHECKPOINT_FILE
