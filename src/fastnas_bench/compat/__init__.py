"""Adapters: every reach into a third-party library's private or undocumented names, one module per library.

Each module states the version it was read from (``READ_FROM``) and lists what it relies on in
``RELIED_ON`` as ``(importable module, attribute path)`` pairs; ``tests/test_compat.py`` checks every
pair against the installed version and fails loudly, naming the pair and both versions, when one is
gone. Code elsewhere in the package calls these adapters and never names such a private thing itself.
"""

from __future__ import annotations

import importlib
from functools import reduce


def missing(relied_on: tuple[tuple[str, str], ...]) -> list[str]:
    """The ``module:attribute.path`` entries of ``relied_on`` that the installed packages lack."""
    gone = []
    for module_name, path in relied_on:
        try:
            reduce(getattr, path.split("."), importlib.import_module(module_name))
        except (ImportError, AttributeError):
            gone.append(f"{module_name}:{path}")
    return gone
