"""pytest-benchmark internals: its session's decision to time nothing, a run's raw samples, its storage option."""

from __future__ import annotations

import json
from typing import Any

READ_FROM = {"pytest-benchmark": "5.3.1"}
# Instance attributes (``config._benchmarksession``, ``.disabled``, ``benchmark.stats.stats.data``) are
# checked on a real pytest-benchmark session in tests/test_compat.py.
RELIED_ON = (
    ("pytest_benchmark.session", "BenchmarkSession"),
    ("pytest_benchmark.stats", "Metadata"),
    ("pytest_benchmark.stats", "Stats"),
    ("pytest_benchmark.utils", "get_tag"),
    ("pytest_benchmark.utils", "safe_dumps"),
)


def timing_disabled(config: Any) -> bool:
    """Whether pytest-benchmark decided to time nothing (``--benchmark-disable``, or xdist workers)."""
    session = getattr(config, "_benchmarksession", None)
    return bool(session is not None and session.disabled)


def timed_samples_s(benchmark: Any) -> list[float]:
    """Per-round seconds of the last ``benchmark.pedantic`` run."""
    return list(benchmark.stats.stats.data)


def scope_file_storage(config: Any, folder: str) -> None:
    """Put ``file://`` storage one folder down (``<storage>/<folder>``); other storages are left alone."""
    storage = getattr(config.option, "benchmark_storage", None)
    if isinstance(storage, str) and storage.startswith("file://"):
        config.option.benchmark_storage = f"{storage.rstrip('/')}/{folder}"


def ensure_saved(config: Any) -> None:
    """Have pytest-benchmark save the run (``--benchmark-autosave``) unless it saves it already; call it before
    pytest-benchmark's own ``pytest_configure`` reads the options."""
    option = config.option
    if not (getattr(option, "benchmark_save", None) or getattr(option, "benchmark_autosave", None)):
        from pytest_benchmark.utils import get_tag

        # The option is ``store_const`` of ``get_tag()`` (plugin.py), and the value is the saved file's name
        # (``<counter>_<value>.json``, FileStorage.save): ``True`` would name it ``0001_True.json``.
        option.benchmark_autosave = get_tag()


def as_saved(output_json: dict[str, Any]) -> dict[str, Any]:
    """``output_json`` as pytest-benchmark writes it to its file: parameters it cannot encode (a test's
    dataclass parameters) become its ``UNSERIALIZABLE[...]`` strings, so a copy stored elsewhere reads the same."""
    from pytest_benchmark.utils import safe_dumps

    return dict(json.loads(safe_dumps(output_json)))
