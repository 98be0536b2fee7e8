"""A FastNAS-pruned module survives Ultralytics' multi-GPU (DDP) launch with its pruned widths.

With ``device="0,1"`` Ultralytics' ``BaseTrainer.train`` does not train in the launching process:
``generate_ddp_command`` (``ultralytics/utils/dist.py``) pickles the trainer's class, args, model and
callbacks with cloudpickle into a ``.pt`` file beside a generated script, and runs that script under
``torch.distributed.run``; each worker rebuilds the trainer from the args and sets
``trainer.model = state["model"]`` before ``trainer.train()``. ``finetune`` relies on that preset
module (a trainer whose model is a YAML path builds it at full width), so the pruned module must come
through the pickle as it went in.

Here, without GPUs: the parent runs ``finetune(..., device="0,1")`` itself, with only device
selection answered as on a 2-GPU host and ``torch.distributed.run`` replaced by one fresh Python
process that executes the generated script unchanged as worker 0 (the environment torchrun sets,
a one-process gloo group instead of NCCL on two GPUs, the CPU for the device). Its ``train()`` runs
the worker's setup (``_setup_train``: model, EMA, optimizer, data loaders) and one loss, and reports
the widths it got.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel

from fastnas_bench.yolo.models import describe_structure

# Worker 0 of ``torch.distributed.run``, on the CPU: argv[1] is the generated DDP script, argv[2] the
# report. ``select_device`` answers the CPU (the script's args say device "0,1"); ``train`` is replaced
# by the worker's setup, so nothing trains. fastnas_bench is imported only after the state is loaded:
# the unpickling must find the traceable classes by itself.
CHILD = r'''
import json, os, runpy, sys
import torch
import torch.distributed as dist
import ultralytics.engine.trainer as engine

script, report = sys.argv[1], sys.argv[2]
engine.select_device = lambda *args, **kwargs: torch.device("cpu")

def train(self):
    import copy, io
    from fastnas_bench.traceable import TraceableDetectionModel
    from fastnas_bench.yolo.models import describe_structure

    preset = self.model
    dist.init_process_group("gloo", init_method="file://" + report + ".pg", rank=0, world_size=1)
    try:
        self._setup_train()
        loss, _ = self.model(self.preprocess_batch(next(iter(self.train_loader))))
    finally:
        dist.destroy_process_group()
    # The worker's checkpoints pickle the EMA with plain pickle: its classes must be the importable ones.
    torch.save({"ema": copy.deepcopy(self.ema.ema).half()}, io.BytesIO())
    with open(report, "w") as f:
        json.dump({
            "class": type(self.model).__module__ + "." + type(self.model).__qualname__,
            "class_by_reference": type(self.model) is TraceableDetectionModel,
            "kept_preset": self.model is preset,
            "conv_out_channels": describe_structure(self.model)["conv_out_channels"],
            "ema_conv_out_channels": describe_structure(self.ema.ema)["conv_out_channels"],
            "loss_finite": bool(torch.isfinite(loss).all()),
            "args_model": self.args.model,
            "args_device": self.args.device,
            "callbacks": sorted(cb.__qualname__ for cbs in self.callbacks.values() for cb in cbs
                                if cb.__module__.startswith("fastnas_bench")),
        }, f)

engine.BaseTrainer.train = train
runpy.run_path(script, run_name="__main__")
'''


class _Launched(Exception):
    """Raised by the stand-in for ``subprocess.run`` once the worker has reported."""


@pytest.fixture(scope="module")
def stock() -> DetectionModel:
    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", nc=5, verbose=False)


@pytest.fixture(scope="module")
def pruned(stock: DetectionModel) -> DetectionModel:
    """A real FastNAS subnet (modelopt's fastnas mode, exported) with uneven widths, in seconds.

    The search itself (``FastNAS.prune``) takes minutes on two cores; it ends in the same
    ``mtn.export`` of the same search space, which is what decides what the module is made of.
    """
    import modelopt.torch.nas as mtn
    import modelopt.torch.prune as mtp
    from modelopt.torch.nas.utils import sample

    from fastnas_bench.methods._lib.search_space import search_space_config
    from fastnas_bench.traceable import make_traceable

    config = search_space_config(stock, 16)
    model = mtn.convert(make_traceable(copy.deepcopy(stock)), [("fastnas", config)],
                        registry=mtp.pruning.PruneModeRegistry)
    sample(model, random.Random(0).choice)
    return mtn.export(model)


def test_pruned_module_survives_the_ddp_state_round_trip(
    pruned: DetectionModel, stock: DetectionModel, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ultralytics.engine.trainer as engine
    import ultralytics.utils.dist as ultralytics_dist

    from fastnas_bench.methods.fastnas import FastNAS
    from fastnas_bench.variants.spec import VariantSpec
    from fastnas_bench.yolo.train import finetune

    # Ultralytics' DDP launch pickles with it, and installs it on the first launch only when
    # YOLO_AUTOINSTALL is on (this suite turns it off): without it the launch fails at the import.
    pytest.importorskip("cloudpickle", minversion="3.1.1")
    widths = describe_structure(pruned)["conv_out_channels"]
    assert widths != describe_structure(stock)["conv_out_channels"]

    # The launching process of a 2-GPU host: the trainer's own __init__ then sets world_size 2 and
    # ddp (and leaves workers alone); no CUDA call is made before the launch.
    monkeypatch.setattr(engine, "select_device", lambda *args, **kwargs: torch.device("cuda", 0))
    monkeypatch.setattr(ultralytics_dist, "USER_CONFIG_DIR", tmp_path / "config")  # the DDP files go here
    (tmp_path / "config").mkdir()
    child = tmp_path / "worker.py"
    child.write_text(CHILD)
    report = tmp_path / "report.json"
    launched: dict = {}

    def run(cmd: list[str], check: bool = False) -> None:
        assert cmd[1:3] == ["-m", "torch.distributed.run"], cmd
        assert cmd[cmd.index("--nproc_per_node") + 1] == "2", cmd
        script = Path(cmd[-1])
        assert script.with_suffix(".pt").is_file()
        env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
        done = subprocess.run([sys.executable, str(child), str(script), str(report)], check=False, env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
        launched["script"] = script
        raise _Launched

    monkeypatch.setattr(engine, "subprocess", SimpleNamespace(run=run))

    spec = VariantSpec(imgsz=64, batch=4, method="fastnas", flops_target=0.66, finetune_epochs=1)
    with pytest.raises(_Launched):
        finetune(pruned, spec, tiny_dataset, "0,1", tmp_path / "ft", constrain=FastNAS().constrain)

    got = json.loads(report.read_text())
    assert got["conv_out_channels"] == widths, "the worker trains other widths than the pruned module's"
    assert got["ema_conv_out_channels"] == widths
    assert got["kept_preset"], "the worker's setup replaced the preset module"
    assert got["class"] == "fastnas_bench.traceable.TraceableDetectionModel" and got["class_by_reference"]
    assert got["loss_finite"]
    # The worker's config still names the YAML (never built) and the devices of the launch.
    assert got["args_model"] == "yolov8n.yaml" and got["args_device"] == "0,1"
    # finetune's callbacks (the constraint re-applied after each batch, the epoch report) came along.
    assert got["callbacks"] == ["epoch_callback.<locals>.callback", "finetune.<locals>.reapply"]
    # Ultralytics removed its temporary script and state after the launch.
    assert not launched["script"].exists() and not launched["script"].with_suffix(".pt").exists()


def test_multi_gpu_finetune_without_gpus_fails_at_once(pruned: DetectionModel, tiny_dataset: Path,
                                                         tmp_path: Path) -> None:
    """``device="0,1"`` on a host without CUDA: the trainer's ``select_device`` refuses it before any launch."""
    from fastnas_bench.variants.spec import VariantSpec
    from fastnas_bench.yolo.train import finetune

    spec = VariantSpec(imgsz=64, batch=4, method="fastnas", flops_target=0.66, finetune_epochs=1)
    if torch.cuda.device_count() >= 2:
        pytest.skip("this host has two GPUs")
    with pytest.raises(ValueError, match="Invalid CUDA 'device=0,1' requested"):
        finetune(pruned, spec, tiny_dataset, "0,1", tmp_path / "ft")
    assert not (tmp_path / "ft" / "weights" / "best.pt").exists()
