"""The timing/assertion harness, driven by a fake backend with scripted latencies."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastnas_bench.backends import Backend, BackendUnavailable, OutputMismatch
from fastnas_bench.build import Variant
from fastnas_bench.checks import check_agreement, check_drop, check_flops_ratio, check_speedup, efficiency, speedup
from fastnas_bench.measure import Measurer
from fastnas_bench.settings import BackendTarget, resolve_settings
from fastnas_bench.spec import VariantSpec
from fastnas_bench.timing import summarize_seconds

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
        out = self.images[:, :1].astype(np.float32)
        return out + 1.0 if self.wrong_output else out


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
    settings = replace(settings, profile=replace(settings.profile, rounds=7, warmup_rounds=2, bench_imgsz=32))

    return Measurer(
        settings,
        variant=_ScriptedVariant,
        onnx=lambda v, imgsz, batch: Path("unused.onnx"),
        reference=lambda weights, images: images[:, :1].astype(np.float64),
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
    assert 1.4 < speedup(base.summary, pruned.summary) < 2.1
    assert check_speedup("fake", base.summary, pruned.summary, 1.3) is None
    message = check_speedup("fake bs1", pruned.summary, base.summary, 1.3)
    assert message and "fake bs1: speedup 0." in message and "required 1.300x" in message
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


def test_wrong_outputs_fail_before_timing() -> None:
    class Wrong(FakeBackend):
        wrong_output = True

    with pytest.raises(OutputMismatch, match="relative max error"):
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
    assert check_drop("mAP50-95", 0.8, 0.75, 0.06) is None
    msg = check_drop("recall", 0.9, 0.7, 0.05)
    assert msg and "recall drop 0.2000 > allowed 0.0500" in msg
    assert check_agreement("mAP50-95", 0.5, 0.51, 0.02, "ort") is None
    assert "differs" in (check_agreement("mAP50-95", 0.5, 0.6, 0.02, "ort") or "")
    # The reference: -34% FLOPs bought -19.6% latency.
    assert efficiency(8.66 / 10.77, 52.0 / 79.3) == pytest.approx(0.57, abs=0.01)


def test_interleaved_pair_gives_the_scripted_speedup() -> None:
    base, pruned = map(summarize_seconds, _measurer().interleaved_samples(BackendTarget("fake", "fp32"), ("baseline", "fastnas66"), 1))
    assert base.n_samples == pruned.n_samples == 7
    assert 1.4 < speedup(base, pruned) < 2.1


def test_interleaved_rounds_settle_each_variant_before_timing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A timed call never directly follows the other variant's call (its runtime threads may still spin)."""
    from fastnas_bench import measure

    m = _measurer()
    calls: list[str] = []
    monkeypatch.setattr(m, "_prepare", lambda target, name, batch: (lambda: calls.append(name), 0.0, {}))
    timed: list[str] = []
    real_time_rounds = measure.time_rounds

    def spy(fn, warmup_rounds, rounds):  # type: ignore[no-untyped-def]
        out = real_time_rounds(fn, warmup_rounds, rounds)
        timed.extend([calls[-1]] * rounds)
        return out

    monkeypatch.setattr(measure, "time_rounds", spy)
    m.interleaved_samples(BackendTarget("fake", "fp32"), ("baseline", "fastnas66"), 1)
    rounds = calls[2 * 2:]  # after 2 warmup calls per variant
    assert rounds[:4] == ["baseline", "baseline", "fastnas66", "fastnas66"]
    assert len(rounds) == 7 * 2 * (1 + measure.SETTLE_CALLS) and timed.count("baseline") == timed.count("fastnas66") == 7


def test_confirmed_pair_times_a_second_block_only_when_the_first_fails() -> None:
    from fastnas_bench.measure import confirmed_pair

    blocks = iter([([0.10] * 5, [0.095] * 5), ([0.10] * 5, [0.070] * 5)])  # 1.05x, then 1.43x
    faster = lambda b, p: speedup(b, p) >= 1.10  # noqa: E731
    base, pruned, n = confirmed_pair(lambda: next(blocks), faster)
    assert n == 2 and base.n_samples == pruned.n_samples == 10
    assert speedup(base, pruned) == pytest.approx(0.10 / 0.0825)  # median of the pooled rounds

    blocks = iter([([0.10] * 5, [0.070] * 5)])
    assert confirmed_pair(lambda: next(blocks), faster)[2] == 1  # a passing block is not timed again

    blocks = iter([([0.10] * 5, [0.099] * 5), ([0.10] * 5, [0.098] * 5)])
    base, pruned, n = confirmed_pair(lambda: next(blocks), faster)
    assert n == 2 and speedup(base, pruned) < 1.10  # a real lack of speed survives the second block
