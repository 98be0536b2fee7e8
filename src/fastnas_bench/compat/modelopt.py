"""nvidia-modelopt internals: search-space hparams, width selection, channel sorting, the search checkpoint.

modelopt's documented API is ``mtp.prune``, ``mtn.convert`` and ``mtn.export``. Reading a search
space's widths, setting them, sorting channels by importance, the FastNAS config's rule keys, the
key the FastNAS searcher stores its sensitivity map under and the text of its "constraints cannot be
satisfied" error are not part of it; every use of them goes through this module.

modelopt itself (and torch under it) is imported inside the functions: importing this module must
stay free of torch, so ``pytest --help`` and the CLI's argument parsing stay fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

READ_FROM = {"nvidia-modelopt": "0.47.0"}
# What attribute lookup cannot see is checked by behaviour in tests/test_compat.py: the FastNAS
# config's rule keys, the searcher's state-dict key, the unreachable-constraint error text.
RELIED_ON = (
    ("modelopt.torch.opt.utils", "named_hparams"),
    ("modelopt.torch.opt.hparam", "Hparam.choices"),
    ("modelopt.torch.opt.dynamic", "DynamicModule"),
    ("modelopt.torch.nas.utils", "select"),
    ("modelopt.torch.nas.utils", "sort_parameters"),
    ("modelopt.torch.prune.pruning", "PruneModeRegistry"),
    ("modelopt.torch.prune.fastnas", "FastNASConfig"),
    # The searcher FastNAS runs; its ``default_state_dict`` names what the search checkpoint holds.
    ("modelopt.torch.prune.fastnas", "BinarySearcher.default_state_dict"),
    # Its selection rule, which the frontier's FastNAS-like family reproduces (frontier.sampling.fastnas_widths).
    ("modelopt.torch.prune.fastnas", "BinarySearcher._apply_fastnas_according_to_threshold"),
    # BatchNorm recalibration of a sampled subnet (see ``recalibrate_batchnorm``).
    ("modelopt.torch.nas.patch", "prep_for_eval"),
    ("modelopt.torch.nas.autonas", "MODELOPT_QUEUE_MAXLEN"),
)

#: Key of the FastNAS searcher's state dict (and so of its search checkpoint) holding the
#: sensitivity map: hparam name → choice → score lost with only that hparam narrowed to it.
SENSITIVITY_MAP_KEY = "sensitivity_map"
#: File name of the FastNAS search checkpoint (modelopt's searcher state) in a search folder of the cache.
SEARCH_CHECKPOINT_FILE = "fastnas_search.pth"
#: Text of the ``ValueError`` modelopt's ``profile`` raises when no subnet meets the constraints
#: ("NOT all constraints can be satisfied within the search space, see above!").
UNREACHABLE_CONSTRAINT_TEXT = "constraints can be satisfied"


def fastnas_config(channel_divisor: int, frozen_convs: Iterable[str] = ()) -> Any:
    """FastNAS search-space rules: widths in multiples of ``channel_divisor``, ``frozen_convs`` fixed.

    The rules are a nested dict keyed by modelopt's own module-type names and rule names; both
    are modelopt's choice, so they are spelled here only.

    Args:
        channel_divisor: Every Conv2d width (and its BatchNorm's) is a multiple of it.
        frozen_convs: Module-name glob patterns of Conv2d layers whose widths stay as they are.

    Returns:
        A ``FastNASConfig`` for ``mtn.convert`` / ``mtp.prune``'s ``("fastnas", config)`` mode.
    """
    import modelopt.torch.prune as mtp

    config = mtp.fastnas.FastNASConfig()
    config["nn.Conv2d"]["*"]["channel_divisor"] = channel_divisor
    config["nn.BatchNorm2d"]["*"]["feature_divisor"] = channel_divisor
    for pattern in frozen_convs:
        # ``None`` for a pattern turns the rule off: the matching convs are not made dynamic.
        config["nn.Conv2d"][pattern] = None
    return config


def convert_to_search_space(net: Any, config: Any) -> Any:
    """``net`` converted (in place) to a FastNAS search space under ``config``; returns it.

    ``mtn.convert`` is public, but the FastNAS mode lives in the pruning registry, which is not:
    without it ``convert`` knows only the NAS modes.
    """
    import modelopt.torch.nas as mtn
    import modelopt.torch.prune as mtp

    return mtn.convert(net, [("fastnas", config)], registry=mtp.pruning.PruneModeRegistry)


def sort_channels(net: Any) -> None:
    """Sort every dynamic layer's channels by modelopt's importance, most important first (in place).

    FastNAS's searcher does this before it scores anything, so a narrower width keeps the most
    important channels; a width read from its sensitivity map means the same only after this.
    """
    from modelopt.torch.nas.utils import sort_parameters

    sort_parameters(net)


def configurable_hparams(net: Any) -> dict[str, Any]:
    """Hparam name → hparam of every configurable hparam of search-space ``net``, in modelopt's order."""
    from modelopt.torch.opt.utils import named_hparams

    return dict(named_hparams(net, configurable=True))


def hparam_choices(hp: Any) -> Sequence[int]:
    """The widths ``hp`` can take (for FastNAS's width hparams, ascending integers)."""
    return hp.choices


def full_widths(net: Any) -> dict[str, int]:
    """Hparam name → its widest choice, for every configurable hparam of search-space ``net``."""
    return {k: max(hparam_choices(hp)) for k, hp in configurable_hparams(net).items()}


def set_widths(net: Any, widths: Mapping[str, int]) -> None:
    """Set the named hparams of search-space ``net`` to ``widths``; hparams not named keep their value.

    Non-strict: names that are not configurable hparams of ``net`` are ignored, as every caller
    here hands in names taken from the same network.
    """
    from modelopt.torch.nas.utils import select

    select(net, dict(widths), strict=False)


@contextlib.contextmanager
def widths_selected(net: Any, widths: Mapping[str, int]) -> Iterator[None]:
    """``net`` at ``widths`` (every other hparam at full width) for the block, then back at full width.

    Reading a narrowed layer's shape means selecting widths on the shared search-space network;
    restoring full widths afterwards leaves it as every caller expects to find it.
    """
    full = full_widths(net)
    set_widths(net, {**full, **widths})
    try:
        yield
    finally:
        set_widths(net, full)


def recalibrate_batchnorm(net: Any, batches: Sequence[Any]) -> None:
    """Recompute the BatchNorm statistics of ``net``'s current subnet from ``batches`` (each one forward
    input), by modelopt's own ``prep_for_eval``: statistics reset, a momentum-free average over the
    batches, eval mode.

    modelopt recalibrates a sampled subnet by itself only from its data queue, and only once the
    queue holds ``MODELOPT_QUEUE_MAXLEN`` (50) batches; with fewer it warns ("modelopt data queue not
    filled!") and scores the candidate with the statistics of the last calibration. Calling this
    before each score makes the calibration explicit and independent of the queue's length.
    """
    import torch
    from modelopt.torch.nas.patch import prep_for_eval

    def forward_loop(model: Any) -> None:
        with torch.no_grad():
            for batch in batches:
                model(batch)

    prep_for_eval(net, forward_loop)


def calibration_queue_length() -> int:
    """Batches modelopt's own calibration queue must hold before it recalibrates a subnet by itself."""
    from modelopt.torch.nas.autonas import MODELOPT_QUEUE_MAXLEN

    return int(MODELOPT_QUEUE_MAXLEN)


def is_dynamic(model: Any) -> bool:
    """Whether ``model`` still holds modelopt dynamic modules (a search space, not an exported net)."""
    from modelopt.torch.opt.dynamic import DynamicModule

    return any(isinstance(m, DynamicModule) for m in model.modules())


def read_sensitivity_map(checkpoint: Path) -> dict[str, dict[int, float]] | None:
    """The sensitivity map a FastNAS search stored in its checkpoint, as stored.

    The map (hparam → choice → score lost) is part of modelopt's searcher state, not of any
    documented output; it is read from the checkpoint file the search writes.

    Returns:
        The map (possibly empty), or ``None`` where the file is missing or unreadable or holds no map.
    """
    import pickle

    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):  # not a checkpoint torch can read
        return None
    if not isinstance(state, dict):
        return None
    found = state.get(SENSITIVITY_MAP_KEY)
    return found if isinstance(found, dict) else None


def is_unreachable_constraint_error(exc: BaseException) -> bool:
    """Whether ``exc`` is modelopt's "NOT all constraints can be satisfied" (no subnet meets the target).

    modelopt raises a plain ``ValueError`` whose text is a 40-line profiling table; only the text
    tells it apart from any other ``ValueError``.
    """
    return isinstance(exc, ValueError) and UNREACHABLE_CONSTRAINT_TEXT in str(exc)

