"""The shared cache at an fsspec URL, against a real S3 HTTP endpoint (moto's server), file:// and memory://.

Runners are ArtifactCaches with their own local read-through directories and one remote store; the builders
write a few small files, no models.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import run_processes
from fastnas_bench import progress
from fastnas_bench.errors import BadInputError
from fastnas_bench.variants import remote
from fastnas_bench.variants.cache import META_NAME, ArtifactCache, ensure_cache_root
from fastnas_bench.variants.remote import Lease, RemoteStore, create_only

# Pollers look again every 50 ms: a waiting runner sees a manifest within a poll, and tests stay fast.
POLL_S = 0.05


def _builder(calls: list[str], text: str = "weights", delay_s: float = 0.0) -> Callable[[Path], dict[str, Any]]:
    def build(directory: Path) -> dict[str, Any]:
        calls.append(text)
        time.sleep(delay_s)
        (directory / "model.pt").write_text(text)
        (directory / "logs").mkdir()
        (directory / "logs" / "train.csv").write_text("epoch,loss\n1,0.5\n")
        return {"note": text}

    return build


def _never(directory: Path) -> dict[str, Any]:
    raise AssertionError("this runner must read the published entry, not build")


def _runner(url: str, local: Path, **options: float) -> ArtifactCache:
    return ArtifactCache(local, remote=RemoteStore.open(url, poll_s=POLL_S, **options))


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Progress lines reported during the test (the plugin's own sink is restored afterwards)."""
    captured: list[str] = []
    monkeypatch.setattr(progress, "_sink", progress._sink)  # registers the restore
    progress.set_sink(captured.append)
    return captured


@pytest.fixture
def isolated_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The per-user cache directory (where a URL cache keeps its read-through copy), moved under tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("FASTNAS_BENCH_CACHE", raising=False)
    return tmp_path / "xdg"


# -- two runners, one bucket --------------------------------------------------------------------------------


def _process_runner(url: str, local: str, build_log: str, progress_log: str, barrier: Any, delay_s: float) -> None:
    def to_file(message: str) -> None:
        with open(progress_log, "a") as f:
            f.write(message + "\n")

    def builder(directory: Path) -> dict[str, Any]:
        with open(build_log, "a") as f:
            f.write("built\n")
        time.sleep(1.0)  # the other runner arrives while this one holds the lease
        return _builder([])(directory)

    progress.set_sink(to_file)
    cache = _runner(url, Path(local))
    barrier.wait(60)
    time.sleep(delay_s)
    cache.get_or_build("shared", builder)


