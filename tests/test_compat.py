"""The third-party internals the adapters in ``fastnas_bench.compat`` rely on are still there.

Each adapter lists the class- and module-level names it relies on in ``RELIED_ON``; these are looked
up on the installed versions. What attribute lookup cannot see (instance attributes, dict keys, the
text of an error) is checked by behaviour, or, where running it is not cheap, in the library's source.
A failure names what is gone, the version the adapter was read from and the version installed.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from fastnas_bench import compat
from fastnas_bench.versions import package_version

ADAPTERS = sorted(m.name for m in pkgutil.iter_modules(compat.__path__))


def _adapter(name: str) -> ModuleType:
    return importlib.import_module(f"{compat.__name__}.{name}")


def _versions(module: ModuleType) -> str:
    return "; ".join(f"{dist}: read from {read}, installed {package_version(dist)}"
                     for dist, read in module.READ_FROM.items())


def test_every_library_has_its_adapter() -> None:
    assert {"modelopt", "pytest", "pytest_benchmark", "ultralytics"} <= set(ADAPTERS), ADAPTERS


@pytest.mark.parametrize("name", ADAPTERS)
def test_what_the_adapter_relies_on_is_installed(name: str) -> None:
    module = _adapter(name)
    gone = compat.missing(module.RELIED_ON)
    assert gone == [], f"{module.__name__} relies on names the installed version lacks: {', '.join(gone)} " \
                       f"({_versions(module)})"


def test_adapters_import_without_torch() -> None:
    """Importing any adapter keeps torch, Ultralytics and modelopt out (``pytest --help`` stays light)."""
    modules = ", ".join(f"{compat.__name__}.{name}" for name in ADAPTERS)
    probe = (f"import sys, {modules}\n"
             "heavy = [m for m in ('torch', 'ultralytics', 'modelopt') if m in sys.modules]\n"
             "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


# --- nvidia-modelopt ---------------------------------------------------------------------------------


def test_sensitivity_map_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    import torch

    from fastnas_bench.compat.modelopt import SENSITIVITY_MAP_KEY, read_sensitivity_map

    stored = {"model.1.conv.out_channels": {16: 0.06, 32: 0.0}}
    checkpoint = tmp_path / "search.pth"
    torch.save({SENSITIVITY_MAP_KEY: stored, "history": []}, checkpoint)
    assert read_sensitivity_map(checkpoint) == stored
    torch.save({"history": []}, checkpoint)
    assert read_sensitivity_map(checkpoint) is None
    assert read_sensitivity_map(tmp_path / "absent.pth") is None


def test_fastnas_searcher_stores_its_sensitivity_map_under_the_key() -> None:
    """The key is one of the FastNAS searcher's state-dict keys, which is what its checkpoint holds."""
    import modelopt.torch.prune as mtp

    from fastnas_bench.compat.modelopt import READ_FROM, SENSITIVITY_MAP_KEY

    searcher_cls = mtp.pruning.PruneModeRegistry["fastnas"].search_algorithm
    # ``default_state_dict`` reads no instance state; an uninitialised instance avoids a real search.
    keys = searcher_cls.__new__(searcher_cls).default_state_dict
    assert SENSITIVITY_MAP_KEY in keys, (
        f"{searcher_cls.__name__} no longer stores {SENSITIVITY_MAP_KEY!r} (keys {sorted(keys)}; "
        f"read from nvidia-modelopt {READ_FROM['nvidia-modelopt']}, installed {package_version('nvidia-modelopt')})")


def test_search_space_helpers_on_a_tiny_network() -> None:
    """Config rules, conversion, hparams, width selection and the unreachable-constraint error, for real."""
    import copy

    import modelopt.torch.nas as mtn
    import torch
    from torch import nn

    from fastnas_bench.compat.modelopt import (
        configurable_hparams,
        convert_to_search_space,
        fastnas_config,
        full_widths,
        hparam_choices,
        is_dynamic,
        is_unreachable_constraint_error,
        set_widths,
        sort_channels,
        widths_selected,
    )

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 8, 1))
    net = convert_to_search_space(net, fastnas_config(16, frozen_convs=["6"]))
    sort_channels(net)
    hparams = configurable_hparams(net)
    # The divisor rule took effect (widths in steps of 16); the frozen conv's input width is fixed,
    # so the width of the conv that feeds it is no hparam either.
    assert list(hparam_choices(hparams["0.out_channels"])) == [16, 32, 48, 64], hparams
    assert not any(k.startswith(("3.", "6.")) for k in hparams), hparams
    assert full_widths(net) == {"0.out_channels": 64}
    with widths_selected(net, {"0.out_channels": 16}):
        assert net[0].out_channels == 16 and net[3].in_channels == 16
    assert net[0].out_channels == 64
    set_widths(net, {"0.out_channels": 32})
    assert net[0].out_channels == 32
    set_widths(net, full_widths(net))
    assert is_dynamic(net) and not is_dynamic(mtn.export(copy.deepcopy(net)))

    with pytest.raises(ValueError) as unreachable:
        mtn.profile(net, torch.zeros(1, 3, 8, 8), constraints={"flops": "1%"}, strict=True, verbose=False)
    assert is_unreachable_constraint_error(unreachable.value), str(unreachable.value)[-200:]
    assert not is_unreachable_constraint_error(ValueError("unrelated"))


