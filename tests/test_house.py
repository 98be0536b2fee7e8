"""The package's import graph flows one way, and the registries are their modules."""

from __future__ import annotations

import ast
from pathlib import Path

from fastnas_bench.backends import BACKEND_NAMES, get_backend_class
from fastnas_bench.methods import METHOD_NAMES, get_method_class
from fastnas_bench.settings import resolve_settings

SRC = Path(__file__).resolve().parents[1] / "src" / "fastnas_bench"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_no_layer_imports_the_build_pipeline_and_build_does_not_import_a_method() -> None:
    lower = [*SRC.glob("methods/*.py"), *SRC.glob("backends/*.py"), SRC / "models.py", SRC / "spec.py"]
    offenders = [p.name for p in lower if "fastnas_bench.build" in _imports(p)]
    assert not offenders, offenders
    assert not {m for m in _imports(SRC / "build.py") if m.startswith("fastnas_bench.methods.")}


def test_registries_are_their_modules_and_classes_carry_their_metadata() -> None:
    assert set(BACKEND_NAMES) == {p.stem.replace("_", "-") for p in SRC.glob("backends/*.py")
                                  if p.stem not in ("__init__", "base")}
    assert set(METHOD_NAMES) == {p.stem.replace("_", "-") for p in SRC.glob("methods/*.py")
                                 if p.stem not in ("__init__", "base", "latency_match", "search_space")}
    for name in BACKEND_NAMES:
        assert get_backend_class(name).name == name
    for name in METHOD_NAMES:
        assert get_method_class(name).name == name
    # What a class declares is what a run parametrizes: ORT has no fp16 target, TensorRT runs on CUDA only.
    gpu = resolve_settings({"gpu": True, "backends": ("onnxruntime", "tensorrt")})
    assert [t.id for t in gpu.targets] == ["onnxruntime", "tensorrt", "tensorrt-fp16"]
    assert "torch-compile" not in resolve_settings({}).backends and "torch-compile" in resolve_settings({"gpu": True}).backends
    assert not get_method_class("unstructured").structured and get_method_class("l2struct").matches_fastnas_flops
    assert get_method_class("fastnas-latency").budget == "latency" and get_method_class("fastnas").budget == "either"
