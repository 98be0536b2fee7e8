"""Machine facts for saved runs: static versions/hardware, and volatile GPU state per benchmark."""

from __future__ import annotations

import logging
import platform
import re
from pathlib import Path
from typing import Any

from fastnas_bench.spec import package_version

log = logging.getLogger(__name__)

_VERSIONED = ("torch", "torchvision", "ultralytics", "nvidia-modelopt", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt")


def run_versions() -> dict[str, str]:
    """Versions of the packages that shape a measurement, stored with every baseline run."""
    return {p: package_version(p) for p in ("fastnas-bench",) + _VERSIONED if package_version(p) != "absent"}


def _nvml() -> Any | None:
    """Initialised pynvml module, or ``None`` where NVML (driver) is absent."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception as e:  # pynvml raises its own NVMLError family and OSError for a missing lib
        log.debug("NVML unavailable: %s", e)
        return None


def static_machine_info(device: str) -> dict[str, Any]:
    """Versions and hardware identity that do not change during a run (for ``machine_info``)."""
    import torch

    info: dict[str, Any] = {
        "fastnas_bench": {
            "versions": {p: package_version(p) for p in _VERSIONED},
            "device": device,
            "cpu_model": cpu_model(),
            "cuda_runtime": torch.version.cuda,
        }
    }
    nvml = _nvml() if device == "cuda" else None
    if nvml is not None:
        handle = nvml.nvmlDeviceGetHandleByIndex(0)
        info["fastnas_bench"].update(
            gpu_name=nvml.nvmlDeviceGetName(handle),
            gpu_uuid=nvml.nvmlDeviceGetUUID(handle),
            driver=nvml.nvmlSystemGetDriverVersion(),
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def gpu_state() -> dict[str, Any] | None:
    """Clocks, temperature, power and throttle reasons of GPU 0 now; ``None`` without NVML."""
    nvml = _nvml()
    if nvml is None:
        return None
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    return {
        "sm_clock_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
        "mem_clock_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
        "temperature_c": nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        "power_w": nvml.nvmlDeviceGetPowerUsage(handle) / 1000,
        "throttle_reasons": int(nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)),
    }


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), or what ``platform`` knows elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_class(device: str) -> str:
    """A key for results comparable with each other.

    GPU name + driver major + TensorRT and ORT-GPU versions on CUDA; CPU model + usable cores + ORT
    version on CPU. Runs from different classes are never compared.
    """
    from fastnas_bench.settings import cpu_threads

    versions = {p: package_version(p) for p in _VERSIONED}
    nvml = _nvml() if device == "cuda" else None
    if nvml is not None:
        handle = nvml.nvmlDeviceGetHandleByIndex(0)
        driver_major = str(nvml.nvmlSystemGetDriverVersion()).split(".")[0]
        parts = [str(nvml.nvmlDeviceGetName(handle)), f"drv{driver_major}",
                 f"trt{versions['tensorrt']}", f"ort{versions['onnxruntime-gpu']}"]
    else:
        parts = [cpu_model(), f"{cpu_threads()}cores", f"ort{versions['onnxruntime']}"]
    return "-".join(re.sub(r"[^A-Za-z0-9.]+", "_", p).strip("_") for p in parts)
