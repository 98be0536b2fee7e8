"""How a benchmark test ends: pass, fail with the figures, *undecided*, or skipped with the reason."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

import pytest

from fastnas_bench.verdicts.gates import MAX_GATING_RESOLUTION, STORED_FAMILY_ALPHA, gate_alpha, gate_message, judge
from fastnas_bench.verdicts.outcome import Outcome, holm
from fastnas_bench.verdicts.records import LatencyRecord, SpeedupRecord, TestKey

if TYPE_CHECKING:
    from fastnas_bench.config.settings import BenchSettings
    from fastnas_bench.pytest_plugin.session import BenchSession, GateResult

#: A test's user property that marks its skip as an undecided verdict.
VERDICT_PROPERTY = ("fastnas_bench_verdict", "undecided")


def report_outcome(request: pytest.FixtureRequest, outcome: Outcome, message: str) -> None:
    """End a test with a verdict's outcome: pass, fail (``message``), or *undecided*.

    Undecided is reported as its own outcome (``U`` / ``UNDECIDED`` and a count in the final line),
    never as a pass; it does not fail the run, because the measurement did not show a failure either.
    """
    if outcome is Outcome.FAIL:
        pytest.fail(message, pytrace=False)
    if outcome is Outcome.UNDECIDED:
        request.node.user_properties.append(VERDICT_PROPERTY)
        pytest.skip(f"UNDECIDED: {message}")


def unavailable(settings: BenchSettings, backend: str, reason: str) -> NoReturn:
    """Skip a test whose backend cannot run here, with the reason; fail instead where the user
    asked for that backend by name on a GPU run (a nightly must not go green on skips)."""
    if backend in settings.required_backends:
        pytest.fail(f"--backends {backend} was requested but cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def judge_against_stored(request: pytest.FixtureRequest, session: BenchSession, stored: TestKey, backend: str,
                         current: SpeedupRecord | LatencyRecord, head: str) -> None:
    """The regression gate of ``current``'s kind against the stored runs of ``stored``; skips with the
    count while too few are stored."""
    runs = session.store.runs(stored)
    verdict = judge(runs, current, gate_alpha(session.gate_tests))
    if verdict is None:
        shift = session.store.accepted_shift(stored.format())
        since = f" since the shift accepted at {shift['at']} ({shift['reason']})" if shift else ""
        pytest.skip(f"{len(runs)} stored run(s) of {stored.format()} in {session.store.where}{since}; the gate needs "
                    "≥ 5 (record runs with --update-baselines)")
    message = gate_message(head, verdict, runs, current)
    coarse = verdict.outcome is not Outcome.FAIL and verdict.resolution > MAX_GATING_RESOLUTION
    session.note_gate(request.node.name, stored, backend, "speedup" if isinstance(current, SpeedupRecord) else "latency",
                      verdict, "reported" if coarse else verdict.outcome.value)
    if coarse:
        # A gate that only catches changes over 50% here cannot tell a pass from a miss: it reports its
        # figures instead of passing. A failure it does show is a change beyond that, and fails.
        pytest.skip(f"not gating (resolution {verdict.resolution:.0%} > {MAX_GATING_RESOLUTION:.0%} on this machine): "
                    f"{message}")
    report_outcome(request, verdict.outcome, message)


def holm_rejections(gates: dict[str, GateResult]) -> list[str]:
    """Names of the gates Holm's procedure over ``gates`` rejects that had not failed on their own."""
    rejected = holm([g.p_value for g in gates.values()], STORED_FAMILY_ALPHA)
    return [name for (name, g), r in zip(gates.items(), rejected) if r and g.outcome != "fail"]


def judge_gate_family(session: BenchSession) -> None:
    """Holm's procedure over the stored-run gates this run judged: fail naming any gate it rejects
    beyond those that failed on their own (each gate already decided at the family's rate split over
    all gate tests, Holm's first step; the further steps need every gate's p-value, so they run last).
    A gate rejected here is recorded as failed, like one that failed on its own."""
    gates = session.gates
    if not gates:
        pytest.skip("no stored-run gate judged in this run (each skipped, naming why): no family to control")
    extra = holm_rejections(gates)
    for name in extra:
        gates[name] = replace(gates[name], outcome=Outcome.FAIL.value)
    if extra:
        pytest.fail(f"Holm's procedure over the {len(gates)} stored-run gates of this run, family-wise false-alarm "
                    f"rate {STORED_FAMILY_ALPHA:.0%}, also rejects: "
                    + "; ".join(f"{name} (p = {gates[name].p_value:.2g})" for name in extra), pytrace=False)
