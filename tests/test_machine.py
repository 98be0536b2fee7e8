"""GPU facts through NVML, against a fake pynvml: the right GPU, missing fields, shutdown, class."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from fastnas_bench import host as machine


class _NotSupported(Exception):
    pass


def _fake_nvml(shutdowns: list[int]) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")
    nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM, nvml.NVML_TEMPERATURE_GPU = 0, 1, 0
    gpus = {"GPU-uuid-0": "gpu0", "GPU-uuid-3": "gpu3"}
    nvml.nvmlInit = lambda: None
    nvml.nvmlShutdown = lambda: shutdowns.append(1)
    nvml.nvmlDeviceGetHandleByUUID = lambda uuid: gpus[uuid]
    nvml.nvmlDeviceGetHandleByIndex = lambda i: "gpu0"
    nvml.nvmlDeviceGetClockInfo = lambda h, kind: {"gpu0": 1980, "gpu3": 1410}[h] if kind == 0 else 2619
    nvml.nvmlDeviceGetTemperature = lambda h, kind: 41
    nvml.nvmlDeviceGetUUID = lambda h: f"GPU-uuid-{h[-1]}"
    nvml.nvmlSystemGetDriverVersion = lambda: "580.65.06"

    def power(h: str) -> int:
        raise _NotSupported("power readings not supported on this board")

    nvml.nvmlDeviceGetPowerUsage = power
    nvml.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 4
    return nvml


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """CUDA_VISIBLE_DEVICES=3: torch's cuda:0 is the machine's GPU 3."""
    shutdowns: list[int] = []
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(shutdowns))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="uuid-3"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "NVIDIA H100 80GB HBM3")
    return shutdowns


def test_gpu_state_reads_this_process_gpu_and_tolerates_missing_fields(fake_gpu: list[int]) -> None:
    state = machine.gpu_state()
    assert state == {"sm_clock_mhz": 1410, "mem_clock_mhz": 2619, "temperature_c": 41, "power_w": None,
                     "throttle_reasons": 4}
    assert fake_gpu == [1]  # NVML shut down after reading


def test_cuda_runs_get_a_gpu_class_even_without_nvml(fake_gpu: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    assert machine.machine_class("cuda") == "NVIDIA_H100_80GB_HBM3-drv580"  # hardware only, no versions
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no driver library at all
    assert machine.gpu_state() is None
    cls = machine.machine_class("cuda")
    assert cls == "NVIDIA_H100_80GB_HBM3-drvunknown" and "cores" not in cls
    cpu = machine.machine_class("cpu")
    assert "cores" in cpu and cpu.endswith(machine.cpu_isa()) and "ort" not in cpu


def test_the_cpu_class_names_the_widest_vector_extension(tmp_path) -> None:
    for flags, isa in (("fpu sse4_2 avx2 avx512f amx_tile", "amx"), ("sse4_2 avx2 avx512f avx512_vnni", "avx512"),
                       ("sse4_2 avx2", "avx2"), ("sse4_2", "base")):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert machine.cpu_isa(info) == isa
    assert machine.cpu_isa(tmp_path / "absent") == "base"
