"""Machine facts for saved runs: static versions/hardware, and volatile GPU state per benchmark."""

from __future__ import annotations

import logging
import platform
from typing import Any

from fastnas_bench.spec import package_version

log = logging.getLogger(__name__)

_VERSIONED = ("torch", "torchvision", "ultralytics", "nvidia-modelopt", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt")


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
            "cpu_model": platform.processor() or platform.machine(),
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


def machine_class(info: dict[str, Any]) -> str:
    """A key for results comparable with each other: GPU + driver major + runtimes, or CPU + cores."""
    fb = info.get("fastnas_bench", {})
    versions = fb.get("versions", {})
    if fb.get("gpu_name"):
        parts = [fb["gpu_name"], f"drv{str(fb.get('driver', '0')).split('.')[0]}",
                 f"trt{versions.get('tensorrt')}", f"ort{versions.get('onnxruntime-gpu')}"]
    else:
        parts = [str(info.get("cpu", {}).get("brand_raw") or fb.get("cpu_model", "cpu")),
                 f"{info.get('cpu', {}).get('count', '?')}cores", f"ort{versions.get('onnxruntime')}"]
    return "-".join("".join(c if c.isalnum() or c in ".-" else "_" for c in p) for p in parts)
