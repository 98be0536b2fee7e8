"""On-disk artifact cache: atomic entries, cross-process build locks, checksum verification.

An entry is a directory ``<root>/<key>/`` holding artifacts and a ``meta.json`` whose ``files``
map records each artifact's SHA-256. Entries are built in a temporary sibling directory and
renamed into place, so a crash, Ctrl-C or failed build never leaves a half-written entry under the
final name. A :class:`filelock.FileLock` per key makes concurrent processes build an entry once;
the others wait and then read it. An entry whose files do not match their checksums is moved
aside with a warning and rebuilt, never silently used.

Opened at an fsspec URL (``s3://bucket/prefix``), the cache is a local read-through directory in front of a
shared store of immutable entries that runners fill and read in turn (:mod:`fastnas_bench.variants.remote`).
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

from fastnas_bench import progress
from fastnas_bench.errors import BadInputError
from fastnas_bench.fsutil import atomic_directory
from fastnas_bench.keys import digest, sha256_file
from fastnas_bench.variants.remote import META_NAME, RemoteStore, is_url

log = logging.getLogger(__name__)

CACHE_ENV = "FASTNAS_BENCH_CACHE"

#: Builds an entry's artifacts into the given (empty, temporary) directory and returns the
#: metadata to store; the cache adds the ``files`` checksums.
Builder = Callable[[Path], dict[str, Any]]


def default_cache_root() -> Path:
    """``$FASTNAS_BENCH_CACHE`` if set to a directory, else the per-user cache directory."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env and not is_url(env) else Path(user_cache_dir("fastnas-bench"))


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
        remote: A shared store ``root`` reads through: entries missing here are downloaded from it, or
            built once among its runners and published to it.

    Raises:
        BadInputError: if ``root`` cannot be created or written.
    """

    def __init__(self, root: Path, remote: RemoteStore | None = None) -> None:
        self.root = Path(root).expanduser()
        self.remote = remote
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
        message = f"cache entry {entry} is corrupt ({problem}); rebuilding it"
        warnings.warn(message, stacklevel=2)
        progress.report(message)  # the warning alone surfaces only in pytest's end-of-run summary
        self._discard(entry)
        return None

    def get_or_build(self, key: str, builder: Builder, *, rebuild: bool = False) -> dict[str, Any]:
        """Return the entry's metadata, building it first if it is absent, corrupt or ``rebuild``.

        Only one process builds a given key at a time; the others block on the lock and then
        read the finished entry. With a remote store, a missing entry is first looked for there.
        """
        with self.lock(key):
            if rebuild and self.path(key).exists():
                self._discard(self.path(key))
            meta = self.read(key)
            if meta is None and self.remote is not None:
                meta = self.remote.get_or_build(key, self.path(key), lambda: self._build(key, builder),
                                                rebuild=rebuild)
            elif meta is None:
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
    """Open the cache at ``value`` (a directory or an fsspec URL), else at ``$FASTNAS_BENCH_CACHE``, else the
    per-user cache directory; errors name the directory or URL.

    A URL's local read-through directory is ``<default root>/remote/<digest of the URL>``.
    """
    location = value if value is not None else os.environ.get(CACHE_ENV)
    if isinstance(location, str) and is_url(location):
        remote = RemoteStore.open(location)
        return ArtifactCache(default_cache_root() / "remote" / digest(remote.url), remote=remote)
    if value is not None and Path(value).exists() and not Path(value).is_dir():
        raise BadInputError(f"cache dir {value} exists and is not a directory")
    return ArtifactCache(Path(value) if value is not None else default_cache_root())

