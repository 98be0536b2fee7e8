"""A cache shared through object storage: immutable entries, manifest written last, each built once.

A URL cache (``s3://bucket/prefix``, ``file:///mnt/shared``, ``memory://name``) is a local read-through
:class:`~fastnas_bench.variants.cache.ArtifactCache` in front of a :class:`RemoteStore`, laid out as::

    <url>/<key>/blobs/<sha256>   each artifact, named by its content
    <url>/<key>/meta.json        the entry's manifest (its local meta.json), written last, create-only
    <url>/<key>.lease            who builds <key> now, and for how long that claim holds

- Immutable: a manifest is created once (S3 ``If-None-Match: *``) and never replaced; a runner that loses
  the race keeps the winner's entry. Blobs are named by their SHA-256, so no upload, however late, can
  change the bytes a published manifest points at.
- Manifest last: a writer that dies mid-upload leaves blobs and no manifest, which no reader accepts.
- Verified: a download lands in a temporary directory, every file is checked against the manifest's
  SHA-256, and only then is it renamed into the local cache. A mismatch is reported (warning and
  progress line), the entry is built locally and the remote one is left as it is.
- Built once: the runner that creates ``<key>.lease`` builds and publishes; the others poll until the
  manifest appears, or take the lease over once it outlives its TTL (its holder died).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from fastnas_bench import progress
from fastnas_bench.errors import BadInputError
from fastnas_bench.fsurl import create_only, library_errors, one_line, open_url, probe
from fastnas_bench.fsutil import atomic_directory
from fastnas_bench.keys import sha256_file

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

#: An entry's manifest, local and remote: its metadata plus ``files``, each artifact's SHA-256.
META_NAME = "meta.json"
LEASE_TTL_ENV = "FASTNAS_BENCH_LEASE_TTL_S"
LEASE_POLL_ENV = "FASTNAS_BENCH_LEASE_POLL_S"
# Longer than the slowest build (a CPU fine-tune of a pruned variant takes under an hour): a live builder's
# lease must not expire under it, yet a dead one's must, within a working session.
DEFAULT_LEASE_TTL_S = 2 * 3600.0
# A manifest read is one small GET; every 10 s is nothing next to a build of minutes.
DEFAULT_POLL_S = 10.0
# A waiting runner says so at its first poll, then once a minute rather than at every poll.
WAIT_REPORT_EVERY_S = 60.0

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_url(value: str) -> bool:
    """Whether a cache location names an fsspec URL (``s3://…``, ``file://…``) rather than a directory."""
    return "://" in value


@dataclass(frozen=True)
class Lease:
    """A claim to build one entry, stored as JSON next to it.

    Times are wall-clock Unix seconds, the only clock runners on different machines share; a TTL of hours
    dwarfs their skew.
    """

    owner: str
    host: str
    pid: int
    created_unix_s: float
    ttl_s: float

    @classmethod
    def mine(cls, ttl_s: float) -> Lease:
        host = socket.gethostname()
        return cls(f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}", host, os.getpid(), time.time(), ttl_s)

    @classmethod
    def parse(cls, data: bytes) -> Lease:
        """The lease in ``data``; an unreadable one reads as long expired, since it protects nothing."""
        try:
            fields = json.loads(data)
            return cls(str(fields["owner"]), str(fields["host"]), int(fields["pid"]),
                       float(fields["created_unix_s"]), float(fields["ttl_s"]))
        except (ValueError, KeyError, TypeError):
            return cls("an unreadable lease", "?", 0, 0.0, 0.0)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    def age_s(self) -> float:
        return time.time() - self.created_unix_s

    def expired(self) -> bool:
        return self.age_s() > self.ttl_s


class _Unusable(Exception):
    """A published entry that cannot be used as it is (a reason for the warning)."""


class RemoteStore:
    """Entries of an :class:`ArtifactCache` published at an fsspec URL. Open with :meth:`open`.

    Args:
        url: The store's URL, as the user gave it (used in every message).
        fs: Its filesystem.
        base: The URL's path within ``fs`` (``bucket/prefix`` on S3).
        lease_ttl_s: How long a lease this runner takes holds before others may take it over.
        poll_s: How often a runner waiting on another's lease looks for the manifest.
    """

    def __init__(self, url: str, fs: AbstractFileSystem, base: str, *, lease_ttl_s: float, poll_s: float) -> None:
        self.url = url
        self.fs = fs
        self.base = base.rstrip("/")
        self.lease_ttl_s = lease_ttl_s
        self.poll_s = poll_s
        self._errors = library_errors(fs)

    @classmethod
    def open(cls, url: str, *, lease_ttl_s: float | None = None, poll_s: float | None = None) -> RemoteStore:
        """Open and probe the store at ``url``.

        Raises:
            BadInputError: naming ``url``, for an unknown protocol, a missing backend package, a missing
                bucket or directory, refused credentials or an endpoint that does not answer.
        """
        url = url.rstrip("/")
        fs, base = open_url(url, "cache")
        if lease_ttl_s is None:
            lease_ttl_s = _env_s(LEASE_TTL_ENV, DEFAULT_LEASE_TTL_S)
        if poll_s is None:
            poll_s = _env_s(LEASE_POLL_ENV, DEFAULT_POLL_S)
        store = cls(url, fs, base, lease_ttl_s=lease_ttl_s, poll_s=poll_s)
        probe(fs, base, url, "cache")
        return store

    def name(self, key: str) -> str:
        """``key``'s entry as a URL, for messages."""
        return f"{self.url}/{key}"

    def manifest_path(self, key: str) -> str:
        return f"{self.base}/{key}/{META_NAME}"

    def blob_path(self, key: str, sha256: str) -> str:
        return f"{self.base}/{key}/blobs/{sha256}"

    def lease_path(self, key: str) -> str:
        return f"{self.base}/{key}.lease"

    def get_or_build(self, key: str, local: Path, build: Callable[[], dict[str, Any]], *,
                     rebuild: bool = False) -> dict[str, Any]:
        """Fill ``local`` from the published entry, or build it (once among all runners) and publish it.

        Called under the local cache's lock for ``key`` with no intact entry at ``local``.

        Args:
            key: The entry's key.
            local: The local entry directory to fill.
            build: Builds the entry into ``local`` (atomically) and returns its metadata.
            rebuild: Build without reading the published entry (which, being immutable, stays).

        Returns:
            The entry's metadata, as in its ``meta.json``.
        """
        if rebuild:
            meta = build()
            self.publish(key, local)
            return meta
        last_report_s = -WAIT_REPORT_EVERY_S
        while True:
            manifest = self._read(self.manifest_path(key))
            if manifest is None:
                mine = Lease.mine(self.lease_ttl_s)
                holder = self._take_lease(key, mine)
                if holder is not None:
                    if time.monotonic() - last_report_s >= WAIT_REPORT_EVERY_S:
                        last_report_s = time.monotonic()
                        progress.report(f"{key}: waiting for {holder.owner} to build it into {self.url} (lease "
                                        f"{holder.age_s():.0f} s old, expires in "
                                        f"{holder.ttl_s - holder.age_s():.0f} s)")
                    time.sleep(self.poll_s)
                    continue
                try:
                    # Published between the look above and taking the lease: the holder before us won.
                    manifest = self._read(self.manifest_path(key))
                    if manifest is None:
                        meta = build()
                        self.publish(key, local)
                        return meta
                finally:
                    self._release(key, mine)
            downloaded = self._download(key, manifest, local)
            return downloaded if downloaded is not None else build()

    def publish(self, key: str, local: Path) -> bool:
        """Upload the intact local entry at ``local``: every blob, then the manifest, create-only.

        A manifest already there is kept (entries are immutable); a failed upload is reported and the local
        entry still serves this run. Returns whether this call created the manifest.
        """
        manifest = (local / META_NAME).read_bytes()
        try:
            if self.fs.exists(self.manifest_path(key)):
                progress.report(f"{self.name(key)} is already published; keeping it (entries are immutable)")
                return False
            for name, sha256 in json.loads(manifest)["files"].items():
                self.fs.put_file(str(local / name), self.blob_path(key, sha256))
            created = create_only(self.fs, self.manifest_path(key), manifest)
        except self._errors as e:
            _warn(f"could not publish {key} to {self.url} ({type(e).__name__}: {one_line(e)}); "
                  "this run uses its local entry")
            return False
        progress.report(f"published {key} to {self.url}" if created else
                        f"{self.name(key)} was published by another runner meanwhile; keeping theirs")
        return created

    def _download(self, key: str, manifest: bytes, local: Path) -> dict[str, Any] | None:
        """Metadata of the published entry, now also at ``local``; ``None`` (warned) if it is unusable."""
        try:
            meta = json.loads(manifest)
            files: dict[str, str] = dict(meta["files"])
        except (ValueError, KeyError, TypeError) as e:
            self._unusable(key, f"unreadable {META_NAME}: {type(e).__name__}")
            return None
        try:
            with atomic_directory(local) as tmp:
                for name, sha256 in files.items():
                    self._fetch_verified(key, name, sha256, tmp)
                (tmp / META_NAME).write_bytes(manifest)
        except _Unusable as e:
            self._unusable(key, str(e))
            return None
        size_mb = sum((local / name).stat().st_size for name in files) / 1e6
        progress.report(f"{key}: downloaded from {self.url} ({len(files)} files, {size_mb:.1f} MB, checksums verified)")
        return meta

    def _fetch_verified(self, key: str, name: str, sha256: str, directory: Path) -> None:
        relative = PurePosixPath(name)
        # The manifest comes from elsewhere: a name must stay inside the entry, a digest must be a digest.
        if relative.is_absolute() or ".." in relative.parts or not _SHA256.fullmatch(str(sha256)):
            raise _Unusable(f"bad file entry {name!r}")
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fs.get_file(self.blob_path(key, sha256), str(target))
        except FileNotFoundError:
            raise _Unusable(f"missing {name}") from None
        except self._errors as e:
            raise _Unusable(f"{name} could not be downloaded: {type(e).__name__}: {one_line(e)}") from None
        if sha256_file(target) != sha256:
            raise _Unusable(f"checksum mismatch in {name}")

    def _unusable(self, key: str, problem: str) -> None:
        _warn(f"remote cache entry {self.name(key)} is corrupt ({problem}); building it locally instead. The "
              f"remote entry stays as it is (entries are immutable): delete {self.name(key)}/ to have it republished")

    def _take_lease(self, key: str, mine: Lease) -> Lease | None:
        """Create ``mine`` unless a live lease is in the way; returns that lease, or ``None`` once ``mine`` holds."""
        path = self.lease_path(key)
        while not create_only(self.fs, path, mine.to_bytes()):
            held = self._read(path)
            if held is None:
                continue  # released between our write and our read: try again
            holder = Lease.parse(held)
            if not holder.expired():
                return holder
            progress.report(f"{key}: the lease of {holder.owner} expired ({holder.age_s():.0f} s old, TTL "
                            f"{holder.ttl_s:.0f} s); taking it over")
            # Two runners taking over at once may each delete the other's fresh lease and both build: wasted
            # work, never a broken entry, since only one manifest can be created.
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                pass
        return None

    def _release(self, key: str, mine: Lease) -> None:
        """Delete our lease, so waiters look again now rather than at its expiry (a lease taken over stays)."""
        try:
            held = self._read(self.lease_path(key))
            if held is not None and Lease.parse(held).owner == mine.owner:
                self.fs.rm_file(self.lease_path(key))
        except self._errors as e:
            progress.report(f"{key}: could not release the lease at {self.url} ({type(e).__name__}); "
                            f"it expires in {mine.ttl_s:.0f} s")

    def _read(self, path: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None


def _env_s(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise BadInputError(f"{name}={value!r} is not a number of seconds")
    return seconds


def _warn(message: str) -> None:
    # warnings alone land in pytest's end-of-run summary; the progress line shows when it happens.
    warnings.warn(message, stacklevel=3)
    progress.report(message)
