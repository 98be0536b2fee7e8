"""The host's timing slot: two runs on one machine never time at once; the one that waits says so."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fastnas_bench import progress
from fastnas_bench.errors import BadInputError
from fastnas_bench.measure.timing import (
    TIMING_LOCK_ENV,
    abba_rounds,
    default_timing_lock_path,
    time_rounds,
    timing_lock_path,
    timing_slot,
)

HOLDER = """
import sys, time
from fastnas_bench.measure.timing import time_rounds
time_rounds(lambda: (print("holding", flush=True), time.sleep(float(sys.argv[1]))), 0, 1)
"""


def test_a_second_run_waits_for_the_first_ones_timed_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMING_LOCK_ENV, str(tmp_path / "timing.lock"))
    lines: list[str] = []
    monkeypatch.setattr(progress, "_sink", progress._sink)  # registers the restore
    progress.set_sink(lines.append)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "1.5"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    start = time.monotonic()
    a, b = abba_rounds(lambda: None, lambda: None, 3)
    waited_s = time.monotonic() - start
    assert holder.wait(30) == 0
    assert len(a) == len(b) == 6
    assert waited_s > 0.5, "timed while another process held the slot"
    assert any("waiting for another run on this host to finish timing" in line for line in lines)


def test_nested_blocks_of_one_process_share_the_slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMING_LOCK_ENV, str(tmp_path / "timing.lock"))
    lines: list[str] = []
    monkeypatch.setattr(progress, "_sink", progress._sink)
    progress.set_sink(lines.append)
    # abba_rounds holds the slot and calls time_rounds inside it: no wait, no deadlock.
    assert len(time_rounds(lambda: abba_rounds(lambda: None, lambda: None, 2), 1, 2)) == 2
    assert not lines


def _holds_root() -> bool:
    return getattr(os, "geteuid", lambda: -1)() == 0


# Enters the slot in a fresh process, as another account where asked (uid, gid in argv), and prints
# "entered" or the one-line error. Everything is imported first: the other account may not be able
# to read the interpreter's files.
ENTER = """
import encodings.ascii, os, sys
import filelock, filelock._native, filelock._soft, filelock._filesystem
from fastnas_bench.errors import BadInputError
from fastnas_bench.measure.timing import timing_slot
if len(sys.argv) > 1:
    os.setgid(int(sys.argv[2]))
    os.setuid(int(sys.argv[1]))
try:
    with timing_slot():
        print("entered")
except BadInputError as exc:
    print(exc)