# --- Ultralytics ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", nc=2, verbose=False).eval()


def test_private_predict_paths_are_the_stock_forward(detector) -> None:  # type: ignore[no-untyped-def]
    import torch

    from fastnas_bench.compat.ultralytics import predict_once

    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(predict_once(detector, x)[0], detector(x)[0])


def test_c2f_parts_and_hidden_width() -> None:
    """C2f keeps ``cv1``/``m``/``cv2`` and a hidden width ``c`` that its split forward reads."""
    import torch
    from ultralytics.nn.modules.block import C2f

    from fastnas_bench.compat.ultralytics import c2f_parts, sync_c2f_hidden_width

    torch.manual_seed(0)
    block = C2f(8, 8, n=1).eval()
    cv1, blocks, cv2 = c2f_parts(block)
    assert (cv1, cv2) == (block.cv1, block.cv2) and list(blocks) == list(block.m)
    x = torch.rand(1, 8, 4, 4)
    block.c = 3  # stale, as after pruning narrowed cv1
    with pytest.raises(RuntimeError):
        block.forward_split(x)  # split at the stale width: ``c`` is what forward_split reads
    sync_c2f_hidden_width(block)
    with torch.inference_mode():
        assert torch.equal(block.forward_split(x), block.forward(x))


def test_trainer_trains_a_preset_module() -> None:
    """The trainer keeps a module already in ``trainer.model`` instead of building one from the YAML.

    Running the trainer to see it takes a training run (test_traceable's fine-tune test does that);
    here the undocumented check it rests on is looked for in ``setup_model``'s source, where the
    trainer decides whether to call ``get_model`` (which builds from the YAML).
    """
    from ultralytics.models.yolo.detect import DetectionTrainer

    source = inspect.getsource(DetectionTrainer.setup_model)
    check = "if isinstance(self.model, torch.nn.Module):"
    assert check in source, f"setup_model no longer skips a preset module ({package_version('ultralytics')})"
    assert source.index(check) < source.index("self.get_model(")


def test_ema_module_is_the_averaged_copy() -> None:
    from torch import nn
    from ultralytics.utils.torch_utils import ModelEMA

    from fastnas_bench.compat.ultralytics import ema_module

    ema = ModelEMA(nn.Linear(2, 2))
    assert isinstance(ema.ema, nn.Linear)
    assert ema_module(SimpleNamespace(ema=ema)) is ema.ema
    assert ema_module(SimpleNamespace(ema=None)) is None


def test_validator_stats_keys() -> None:
    """mAP50-95 is one of DetMetrics' keys; the COCO per-size AP keys are written by the validator.

    The per-size keys appear only after a COCO evaluation of saved predictions (faster-coco-eval on
    a validation run); the template the validator writes them with is looked for in its source.
    """
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import DetMetrics

    from fastnas_bench.compat.ultralytics import COCO_SIZE_AP_KEY, MAP50_95_KEY, coco_size_ap_key, map50_95

    assert MAP50_95_KEY in DetMetrics().keys, DetMetrics().keys
    assert map50_95({MAP50_95_KEY: 0.25}) == 0.25
    source = inspect.getsource(DetectionValidator)
    template = re.escape(COCO_SIZE_AP_KEY).replace(re.escape("{size}"), r"\{\w+\}")
    assert re.search(template, source), f"DetectionValidator writes no {COCO_SIZE_AP_KEY} key"
    assert '("small", "medium", "large")' in source
    assert coco_size_ap_key("small") == "metrics/mAP_small(B)"


def test_exporter_names_its_output_after_pt_path() -> None:
    """A real export takes seconds and onnx; the attribute the exporter reads is looked for in its source."""
    from ultralytics.engine.exporter import Exporter

    assert '"pt_path"' in inspect.getsource(Exporter.__call__)


def test_checkpoint_loader_and_nms(detector, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import copy

    import torch

    from fastnas_bench.compat.ultralytics import load_checkpoint_module, non_max_suppression

    path = tmp_path / "model.pt"
    torch.save({"model": copy.deepcopy(detector)}, path)
    loaded = load_checkpoint_module(str(path))
    assert type(loaded) is type(detector)
    kept = non_max_suppression(torch.zeros(1, 4 + 2, 10), conf_thres=0.3, iou_thres=0.7)
    assert len(kept) == 1 and tuple(kept[0].shape) == (0, 6)


# --- pytest-benchmark ------------------------------------------------------------------------------------


def test_benchmark_session_internals(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real pytest-benchmark session: the samples of a pedantic run, and its decision to time nothing."""
    pytester.makeconftest("")
    pytester.makepyfile(test_timed="""
        import os
        from fastnas_bench.compat.pytest_benchmark import timed_samples_s, timing_disabled

        def test_pedantic(benchmark, request):
            benchmark.pedantic(lambda: None, rounds=3, iterations=1)
            disabled = os.environ["EXPECT_DISABLED"] == "1"
            assert timing_disabled(request.config) is disabled
            if not disabled:  # a disabled fixture keeps no stats
                assert len(timed_samples_s(benchmark)) == 3
    """)
    monkeypatch.setenv("EXPECT_DISABLED", "0")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    monkeypatch.setenv("EXPECT_DISABLED", "1")
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-disable").assert_outcomes(passed=1)
