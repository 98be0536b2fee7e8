"""Unit-test environment: offline Ultralytics, no auto-installs, small shared artifacts."""

from __future__ import annotations

import os

os.environ["YOLO_OFFLINE"] = "true"  # Ultralytics ignores "1"
os.environ["YOLO_AUTOINSTALL"] = "false"

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset (shared, read-only by convention)."""
    from fastnas_bench.variants.data import GeneratedDataConfig, generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("data"), GeneratedDataConfig(train_images=8, val_images=4, image_px=160))


def run_processes(procs: list, timeout_s: float) -> None:
    """Start ``procs`` together, wait for each, and require every one to have exited cleanly."""
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout_s)
        assert p.exitcode == 0, f"{p.name} exited with {p.exitcode}"