def test_two_runner_processes_build_once_and_the_second_downloads(s3_url: str, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    build_log = tmp_path / "builds.txt"
    # Both start together; the second looks 0.2 s later. Two lease writes in the same millisecond are S3's
    # If-None-Match to settle, which moto's server checks without a lock (not a property of this code).
    procs = [ctx.Process(target=_process_runner, args=(s3_url, str(tmp_path / f"runner{i}"), str(build_log),
                                                       str(tmp_path / f"progress{i}.txt"), barrier, 0.2 * i))
             for i in range(2)]
    run_processes(procs, 120)
    assert build_log.read_text().count("built") == 1
    metas = [(tmp_path / f"runner{i}" / "shared" / META_NAME).read_bytes() for i in range(2)]
    assert metas[0] == metas[1] and json.loads(metas[0])["files"]["model.pt"]
    said = [(tmp_path / f"progress{i}.txt").read_text() for i in range(2)]
    # Which runner takes the lease depends on the two processes' timing on a loaded machine: either
    # one builds and publishes, the other waits and downloads.
    builder = 0 if "published shared" in said[0] else 1
    waiter = 1 - builder
    assert "published shared" in said[builder] and "waiting for" in said[waiter] and "downloaded from" in said[waiter]
    assert ArtifactCache(tmp_path / f"runner{waiter}").read("shared") is not None  # intact: every checksum holds


def test_a_second_get_reads_the_local_copy(s3_url: str, tmp_path: Path, lines: list[str]) -> None:
    calls: list[str] = []
    _runner(s3_url, tmp_path / "a").get_or_build("k", _builder(calls))
    reader = _runner(s3_url, tmp_path / "b")
    first = reader.get_or_build("k", _never)
    lines.clear()
    assert reader.get_or_build("k", _never) == first and calls == ["weights"]
    assert not lines  # read through once: the second get neither downloads nor reports


# -- dead writers, corrupt objects, leases ------------------------------------------------------------------


def test_a_writer_killed_before_its_manifest_leaves_nothing_a_reader_accepts(
        s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = _runner(s3_url, tmp_path / "writer")
    store = writer.remote
    assert store is not None

    def killed_at_the_manifest(fs: Any, path: str, data: bytes) -> bool:
        if path.endswith(META_NAME):
            raise KeyboardInterrupt  # the blobs are up, the manifest is not
        return create_only(fs, path, data)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(remote, "create_only", killed_at_the_manifest)
        writer.get_or_build("k", _builder([], "dead writer's"))
    assert store.fs.find(f"{store.base}/k/blobs") and not store.fs.exists(store.manifest_path("k"))
    assert not store.fs.exists(store.lease_path("k"))  # released on the way out

    calls: list[str] = []
    meta = _runner(s3_url, tmp_path / "reader").get_or_build("k", _builder(calls, "reader's"))
    assert calls == ["reader's"] and (tmp_path / "reader" / "k" / "model.pt").read_text() == "reader's"
    assert json.loads(store.fs.cat_file(store.manifest_path("k")))["files"] == meta["files"]


def test_a_corrupt_remote_blob_is_named_and_rebuilt_locally_not_republished(
        s3_url: str, tmp_path: Path, lines: list[str]) -> None:
    meta = _runner(s3_url, tmp_path / "a").get_or_build("k", _builder([]))
    store = RemoteStore.open(s3_url)
    blob = store.blob_path("k", meta["files"]["model.pt"])
    store.fs.pipe_file(blob, b"bit rot")
    manifest = store.fs.cat_file(store.manifest_path("k"))

    calls: list[str] = []
    with pytest.warns(UserWarning, match=r"remote cache entry s3://.*/runs/k is corrupt \(checksum mismatch in model.pt\)"):
        rebuilt = _runner(s3_url, tmp_path / "b").get_or_build("k", _builder(calls, "rebuilt"))
    assert calls == ["rebuilt"] and (tmp_path / "b" / "k" / "model.pt").read_text() == "rebuilt"
    assert ArtifactCache(tmp_path / "b").read("k") == rebuilt
    assert any("runs/k is corrupt" in line for line in lines)  # on the terminal, not only in the warnings summary
    assert store.fs.cat_file(store.manifest_path("k")) == manifest and store.fs.cat_file(blob) == b"bit rot"


def test_a_live_lease_makes_a_runner_wait_then_read(s3_url: str, tmp_path: Path, lines: list[str]) -> None:
    store = RemoteStore.open(s3_url)
    other = Lease("elsewhere:1:abc", "elsewhere", 1, time.time(), ttl_s=60.0)
    assert create_only(store.fs, store.lease_path("k"), other.to_bytes())
    got: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: got.update(_runner(s3_url, tmp_path / "waiter").get_or_build("k", _never)))
    waiter.start()
    # Publish only once the waiter has said it waits: on a loaded machine its first look may come late.
    deadline = time.monotonic() + 20
    while not any("waiting for elsewhere:1:abc" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not got  # still waiting on the other runner's lease
    # The lease holder finishes: its entry, built elsewhere, is published.
    ArtifactCache(tmp_path / "holder").get_or_build("k", _builder([]))
    assert store.publish("k", tmp_path / "holder" / "k")
    waiter.join(20)
    assert not waiter.is_alive()
    assert got == json.loads((tmp_path / "holder" / "k" / META_NAME).read_text())
    assert any("waiting for elsewhere:1:abc" in line for line in lines)


def test_an_expired_lease_is_taken_over(s3_url: str, tmp_path: Path, lines: list[str]) -> None:
    store = RemoteStore.open(s3_url)
    ttl_s = 0.6
    dead = Lease("crashed:2:def", "crashed", 2, time.time(), ttl_s=ttl_s)  # its holder never comes back
    assert create_only(store.fs, store.lease_path("k"), dead.to_bytes())
    calls: list[str] = []
    started = time.monotonic()
    _runner(s3_url, tmp_path / "r").get_or_build("k", _builder(calls))
    assert time.monotonic() - started >= ttl_s * 0.9  # it waited while the lease was live
    assert calls == ["weights"] and store.fs.exists(store.manifest_path("k"))
    assert not store.fs.exists(store.lease_path("k"))
    assert any("crashed:2:def expired" in line and "taking it over" in line for line in lines)


def test_a_rebuild_leaves_the_published_entry_as_it_is(s3_url: str, tmp_path: Path, lines: list[str]) -> None:
    cache = _runner(s3_url, tmp_path / "r")
    cache.get_or_build("k", _builder([]))
    store = RemoteStore.open(s3_url)
    manifest = store.fs.cat_file(store.manifest_path("k"))
    cache.get_or_build("k", _builder([], "renewed"), rebuild=True)
    assert (tmp_path / "r" / "k" / "model.pt").read_text() == "renewed"
    assert store.fs.cat_file(store.manifest_path("k")) == manifest
    assert any("already published; keeping it" in line for line in lines)


def test_s3_create_only_refuses_an_existing_object(s3_url: str) -> None:
    """s3fs sends If-None-Match: * for "xb": without it, the second write would replace the first."""
    store = RemoteStore.open(s3_url)
    path = f"{store.base}/once"
    assert create_only(store.fs, path, b"first") and not create_only(store.fs, path, b"second")
    assert store.fs.cat_file(path) == b"first"


# -- opening: bad URLs are one line that names them ---------------------------------------------------------


def _moto_auth(endpoint: str, free_requests: str) -> None:
    # moto's switch for IAM checks in server mode: after `free_requests` requests, only keys it knows are accepted.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=free_requests.encode(),
                                                  method="POST", headers={"Content-Type": "text/plain"}))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("case", ["unknown protocol", "missing bucket", "refused credentials", "no endpoint"])
