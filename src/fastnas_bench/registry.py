"""Plug-in registries found from module names: one module per member, imported on first use.

A registry lists its members from the module files of its package without importing them, so
option parsing and ``--help`` stay light (no torch); a member's module is imported when its class
is first asked for, and registers itself with :meth:`ModuleRegistry.register`. Modules named
``base`` or ``registry`` and anything private (``_lib``) are not members.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)

_NOT_MEMBERS = frozenset({"base", "registry"})


class ModuleRegistry(Generic[T]):
    """Members of one package, by name (``torch_compile.py`` is ``torch-compile``).

    Args:
        package: Dotted name of the package holding one module per member.
        folder: Its directory.
        kind: What a member is, for error messages (``backend``, ``pruning method``).
    """

    def __init__(self, package: str, folder: Path, kind: str) -> None:
        self.package = package
        self.kind = kind
        self.names: tuple[str, ...] = tuple(sorted(
            m.name.replace("_", "-") for m in pkgutil.iter_modules([str(folder)])
            if m.name not in _NOT_MEMBERS and not m.name.startswith("_")))
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator adding a member under ``name`` (set as the class's ``name``)."""

        def wrap(cls: T) -> T:
            cls.name = name  # type: ignore[attr-defined]  # every member class declares `name`
            self._classes[name] = cls
            return cls

        return wrap

    def get(self, name: str) -> T:
        """The member ``name``; imports its module on first use.

        Raises:
            KeyError: for a name that is not a member.
        """
        if name not in self.names:
            raise KeyError(f"unknown {self.kind} {name!r}; expected one of {', '.join(self.names)}")
        if name not in self._classes:
            importlib.import_module(f"{self.package}.{name.replace('-', '_')}")
        return self._classes[name]