"""
NOBODY = (65534, 65534)
DAEMON = (1, 1)


def enter_slot(lock: Path, account: tuple[int, int] | None = None) -> list[str]:
    """The lines a fresh process prints entering the slot at ``lock``; a hang fails the test after 60 s."""
    env = {**os.environ, TIMING_LOCK_ENV: str(lock)}
    args = [str(n) for n in account] if account else []
    done = subprocess.run([sys.executable, "-c", ENTER, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other accounts can reach (pytest's own temp directories are private to this one)."""
    with tempfile.TemporaryDirectory(prefix="fastnas-slot-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


@pytest.mark.parametrize("lock", ["missing-dir/timing.lock", "missing-dir/deeper/timing.lock"])
def test_a_missing_lock_directory_fails_at_once_naming_it(tmp_path: Path, lock: str) -> None:
    path = tmp_path / lock
    [line] = enter_slot(path)
    assert line.startswith(f"timing lock directory {path.parent} does not exist"), line
    assert TIMING_LOCK_ENV in line
    assert not path.parent.exists(), "the lock's directory was created"


def test_a_lock_path_that_is_a_directory_fails_naming_it(tmp_path: Path) -> None:
    [line] = enter_slot(tmp_path)
    assert line.startswith(f"timing lock {tmp_path} is a directory"), line


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_an_unwritable_lock_directory_fails_at_once_naming_it(shared_dir: Path) -> None:
    # Root writes anywhere: as root the check runs as an unprivileged account instead.
    locked_dir = shared_dir / "read-only"
    locked_dir.mkdir(mode=0o555)
    locked_dir.chmod(0o555)
    [line] = enter_slot(locked_dir / "timing.lock", NOBODY if _holds_root() else None)
    assert line.startswith(f"timing lock directory {locked_dir} is not writable by this account"), line
    assert TIMING_LOCK_ENV in line


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_lock_file_this_account_cannot_write_fails_naming_it(shared_dir: Path) -> None:
    # As another user's lock file created before locks were made writable by all.
    lock = shared_dir / "timing.lock"
    lock.touch()
    lock.chmod(0o444)
    [line] = enter_slot(lock, NOBODY if _holds_root() else None)
    assert line.startswith(f"timing lock {lock} is not writable by this account"), line


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_the_lock_file_is_created_writable_by_every_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "timing.lock"
    monkeypatch.setenv(TIMING_LOCK_ENV, str(lock))
    old_umask = os.umask(0o022)
    try:
        with timing_slot():
            pass
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(lock.stat().st_mode) == 0o666


@pytest.mark.skipif(not _holds_root(), reason="needs root to run as two other accounts")
def test_another_accounts_lock_file_is_shared_or_refused_in_one_line(shared_dir: Path) -> None:
    sticky = shared_dir / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # as /var/tmp
    lock = sticky / "timing.lock"
    assert enter_slot(lock, DAEMON) == ["entered"]
    [line] = enter_slot(lock, NOBODY)
    # filelock 3 shares the file (created writable by all); recent filelock refuses another account's file
    # in a sticky directory.
    assert line == "entered" or line.startswith(f"cannot lock the timing lock {lock}"), line


def test_a_lock_filelock_cannot_take_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import filelock

    class Refused(filelock.FileLock):  # type: ignore[misc, valid-type]
        def acquire(self, *args: Any, **kwargs: Any) -> Any:
            raise PermissionError(errno.EACCES, "lock file belongs to uid 1", self.lock_file)

    lock = tmp_path / "timing.lock"
    monkeypatch.setenv(TIMING_LOCK_ENV, str(lock))
    monkeypatch.setattr(filelock, "FileLock", Refused)
    with pytest.raises(BadInputError) as info:
        with timing_slot():
            pass
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot lock the timing lock {lock} (lock file belongs to uid 1)")
    assert TIMING_LOCK_ENV in message


def _in_thread(fn: Callable[[], None], timeout_s: float = 30) -> None:
    """Run ``fn`` in a thread; a deadlock fails the test instead of hanging it."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"still waiting after {timeout_s} s: a deadlock"
    if errors:
        raise errors[0]


def test_nested_slots_of_one_thread_do_not_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMING_LOCK_ENV, str(tmp_path / "timing.lock"))

    def nested() -> None:
        with timing_slot(), timing_slot():
            with timing_slot():
                pass
        with timing_slot():  # taken again after the outermost block let go
            pass

    _in_thread(nested)


def test_threads_of_one_process_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMING_LOCK_ENV, str(tmp_path / "timing.lock"))
    lines: list[str] = []
    monkeypatch.setattr(progress, "_sink", progress._sink)
    progress.set_sink(lines.append)
    spans: list[tuple[float, float]] = []

    def hold() -> None:
        with timing_slot(), timing_slot():
            start = time.monotonic()
            time.sleep(0.2)
            spans.append((start, time.monotonic()))

    def both() -> None:
        threads = [threading.Thread(target=hold) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    _in_thread(both)
    spans.sort()
    assert len(spans) == 3
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    assert any("waiting for another thread of this process to finish timing" in line for line in lines)


def test_the_default_lock_does_not_follow_tmpdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(TIMING_LOCK_ENV)
    first = timing_lock_path()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() caches its answer
    assert timing_lock_path() == first == default_timing_lock_path()
    if os.name == "posix" and Path("/var/tmp").is_dir():
        assert first == Path("/var/tmp/fastnas-bench-timing.lock")


def test_off_turns_the_slot_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMING_LOCK_ENV, "off")
    assert timing_lock_path() is None
    with timing_slot():
        pass
