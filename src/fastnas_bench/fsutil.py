"""Atomic writes: a file or a whole directory appears complete under its final name, or not at all.

A crash, Ctrl-C or failed build leaves at most a hidden temporary sibling, never a half-written
file or entry that a later run would trust; a concurrent writer of the same content loses the
rename race harmlessly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


@contextlib.contextmanager
def atomic_directory(final: Path, *, exist_ok: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``final``; rename it to ``final`` when the block succeeds.

    Args:
        final: The directory's final name.
        exist_ok: Another process may write the same content concurrently: if ``final`` appeared
            meanwhile, keep it and drop this copy (identical by construction). Otherwise an existing
            ``final`` is an error.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not (exist_ok and final.is_dir()):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
