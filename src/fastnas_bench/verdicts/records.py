"""What the suite stores and reports, defined once: test keys, speedup, latency and accuracy records.

The benchmarks write these records, the regression gates read them back from the stored baselines,
the plugin saves them with each pytest-benchmark run and the report reads them from saved runs.
Each is a frozen dataclass with one JSON form (``to_json`` / ``from_json``); the JSON field names
are those of the stored baselines and saved runs, so files written before stay readable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from fastnas_bench.backends.base import BackendTarget
from fastnas_bench.backends.registry import BACKEND_NAMES
from fastnas_bench.measure.stats import PairedSpeedup, efficiency, log_half_width, median_interval
from fastnas_bench.measure.timing import LatencySummary

_R = TypeVar("_R", bound="_Record")


class _Record:
    """JSON form shared by the records: every dataclass field, by name."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_json(cls: type[_R], doc: dict[str, Any]) -> _R:
        """The record in ``doc``; fields ``doc`` lacks (files of older versions) take their defaults."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in doc.items() if k in names})


@dataclass(frozen=True)
class TestKey:
    """A parametrized test's id: ``test_speedup[tensorrt-fp16-fastnas66-bs8]``.

    Attributes:
        test: The test function's name.
        target: The backend target id (``onnxruntime``, ``tensorrt-fp16``).
        variant: The variant name (``fastnas66``, ``fastnas-latency@onnxruntime-lat75``).
        batch: Batch size.
    """

    __test__: ClassVar[bool] = False  # a record, not a test class

    test: str
    target: str
    variant: str
    batch: int

    def format(self) -> str:
        return f"{self.test}[{self.target}-{self.variant}-bs{self.batch}]"

    @classmethod
    def parse(cls, text: str, backends: tuple[str, ...] = BACKEND_NAMES) -> TestKey | None:
        """The key of ``text``, or ``None`` for an id not of this shape.

        Targets and variant names both may hold '-', so the target is the longest target id of
        ``backends`` that the inner id starts with.
        """
        test, _, inner = text.partition("[")
        rest, _, batch = inner.rstrip("]").rpartition("-")
        if not batch.startswith("bs") or not batch[2:].isdigit():
            return None
        target = next((t for t in BackendTarget.ids(backends) if rest.startswith(t + "-")), None)
        if target is None:
            return None
        return cls(test, target, rest[len(target) + 1:], int(batch[2:]))


@dataclass(frozen=True)
class SpeedupRecord(_Record):
    """One paired speedup of a variant over the baseline, as judged and stored.

    Attributes:
        speedup: Baseline/variant latency from ABBA rounds (see :func:`fastnas_bench.measure.stats.paired_speedup`).
        ci_low, ci_high: Its interval (see :func:`fastnas_bench.measure.stats.paired_speedup`).
        rounds: ABBA rounds.
        confidence: Coverage of the interval.
        bound: The bound the test judged it against.
        outcome: ``pass`` / ``fail`` / ``undecided``.
        baseline_p50_ms, pruned_p50_ms: Median call of each side in those rounds (context).
        flops_ratio: Variant/baseline GFLOPs.
        efficiency: (1 - latency ratio) / (1 - FLOPs ratio); ``None`` where no FLOPs were removed.
        variant_keys: Cache keys of the variants measured.
        versions: Package versions of the run.
    """

    speedup: float
    ci_low: float | None = None
    ci_high: float | None = None
    rounds: int | None = None
    confidence: float | None = None
    bound: float = float("nan")
    outcome: str | None = None
    baseline_p50_ms: float = float("nan")
    pruned_p50_ms: float = float("nan")
    flops_ratio: float = float("nan")
    efficiency: float | None = None
    variant_keys: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, estimate: PairedSpeedup, *, flops_ratio: float, variant_keys: dict[str, str],
           versions: dict[str, str], bound: float = float("nan"), outcome: str | None = None) -> SpeedupRecord:
        return cls(
            speedup=estimate.speedup, ci_low=estimate.ci_low, ci_high=estimate.ci_high, rounds=estimate.rounds,
            confidence=estimate.confidence, bound=bound, outcome=outcome, baseline_p50_ms=estimate.baseline_p50_ms,
            pruned_p50_ms=estimate.variant_p50_ms, flops_ratio=flops_ratio,
            efficiency=efficiency(1 / estimate.speedup, flops_ratio),
            variant_keys=variant_keys, versions=versions,
        )

    @property
    def half_width_log(self) -> float:
        """Half the interval's width in log units."""
        if self.ci_low is None or self.ci_high is None:
            raise ValueError("this speedup was stored without its interval")
        return log_half_width(self.ci_low, self.ci_high)


