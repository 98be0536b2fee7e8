"""The host's timing slot: two runs on one machine never time at once; the one that waits says so."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastnas_bench import progress
from fastnas_bench.measure.timing import TIMING_LOCK_ENV, abba_rounds, time_rounds

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
