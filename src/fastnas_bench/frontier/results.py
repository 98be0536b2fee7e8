"""Measured results of a frontier run, one file per (configuration, backend), so a rerun resumes.

Each result is written atomically as soon as it is measured, under a name made of the
configuration's widths digest and the digest of everything else that changes the measurement
(backend, network, image size, batch, threads, rounds, machine class, runtime versions). A rerun
with the same settings skips every result that is there; a file that does not parse or whose
stored key differs (a hand edit, another run's) is measured again, with a warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastnas_bench import progress
from fastnas_bench.frontier.sampling import FrontierConfig
from fastnas_bench.fsutil import atomic_write_text
from fastnas_bench.keys import digest
from fastnas_bench.measure.probe import LatencyRatio

log = logging.getLogger(__name__)

#: Bumped when what a result file holds changes; part of every key.
RESULT_VERSION = 1

Measure = Callable[[FrontierConfig, str], LatencyRatio]


class ResultStore:
    """Results under ``root/<backend>/<config digest>-<settings digest>.json``.

    Args:
        root: Folder of the results (created on the first write).
        settings: What changes a measurement besides the configuration and backend (JSON-able).
    """

    def __init__(self, root: Path, settings: Mapping[str, Any]) -> None:
        self.root = root
        self.settings = dict(settings)

    def key(self, config_digest: str, backend: str) -> dict[str, Any]:
        return {"config": config_digest, "backend": backend, "settings": self.settings, "version": RESULT_VERSION}

    def path(self, config_digest: str, backend: str) -> Path:
        return self.root / backend / f"{config_digest}-{digest(self.key(config_digest, backend))}.json"

    def get(self, config_digest: str, backend: str) -> LatencyRatio | None:
        """The stored result, or ``None`` where there is none or it cannot be trusted."""
        path = self.path(config_digest, backend)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if data["key"] != self.key(config_digest, backend):
                raise ValueError("its key is another run's")
            return LatencyRatio(float(data["latency_ratio"]), float(data["ratio_low"]), float(data["ratio_high"]),
                                int(data["rounds"]))
        except (ValueError, KeyError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            log.warning("result %s is unreadable (%s); measuring it again", path, e)
            return None

    def put(self, config_digest: str, backend: str, ratio: LatencyRatio) -> Path:
        data = {"key": self.key(config_digest, backend), "latency_ratio": ratio.ratio, "ratio_low": ratio.ratio_low,
                "ratio_high": ratio.ratio_high, "rounds": ratio.rounds}
        return atomic_write_text(self.path(config_digest, backend), json.dumps(data, indent=1, sort_keys=True))


def measure_all(configs: Sequence[FrontierConfig], backends: Sequence[str], measure: Measure,
                store: ResultStore) -> dict[tuple[str, str], LatencyRatio]:
    """Every (configuration, backend) result: read from ``store`` where it is there, else measured and
    stored at once. Configuration by configuration, so all backends time one subnet in a row.

    Returns:
        (config digest, backend) → latency ratio.
    """
    results = {(c.digest, b): store.get(c.digest, b) for c in configs for b in backends}
    todo = [(c, b) for c in configs for b in backends if results[(c.digest, b)] is None]
    progress.report(f"frontier: {len(results) - len(todo)} of {len(results)} results already in {store.root}; "
                    f"measuring {len(todo)}")
    for done, (config, backend) in enumerate(todo, 1):
        progress.step("frontier: measured (configuration, backend)", done, len(todo))
        ratio = measure(config, backend)
        store.put(config.digest, backend, ratio)
        results[(config.digest, backend)] = ratio
    return {k: v for k, v in results.items() if v is not None}
