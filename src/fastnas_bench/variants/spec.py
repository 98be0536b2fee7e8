"""Frozen variant specs: what one variant is, validated on construction.

A :class:`VariantSpec` fully describes how one model variant is built. It is immutable and
validated on construction; its :meth:`VariantSpec.key` (content hash plus the versions of the
packages that shape the artifact) names the variant's cache entry.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from fastnas_bench.errors import BadInputError
from fastnas_bench.keys import digest
from fastnas_bench.methods.registry import METHOD_NAMES, get_method_class
from fastnas_bench.variants.data import GENERATED_PREFIX, GeneratedDataConfig
from fastnas_bench.versions import BUILD, versions_of

#: ``baseline`` (no pruning) and every pruning method.
METHODS: tuple[str, ...] = ("baseline", *METHOD_NAMES)
SCALES: tuple[str, ...] = ("n", "s", "m", "l", "x")

#: Bumped whenever the pipeline changes what an entry holds; part of every cache key.
PIPELINE_VERSION = 3


def parse_flops_target(value: str | float) -> float:
    """Parse a FLOPs target given as a fraction (``0.66``) or percentage (``66%``).

    Raises:
        BadInputError: unless the result lies strictly between 0 and 1.
    """
    text = str(value).strip()
    try:
        target = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise BadInputError(f"FLOPs target {value!r} is not a number") from None
    if not (0.0 < target < 1.0) or math.isnan(target):
        raise BadInputError(f"FLOPs target {value!r} must lie strictly between 0 and 1")
    return target


def parse_latency_target(value: str | float) -> float:
    """Parse a latency budget (pruned/baseline latency) given as ``0.75`` or ``75%``.

    Raises:
        BadInputError: unless the result lies strictly between 0 and 1.
    """
    try:
        return parse_flops_target(value)
    except BadInputError as e:
        raise BadInputError(str(e).replace("FLOPs target", "latency target")) from None


def parse_model(value: str) -> str:
    """Normalise a model name (``n``, ``yolov8m``, ``yolov8m.pt``) to ``yolov8<scale>``.

    Raises:
        BadInputError: for an unknown scale.
    """
    match = re.fullmatch(r"(?:yolov8)?([a-z])(?:\.(?:pt|yaml))?", value.strip().lower())
    if not match or match.group(1) not in SCALES:
        raise BadInputError(f"unknown YOLOv8 model scale {value!r}; expected one of {', '.join(SCALES)}")
    return f"yolov8{match.group(1)}"


@dataclass(frozen=True)
class LatencyBudget:
    """A latency target on one backend and machine: what a latency-cut variant is cut for.

    The cut is only as portable as the measurement behind it, so everything that changes the
    measured latency is part of the budget (and of the variant's cache key).

    Attributes:
        target: Upper bound on pruned/baseline latency on ``backend`` (0 < target < 1).
        backend: Backend name the latency is measured on (``onnxruntime``, ``pytorch``).
        precision: ``fp32`` or ``fp16``.
        imgsz: Input side in pixels of the measurement (the benchmark's, not training's).
        batch: Batch size of the measurement.
        threads: CPU threads of the measurement.
        device: ``cpu`` or ``cuda``.
        machine: Machine class (:func:`fastnas_bench.host.machine_class`) it was measured on.
    """

    target: float
    backend: str
    machine: str
    precision: str = "fp32"
    imgsz: int = 640
    batch: int = 1
    threads: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", parse_latency_target(self.target))

    @property
    def label(self) -> str:
        """``onnxruntime-lat75``: the backend it was cut for and the budget in percent."""
        return f"{self.backend}{'' if self.precision == 'fp32' else '-' + self.precision}-lat{round(self.target * 100)}"


@dataclass(frozen=True)
class VariantSpec:
    """Everything that determines one built variant.

    Attributes:
        model: ``yolov8<scale>``.
        weights: Pretrained weights: a local ``.pt`` path, or an Ultralytics asset name such as
            ``yolov8m.pt`` that Ultralytics downloads when online. ``None`` trains the source
            from the model YAML for ``epochs``.
        data: A dataset YAML (path or Ultralytics name like ``coco128.yaml``), or ``generated``
            for the deterministic offline dataset.
        imgsz: Train/validation/search image size in pixels.
        epochs: Training epochs of the source model: from the YAML when ``weights`` is ``None``
            (must be ≥ 1), else on top of the weights (0 = use them as they are).
        batch: Training batch size.
        seed: Build seed: the fine-tune's (and a pruning method's calibration order). The source
            (pretrained weights, or the model trained from YAML that stands in for them) is one
            for every seed, trained with seed 0, as is the generated dataset: seeds measure how
            much a rebuild moves a variant, not a different starting point or test set.
        method: ``baseline`` or a pruning method name.
        flops_target: Upper bound on pruned/baseline FLOPs (pruning methods only).
        finetune_epochs: Fine-tuning epochs on top of the source model (after pruning, if any).
        channel_divisor: Channel-count granularity of the pruned widths.
        latency: Latency budget the variant is cut for, instead of ``flops_target`` (methods that
            take one: ``fastnas-latency`` always, ``fastnas``/``l2struct`` by bisecting their FLOPs
            target until the measured latency meets it).
    """

    model: str = "yolov8n"
    weights: str | None = None
    data: str = GENERATED_PREFIX
    imgsz: int = 160
    epochs: int = 60
    batch: int = 16
    seed: int = 0
    method: str = "baseline"
    flops_target: float | None = None
    finetune_epochs: int = 0
    channel_divisor: int = 32
    latency: LatencyBudget | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", parse_model(self.model))
        if self.method not in METHODS:
            raise BadInputError(f"unknown pruning method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.imgsz < 32 or self.imgsz % 32:
            raise BadInputError(f"imgsz {self.imgsz} must be a positive multiple of 32")
        for name in ("epochs", "batch", "finetune_epochs", "channel_divisor"):
            if getattr(self, name) < (0 if name in ("epochs", "finetune_epochs") else 1):
                raise BadInputError(f"{name} {getattr(self, name)} is out of range")
        if self.seed < 0:
            raise BadInputError(f"seed {self.seed} must be ≥ 0")
        if self.seed and self.method == "baseline" and self.finetune_epochs == 0:
            raise BadInputError(f"seed {self.seed}: the source is one for every seed; "
                                "a seeded baseline needs fine-tune epochs")
        if self.weights is None and self.epochs < 1:
            raise BadInputError("epochs must be ≥ 1 when training the baseline from YAML")
        if self.weights is not None and Path(self.weights).suffix != ".pt":
            raise BadInputError(f"weights {self.weights!r} must be a .pt file")
        if self.method == "baseline":
            if self.flops_target is not None or self.latency is not None:
                raise BadInputError("a baseline spec takes no flops_target or latency budget")
            return
        if self.flops_target is not None and self.latency is not None:
            raise BadInputError(f"method {self.method!r}: give a flops_target or a latency budget, not both")
        if self.latency is None and self.flops_target is None:
            raise BadInputError(f"method {self.method!r} needs a flops_target or a latency budget")
        # A method's class is imported (torch, modelopt) only for what a FLOPs spec cannot settle,
        # so the profiles below stay light to build.
        if self.latency is not None and get_method_class(self.method).budget == "flops":
            raise BadInputError(f"method {self.method!r} takes a flops_target, not a latency budget")
        if self.flops_target is not None:
            object.__setattr__(self, "flops_target", parse_flops_target(self.flops_target))

    @property
    def name(self) -> str:
        """Short label used in test ids: ``baseline``, ``fastnas66``, or for a latency-cut variant the
        backend it was cut for and its budget, ``fastnas-latency@onnxruntime-lat75``."""
        if self.latency is not None:
            return f"{self.method}@{self.latency.label}"
        if self.flops_target is None:
            return self.method
        return f"{self.method}{round(self.flops_target * 100)}"

    @property
    def method_version(self) -> int:
        """The method's :attr:`~fastnas_bench.methods.PruneMethod.version` (1 for the baseline)."""
        return 1 if self.method == "baseline" else get_method_class(self.method).version

    def source(self) -> VariantSpec:
        """The trained (or pretrained) unpruned model that pruning starts from."""
        # Pruning-only fields and the build seed are reset so every variant of one source shares its entry.
        return replace(self, method="baseline", flops_target=None, latency=None, finetune_epochs=0,
                       channel_divisor=VariantSpec.channel_divisor, seed=VariantSpec.seed)

    def baseline(self) -> VariantSpec:
        """The unpruned control: the source fine-tuned for the same epochs as the pruned variant.

        Giving both the same training budget keeps the accuracy comparison about pruning, not
        about one model having trained longer.
        """
        return replace(self.source(), finetune_epochs=self.finetune_epochs, seed=self.seed)

    def with_seed(self, seed: int) -> VariantSpec:
        """This variant built with another build seed (see ``seed``)."""
        return replace(self, seed=seed)

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form of the spec."""
        return asdict(self)

    def key(self) -> str:
        """Content hash of the spec and the versions of the packages that shape the artifact."""
        spec = self.to_dict()
        if spec["latency"] is None:
            del spec["latency"]  # added later: specs without one keep the keys they had
        blob = {"spec": spec, "pipeline": PIPELINE_VERSION, "versions": versions_of(BUILD),
                # The generated dataset's parameters (its val split grew from 32 to 512 images):
                # an entry holds its val figures, so another dataset is another entry.
                **({"dataset": GeneratedDataConfig().key()} if self.data == GENERATED_PREFIX else {}),
                # A method's first version adds nothing, so introducing a method keeps other keys stable.
                **({"method_version": version} if (version := self.method_version) > 1 else {})}
        return f"{self.model}-{self.name}-{digest(blob)}"
