from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from conftest import run_processes
from fastnas_bench.errors import BadInputError
from fastnas_bench.variants.cache import META_NAME, ArtifactCache, ensure_cache_root


def _write(tmp: Path, text: str = "weights") -> dict:
    (tmp / "model.pt").write_text(text)
    return {"note": "ok"}


def test_build_then_reuse(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    calls = []
    meta = cache.get_or_build("k", lambda d: (calls.append(1), _write(d))[1])
    again = cache.get_or_build("k", lambda d: (calls.append(1), _write(d))[1])
    assert calls == [1] and meta == again
    assert meta["files"]["model.pt"] and (tmp_path / "k" / "model.pt").read_text() == "weights"


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)

    def boom(d: Path) -> dict:
        _write(d)
        raise KeyboardInterrupt  # Ctrl-C mid-build

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build("k", boom)
    assert not (tmp_path / "k").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_failed_rebuild_keeps_nothing_half_written(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    cache.get_or_build("k", _write)

    def boom(d: Path) -> dict:
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("k", boom, rebuild=True)
    assert cache.read("k") is None  # the old entry was discarded on request, no partial one took its place


@pytest.mark.parametrize("damage", ["truncate", "delete", "meta"])
def test_corrupt_entry_is_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    cache = ArtifactCache(tmp_path)
    cache.get_or_build("k", _write)
    entry = tmp_path / "k"
    if damage == "truncate":
        (entry / "model.pt").write_text("weig")
    elif damage == "delete":
        (entry / "model.pt").unlink()
    else:
        (entry / META_NAME).write_text("{not json")
    with pytest.warns(UserWarning, match="corrupt"):
        meta = cache.get_or_build("k", lambda d: _write(d, "fresh"))
    assert (entry / "model.pt").read_text() == "fresh"
    assert json.loads((entry / META_NAME).read_text())["files"] == meta["files"]


def _slow_build(root: str, log: str) -> None:
    def builder(d: Path) -> dict:
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(1.0)
        return _write(d)

    ArtifactCache(Path(root)).get_or_build("shared", builder)


def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_slow_build, args=(str(tmp_path / "c"), str(log))) for _ in range(3)]
    run_processes(procs, 60)
    assert log.read_text().count("built") == 1
    assert ArtifactCache(tmp_path / "c").read("shared") is not None


def test_unwritable_cache_dir_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BadInputError, match=str(blocker)):
        ensure_cache_root(blocker)
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(BadInputError, match="not writable"):
            ArtifactCache(ro)


def test_onnx_exports_are_keyed_by_the_model_content() -> None:
    from fastnas_bench.variants.spec import VariantSpec
    from fastnas_bench.variants.variant import MODEL_FILE, Variant
    from fastnas_bench.yolo.export import onnx_key

    def variant(sha: str) -> Variant:
        return Variant(spec=VariantSpec(), path=Path("x"), meta={"key": "same-spec", "files": {MODEL_FILE: sha}})

    assert onnx_key(variant("a" * 64), 640, 1) == onnx_key(variant("a" * 64), 640, 1)
    # A rebuilt model.pt under the same spec (same meta key) must not reuse the old export.
    assert onnx_key(variant("a" * 64), 640, 1) != onnx_key(variant("b" * 64), 640, 1)
    assert onnx_key(variant("a" * 64), 640, 1) != onnx_key(variant("a" * 64), 640, 8)
