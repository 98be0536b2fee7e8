"""On-disk artifact cache: atomic entries, cross-process build locks, checksum verification.

An entry is a directory ``<root>/<key>/`` holding artifacts and a ``meta.json`` whose ``files``
map records each artifact's SHA-256. Entries are built in a temporary sibling directory and
renamed into place, so a crash, Ctrl-C or failed build never leaves a half-written entry under the
final name. A :class:`filelock.FileLock` per key makes concurrent processes build an entry once;
the others wait and then read it. An entry whose files do not match their checksums is moved
aside with a warning and rebuilt, never silently used.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock
from platformdirs import user_cache_dir

from fastnas_bench.errors import BadInputError
from fastnas_bench.fsutil import atomic_directory
from fastnas_bench.keys import sha256_file

log = logging.getLogger(__name__)

CACHE_ENV = "FASTNAS_BENCH_CACHE"
META_NAME = "meta.json"

#: Builds an entry's artifacts into the given (empty, temporary) directory and returns the
#: metadata to store; the cache adds the ``files`` checksums.
Builder = Callable[[Path], dict[str, Any]]


def default_cache_root() -> Path:
    """``$FASTNAS_BENCH_CACHE`` if set, else the per-user cache directory."""
    return Path(os.environ.get(CACHE_ENV) or user_cache_dir("fastnas-bench"))


def _checksums(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != META_NAME
    }


class ArtifactCache:
    """A directory of content-addressed, checksummed build artifacts.

    Args:
        root: Cache directory; created if missing.

    Raises:
        BadInputError: if ``root`` cannot be created or written.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-")
            probe.close()
        except OSError as e:
            raise BadInputError(f"cache dir {self.root} is not writable: {e.strerror}") from None

    def path(self, key: str) -> Path:
        return self.root / key

    def lock(self, key: str) -> FileLock:
        """The cross-process lock guarding ``key``'s entry (and anything derived under it)."""
        return FileLock(str(self.root / f".{key}.lock"))

    def read(self, key: str) -> dict[str, Any] | None:
        """Metadata of a complete, intact entry; ``None`` if absent.

        A present but damaged entry (unreadable ``meta.json``, missing or altered files) is moved
        aside with a warning and reported as absent, so the caller rebuilds it.
        """
        entry = self.path(key)
        if not entry.exists():
            return None
        problem = self._verify(entry)
        if problem is None:
            return json.loads((entry / META_NAME).read_text())
        warnings.warn(f"cache entry {entry} is corrupt ({problem}); rebuilding it", stacklevel=2)
        self._discard(entry)
        return None

    def get_or_build(self, key: str, builder: Builder, *, rebuild: bool = False) -> dict[str, Any]:
        """Return the entry's metadata, building it first if it is absent, corrupt or ``rebuild``.

        Only one process builds a given key at a time; the others block on the lock and then
        read the finished entry.
        """
        with self.lock(key):
            if rebuild and self.path(key).exists():
                self._discard(self.path(key))
            meta = self.read(key)
            if meta is None:
                meta = self._build(key, builder)
            return meta

    def _build(self, key: str, builder: Builder) -> dict[str, Any]:
        with atomic_directory(self.path(key)) as tmp:
            started = time.perf_counter()
            meta = builder(tmp)
            meta["build_seconds"] = round(time.perf_counter() - started, 1)
            meta["key"] = key
            meta["files"] = _checksums(tmp)
            (tmp / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
        log.info("cached %s in %.1fs", key, meta["build_seconds"])
        return meta

    @staticmethod
    def _verify(entry: Path) -> str | None:
        try:
            meta = json.loads((entry / META_NAME).read_text())
            files: dict[str, str] = meta["files"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"unreadable {META_NAME}: {type(e).__name__}"
        for name, expected in files.items():
            path = entry / name
            if not path.is_file():
                return f"missing {name}"
            if sha256_file(path) != expected:
                return f"checksum mismatch in {name}"
        return None

    def _discard(self, entry: Path) -> None:
        # Rename first so the final name is free at once, even if the delete is slow or fails.
        graveyard = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.root))
        os.rename(entry, graveyard / entry.name)
        shutil.rmtree(graveyard, ignore_errors=True)


def ensure_cache_root(value: str | Path | None) -> ArtifactCache:
    """Open the cache at ``value`` or the default root; errors name the directory."""
    if value is not None and Path(value).exists() and not Path(value).is_dir():
        raise BadInputError(f"cache dir {value} exists and is not a directory")
    return ArtifactCache(Path(value) if value is not None else default_cache_root())

