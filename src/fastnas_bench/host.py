"""Facts about this host: usable cores, CPU and GPU identity, the machine class results are keyed by,
and the volatile GPU state recorded around each measurement."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastnas_bench.errors import BadInputError
from fastnas_bench.versions import MEASUREMENT, versions_of

log = logging.getLogger(__name__)


def cpu_threads() -> int:
    """Cores this process may use (respects affinity masks and container limits)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def require_cuda() -> None:
    """A one-line error where a CUDA run was asked for and no usable GPU is there."""
    import torch

    if not torch.cuda.is_available():
        raise BadInputError("--gpu: no usable CUDA GPU (torch.cuda.is_available() is False)")


@contextlib.contextmanager
def _nvml_device() -> Iterator[tuple[Any, Any] | None]:
    """(pynvml, handle) of the GPU this process runs on, or ``None`` where NVML cannot tell.

    The GPU is found by the UUID torch reports for ``cuda:0``, so ``CUDA_VISIBLE_DEVICES=3``
    reads GPU 3, not the machine's first GPU. NVML is shut down on exit.
    """
    try:
        import pynvml
        import torch

        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001 - pynvml raises NVMLError subclasses, OSError for a missing lib
        log.debug("NVML unavailable: %s", e)
        yield None
        return
    try:
        try:
            uuid = getattr(torch.cuda.get_device_properties(0), "uuid", None)
            handle = (pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}") if uuid is not None
                      else pynvml.nvmlDeviceGetHandleByIndex(0))
        except Exception as e:  # noqa: BLE001 - see above
            log.debug("NVML cannot find this process's GPU: %s", e)
            handle = None
        yield (pynvml, handle) if handle is not None else None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _field(read: Callable[[], Any]) -> Any:
    """One NVML reading, or ``None`` where this GPU or driver does not support it (never a failure)."""
    try:
        value = read()
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return None
    return value.decode() if isinstance(value, bytes) else value


def static_machine_info(device: str) -> dict[str, Any]:
    """Versions and hardware identity that do not change during a run (for ``machine_info``)."""
    import torch

    info: dict[str, Any] = {
        "versions": versions_of(MEASUREMENT),
        "device": device,
        "cpu_model": cpu_model(),
        "cuda_runtime": torch.version.cuda,
    }
    if device == "cuda":
        info.update(gpu_name=torch.cuda.get_device_name(0), cudnn=torch.backends.cudnn.version())
        with _nvml_device() as nvml:
            if nvml is not None:
                lib, handle = nvml
                info.update(gpu_uuid=_field(lambda: lib.nvmlDeviceGetUUID(handle)),
                            driver=_field(lib.nvmlSystemGetDriverVersion))
    return {"fastnas_bench": info}


def gpu_state() -> dict[str, Any] | None:
    """Clocks, temperature, power and throttle reasons of this process's GPU now; ``None`` without
    NVML. Fields the GPU does not report are ``None``."""
    with _nvml_device() as nvml:
        if nvml is None:
            return None
        lib, h = nvml
        power_mw = _field(lambda: lib.nvmlDeviceGetPowerUsage(h))
        return {
            "sm_clock_mhz": _field(lambda: lib.nvmlDeviceGetClockInfo(h, lib.NVML_CLOCK_SM)),
            "mem_clock_mhz": _field(lambda: lib.nvmlDeviceGetClockInfo(h, lib.NVML_CLOCK_MEM)),
            "temperature_c": _field(lambda: lib.nvmlDeviceGetTemperature(h, lib.NVML_TEMPERATURE_GPU)),
            "power_w": power_mw / 1000 if power_mw is not None else None,
            "throttle_reasons": _field(lambda: int(lib.nvmlDeviceGetCurrentClocksEventReasons(h))),
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


def cpu_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The widest vector extension the CPU offers (``amx``, ``avx512``, ``avx2`` or ``base``): what the
    backends' kernels dispatch on, so two hosts of one CPU name but different extensions differ."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    for isa, flag in (("amx", "amx_tile"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return isa
    return "base"


def machine_class(device: str) -> str:
    """A key for results comparable with each other: the hardware only.

    GPU name + driver major on CUDA; CPU model + usable cores + widest vector extension on CPU.
    Package versions are not part of it: they are recorded with every run and named in every gate's
    message, so an upgrade is compared with the runs before it, not filed apart from them.
    """
    if device == "cuda":
        # Never a CPU class for a CUDA run: torch names the GPU even where NVML cannot.
        import torch

        driver = "unknown"
        with _nvml_device() as nvml:
            if nvml is not None:
                driver = str(_field(nvml[0].nvmlSystemGetDriverVersion) or "unknown")
        parts = [torch.cuda.get_device_name(0), f"drv{driver.split('.')[0]}"]
    else:
        parts = [cpu_model(), f"{cpu_threads()}cores", cpu_isa()]
    return "-".join(re.sub(r"[^A-Za-z0-9.]+", "_", p).strip("_") for p in parts)
