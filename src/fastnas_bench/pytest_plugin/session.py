"""One benchmark session: settings, Ultralytics' environment, storage, stored baselines, the summary.

The hooks in :mod:`fastnas_bench.pytest_plugin.hooks` only hand pytest's events to this object
(pytest-benchmark's ``plugin.py`` and ``BenchmarkSession`` split the same way).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fastnas_bench import progress
from fastnas_bench.compat import pytest as pytest_compat
from fastnas_bench.compat import pytest_benchmark as benchmark_compat
from fastnas_bench.config.settings import BenchSettings, resolve_settings
from fastnas_bench.errors import BadInputError
from fastnas_bench.fsurl import one_line
from fastnas_bench.host import machine_class, require_cuda, static_machine_info
from fastnas_bench.measure.inject import INJECT_SLOWDOWN_ENV, parse_injected_slowdowns
from fastnas_bench.variants.data import GENERATED_PREFIX
from fastnas_bench.verdicts.accuracy import RECALL_CONF
from fastnas_bench.verdicts.baselines import BaselineStore, utc_now
from fastnas_bench.verdicts.gates import MAX_GATING_RESOLUTION, STORED_FAMILY_ALPHA, GateVerdict
from fastnas_bench.verdicts.records import LatencyRecord, SpeedupRecord, TestKey
from fastnas_bench.verdicts.results_store import ResultsStore, resolve_url

if TYPE_CHECKING:
    from fastnas_bench.measure.ab import ABResult
    from fastnas_bench.verdicts.accuracy import PairedDrop

SESSION_KEY = pytest.StashKey["BenchSession"]()

#: Option dests that make up the settings (see ``hooks.pytest_addoption``).
SETTING_OPTIONS = ("gpu", "backends", "methods", "flops_target", "flops_targets", "latency_targets", "latency_backends",
                   "channel_divisors", "min_speedup", "max_map_drop", "max_recall_drop", "batch_sizes", "imgsz", "data",
                   "model", "weights", "cache_dir", "rebuild_variants", "ab_reference", "ab_tolerance",
                   "seeds", "self_checks")


@dataclass(frozen=True)
class GateResult:
    """One regression gate's verdict this run: for the summary, the family's Holm step and the stored run.

    Attributes:
        stored_id: The test id whose stored runs it read (and under which this run is recorded).
        outcome: ``pass`` / ``fail`` / ``undecided``, or ``reported`` for a gate too coarse to gate.
        p_value: See :class:`~fastnas_bench.verdicts.gates.GateVerdict`.
    """

    stored_id: str
    backend: str
    kind: str
    resolution: float
    outcome: str
    p_value: float


class BenchSession:
    """What one pytest session runs with, and what it produced and judged.

    Args:
        settings: The resolved settings.
        store: Stored baselines of this machine class and profile.
        update: Whether a passing run is appended to ``store`` (``--update-baselines``).
    """

    def __init__(self, settings: BenchSettings, store: BaselineStore, update: bool) -> None:
        self.settings = settings
        self.store = store
        self.update = update
        self.produced: dict[str, SpeedupRecord | LatencyRecord] = {}
        self.gates: dict[str, GateResult] = {}
        #: Stored-run gate tests selected in this run (set once collection is done): each gate decides
        #: at the family's rate split over them.
        self.gate_tests = 1
        #: A/B verdicts of this run by test id: (B/A result, outcome).
        self.ab_results: dict[str, tuple[ABResult, str]] = {}
        #: Paired accuracy drops from the baseline by pruned variant name, by metric.
        self.accuracy: dict[str, dict[str, PairedDrop]] = {}
        self.update_note: str | None = None
        #: Why asked-for recording failed (the store unreachable, a file unwritable): the session then fails.
        self.record_error: str | None = None
        #: Test ids stored before this run recorded itself: what the summary needs, without reading the store again.
        self._stored_before: set[str] | None = None
        #: The run as pytest-benchmark saves it (with this suite's fields), once it has been saved.
        self.saved_doc: dict[str, Any] | None = None

    @property
    def machine_class(self) -> str:
        return self.store.machine_class

    @classmethod
    def start(cls, config: pytest.Config) -> BenchSession:
        """Settings from the options, Ultralytics' environment, the machine class and its stored runs.

        Raises:
            pytest.UsageError: for a bad option, a contradiction, or ``--gpu`` without a GPU.
        """
        opts = {name: config.getoption(name) for name in SETTING_OPTIONS}
        opts["profile"] = config.getoption("fastnas_profile")
        try:
            settings = resolve_settings(opts)
            injected = parse_injected_slowdowns(os.environ.get(INJECT_SLOWDOWN_ENV, ""))
        except BadInputError as e:
            raise pytest.UsageError(str(e)) from None
        update = bool(config.getoption("update_baselines"))
        if injected and update:
            raise pytest.UsageError(f"--update-baselines with {INJECT_SLOWDOWN_ENV} set: a deliberately slowed run "
                                    "must never become a baseline")
        _set_ultralytics_env(settings)
        if settings.device == "cuda":
            # The user asked for the GPU: without one, stop now rather than report a green run of skips.
            try:
                require_cuda()
            except BadInputError as e:
                raise pytest.UsageError(str(e)) from None
        key = machine_class(settings.device)
        root = Path(config.getoption("baselines_dir") or config.rootpath / "baselines")
        # pytest-benchmark keys its storage by OS/Python only; keep runs of different hardware apart
        # (runs then sit at <storage>/<machine class>/<pytest-benchmark machine id>/NNNN_*.json).
        benchmark_compat.scope_file_storage(config, key)
        return cls(settings, BaselineStore(root, key, settings.profile.name, _results_store(config, update)), update)

    def record(self, key: TestKey, record: SpeedupRecord | LatencyRecord) -> None:
        """What this run measured for ``key``: stored with --update-baselines (speedups also saved with the run)."""
        self.produced[key.format()] = record

    def note_gate(self, test_name: str, stored: TestKey, backend: str, kind: str, verdict: GateVerdict,
                  outcome: str) -> None:
        self.gates[test_name] = GateResult(stored.format(), backend, kind, verdict.resolution, outcome, verdict.p_value)

    @property
    def speedups(self) -> dict[str, SpeedupRecord]:
        return {k: r for k, r in self.produced.items() if isinstance(r, SpeedupRecord)}

    def show_progress(self, config: pytest.Config) -> None:
        """Send build progress to the terminal through pytest's capture."""
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return

        def to_terminal(message: str) -> None:
            with pytest_compat.capture_suspended(config):
                reporter.ensure_newline()
                reporter.write_line(f"fastnas-bench: {message}")

        progress.set_sink(to_terminal)

    def finish(self, exitstatus: int, stopped_early: bool = False) -> None:
        """Record this run in the stored baselines where asked: each figure with its gate's outcome, and
        the A/B verdicts with theirs.

        A run that ran to its end is recorded whether it passed or failed (the history says which; the
        gates do not read what their gate failed); an interrupted or crashed one is not. Where recording fails
        (the store unreachable, a file unwritable), :attr:`record_error` says why in one line.
        """
        if not self.update or not (self.produced or self.ab_results):
            return
        if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or stopped_early:
            why = "it stopped early (-x or --maxfail)" if stopped_early else f"it did not run to its end (exit {exitstatus})"
            self.update_note = f"this run was NOT recorded in the baselines: {why}"
            return
        outcomes = {g.stored_id: g.outcome for g in self.gates.values()}
        verdicts = {k: {**asdict(r), "outcome": outcome, "reference": str(self.settings.ab_reference)}
                    for k, (r, outcome) in self.ab_results.items()}
        try:
            self._stored_before = set(self.store.stored)  # read by the gates already, where any ran
            self.store.append(self.produced, outcomes, verdicts)
        except (BadInputError, OSError) as e:  # BadInputError: the results store's one-line errors, naming it
            why = one_line(e) if isinstance(e, BadInputError) else f"{self.store.where}: {type(e).__name__}: " + one_line(e)
            self.record_error = f"this run was NOT recorded in the baselines: {why}"
            self.update_note = self.record_error
            return
        saved = ""
        if self.store.results is not None and self.saved_doc is not None:
            try:
                url, _ = self.store.results.put_saved_run(self.machine_class, self.settings.profile.name, utc_now(),
                                                          benchmark_compat.as_saved(self.saved_doc))
            except BadInputError as e:
                self.record_error = (f"this run was recorded in {self.store.where}, but its saved run was NOT stored "
                                     f"for `fastnas-bench report`: {one_line(e)}")
                self.update_note = self.record_error
                return
            saved = f" and its saved run as {url}"
        failed = sorted(k for k, o in outcomes.items() if o == "fail")
        self.update_note = (f"this run was recorded in {len(self.produced) + len(verdicts)} entries of {self.store.where}"
                            f"{saved} "
                            "with its outcomes" + (f"; the failed gates' figures ({', '.join(failed)}) are kept but "
                                                   "later runs are not judged against them (accept an intended shift "
                                                   "with `fastnas-bench baselines accept`)" if failed else ""))

    def header(self) -> list[str]:
        s = self.settings
        p = s.profile
        return [
            f"fastnas-bench: profile={p.name} device={s.device} backends={','.join(s.backends)} threads={s.threads} "
            f"model={p.pruned.model} data={p.pruned.data} flops_target={p.pruned.flops_target} imgsz={p.bench_imgsz} "
            f"batch_sizes={','.join(map(str, p.batch_sizes))} "
            f"cache={s.cache_dir or os.environ.get('FASTNAS_BENCH_CACHE') or 'default'}"
        ]

    def machine_info(self, machine_info: dict[str, Any]) -> None:
        machine_info.update(static_machine_info(self.settings.device))
        machine_info["fastnas_bench"]["machine_class"] = self.machine_class

    def saved_json(self, output_json: dict[str, Any]) -> None:
        """Save the paired-round speedups with the run, for ``fastnas-bench report``."""
        output_json["fastnas_bench"] = {"speedups": {k: r.to_json() for k, r in self.speedups.items()},
                                        "profile": self.settings.profile.name}
        self.saved_doc = output_json
        if self.ab_results:
            output_json["fastnas_bench"]["ab"] = {
                "reference": str(self.settings.ab_reference), "tolerance": self.settings.ab_tolerance,
                "results": {k: {**asdict(r), "outcome": outcome} for k, (r, outcome) in self.ab_results.items()}}

    def check_comparable(self, compared_benchmark: dict[str, Any]) -> None:
        """Refuse comparisons across machine classes (GPU and driver major, or CPU model, cores and vector extension)."""
        theirs = compared_benchmark.get("machine_info", {}).get("fastnas_bench", {}).get("machine_class")
        if theirs != self.machine_class:
            raise pytest.UsageError(
                f"refusing to compare with a run from machine class {theirs!r}; this machine is {self.machine_class!r} "
                "(latencies from different GPUs, drivers or CPUs are not comparable)"
            )

    def terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        speedups = self.speedups
        if speedups:
            terminalreporter.write_sep("-", "fastnas-bench: speedup (paired ABBA rounds, same run)")
            for test_id, r in speedups.items():
                write(f"{test_id}: {r.speedup:.3f}x, {r.confidence:.0%} CI [{r.ci_low:.3f}, {r.ci_high:.3f}] "
                      f"over {r.rounds} rounds, bound {r.bound:.2f}x: {str(r.outcome).upper()}; "
                      f"FLOPs ratio {r.flops_ratio:.3f}"
                      + (f", efficiency {r.efficiency:.2f}" if r.efficiency is not None else ""))
        if self.accuracy:
            first = next(iter(next(iter(self.accuracy.values())).values()))
            seeds = f" and {first.builds} build seeds (paired by seed)" if first.builds > 1 else ""
            terminalreporter.write_sep("-", f"fastnas-bench: accuracy drop from the baseline (paired bootstrap over "
                                            f"{first.images} val images{seeds}, {first.resamples} draws)")
            for name, drops in self.accuracy.items():
                for drop in drops.values():
                    write(f"{name}: {drop.describe()}")
            write(f"fastnas-bench: recall_at_conf is recall at confidence {RECALL_CONF} and IoU 0.5 for both models "
                  "(Ultralytics' own recall is taken at each model's best-F1 confidence)")
        if self.gates:
            terminalreporter.write_sep("-", f"fastnas-bench: regression gates against {self.store.where}")
            by_kind: dict[tuple[str, str], list[float]] = {}
            for g in self.gates.values():
                by_kind.setdefault((g.kind, g.backend), []).append(g.resolution)
            write(f"{len(self.gates)} gate(s) judged, each at a one-sided false-alarm rate of "
                  f"{STORED_FAMILY_ALPHA:.0%}/{self.gate_tests} (the {STORED_FAMILY_ALPHA:.0%} family-wise rate over the "
                  f"{self.gate_tests} gate test(s) selected; test_regression_family applies Holm's further steps)")
            for (kind, backend), resolutions in sorted(by_kind.items()):
                what = "speedup drop" if kind == "speedup" else "absolute (calibrated) latency slowdown"
                write(f"resolution on machine class {self.machine_class}, {backend}: the {what} these gates catch "
                      f"in ≥ 90% of runs is {max(resolutions):.1%} (over {len(resolutions)} test(s))"
                      + (f"; above {MAX_GATING_RESOLUTION:.0%}, so they report instead of gating"
                         if max(resolutions) > MAX_GATING_RESOLUTION else ""))
        elif speedups:
            write(f"fastnas-bench: no regression gate judged: {self.store.where} holds fewer than 5 runs per test for "
                  f"machine class {self.machine_class}, so its resolution is unknown (record passing runs with "
                  "--update-baselines)")
        if self.ab_results:
            terminalreporter.write_sep("-", f"fastnas-bench: A/B, B = this environment, A = {self.settings.ab_reference}")
            for test_id, (ab, outcome) in self.ab_results.items():
                write(f"{test_id}: {ab.describe()}: {outcome.upper()} (B may be ≤ {self.settings.ab_tolerance:.0%} slower)")
            widths = [ab.ci_high / ab.ci_low - 1 for ab, _ in self.ab_results.values()]
            confidence = next(iter(self.ab_results.values()))[0].confidence
            write(f"fastnas-bench: A/B interval widths {min(widths):.1%}-{max(widths):.1%}, each at {confidence:.2%} "
                  f"(the 5% family-wise false-alarm rate split over the {self.settings.ab_gates} A/B gates this "
                  f"run's options select; {len(self.ab_results)} ran); spread between sessions shown per test")
        undecided = terminalreporter.stats.get("undecided", [])
        if undecided:
            terminalreporter.write_sep("-", "fastnas-bench: undecided verdicts (the interval straddles the bound)")
            for report in undecided:
                write(f"UNDECIDED {report.nodeid}: {pytest_compat.skip_reason(report).removeprefix('UNDECIDED: ')}")
        if os.environ.get(INJECT_SLOWDOWN_ENV):
            write(f"fastnas-bench: {INJECT_SLOWDOWN_ENV}={os.environ[INJECT_SLOWDOWN_ENV]} slowed this run on purpose")
        if self.update_note:
            write(f"fastnas-bench: {self.update_note}", red=self.record_error is not None)
        if not self.produced or self.record_error is not None:
            return  # where the store failed once this session, reading it again would fail the same way
        # What was stored before this run recorded itself (or, unrecorded, what the gates read): no second read.
        stored = self._stored_before if self._stored_before is not None else set(self.store.stored)
        orphans = sorted(stored - set(self.produced))
        if orphans:
            write(f"fastnas-bench: {len(orphans)} stored baseline(s) in {self.store.where} were not produced by "
                  "this run: " + ", ".join(orphans))


