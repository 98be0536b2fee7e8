"""Run stock Ultralytics on a checkpoint in a fresh interpreter where fastnas_bench cannot be imported.

``python -m fastnas_bench.yolo.stock_probe`` would import this package; the probe's code is therefore
handed to ``python -c`` as text (:data:`PROBE`), and :func:`run_stock_probe` is what callers use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
sys.modules["fastnas_bench"] = None  # as if the package were not installed
from ultralytics import YOLO
from ultralytics.utils import ASSETS
weights, data, imgsz, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
model = YOLO(weights)
model.predict(str(ASSETS / "bus.jpg"), imgsz=imgsz, device="cpu", verbose=False)
metrics = model.val(data=data, imgsz=imgsz, batch=8, device="cpu", plots=False, verbose=False,
                    project=work, name="val", workers=0)
onnx = model.export(format="onnx", imgsz=imgsz, device="cpu", verbose=False)
print(f"STOCK-OK map50_95={metrics.box.map:.4f} onnx={onnx}")
"""


def run_stock_probe(weights: Path, data_yaml: Path, imgsz: int, work: Path) -> subprocess.CompletedProcess[str]:
    """``YOLO(weights)`` → ``.predict`` → ``.val(data_yaml)`` → ``.export("onnx")`` without this package."""
    env_cmd = [sys.executable, "-c", PROBE, str(weights), str(data_yaml), str(imgsz), str(work)]
    return subprocess.run(env_cmd, capture_output=True, text=True, cwd=work, timeout=600, check=False)
