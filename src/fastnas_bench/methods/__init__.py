"""Pruning methods: one module each, registered by name."""

from __future__ import annotations

from fastnas_bench.methods.base import METHOD_NAMES, PruneContext, PruneMethod, get_method, get_method_class, register

__all__ = ["METHOD_NAMES", "PruneContext", "PruneMethod", "get_method", "get_method_class", "register"]
