"""The pruning-method interface and its registry.

A method turns a trained baseline DetectionModel into a smaller plain ``nn.Module`` (no modelopt
dynamic modules left) under a FLOPs target. Fine-tuning, metrics and caching are the pipeline's
job, so a method is only the structural change itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

# Light at import: the spec validates method names from here, and option parsing reads them.
if TYPE_CHECKING:
    from torch import nn
    from ultralytics.nn.tasks import DetectionModel

    from fastnas_bench.spec import VariantSpec

_REGISTRY: dict[str, type[PruneMethod]] = {}
_M = TypeVar("_M", bound="type[PruneMethod]")
# Modules of this package that hold no method.
_HELPERS = frozenset({"base", "latency_match", "search_space"})


def _discover() -> tuple[str, ...]:
    """Every pruning method: one module each in this package (``fastnas_latency.py`` is
    ``fastnas-latency``), found without importing them."""
    return tuple(sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                        if m.name not in _HELPERS and not m.name.startswith("_")))


#: Every pruning method. Adding a method = adding its module.
METHOD_NAMES: tuple[str, ...] = _discover()


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


def register(name: str):  # type: ignore[no-untyped-def]
    """Class decorator adding a method to the registry under ``name``."""

    def wrap(cls: _M) -> _M:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def get_method_class(name: str) -> type[PruneMethod]:
    """The registered method ``name`` (its module is imported on first use).

    Raises:
        KeyError: for a name that is not a method.
    """
    if name not in METHOD_NAMES:
        raise KeyError(f"unknown pruning method {name!r}; expected one of {', '.join(METHOD_NAMES)}")
    if name not in _REGISTRY:
        importlib.import_module(f"fastnas_bench.methods.{name.replace('-', '_')}")
    return _REGISTRY[name]


def get_method(name: str) -> PruneMethod:
    """A fresh instance of the registered method ``name``."""
    return get_method_class(name)()
