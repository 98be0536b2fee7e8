"""Options, markers, ids and skip reasons, end to end through pytest itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # A subprocess in the repo: the real root conftest, plugin and benchmark files are used.
    pytester.chdir()
    return pytester.runpytest_subprocess(
        "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), "-p", "no:cacheprovider",
        "--cache-dir", str(pytester.path / "cache"), *args,
    )


def test_help_shows_the_option_group(pytester: pytest.Pytester) -> None:
    result = _run(pytester, str(REPO / "benchmarks"), "--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*fastnas-bench: pruned-YOLOv8 latency benchmarks*"])
    for option in ("--gpu", "--fastnas-profile", "--backends", "--flops-target", "--min-speedup", "--max-map-drop",
                   "--max-recall-drop", "--batch-sizes", "--imgsz", "--data", "--model", "--weights",
                   "--cache-dir", "--rebuild-variants"):
        result.stdout.fnmatch_lines([f"*{option}*"])


def test_plugin_load_is_light_and_sets_ultralytics_env_first(pytester: pytest.Pytester) -> None:
    """`pytest --help` imports neither torch nor Ultralytics, and the plugin has set Ultralytics'
    environment before anything imports it; --profile is left to pytest-profiling."""
    pytester.chdir()
    script = pytester.makepyfile(probe=f"""
        import os, sys, pytest
        rc = pytest.main(["--rootdir", {str(REPO)!r}, "-c", {str(REPO / "pyproject.toml")!r}, "-p", "no:cacheprovider",
                          {str(REPO / "benchmarks")!r}, "--help"])
        print("PROBE", rc, "torch" in sys.modules, "ultralytics" in sys.modules, os.environ.get("YOLO_OFFLINE"),
              os.environ.get("YOLO_AUTOINSTALL"))
    """)
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env_free, check=True)
    assert "PROBE 0 False False true false" in out.stdout
    assert "--profile=" not in out.stdout and "--fastnas-profile=" in out.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--flops-target", "1.5"], "*FLOPs target '1.5' must lie strictly between 0 and 1*"),
        (["--model", "yolov8q"], "*unknown YOLOv8 model scale 'yolov8q'*"),
        (["--backends", "pytorch,tflite"], "*unknown backend(s)*tflite*"),
        (["--batch-sizes", "1,0"], "*batch sizes '1,0' must all be*"),
        (["--imgsz", "100"], "*imgsz '100' must be a positive multiple of 32*"),
        (["--fastnas-profile", "paper"], "*profile 'paper' runs on CUDA; add --gpu*"),
        (["--backends", "tensorrt"], "*--backends tensorrt needs --gpu*"),
        (["--ab-reference", "nowhere"], "*A/B reference 'nowhere' is neither 'self', a venv folder, a python executable nor a git commit*"),
        (["--max-map-drop", "2"], "*'2' must lie in [[]0, 1]*"),
        (["--seeds", "0"], "*seeds '0' must name 1 to 20 seeds, none negative*"),
        (["--seeds", "two"], "*seeds 'two' must be a count N, a range A-B or a list A,B,...*"),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = _run(pytester, str(REPO / "benchmarks"), "--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_gpu_without_a_gpu_is_an_error_not_a_green_run(pytester: pytest.Pytester) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present here, so --gpu is a valid request")
    result = _run(pytester, str(REPO / "benchmarks"), "--gpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gpu: no usable CUDA GPU*"])


def test_ids_are_stable_and_readable(pytester: pytest.Pytester) -> None:
    result = _run(pytester, str(REPO / "benchmarks"), "--collect-only", "-q")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*test_accuracy.py::test_flops_ratio[[]fastnas66]",
        "*test_latency.py::test_latency[[]onnxruntime-fastnas66-bs1]",
        "*test_latency.py::test_latency[[]pytorch-baseline-bs1]",
        "*test_latency.py::test_latency[[]tensorrt-fastnas66-bs1]",
        "*test_regression.py::test_latency_regression[[]onnxruntime-fastnas66-bs1]",
        "*test_speedup.py::test_speedup[[]onnxruntime-fastnas66-bs1]",
    ])
    narrowed = _run(pytester, str(REPO / "benchmarks"), "--collect-only", "-q", "--flops-target", "50%",
                    "--batch-sizes", "1,4", "--backends", "onnxruntime")
    narrowed.stdout.fnmatch_lines(["*test_latency[[]onnxruntime-fastnas50-bs4]"])
    assert "pytorch" not in narrowed.stdout.str()


def test_tensorrt_on_cpu_skips_with_a_reason(pytester: pytest.Pytester) -> None:
    result = _run(pytester, str(REPO / "benchmarks" / "test_latency.py"), str(REPO / "benchmarks" / "test_speedup.py"),
                  "-k", "tensorrt", "-rs")
    assert result.ret == 0
    result.assert_outcomes(skipped=5)  # latency ×2, speedup, its regression gate, the unselected unstructured check
    result.stdout.fnmatch_lines(["SKIPPED*tensorrt on cpu: TensorRT runs on CUDA only (use --gpu)*"])


def test_markers_are_declared_and_strict(pytester: pytest.Pytester) -> None:
    result = _run(pytester, str(REPO / "benchmarks"), "--markers")
    for marker in ("gpu", "tensorrt", "slow"):
        result.stdout.fnmatch_lines([f"@pytest.mark.{marker}:*"])
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in ini["addopts"] and "--strict-config" in ini["addopts"]


@pytest.mark.parametrize(("opts", "primary"), [
    ({}, "fastnas66"),
    ({"channel_divisors": (8, 16)}, "fastnas66d8"),
    ({"flops_targets": (0.8, 0.5), "methods": ("l2struct", "fastnas")}, "fastnas80"),
    ({"methods": ("unstructured",)}, "unstructured66"),
])
def test_primary_pruned_variant_exists_whatever_the_naming(opts: dict, primary: str) -> None:
    """Checks of "the pruned model" (ONNX agreement) must find it when names carry targets and divisors."""
    from fastnas_bench.config.settings import resolve_settings

    settings = resolve_settings(opts)
    assert settings.primary_pruned_name == primary
    assert primary in settings.variants


def test_build_progress_reaches_the_terminal_through_capture(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["fastnas_bench.pytest_plugin.hooks"]')
    pytester.makepyfile(test_p="""
        from fastnas_bench import progress

        def test_builds():
            print("captured chatter")
            for epoch in range(1, 31):
                progress.step("baseline: fine-tune epoch", epoch, 30)
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--backends", "pytorch")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["fastnas-bench: baseline: fine-tune epoch 1/30", "fastnas-bench: baseline: fine-tune epoch 10/30",
                                 "fastnas-bench: baseline: fine-tune epoch 30/30"])
    assert "epoch 2/30" not in result.stdout.str() and "captured chatter" not in result.stdout.str()
