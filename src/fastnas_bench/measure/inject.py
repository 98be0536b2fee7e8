"""A test-only hook that slows chosen variants on chosen backends, to show what the verdicts catch.

Kept out of normal runs' way: it does nothing unless the variable is set, a run with it set says
so in its summary, and ``--update-baselines`` refuses to record such a run.
"""

from __future__ import annotations

import os

from fastnas_bench.backends.registry import BACKEND_NAMES
from fastnas_bench.errors import BadInputError

#: Test-only hook: ``FASTNAS_BENCH_INJECT_SLOWDOWN="onnxruntime:fastnas66=10%"`` makes every timed
#: call of that variant on that backend take 10% longer by burning CPU after it (``*`` for every
#: variant; several items comma-separated), to show which slowdowns the verdicts catch. An item may
#: name one side of an A/B comparison, ``B/onnxruntime:*=15%``: then only that side's worker slows,
#: and the in-process benchmarks do not. Runs with it never become baselines.
INJECT_SLOWDOWN_ENV = "FASTNAS_BENCH_INJECT_SLOWDOWN"
#: The in-process benchmarks' "side"; A/B sides are ``A`` and ``B``.
IN_PROCESS = ""


def parse_injected_slowdowns(spec: str) -> dict[tuple[str, str, str], float]:
    """``{(side, backend, variant or "*"): fraction}`` from the hook's value (side ``""``: in process).

    Raises:
        BadInputError: naming an item that is not ``[A/|B/]backend:variant=N%``.
    """
    slowdowns: dict[tuple[str, str, str], float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        target, _, amount = item.partition("=")
        side, _, target = target.rpartition("/")
        backend, _, variant = target.partition(":")
        try:
            fraction = float(amount.removesuffix("%")) / 100 if amount.endswith("%") else float("nan")
        except ValueError:
            fraction = float("nan")
        if side not in (IN_PROCESS, "A", "B") or backend not in BACKEND_NAMES or not variant or not fraction > 0:
            raise BadInputError(f"{INJECT_SLOWDOWN_ENV} item {item!r} must look like backend:variant=10% or "
                                f"B/backend:variant=10% (backend one of {', '.join(BACKEND_NAMES)}, variant a name "
                                "or *, side A or B of an A/B comparison)")
        slowdowns[(side, backend, variant)] = fraction
    return slowdowns


def injected_slowdown(backend: str, variant: str, side: str = IN_PROCESS) -> float:
    """Fraction by which :data:`INJECT_SLOWDOWN_ENV` slows ``variant`` on ``backend`` on ``side`` (0 if not named)."""
    slowdowns = parse_injected_slowdowns(os.environ.get(INJECT_SLOWDOWN_ENV, ""))
    return slowdowns.get((side, backend, variant), slowdowns.get((side, backend, "*"), 0.0))
