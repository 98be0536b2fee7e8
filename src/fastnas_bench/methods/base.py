"""The pruning-method interface (the registry is :mod:`fastnas_bench.methods.registry`).

A method turns a trained baseline DetectionModel into a smaller plain ``nn.Module`` (no modelopt
dynamic modules left) under a FLOPs target. Fine-tuning, metrics and caching are the pipeline's
job, so a method is only the structural change itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

# Light at import: torch and Ultralytics are only named for the type checker.
if TYPE_CHECKING:
    from torch import nn
    from ultralytics.nn.tasks import DetectionModel

    from fastnas_bench.variants.spec import VariantSpec


@dataclass(frozen=True)
class PruneContext:
    """What a method may use besides the model.

    Attributes:
        spec: The pruned variant's spec (FLOPs target, divisor, imgsz, ...).
        data_yaml: Resolved dataset YAML for calibration and scoring.
        device: Torch device string.
        cache_root: Root of the artifact cache; a method keeps state it shares across variants
            (FastNAS's search checkpoint) below it.
        source_sha256: Content hash of the source checkpoint, so shared state never outlives it.
        work_dir: Scratch directory inside the entry being built (logs, validator output).
        match_flops_ratio: For rival methods, the FLOPs ratio FastNAS reached at the same target;
            a rival aims at it so the comparison is at equal FLOPs.
    """

    spec: VariantSpec
    data_yaml: Path
    device: str
    work_dir: Path
    cache_root: Path
    source_sha256: str
    match_flops_ratio: float | None = None


class PruneMethod(ABC):
    """Base class of pruning methods.

    Attributes:
        notes: Facts about the last ``prune`` call worth keeping in the variant's ``meta.json``.
    """

    name: str
    #: Bumped when the algorithm changes what it builds; part of its variants' cache keys.
    version: ClassVar[int] = 1
    #: Whether it changes shapes, so a dense backend should run the result faster.
    structured: ClassVar[bool] = True
    #: A rival aims at the FLOPs ratio FastNAS reached at the same target (equal-FLOPs comparison).
    matches_fastnas_flops: ClassVar[bool] = False
    #: What it prunes to: a FLOPs target, a latency budget, or either (a FLOPs method whose FLOPs
    #: target is bisected until the measured latency meets the budget).
    budget: ClassVar[Literal["flops", "latency", "either"]] = "flops"

    def __init__(self) -> None:
        self.notes: dict[str, object] = {}

    @abstractmethod
    def prune(self, model: DetectionModel, ctx: PruneContext) -> DetectionModel:
        """Return the pruned model (may modify ``model`` in place).

        The result must be a plain Ultralytics-compatible DetectionModel whose forward and
        ``fuse()`` work, so the trainer, validator and exporter accept it unchanged.
        """

    def constrain(self, model: nn.Module) -> None:
        """Re-impose the method's structure on ``model`` (after each optimizer step and on the
        final checkpoint). Structured methods change shapes, which training cannot undo: no-op.
        """
