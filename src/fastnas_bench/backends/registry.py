"""The backend registry: every module of this package is one backend (see :mod:`fastnas_bench.registry`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastnas_bench.registry import ModuleRegistry

if TYPE_CHECKING:
    from fastnas_bench.backends.base import Backend

_REGISTRY: ModuleRegistry[type[Backend]] = ModuleRegistry("fastnas_bench.backends", Path(__file__).parent, "backend")

#: Every backend, in the order tests are parametrized. Adding a backend = adding its module.
BACKEND_NAMES: tuple[str, ...] = _REGISTRY.names
register = _REGISTRY.register
get_backend_class = _REGISTRY.get


def default_backends(device: str) -> tuple[str, ...]:
    """Backends a run on ``device`` uses when --backends is not given."""
    return tuple(n for n in BACKEND_NAMES if device in get_backend_class(n).default_devices)


def layer_timing_backends(device: str) -> tuple[str, ...]:
    """Backends whose single layers a latency table can time on ``device`` (the ``times_layers`` capability)."""
    return tuple(n for n in BACKEND_NAMES if device in get_backend_class(n).times_layers)