def test_a_bad_url_is_one_line_naming_it(case: str, s3_url: str, moto_endpoint: str, isolated_user_cache: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    url, expected = {
        "unknown protocol": ("nosuchfs://bucket/x", "Protocol not known"),
        "missing bucket": (f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x", "bucket or directory not found"),
        "refused credentials": (s3_url, "access denied"),
        "no endpoint": (s3_url, "EndpointConnectionError"),
    }[case]
    if case == "no endpoint":
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore retries a refused connection for ~12 s otherwise
    if case == "refused credentials":
        _moto_auth(moto_endpoint, "0")
    try:
        with pytest.raises(BadInputError, match=expected) as raised:
            ensure_cache_root(url)
    finally:
        if case == "refused credentials":
            _moto_auth(moto_endpoint, "inf")
    assert url in str(raised.value) and "\n" not in str(raised.value)
    assert not isolated_user_cache.exists()  # refused before any local directory was made


# -- the same code on file:// and memory:// -----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_file_and_memory_urls_share_the_code(scheme: str, tmp_path: Path, isolated_user_cache: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"file://{tmp_path}/shared" if scheme == "file" else f"memory://fastnas-test-{uuid.uuid4().hex[:8]}"
    calls: list[str] = []
    runners = [_runner(url, tmp_path / f"runner{i}") for i in range(2)]
    metas: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda c=c: metas.append(c.get_or_build("k", _builder(calls, delay_s=0.3))))
               for c in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    try:
        assert calls == ["weights"] and len(metas) == 2 and metas[0] == metas[1]
        store = runners[0].remote
        assert store is not None and store.fs.exists(store.manifest_path("k"))
        if scheme == "file":
            assert (tmp_path / "shared" / "k" / META_NAME).is_file()
            assert (tmp_path / "shared" / "k" / "blobs" / metas[0]["files"]["model.pt"]).read_text() == "weights"
        # ensure_cache_root takes the URL, from the option or the environment, with a read-through directory
        # under the user's cache.
        monkeypatch.setenv("FASTNAS_BENCH_CACHE", url)
        opened = ensure_cache_root(None)
        assert opened.remote is not None and opened.remote.url == url
        assert opened.root.is_relative_to(isolated_user_cache) and opened.root.parent.name == "remote"
        assert opened.get_or_build("k", _never) == metas[0]
    finally:
        if scheme == "memory":
            store = runners[0].remote
            assert store is not None
            store.fs.rm(store.base, recursive=True)


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_create_only_lets_exactly_one_racer_win(scheme: str, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/shared" if scheme == "file" else f"memory://fastnas-race-{uuid.uuid4().hex[:8]}"
    store = RemoteStore.open(url)
    won: list[int] = []
    start = threading.Barrier(8)

    def race(i: int) -> None:
        start.wait()
        if create_only(store.fs, f"{store.base}/k/{META_NAME}", str(i).encode()):
            won.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(won) == 1 and store.fs.cat_file(f"{store.base}/k/{META_NAME}") == str(won[0]).encode()
    if scheme == "memory":
        store.fs.rm(store.base, recursive=True)


def test_a_plain_path_keeps_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTNAS_BENCH_CACHE", raising=False)
    cache = ensure_cache_root(str(tmp_path / "c"))
    assert cache.remote is None and cache.root == tmp_path / "c"


def test_importing_the_cache_loads_no_storage_backend() -> None:
    code = ("import sys, fastnas_bench.variants.cache; "
            "print(sorted(m for m in ('fsspec', 's3fs', 'botocore', 'moto') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the local cache: a discarded entry is explained as it happens ------------------------------------------


def test_a_truncated_local_file_is_reported_through_progress(tmp_path: Path, lines: list[str]) -> None:
    cache = ArtifactCache(tmp_path)
    cache.get_or_build("k", _builder([]))
    (tmp_path / "k" / "model.pt").write_text("weig")
    with pytest.warns(UserWarning, match="corrupt"):
        cache.get_or_build("k", _builder([], "fresh"))
    assert [line for line in lines if str(tmp_path / "k") in line and "checksum mismatch in model.pt" in line]
