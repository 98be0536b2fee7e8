"""What one frontier run measures: backends, sample size, rounds, image size, threads; validated once.

Torch-free, so the command line checks its options before loading anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastnas_bench.backends.registry import BACKEND_NAMES, get_backend_class
from fastnas_bench.compat.modelopt import SEARCH_CHECKPOINT_FILE
from fastnas_bench.errors import BadInputError

DEFAULT_BACKENDS: tuple[str, ...] = ("onnxruntime", "pytorch", "openvino")
DEFAULT_CONFIGS = 150
#: Consecutive ABBA rounds per batch of the batch-means interval (measure.stats.batch_interval): rounds
#: of a shared machine come in bursts, so an interval that took them as independent would be too narrow.
BATCH_ROUNDS = 5
#: ABBA rounds per (configuration, backend), fixed in advance: four batches. Enough to place a
#: configuration on the frontier, not to split two neighbours.
DEFAULT_ROUNDS = 20
#: Fewest rounds that give three batches, the fewest a t interval over batch medians is worth having.
MIN_ROUNDS = 3 * BATCH_ROUNDS
#: The project's reference machine class is a 2-core VM; a fixed count keeps runs of two hosts comparable.
DEFAULT_THREADS = 2
#: Batch of every measurement: the latency a single-image request sees.
BATCH = 1
#: The search space of this profile's pruned variants (its model, channel divisor and classes).
PROFILE = "cpu"


@dataclass(frozen=True)
class FrontierSettings:
    """One frontier run's measurement and sample, validated on construction.

    Attributes:
        backends: Backends timed (each on the CPU).
        configs: Width configurations sampled.
        rounds: ABBA rounds per (configuration, backend).
        seed: Seed of the random sampling.
        imgsz: Square input side in pixels.
        threads: CPU threads of every backend.
        sensitivity_map: A FastNAS search checkpoint of this search space (or the folder holding its
            ``fastnas_search.pth``) whose sensitivity map gives the FastNAS-like family; ``None`` leaves it out.
    """

    backends: tuple[str, ...] = DEFAULT_BACKENDS
    configs: int = DEFAULT_CONFIGS
    rounds: int = DEFAULT_ROUNDS
    seed: int = 0
    imgsz: int = 640
    threads: int = DEFAULT_THREADS
    sensitivity_map: Path | None = None

    def __post_init__(self) -> None:
        if not self.backends:
            raise BadInputError("backends: name one backend at least")
        unknown = [b for b in self.backends if b not in BACKEND_NAMES]
        if unknown:
            raise BadInputError(f"unknown backend(s) {unknown}; expected a subset of {', '.join(BACKEND_NAMES)}")
        off_cpu = [b for b in self.backends if "cpu" not in get_backend_class(b).devices]
        if off_cpu:
            raise BadInputError(f"backend(s) {off_cpu} do not run on the CPU, where the frontier is measured")
        if self.configs < 1:
            raise BadInputError(f"configs {self.configs} must be at least 1")
        if self.rounds < MIN_ROUNDS:
            raise BadInputError(f"rounds {self.rounds} must be at least {MIN_ROUNDS} (three batches of "
                                f"{BATCH_ROUNDS} for the interval)")
        if self.imgsz < 32 or self.imgsz % 32:
            raise BadInputError(f"imgsz {self.imgsz} must be a positive multiple of 32 (YOLOv8's largest stride)")
        if self.threads < 1:
            raise BadInputError(f"threads {self.threads} must be at least 1")
        if self.sensitivity_map is not None and not self.sensitivity_checkpoint().is_file():
            raise BadInputError(f"sensitivity map {self.sensitivity_map}: no such file (expected a FastNAS search "
                                f"checkpoint, {SEARCH_CHECKPOINT_FILE}, or the folder holding one)")

    def sensitivity_checkpoint(self) -> Path:
        """The search checkpoint :attr:`sensitivity_map` names (a folder names the checkpoint inside it)."""
        assert self.sensitivity_map is not None
        path = Path(self.sensitivity_map)
        return path / SEARCH_CHECKPOINT_FILE if path.is_dir() else path
