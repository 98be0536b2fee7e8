"""One content digest for every cache key, and the SHA-256 of a file.

Keys hash what an artifact is made from (a spec, a parent's content hash, settings, versions), so
anything that changes the artifact changes its key. JSON with sorted keys makes a mapping's digest
independent of insertion order; text and bytes are hashed as they are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: Hex digits kept of a key's digest (64 bits: no collision among a cache's entries).
KEY_HEX = 16


def digest(payload: object, length: int = KEY_HEX) -> str:
    """SHA-256 hex digest (first ``length`` digits) of ``payload``: bytes and text as they are,
    anything else as JSON with sorted keys."""
    if isinstance(payload, bytes):
        data = payload
    elif isinstance(payload, str):
        data = payload.encode()
    else:
        data = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:length]


def sha256_file(path: Path) -> str:
    """Full SHA-256 hex digest of a file's content, read in 1 MiB chunks."""
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()
