"""Installed package versions, and the named sets of packages that shape each kind of result.

Every cache key and every stored run names the versions it depends on; the sets live here, once,
so a key and the run that records it cannot disagree about what matters.
"""

from __future__ import annotations

from importlib import metadata

#: What a built variant depends on (part of every variant's cache key).
BUILD = ("torch", "ultralytics", "nvidia-modelopt")
#: What writes an ONNX export (part of every export's key).
EXPORT = ("torch", "ultralytics", "onnx", "onnxslim")
#: What converts an ONNX export to OpenVINO IR (part of every IR's key).
OPENVINO_IR = ("openvino",)
#: What a latency table's timings depend on (part of its key).
LATENCY_TABLE = ("torch", "onnxruntime", "ultralytics")
#: What shapes a measurement: stored with every run and in pytest-benchmark's machine info.
MEASUREMENT = ("torch", "torchvision", "ultralytics", "nvidia-modelopt", "onnx", "onnxruntime", "onnxruntime-gpu",
               "tensorrt", "openvino")


def package_version(name: str) -> str:
    """Installed version of ``name`` or ``"absent"``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def versions_of(names: tuple[str, ...]) -> dict[str, str]:
    """``{name: version}`` of every package in ``names`` (``"absent"`` where not installed)."""
    return {name: package_version(name) for name in names}


def run_versions() -> dict[str, str]:
    """Versions of the installed packages that shape a measurement, this one's included."""
    return {p: v for p, v in versions_of(("fastnas-bench", *MEASUREMENT)).items() if v != "absent"}
