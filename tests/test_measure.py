"""The timing/assertion harness, driven by a fake backend with scripted latencies."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastnas_bench.backends.base import Backend, BackendTarget, BackendUnavailable, OutputMismatch
from fastnas_bench.config.settings import resolve_settings
from fastnas_bench.measure import measurer, timing
from fastnas_bench.measure.measurer import Measurer
from fastnas_bench.measure.stats import efficiency
from fastnas_bench.measure.timing import summarize_seconds
from fastnas_bench.variants.spec import VariantSpec
from fastnas_bench.variants.variant import Variant
from fastnas_bench.verdicts.checks import check_flops_ratio, check_relative_drop

# Scripted per-call latency in seconds, by variant weights path.
LATENCY_S = {"baseline": 0.004, "fastnas66": 0.002}


class FakeBackend(Backend):
    name = "fake"
    wrong_output = False
    unavailable: str | None = None

    @classmethod
    def probe(cls, device: Any) -> str | None:
        return cls.unavailable

    def _load(self) -> None:
        self.delay_s = LATENCY_S[Path(self.request.weights).name]
        self.calls = 0

    def _set_input(self, images: np.ndarray) -> None:
        self.images = images

    def _run(self) -> None:
        self.calls += 1
        time.sleep(self.delay_s)

    def _output(self) -> np.ndarray:
        out = _detector_output(self.images)
        if self.wrong_output:
            out[:, 4:] += 0.05  # every class score off by 0.05
        return out


def _detector_output(images: np.ndarray) -> np.ndarray:
    """A (batch, 4 + 5 classes, 16 anchors) output that depends on the input, as a detector's does."""
    out = np.zeros((images.shape[0], 9, 16), dtype=np.float32)
    out[:, :4] = 100 * images.reshape(images.shape[0], -1)[:, :64].reshape(-1, 4, 16)
    out[:, 4:] = images.reshape(images.shape[0], -1)[:, 64:144].reshape(-1, 5, 16) / 4
    return out


class _ScriptedVariant(Variant):
    """A variant whose weights path is its name, which keys the scripted latency table."""

    def __init__(self, name: str) -> None:
        super().__init__(spec=VariantSpec(), path=Path("x"), meta={"key": name})
        object.__setattr__(self, "_name", name)

    @property
    def weights(self) -> Path:  # type: ignore[override]
        return Path(self._name)  # type: ignore[attr-defined]


def _measurer(backend_cls: type[Backend] = FakeBackend) -> Measurer:
    settings = resolve_settings({})
    settings = replace(settings, profile=replace(settings.profile, rounds=7, warmup_rounds=2, speedup_rounds=8,
                                                          bench_imgsz=32))

    return Measurer(
        replace(settings.measure_plan, speedup_batch_rounds=2),
        variant=_ScriptedVariant,
        onnx=lambda v, imgsz, batch: Path("unused.onnx"),
        reference=lambda weights, images: _detector_output(images),
        cache=None,
        backend_class=lambda name: backend_cls,
    )


def test_summary_percentiles_and_iqr() -> None:
    s = summarize_seconds([0.001 * i for i in range(1, 101)])
    assert s.n_samples == 100
    assert s.latency_p50_ms == pytest.approx(50.5)
    assert s.latency_p90_ms == pytest.approx(90.1)
    assert s.latency_iqr_ms == pytest.approx(49.5)
    with pytest.raises(ValueError, match="non-positive"):
        summarize_seconds([0.001, 0.0])
    with pytest.raises(ValueError, match="no latency samples"):
        summarize_seconds([])


def test_scripted_latencies_give_the_scripted_speedup() -> None:
    m = _measurer()
    target = BackendTarget("fake", "fp32")
    base = m.measure(target, "baseline", 1)
    pruned = m.measure(target, "fastnas66", 1)
    assert base.summary.n_samples == 7 and len(base.samples_s) == 7
    assert base.summary.latency_p50_ms >= 4.0 and pruned.summary.latency_p50_ms >= 2.0
    assert 1.4 < base.summary.latency_p50_ms / pruned.summary.latency_p50_ms < 2.1
    # A second request without a benchmark fixture reuses the measurement.
    assert m.measure(target, "baseline", 1) is base


def test_measure_goes_through_benchmark_pedantic() -> None:
    class FakeBenchmark:
        def __init__(self) -> None:
            self.kwargs: dict[str, Any] = {}
            self.stats = type("S", (), {"stats": type("T", (), {"data": []})()})()

        def pedantic(self, fn, rounds: int, warmup_rounds: int, iterations: int) -> None:
            self.kwargs = {"rounds": rounds, "warmup_rounds": warmup_rounds, "iterations": iterations}
            for _ in range(rounds):
                start = time.perf_counter()
                fn()
                self.stats.stats.data.append(time.perf_counter() - start)

    bench = FakeBenchmark()
    record = _measurer().measure(BackendTarget("fake", "fp32"), "fastnas66", 1, benchmark=bench)
    assert bench.kwargs == {"rounds": 7, "warmup_rounds": 2, "iterations": 1}
    assert record.samples_s == tuple(bench.stats.stats.data)


