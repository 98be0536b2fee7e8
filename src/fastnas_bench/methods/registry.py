"""The pruning-method registry: every module of this package is one method (see :mod:`fastnas_bench.registry`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastnas_bench.registry import ModuleRegistry

if TYPE_CHECKING:
    from fastnas_bench.methods.base import PruneMethod

_REGISTRY: ModuleRegistry[type[PruneMethod]] = ModuleRegistry("fastnas_bench.methods", Path(__file__).parent,
                                                              "pruning method")

#: Every pruning method. Adding a method = adding its module.
METHOD_NAMES: tuple[str, ...] = _REGISTRY.names
register = _REGISTRY.register
get_method_class = _REGISTRY.get


def get_method(name: str) -> PruneMethod:
    """A fresh instance of the registered method ``name``."""
    return get_method_class(name)()
