"""Progress of long build steps, shown as they happen.

A cold run trains, searches and exports for minutes inside a fixture, where pytest captures all
output. The plugin points :func:`set_sink` at its terminal (capture suspended for the line); the
command line keeps the default, the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("fastnas_bench")

_sink: Callable[[str], None] = log.info
# Steps of a counted phase shown: the first, every EVERY-th and the last.
EVERY = 10


def set_sink(sink: Callable[[str], None] | None) -> None:
    """Send progress lines to ``sink`` (``None``: back to the log)."""
    global _sink
    _sink = sink or log.info


def report(message: str) -> None:
    _sink(message)


def step(what: str, done: int, total: int | None = None) -> None:
    """``what k/N``, thinned to the first, every :data:`EVERY`-th and the last step."""
    if done == 1 or done % EVERY == 0 or done == total:
        report(f"{what} {done}/{total}" if total else f"{what} {done}")


def epoch_callback(what: str) -> Callable[[object], None]:
    """An Ultralytics ``on_train_epoch_end`` callback that reports ``what epoch k/N``."""

    def callback(trainer: object) -> None:
        step(f"{what} epoch", int(trainer.epoch) + 1, int(trainer.epochs))  # type: ignore[attr-defined]

    return callback