def test_one_slot_spans_calibrations_rounds_and_gpu_state_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(timing.TIMING_LOCK_ENV, str(tmp_path / "timing.lock"))
    m = _measurer()
    m._prepare(BackendTarget("fake", "fp32"), "fastnas66", 1)  # loading and the output check take no slot
    takes: list[str] = []
    held: list[tuple[str, bool]] = []
    real_acquire = timing._acquire_file_lock

    def acquire(lock: Any, path: Path) -> None:
        takes.append(str(path))
        real_acquire(lock, path)

    def calibration_ms(self: Measurer) -> float:
        held.append(("calibration", timing.timing_slot_held()))
        return 1.0

    def gpu_state() -> dict[str, Any]:
        held.append(("gpu state", timing.timing_slot_held()))
        return {}

    monkeypatch.setattr(timing, "_acquire_file_lock", acquire)
    monkeypatch.setattr(Measurer, "calibration_ms", calibration_ms)
    monkeypatch.setattr(measurer, "gpu_state", gpu_state)
    # The GPU state is read on CUDA only; the fake backend runs anywhere.
    monkeypatch.setattr(m, "plan", replace(m.plan, device="cuda"))
    m.measure(BackendTarget("fake", "fp32"), "fastnas66", 1)
    assert held == [("calibration", True), ("gpu state", True), ("gpu state", True), ("calibration", True)]
    assert len(takes) == 1, "the slot was let go between the calibrations and the rounds"
    assert not timing.timing_slot_held()


def test_wrong_outputs_fail_before_timing() -> None:
    class Wrong(FakeBackend):
        wrong_output = True

    with pytest.raises(OutputMismatch, match="fake fp32: class-score error 0.05"):
        _measurer(Wrong).measure(BackendTarget("fake", "fp32"), "baseline", 1)


def test_unavailable_backend_names_the_reason() -> None:
    class Missing(FakeBackend):
        unavailable = "libfake.so not found"

    with pytest.raises(BackendUnavailable, match="libfake.so not found"):
        _measurer(Missing).measure(BackendTarget("fake", "fp32"), "baseline", 1)


def test_threshold_checks_show_measured_and_bound() -> None:
    assert check_flops_ratio(8.0, 5.2, 0.66) is None
    msg = check_flops_ratio(8.0, 6.0, 0.66)
    assert msg and "0.7500 > target 0.6600" in msg
    assert check_relative_drop("AP_small", 0.110, 0.080, 0.30) is None
    msg = check_relative_drop("AP_small", 0.110, 0.060, 0.30)
    assert msg and "AP_small fell 45.5% > allowed 30%" in msg
    assert check_relative_drop("AP_small", 0.0, 0.0, 0.30) is None
    # The reference: -34% FLOPs bought -19.6% latency.
    assert efficiency(8.66 / 10.77, 52.0 / 79.3) == pytest.approx(0.57, abs=0.01)


def test_paired_speedup_gives_the_scripted_speedup_with_an_interval() -> None:
    estimate = _measurer().paired_speedup(BackendTarget("fake", "fp32"), "fastnas66", 1)
    assert estimate.rounds == 8 and estimate.ci_low <= estimate.speedup <= estimate.ci_high
    assert 1.4 < estimate.speedup < 2.1


def _record_calls(m: Measurer, monkeypatch: pytest.MonkeyPatch, latency_s: dict[str, float]) -> list[str]:
    calls: list[str] = []

    def prepare(target, name, batch):  # type: ignore[no-untyped-def]
        def run() -> None:
            calls.append(name)
            time.sleep(latency_s[name])

        return run, 0.0, {}

    monkeypatch.setattr(m, "_prepare", prepare)
    return calls


def test_rounds_are_abba_and_their_number_never_depends_on_the_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = []
    for pruned_s in (0.0005, 0.004):  # a clear pass and a clear fail at any bound above 1
        m = _measurer()
        calls = _record_calls(m, monkeypatch, {"baseline": 0.002, "fastnas66": pruned_s})
        m.paired_speedup(BackendTarget("fake", "fp32"), "fastnas66", 1)
        timed = calls[2 * 2:]  # after 2 warm-up calls per variant
        assert timed[:8] == ["baseline", "fastnas66", "fastnas66", "baseline"] * 2
        counts.append(len(timed))
    assert counts == [8 * 4, 8 * 4]


