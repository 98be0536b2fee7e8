"""Pruning methods: one module each, registered by name."""

from __future__ import annotations

from fastnas_bench.methods.base import PruneContext, PruneMethod, get_method, register

__all__ = ["PruneContext", "PruneMethod", "get_method", "register"]