def _results_store(config: pytest.Config, update: bool) -> ResultsStore | None:
    """The results store named by ``--results-store`` or ``$FASTNAS_BENCH_RESULTS``, opened and probed.

    Raises:
        pytest.UsageError: for a URL that cannot be opened, or beside an explicit ``--baselines-dir``.
    """
    try:
        url = resolve_url(config.getoption("results_store"), config.getoption("baselines_dir"))
        if not url:
            return None
        store = ResultsStore.open(url)
    except BadInputError as e:
        raise pytest.UsageError(str(e)) from None
    if update:
        # A recorded run's saved JSON goes to the store too (for `fastnas-bench report`): have it saved.
        benchmark_compat.ensure_saved(config)
    return store


def _set_ultralytics_env(settings: BenchSettings) -> None:
    """Ultralytics reads these once, at its first import: set them before anything imports it.

    Offline unless the profile names weights or data that Ultralytics fetches (the paper profile).
    """
    if "ultralytics" in sys.modules:
        warnings.warn("ultralytics was imported before fastnas-bench configured it; YOLO_OFFLINE/YOLO_AUTOINSTALL "
                      "may not apply", stacklevel=2)
    spec = settings.profile.pruned
    offline = spec.weights is None and spec.data == GENERATED_PREFIX
    os.environ.setdefault("YOLO_OFFLINE", "true" if offline else "false")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
