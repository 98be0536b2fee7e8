"""One side of a paired A/B latency comparison: a long-lived process that loads one model and times it on command.

Run as a script (``python ab_worker.py``) by :mod:`fastnas_bench.measure.ab`, in the Python environment
of its side: the current one, or a reference environment that need hold only what its backend needs
(ONNX Runtime: ``onnxruntime`` and ``numpy``; PyTorch: ``torch``, ``ultralytics``, ``numpy``). So this file
imports nothing of ``fastnas_bench`` and nothing beyond the standard library at import time.

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout (``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``). Between commands the process blocks reading stdin: an idle side uses
no CPU while the other side is timed.

- ``export``: ``checkpoint`` (stock Ultralytics checkpoint), ``out`` (ONNX path), ``imgsz``, ``batch`` →
  the side's own ONNX export, made by this environment's Ultralytics, torch and onnx with the suite's
  export settings (:data:`ONNX_EXPORT_ARGS`, kept equal to ``fastnas_bench.yolo.export``'s by a unit test),
  and ``versions`` of what made it;
- ``load``: ``backend``, ``model`` (ONNX file or stock Ultralytics checkpoint), ``inputs`` (``.npy``),
  ``output`` (``.npy`` to write the first call's output to), ``threads``, ``warmup_calls``,
  ``slowdown`` (share of each call's time to burn on the CPU afterwards, 0 for none);
- ``time``: ``calls`` → ``seconds`` of each call (wall time, ``perf_counter_ns``);
- ``quit``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

#: What this worker's commands are: 1 had ``load``/``time``/``quit``; 2 added ``export``. A reference
#: commit's worker is read for it before it is asked to export.
PROTOCOL_VERSION = 2
#: Ultralytics exporter arguments of every ONNX export the suite times (with ``imgsz`` and ``batch``).
ONNX_EXPORT_ARGS = {"format": "onnx", "dynamic": False, "simplify": True, "device": "cpu"}
#: Packages that write an ONNX export: part of what an A/B comparison compares where they differ.
EXPORTER_PACKAGES = ("torch", "ultralytics", "onnx", "onnxslim")


def _ort_runner(model: str, inputs: Any, threads: int) -> Callable[[], Any]:
    import onnxruntime as ort

    # The benchmark's own session settings (fastnas_bench.backends.onnxruntime.session_options; a unit
    # test keeps the two equal). Spinning off: the idle side must not steal the timed side's cores.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: inputs}
    output = session.get_outputs()[0].name
    return lambda: session.run([output], feed)[0]


def _torch_runner(model: str, inputs: Any, threads: int) -> Callable[[], Any]:
    import torch

    try:
        from ultralytics.nn.tasks import load_checkpoint
    except ImportError:  # Ultralytics before load_checkpoint: its predecessor, same result
        from ultralytics.nn.tasks import attempt_load_one_weight as load_checkpoint  # type: ignore[attr-defined, no-redef]

    torch.set_num_threads(threads)
    net, _ = load_checkpoint(model, device="cpu")
    net = net.float().eval().fuse(verbose=False)
    x = torch.from_numpy(inputs)

    def call() -> Any:
        with torch.inference_mode():
            out = net(x)
        return (out[0] if isinstance(out, (tuple, list)) else out).numpy()

    return call


RUNNERS = {"onnxruntime": _ort_runner, "pytorch": _torch_runner}


def burn(seconds: float, threads: int = 1) -> None:
    """Keep ``threads`` cores busy for ``seconds``: a slower model loads the machine, where a sleep would
    leave it idle.

    Element-wise numpy loops on one Python thread per core (numpy releases the GIL inside them), not
    BLAS: a BLAS thread pool keeps spinning after its work and stole the next call's cores (a 10%
    burn by matrix products read as a 55% PyTorch slowdown here).
    """
    import threading

    import numpy as np

    deadline = time.perf_counter() + seconds

    def work() -> None:
        a = np.ones(1 << 15, dtype=np.float32)
        while time.perf_counter() < deadline:
            np.multiply(a, np.float32(1.0000001), out=a)
            np.add(a, np.float32(1e-7), out=a)

    helpers = [threading.Thread(target=work) for _ in range(threads - 1)]
    for helper in helpers:
        helper.start()
    work()
    for helper in helpers:
        helper.join()


class Side:
    def __init__(self, cmd: dict[str, Any]) -> None:
        import numpy as np

        inputs = np.ascontiguousarray(np.load(cmd["inputs"]), dtype=np.float32)
        self.call = RUNNERS[cmd["backend"]](cmd["model"], inputs, int(cmd["threads"]))
        self.slowdown = float(cmd.get("slowdown", 0.0))
        self.threads = int(cmd["threads"])
        np.save(cmd["output"], np.asarray(self.call(), dtype=np.float32))
        for _ in range(int(cmd.get("warmup_calls", 0))):
            self.timed_call()

    def timed_call(self) -> float:
        start = time.perf_counter_ns()
        self.call()
        elapsed = (time.perf_counter_ns() - start) / 1e9
        if self.slowdown:
            burn(elapsed * self.slowdown, self.threads)
            elapsed = (time.perf_counter_ns() - start) / 1e9
        return elapsed


def export_onnx(checkpoint: str, out: str, imgsz: int, batch: int) -> str:
    """This environment's ONNX export of a stock checkpoint, at ``out``."""
    import os
    import shutil
    import tempfile

    from ultralytics import YOLO

    # The exporter writes next to its input: export a copy in a scratch folder, then move the result.
    with tempfile.TemporaryDirectory(prefix="fastnas-ab-export-") as tmp:
        copy = os.path.join(tmp, "model.pt")
        shutil.copyfile(checkpoint, copy)
        written = YOLO(copy).export(imgsz=imgsz, batch=batch, verbose=False, **ONNX_EXPORT_ARGS)
        os.replace(str(written), out)
    return out


def _versions(backend: str) -> dict[str, str]:
    names = {"onnxruntime": ("onnxruntime", "numpy"), "pytorch": ("torch", "ultralytics", "numpy"),
             "export": EXPORTER_PACKAGES}[backend]
    return versions_of(names)


def versions_of(names: tuple[str, ...]) -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def main() -> int:
    # Replies go to a copy of the real stdout; anything a library prints, from Python or native code,
    # goes to stderr, where the parent reads it only to explain a dead worker.
    import os

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    side: Side | None = None
    for line in sys.stdin:
        cmd = json.loads(line)
        reply: dict[str, Any]
        try:
            if cmd["op"] == "export":
                path = export_onnx(cmd["checkpoint"], cmd["out"], int(cmd["imgsz"]), int(cmd["batch"]))
                reply = {"ok": True, "path": path, "versions": _versions("export")}
            elif cmd["op"] == "load":
                side = Side(cmd)
                reply = {"ok": True, "versions": _versions(cmd["backend"]), "python": sys.version.split()[0]}
            elif cmd["op"] == "time":
                if side is None:
                    raise RuntimeError("time before load")
                reply = {"ok": True, "seconds": [side.timed_call() for _ in range(int(cmd["calls"]))]}
            elif cmd["op"] == "quit":
                print(json.dumps({"ok": True}), file=replies, flush=True)
                return 0
            else:
                raise ValueError(f"unknown op {cmd['op']!r}")
        except Exception as e:  # noqa: BLE001 - every failure goes back to the parent, which names the side
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            reply = {"ok": False, "error": f"{type(e).__name__}: {first}"}
        print(json.dumps(reply), file=replies, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
