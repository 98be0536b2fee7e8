"""fsspec URLs: open one with one-line errors naming it, and create an object only where none is.

Shared by the variant cache's remote store and the results store: both keep immutable objects at a
URL (``s3://bucket/prefix``, ``file:///mnt/shared``, ``memory://name``) and need the same answers to
"which errors does this backend raise" and "is this write create-only".
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastnas_bench.errors import BadInputError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

DIRECTORY_PROTOCOLS = frozenset({"file", "local", "memory"})
# MemoryFileSystem's store is this process's own; this lock makes its exists-then-write create-only.
_memory_lock = threading.Lock()


def open_url(url: str, what: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem and path of ``url``; ``what`` names the store in errors (``cache``, ``results store``).

    Raises:
        BadInputError: naming ``url``, for an unknown protocol or a missing backend package.
    """
    import fsspec  # ~0.2 s of asyncio: only runs with a URL pay it

    try:
        fs, base = fsspec.core.url_to_fs(url, **storage_options(url))
    except ImportError as e:  # fsspec names the package: "Install s3fs to access S3"
        raise BadInputError(f"{what} {url}: {one_line(e)} (pip install 'fastnas-bench[s3]')") from None
    except ValueError as e:  # "Protocol not known: foo"
        raise BadInputError(f"{what} {url}: {one_line(e)}") from None
    return fs, str(base).rstrip("/")


def probe(fs: AbstractFileSystem, base: str, url: str, what: str) -> None:
    """Fail now and name the URL, rather than at the first read or write with a traceback.

    Raises:
        BadInputError: for a missing bucket or directory, refused credentials or an endpoint that does not answer.
    """
    try:
        if protocols(fs) & DIRECTORY_PROTOCOLS:
            fs.makedirs(base, exist_ok=True)
        else:
            # The bucket, not the prefix: a new prefix is empty, and S3 reports an empty prefix as missing.
            # Its HEAD needs s3:ListBucket, which reading also needs (without it a missing object is a 403).
            fs.info(base.split("/", 1)[0])
    except FileNotFoundError:
        raise BadInputError(f"{what} {url}: bucket or directory not found") from None
    except PermissionError as e:
        raise BadInputError(f"{what} {url}: access denied, check the credentials or permissions ({one_line(e)})") from None
    except library_errors(fs) as e:
        raise BadInputError(f"{what} {url} cannot be opened: {type(e).__name__}: {one_line(e)}") from None


def create_only(fs: AbstractFileSystem, path: str, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless something is there; returns whether this call created it.

    ``data`` must not be empty: s3fs writes an empty file with a plain ``touch``, unconditionally.
    """
    if not data:
        raise ValueError(f"create_only({path!r}) needs content")
    found = protocols(fs)
    if found & {"s3", "s3a"}:
        # s3fs sends an "xb" file as PutObject with If-None-Match: * (S3File.commit, s3fs 2026.9.0 core.py:2800),
        # which S3 settles atomically; the loser's 412 PreconditionFailed becomes FileExistsError
        # (translate_boto_error, s3fs/errors.py:146).
        try:
            with fs.open(path, "xb") as f:
                f.write(data)
        except FileExistsError:
            return False
        return True
    if found & {"file", "local"}:
        return _link_into_place(Path(path), data)
    if "memory" in found:
        # MemoryFileSystem's "xb" is exists()-then-write (memory.py _open): atomic only under a lock.
        with _memory_lock:
            if fs.exists(path):
                return False
            fs.pipe_file(path, data)
        return True
    # Any other backend: fsspec documents "x" as optional and possibly unchecked, so the check and the write
    # are two steps. Two runners within that gap both write the manifest, the later one wins and every blob
    # both name is published: a reader still gets one complete entry.
    if fs.exists(path):
        return False
    fs.pipe_file(path, data)
    return True


def _link_into_place(path: Path, data: bytes) -> bool:
    # open(path, "xb") (O_EXCL) is create-only, but a reader could see the file before its bytes; a hard link
    # to a complete temporary file appears whole or not at all, and link() fails if the name exists (also NFS).
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def protocols(fs: AbstractFileSystem) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def storage_options(url: str) -> dict[str, Any]:
    protocol = url.split("://", 1)[0]
    if protocol in ("s3", "s3a"):
        # A fresh client reads the endpoint and credentials now (AWS_ENDPOINT_URL, AWS_*); a listing cache
        # would hide other runners' manifests and leases from a poll.
        return {"skip_instance_cache": True, "use_listings_cache": False}
    if protocol in ("file", "local"):
        return {"auto_mkdir": True}  # put_file into <key>/blobs/ creates the directories
    return {}


def library_errors(fs: AbstractFileSystem) -> tuple[type[Exception], ...]:
    """What the backend raises for a failed call: OSError, and botocore's own for S3 (an endpoint that does not
    answer, missing credentials), which are not OSErrors."""
    if not protocols(fs) & {"s3", "s3a"}:
        return (OSError,)
    from botocore.exceptions import BotoCoreError, ClientError

    return (OSError, BotoCoreError, ClientError)


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
