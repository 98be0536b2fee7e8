"""Unit-test environment: offline Ultralytics, no auto-installs, small shared artifacts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

os.environ["YOLO_OFFLINE"] = "true"  # Ultralytics ignores "1"
os.environ["YOLO_AUTOINSTALL"] = "false"

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_timing_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A timing lock of the session's own: unit tests time fake workloads, and must neither wait for
    nor delay a real benchmark timing on this host (tests that need the slot set their own path)."""
    from fastnas_bench.measure.timing import TIMING_LOCK_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TIMING_LOCK_ENV, str(tmp_path_factory.mktemp("timing-slot") / "timing.lock"))
        yield


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


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint on 127.0.0.1, shared by the session's tests (each uses its own bucket)."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'fastnas-bench[test]')")
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed "
                                        "(pip install 'fastnas-bench[test]')")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_url(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the endpoint; s3fs reaches it through AWS_ENDPOINT_URL (honoured by botocore ≥ 1.31)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # No profile or config of the machine's user may change where requests go or how they are signed.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    import fsspec

    bucket = f"cache-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir(bucket)
    return f"s3://{bucket}/runs"