def test_speedup_is_measured_once_per_session(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _measurer()
    calls = _record_calls(m, monkeypatch, {"baseline": 0.0, "fastnas66": 0.0})
    first = m.paired_speedup(BackendTarget("fake", "fp32"), "fastnas66", 1)
    n = len(calls)
    assert m.paired_speedup(BackendTarget("fake", "fp32"), "fastnas66", 1) is first and len(calls) == n


def test_injected_slowdown_names_backend_and_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastnas_bench.errors import BadInputError
    from fastnas_bench.measure.inject import INJECT_SLOWDOWN_ENV, injected_slowdown, parse_injected_slowdowns
    from fastnas_bench.measure.measurer import _slowed

    monkeypatch.setenv(INJECT_SLOWDOWN_ENV, "onnxruntime:fastnas66=10%, pytorch:*=25%")
    assert injected_slowdown("onnxruntime", "fastnas66") == pytest.approx(0.10)
    assert injected_slowdown("onnxruntime", "baseline") == 0.0
    assert injected_slowdown("pytorch", "baseline") == pytest.approx(0.25)
    monkeypatch.delenv(INJECT_SLOWDOWN_ENV)
    assert injected_slowdown("pytorch", "baseline") == 0.0
    for bad in ("onnxruntime=10%", "ort:fastnas66=10%", "onnxruntime:fastnas66=10", "pytorch:*=-5%", "pytorch:*=x%",
                "C/onnxruntime:*=10%"):
        with pytest.raises(BadInputError, match=re.escape(f"item {bad!r} must look like backend:variant=10%")):
            parse_injected_slowdowns(bad)
    # An item for one A/B side slows that side's worker only, never the in-process benchmarks.
    monkeypatch.setenv(INJECT_SLOWDOWN_ENV, "B/onnxruntime:*=15%")
    assert injected_slowdown("onnxruntime", "fastnas66", side="B") == pytest.approx(0.15)
    assert injected_slowdown("onnxruntime", "fastnas66", side="A") == 0.0
    assert injected_slowdown("onnxruntime", "fastnas66") == 0.0
    # The slowdown burns CPU for its share of the call: the process works, it does not sleep.
    slowed = _slowed(lambda: time.sleep(0.05), 0.5)
    wall, cpu = time.perf_counter(), time.process_time()
    slowed()
    assert time.perf_counter() - wall >= 0.075
    # 25 ms of burning: CPU time, not sleep. A loaded machine gives the burn only its share of a core
    # (13 ms of 25 with a two-thread build running beside it), so ask for 40%.
    assert time.process_time() - cpu >= 0.01


def test_a_backend_named_on_a_gpu_run_fails_instead_of_skipping(pytester: pytest.Pytester) -> None:
    from fastnas_bench.pytest_plugin.outcomes import unavailable

    settings = resolve_settings({})
    with pytest.raises(pytest.skip.Exception, match="no CUDA provider"):
        unavailable(settings, "onnxruntime", "no CUDA provider")
    named = replace(settings, required_backends=("onnxruntime",))
    with pytest.raises(pytest.fail.Exception, match="--backends onnxruntime was requested but cannot run: no CUDA"):
        unavailable(named, "onnxruntime", "no CUDA provider")
    # Only --gpu runs require what they name: a CPU run's --backends narrows, it does not demand.
    assert resolve_settings({"backends": ("onnxruntime",)}).required_backends == ()


def test_both_onnxruntime_wheels_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastnas_bench.backends import onnxruntime as ort_backend

    monkeypatch.setattr(ort_backend, "package_version", lambda name: "1.32.0")
    reason = ort_backend.OnnxRuntimeBackend.probe("cuda")
    assert reason and "both onnxruntime and onnxruntime-gpu are installed" in reason
    monkeypatch.setattr(ort_backend, "package_version", lambda name: "absent" if name == "onnxruntime-gpu" else "1.32.0")
    assert ort_backend.mixed_install() is None


def test_benchmark_disable_runs_the_output_check_untimed() -> None:
    """`--benchmark-disable` (and xdist) hand test_latency a disabled fixture whose stats are None:
    the output check still runs and can fail; nothing is timed or summarized."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_latency", Path(__file__).resolve().parents[1]
                                                  / "benchmarks" / "test_latency.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]

    class DisabledBenchmark:
        disabled, stats, group = True, None, ""
        extra_info: dict[str, Any] = {}  # noqa: RUF012 - a stand-in

        def pedantic(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("timed although disabled")

    m = _measurer()
    settings = resolve_settings({})
    module.test_latency(DisabledBenchmark(), m, settings, _ScriptedVariant, BackendTarget("fake", "fp32"), "fastnas66", 1)
    assert not m.measurements and DisabledBenchmark.extra_info == {}

    class Wrong(FakeBackend):
        wrong_output = True

    with pytest.raises(OutputMismatch, match="class-score error"):
        module.test_latency(DisabledBenchmark(), _measurer(Wrong), settings, _ScriptedVariant,
                            BackendTarget("fake", "fp32"), "fastnas66", 1)
