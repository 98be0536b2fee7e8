"""ONNX Runtime profiler sessions: the per-node breakdown (``fastnas-bench nodes``) and the latency
table's in-graph calibration.

Thin: CPU sessions with the benchmarks' own session options plus ORT's profiler (and, where asked,
unprofiled twins), a fixed random input, the host's timing slot, the models in rotation (A B B A for
two); everything read from the traces is in :mod:`fastnas_bench.measure.nodes`.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fastnas_bench.backends.onnxruntime import session_options
from fastnas_bench.errors import BadInputError
from fastnas_bench.fsutil import atomic_write_text
from fastnas_bench.host import machine_class
from fastnas_bench.measure.nodes import (
    Breakdown,
    ModelProfile,
    NodePlan,
    NodeRunInfo,
    breakdown_json,
    compare,
    parse_trace,
    render_markdown,
    summarize,
)
from fastnas_bench.measure.timing import rotation_rounds, timing_slot

MARKDOWN_FILE = "nodes.md"
JSON_FILE = "nodes.json"
#: Seed of the fixed random input: both models see the same values, run after run.
INPUT_SEED = 0


def check_onnx_path(path: Path) -> Path:
    """``path`` if it is an existing file; a one-line error naming it otherwise (whether it holds an ONNX
    model, ORT says when it loads it: see :func:`cpu_session`)."""
    if not path.is_file():
        raise BadInputError(f"ONNX model {path} does not exist or is not a file")
    return path


def cpu_session(path: Path, threads: int, trace_prefix: Path | None = None) -> Any:
    """A CPU InferenceSession of ``path`` with the timed sessions' options plus ORT's profiler, writing
    its trace under ``trace_prefix`` (without the profiler where that is ``None``)."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf, NotImplemented

    options = session_options(threads)
    if trace_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(trace_prefix)
    try:
        return ort.InferenceSession(str(check_onnx_path(path)), options, providers=["CPUExecutionProvider"])
    except (InvalidProtobuf, InvalidGraph, Fail, NotImplemented) as exc:
        # ORT's binding raises these (derived from Exception only) for a file that holds no ONNX model, no
        # valid graph, or an op or opset this ORT cannot run; naming them keeps every other failure loud.
        raise BadInputError(f"{path} is not an ONNX model ORT can load: {str(exc).splitlines()[0]}") from None


def random_feed(session: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A float32 array of uniform [0, 1) values per input of ``session``, of the input's static shape."""
    feed = {}
    for tensor in session.get_inputs():
        if not all(isinstance(dim, int) and dim > 0 for dim in tensor.shape):
            raise BadInputError(f"input {tensor.name!r} has dynamic shape {tensor.shape}; export with a static shape")
        if tensor.type != "tensor(float)":
            raise BadInputError(f"input {tensor.name!r} is {tensor.type}, not float32")
        feed[tensor.name] = rng.random(tensor.shape, dtype=np.float32)
    return feed


def _runner(session: Any, feed: dict[str, np.ndarray]) -> Callable[[], None]:
    def run() -> None:
        session.run(None, feed)

    return run


def profile_models(paths: Sequence[Path], plan: NodePlan, plain_wall: bool = False) -> list[ModelProfile]:
    """Profile several models in rotation; one :class:`ModelProfile` per path, in order.

    Every session is made before timing starts; under the host's timing slot each runs ``plan.warmup``
    untimed inferences, then ``plan.blocks`` rounds that run every model in order and then in reverse
    (A B C C B A; A B B A for two), so a drift of the machine during the run weighs on all alike. The
    warm-up inferences are in the traces too and are dropped by
    :func:`fastnas_bench.measure.nodes.parse_trace`.

    Args:
        plain_wall: Also run every model in a session without the profiler, in the same rotation, and
            give its median wall time as :attr:`ModelProfile.plain_wall_ms`: the profiler's own cost
            lies partly inside the kernel spans it records (about as much per node whatever its size),
            so only an unprofiled session says what an inference really takes.

    Raises:
        BadInputError: a path is no loadable ONNX file, or an input is dynamic or not float32.
    """
    for path in paths:
        check_onnx_path(path)
    with tempfile.TemporaryDirectory(prefix="fastnas-nodes-") as work:
        sessions = [cpu_session(path, plan.threads, Path(work) / f"model{index}")
                    for index, path in enumerate(paths)]
        plain = [cpu_session(path, plan.threads) for path in paths] if plain_wall else []
        runs = [_runner(session, random_feed(session, np.random.default_rng(INPUT_SEED)))
                for session in [*sessions, *plain]]
        with timing_slot():
            for run in runs:
                for _ in range(plan.warmup):
                    run()
            wall_s = rotation_rounds(runs, plan.blocks)
        profiles = []
        for index, (session, samples_s) in enumerate(zip(sessions, wall_s)):
            # end_profiling writes the trace and returns its path; the profiler's events stay in memory until then.
            events = json.loads(Path(session.end_profiling()).read_text())
            traced = parse_trace(events, plan.warmup, plan.timed_inferences)
            profile = summarize(traced, [s * 1e3 for s in samples_s])
            if plain_wall:
                profile = replace(profile, plain_wall_ms=statistics.median(wall_s[len(sessions) + index]) * 1e3)
            profiles.append(profile)
    return profiles


def profile_pair(baseline: Path, pruned: Path, plan: NodePlan) -> Breakdown:
    """Profile both models alternately (A B B A blocks, see :func:`profile_models`) and compare them.

    Raises:
        BadInputError: a path is no loadable ONNX file, or an input is dynamic or not float32.
    """
    base, cut = profile_models([baseline, pruned], plan)
    return compare(base, cut)


def run_nodes(baseline: Path, pruned: Path, plan: NodePlan, out: Path) -> tuple[str, list[Path]]:
    """Profile, compare, and write ``nodes.md`` and ``nodes.json`` into ``out`` (atomically).

    Returns:
        The Markdown page and the paths written.
    """
    import onnxruntime as ort

    breakdown = profile_pair(baseline, pruned, plan)
    info = NodeRunInfo(baseline=str(baseline), pruned=str(pruned), machine_class=machine_class("cpu"),
                       onnxruntime=ort.__version__, threads=plan.threads, rounds=plan.timed_inferences,
                       warmup=plan.warmup)
    markdown = render_markdown(breakdown, info)
    paths = [atomic_write_text(out / MARKDOWN_FILE, markdown),
             atomic_write_text(out / JSON_FILE, json.dumps(breakdown_json(breakdown, info), indent=2) + "\n")]
    return markdown, paths
