"""Stored baselines per machine class, and the statistical latency-regression verdict.

A baseline file ``baselines/<machine-class>/<profile>.json`` holds, per test id, the expected
median latency with its per-round samples, plus the speedup, FLOPs ratio and accuracy of the run
that wrote it. Files are only written by ``--update-baselines`` at the end of a session in which
every test passed, atomically (temporary file + rename), so a failed or partial run never changes
them.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastnas_bench.errors import BadInputError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Verdict:
    """Outcome of comparing current latency samples with stored ones.

    Attributes:
        regressed: True when the slowdown is both significant and large enough.
        median_ratio: current median / stored median.
        p_value: one-sided Mann-Whitney U p-value for "current is slower".
        ci_low: lower end of the bootstrap 95% interval of the median ratio.
        ci_high: upper end of that interval.
    """

    regressed: bool
    median_ratio: float
    p_value: float
    ci_low: float
    ci_high: float

    def describe(self, test_id: str, stored_ms: float, current_ms: float, tolerance: float) -> str:
        return (
            f"{test_id}: median {current_ms:.3f} ms vs stored {stored_ms:.3f} ms "
            f"(ratio {self.median_ratio:.3f}, 95% CI [{self.ci_low:.3f}, {self.ci_high:.3f}], "
            f"Mann-Whitney p={self.p_value:.2g}, tolerance +{tolerance:.0%})"
        )


def regression_verdict(
    stored_ms: list[float] | np.ndarray,
    current_ms: list[float] | np.ndarray,
    tolerance: float = 0.10,
    alpha: float = 0.01,
    n_boot: int = 2000,
    seed: int = 0,
) -> Verdict:
    """Decide whether ``current_ms`` is a latency regression against ``stored_ms``.

    A regression needs all three: the rank test says current is slower (p < ``alpha``), the
    median ratio exceeds ``1 + tolerance`` (minimum effect size), and the bootstrap 95% interval of
    the median ratio lies above 1. Noise alone rarely passes all three, so the verdict does not
    flap on a shared machine.

    Raises:
        ValueError: with fewer than 5 samples on either side.
    """
    from scipy.stats import mannwhitneyu

    stored = np.asarray(stored_ms, dtype=float)
    current = np.asarray(current_ms, dtype=float)
    if stored.size < 5 or current.size < 5:
        raise ValueError(f"need ≥ 5 samples per side, got {stored.size} stored and {current.size} current")
    p_value = float(mannwhitneyu(current, stored, alternative="greater").pvalue)
    ratio = float(np.median(current) / np.median(stored))
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(current, (n_boot, current.size)), axis=1) / np.median(
        rng.choice(stored, (n_boot, stored.size)), axis=1
    )
    ci_low, ci_high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    regressed = p_value < alpha and ratio > 1 + tolerance and ci_low > 1.0
    return Verdict(regressed, ratio, p_value, ci_low, ci_high)


def normalized_samples(entry: dict[str, Any]) -> list[float]:
    """Latency samples in units of the entry's calibration workload (raw ms if it has none)."""
    calib = entry.get("calibration_ms")
    return [x / calib for x in entry["samples_ms"]] if calib else list(entry["samples_ms"])


def baseline_path(root: Path, machine_class: str, profile: str) -> Path:
    return root / machine_class / f"{profile}.json"


def _load_doc(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadInputError(f"baseline file {path} is unreadable: {e}") from None
    if doc.get("schema") != SCHEMA_VERSION:
        raise BadInputError(f"baseline file {path} has schema {doc.get('schema')!r}, expected {SCHEMA_VERSION}")
    return dict(doc)


def load_baselines(path: Path) -> dict[str, dict[str, Any]]:
    """Stored entries by test id; empty if the file does not exist.

    Raises:
        BadInputError: if the file exists but is unreadable or of another schema.
    """
    return dict(_load_doc(path).get("tests", {}))


def stored_tolerance(path: Path) -> float | None:
    """The regression tolerance recorded for this machine class (its measured noise), if any."""
    value = _load_doc(path).get("tolerance")
    return float(value) if value is not None else None


def write_baselines(
    path: Path, machine_class: str, profile: str, tests: dict[str, dict[str, Any]], tolerance: float | None = None
) -> None:
    """Atomically replace ``path`` with the given entries (merged over the existing ones).

    ``tolerance`` (if given) is stored with the file and used for this machine class whenever
    ``--regression-tolerance`` is not given; an existing one is kept otherwise.
    """
    old = _load_doc(path)
    merged = {**old.get("tests", {}), **tests}
    doc = {"schema": SCHEMA_VERSION, "machine_class": machine_class, "profile": profile, "tests": merged}
    tolerance = tolerance if tolerance is not None else old.get("tolerance")
    if tolerance is not None:
        doc["tolerance"] = tolerance
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
