"""Inference backends, one module each, registered by name."""

from __future__ import annotations

from fastnas_bench.backends.base import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailable,
    OutputMismatch,
    default_backends,
    get_backend_class,
    register,
)

__all__ = ["BACKEND_NAMES", "Backend", "BackendUnavailable", "OutputMismatch", "default_backends", "get_backend_class",
           "register"]