@dataclass(frozen=True)
class LatencyRecord(_Record):
    """One variant's median latency, in ms and in units of the calibration workload timed beside it.

    Attributes:
        latency_p50_ms: Median call in milliseconds.
        calibration_ms: The calibration workload's median in the same minutes (``None``: not timed).
        norm_p50: Median latency in calibration units, with its interval ``norm_ci_low``..``norm_ci_high``.
        variant_keys: Cache key of the variant measured.
        versions: Package versions of the run.
    """

    latency_p50_ms: float
    calibration_ms: float | None
    norm_p50: float
    norm_ci_low: float
    norm_ci_high: float
    variant_keys: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, samples_ms: list[float], calibration_ms: float | None, latency_p50_ms: float, *,
           variant_keys: dict[str, str], versions: dict[str, str]) -> LatencyRecord:
        """From per-call samples: the calibrated median with its distribution-free interval."""
        unit = calibration_ms or 1.0
        median, low, high, _ = median_interval([x / unit for x in samples_ms])
        return cls(latency_p50_ms, calibration_ms, median, low, high, variant_keys, versions)

    @property
    def half_width_log(self) -> float:
        return log_half_width(self.norm_ci_low, self.norm_ci_high)


#: The stored record type of each test whose runs the regression gates read.
STORED_RECORDS: dict[str, type[SpeedupRecord] | type[LatencyRecord]] = {
    "test_speedup": SpeedupRecord, "test_unstructured_gives_no_speedup": SpeedupRecord, "test_latency": LatencyRecord,
}


@dataclass(frozen=True)
class LatencyInfo(LatencySummary, _Record):
    """What ``test_latency`` saves with each pytest-benchmark run (its ``extra_info``), and the report reads:
    the latency summary's fields (flat, as saved runs hold them) and what was measured.

    Latencies in milliseconds; ``*_samples_ms`` per timed call. Fields from ``speedup_vs_baseline`` on
    are present only where measured (a baseline has no speedup, a CPU run no GPU time).
    """

    backend: str
    precision: str
    variant: str
    method: str
    batch: int
    imgsz: int
    params: int
    gflops: float
    flops_ratio: float
    map50_95: float
    recall: float
    ap_small: float | None
    latency_samples_ms: list[float]
    flops_target: float | None = None
    channel_divisor: int | None = None
    #: For a variant cut to a latency budget: the budget's label (``onnxruntime-lat75``) and target.
    cut_for: str | None = None
    latency_target: float | None = None
    output_box_err_px: float | None = None
    output_score_err: float | None = None
    output_detections_matched: int | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    speedup_vs_baseline: float | None = None
    efficiency: float | None = None
    gpu_time_p50_ms: float | None = None
    gpu_time_iqr_ms: float | None = None
    gpu_time_samples_ms: list[float] | None = None
    gpu_state_before: dict[str, Any] | None = None
    gpu_state_after: dict[str, Any] | None = None

    _ONLY_WHERE_MEASURED: ClassVar[frozenset[str]] = frozenset({
        "speedup_vs_baseline", "efficiency", "gpu_time_p50_ms", "gpu_time_iqr_ms", "gpu_time_samples_ms",
        "gpu_state_before", "gpu_state_after"})

    @property
    def target(self) -> str:
        return BackendTarget(self.backend, self.precision).id

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not (v is None and k in self._ONLY_WHERE_MEASURED)}
