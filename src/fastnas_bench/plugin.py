"""pytest plugin: the ``fastnas-bench`` option group, settings, parametrization and machine info.

Hooks and options only; fixtures live in the project's ``fixtures/`` package and measurement in
:mod:`fastnas_bench.measure`.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from fastnas_bench.backends import BACKEND_NAMES, get_backend_class
from fastnas_bench.data import GENERATED_PREFIX
from fastnas_bench.errors import BadInputError
from fastnas_bench.settings import (
    BenchSettings,
    _arg_type,
    parse_backends,
    parse_batch_sizes,
    parse_divisors,
    parse_flops_targets,
    parse_fraction,
    parse_imgsz,
    parse_latency_targets,
    parse_methods,
    parse_positive_float,
    parse_profile,
)
from fastnas_bench.spec import PROFILES, parse_flops_target, parse_model

SETTINGS_KEY = pytest.StashKey[BenchSettings]()
BASELINES_KEY = pytest.StashKey["BaselineSession"]()
UPDATE_NOTE_KEY = pytest.StashKey[str]()

MARKERS = {
    "gpu": "needs a CUDA GPU (selected by --gpu)",
    "tensorrt": "needs TensorRT and a CUDA GPU",
    "slow": "builds or trains models (minutes on a CPU)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastnas-bench", "fastnas-bench: pruned-YOLOv8 latency benchmarks")
    add = group.addoption
    add("--gpu", action="store_true", help="run on CUDA with the 'paper' profile (YOLOv8m, COCO128, 640 px, TensorRT)")
    # Not --profile: pytest-profiling owns that name.
    add("--fastnas-profile", dest="fastnas_profile", type=_arg_type(parse_profile), default=None,
        # argparse %-formats help strings; the descriptions contain percentages.
        help="benchmark profile: " + "; ".join(f"{p.name} ({p.description})" for p in PROFILES.values()).replace("%", "%%"))
    add("--backends", type=_arg_type(parse_backends), default=None,
        help=f"comma-separated, of: {','.join(BACKEND_NAMES)} (default: those the device runs by default)")
    add("--methods", type=_arg_type(parse_methods), default=None,
        help="pruning methods to compare: fastnas (default), l2struct, unstructured (at the same FLOPs) and "
             "fastnas-latency (to a measured latency budget, with --latency-targets)")
    add("--flops-target", type=_arg_type(parse_flops_target), default=None,
        help="pruned/baseline FLOPs upper bound, e.g. 0.66 or 66%%")
    add("--flops-targets", type=_arg_type(parse_flops_targets), default=None,
        help="several FLOPs targets for a sweep, e.g. 0.9,0.8,0.66,0.5 (one variant per target and method; "
             "FastNAS reuses its sensitivity map, so extra targets cost no new score calls)")
    add("--latency-targets", type=_arg_type(parse_latency_targets), default=None,
        help="latency budgets, pruned/baseline latency on the backend named by --latency-backends, e.g. 0.75,0.66: "
             "one variant per budget, backend and method that takes one (fastnas-latency cuts to it; fastnas "
             "and l2struct bisect their FLOPs target until the measured latency meets it)")
    add("--latency-backends", type=_arg_type(parse_backends), default=None,
        help="backends the latency budgets are measured on and cut for (default: onnxruntime on CPU, "
             "pytorch on CUDA); test ids name it, e.g. fastnas-latency@onnxruntime-lat75")
    add("--channel-divisors", type=_arg_type(parse_divisors), default=None,
        help="FastNAS channel granularities to compare at equal FLOPs, e.g. 8,16,32,64")
    add("--min-speedup", type=_arg_type(parse_positive_float), default=None,
        help="required baseline/pruned speedup (overrides the profile's)")
    add("--max-map-drop", type=_arg_type(parse_fraction), default=None, help="allowed mAP50-95 drop (absolute)")
    add("--max-recall-drop", type=_arg_type(parse_fraction), default=None, help="allowed recall drop (absolute)")
    add("--batch-sizes", type=_arg_type(parse_batch_sizes), default=None, help="comma-separated batch sizes, e.g. 1,8")
    add("--imgsz", type=_arg_type(parse_imgsz), default=None, help="benchmark input size in pixels")
    add("--data", default=None, help="dataset YAML (e.g. coco128.yaml) or 'generated'")
    add("--model", type=_arg_type(parse_model), default=None, help="YOLOv8 scale: n, s, m, l, x")
    add("--weights", default=None, help="pretrained .pt to start from (default: train from YAML / profile)")
    add("--cache-dir", default=None, help="variant cache root (default: $FASTNAS_BENCH_CACHE or the user cache dir)")
    add("--rebuild-variants", action="store_true", help="rebuild cached variants and exports once this session")
    add("--update-baselines", action="store_true",
        help="write this run's results as the stored baselines (only if every test passed)")
    add("--baselines-dir", default=None, help="stored baselines root (default: <rootdir>/baselines)")



@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its storage option
def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    from fastnas_bench.settings import resolve_settings

    opts = {name: config.getoption(name) for name in (
        "gpu", "backends", "methods", "flops_target", "flops_targets", "latency_targets", "latency_backends",
        "channel_divisors", "min_speedup",
        "max_map_drop", "max_recall_drop", "batch_sizes", "imgsz", "data", "model", "weights", "cache_dir",
        "rebuild_variants",
    )}
    opts["profile"] = config.getoption("fastnas_profile")
    try:
        settings = resolve_settings(opts)
    except BadInputError as e:
        raise pytest.UsageError(str(e)) from None
    # Ultralytics reads these once, at its first import: set them before anything imports it.
    # Offline unless the profile names weights or data that Ultralytics fetches (the paper profile).
    if "ultralytics" in sys.modules:
        warnings.warn("ultralytics was imported before fastnas-bench configured it; YOLO_OFFLINE/YOLO_AUTOINSTALL "
                      "may not apply", stacklevel=1)
    spec = settings.profile.pruned
    offline = spec.weights is None and spec.data == GENERATED_PREFIX
    os.environ.setdefault("YOLO_OFFLINE", "true" if offline else "false")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    if settings.device == "cuda":
        import torch

        # The user asked for the GPU: without one, stop now rather than report a green run of skips.
        if not torch.cuda.is_available():
            raise pytest.UsageError("--gpu: no usable CUDA GPU (torch.cuda.is_available() is False)")
    config.stash[SETTINGS_KEY] = settings

    from fastnas_bench.baselines import baseline_path
    from fastnas_bench.machine import machine_class

    key = machine_class(settings.device)
    root = Path(config.getoption("baselines_dir") or config.rootpath / "baselines")
    config.stash[BASELINES_KEY] = BaselineSession(
        machine_class=key, profile=settings.profile.name, path=baseline_path(root, key, settings.profile.name),
        update=config.getoption("update_baselines"),
    )
    from fastnas_bench.inject import INJECT_SLOWDOWN_ENV, parse_injected_slowdowns

    try:
        injected = parse_injected_slowdowns(os.environ.get(INJECT_SLOWDOWN_ENV, ""))
    except BadInputError as e:
        raise pytest.UsageError(str(e)) from None
    if injected and config.getoption("update_baselines"):
        raise pytest.UsageError(f"--update-baselines with {INJECT_SLOWDOWN_ENV} set: a deliberately slowed run "
                                "must never become a baseline")
    # pytest-benchmark keys its storage by OS/Python only; keep runs of different hardware apart
    # (runs then sit at <storage>/<machine class>/<pytest-benchmark machine id>/NNNN_*.json).
    storage = getattr(config.option, "benchmark_storage", None)
    if isinstance(storage, str) and storage.startswith("file://"):
        config.option.benchmark_storage = f"{storage.rstrip('/')}/{key}"


@pytest.hookimpl(trylast=True)  # after the terminal reporter and capture manager exist
def pytest_sessionstart(session: pytest.Session) -> None:
    """Show build progress on the terminal while pytest captures the fixtures' output."""
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    from fastnas_bench import progress

    def to_terminal(message: str) -> None:
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(f"fastnas-bench: {message}")

    progress.set_sink(to_terminal)


def pytest_unconfigure(config: pytest.Config) -> None:
    if "fastnas_bench.progress" in sys.modules:
        sys.modules["fastnas_bench.progress"].set_sink(None)


def settings_of(config: pytest.Config) -> BenchSettings:
    return config.stash[SETTINGS_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    settings = settings_of(metafunc.config)
    gpu_marks = [pytest.mark.gpu] if settings.device == "cuda" else []
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", [
            pytest.param(t, id=t.id, marks=gpu_marks + [getattr(pytest.mark, m) for m in get_backend_class(t.backend).marks])
            for t in settings.targets
        ])
    if "variant_name" in metafunc.fixturenames:
        metafunc.parametrize("variant_name", list(settings.variants))
    for fixture, names in (
        ("pruned_name", settings.pruned_names),
        ("fastnas_name", tuple(n for n in settings.pruned_names if settings.variants[n].method == "fastnas"
                               and settings.variants[n].latency is None)),
        ("structured_name", settings.structured_names),
        ("flops_name", settings.flops_names),
        ("latency_name", settings.latency_names),
        ("latency_aware_name", tuple(n for n in settings.latency_names if settings.variants[n].method == "fastnas-latency")),
        ("rival_name", tuple(n for n in settings.flops_names if settings.variants[n].method != "fastnas")),
        ("unstructured_name", tuple(n for n in settings.pruned_names if n not in settings.structured_names)),
    ):
        if fixture in metafunc.fixturenames:
            if names:
                metafunc.parametrize(fixture, names)
            else:
                how = ("add --latency-targets (with fastnas-latency in --methods)" if fixture.startswith("latency")
                       else "choose methods with --methods")
                reason = f"no {fixture.removesuffix('_name').replace('_', '-')} variant selected ({how})"
                metafunc.parametrize(fixture, [pytest.param(None, id="none", marks=pytest.mark.skip(reason=reason))])
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", settings.profile.batch_sizes, ids=[f"bs{b}" for b in settings.profile.batch_sizes])


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = settings_of(config)
    p = s.profile
    return [
        f"fastnas-bench: profile={p.name} device={s.device} backends={','.join(s.backends)} threads={s.threads} "
        f"model={p.pruned.model} data={p.pruned.data} flops_target={p.pruned.flops_target} imgsz={p.bench_imgsz} "
        f"batch_sizes={','.join(map(str, p.batch_sizes))} cache={s.cache_dir or os.environ.get('FASTNAS_BENCH_CACHE') or 'default'}"
    ]


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from fastnas_bench.machine import static_machine_info

    machine_info.update(static_machine_info(settings_of(config).device))
    machine_info["fastnas_bench"]["machine_class"] = config.stash[BASELINES_KEY].machine_class


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    """Save the interleaved-round speedups with the run, for ``fastnas-bench report``."""
    store = config.stash.get(BASELINES_KEY, None)
    if store is not None:
        speedups = {k: v for k, v in store.produced.items() if "speedup" in v}
        output_json["fastnas_bench"] = {"speedups": speedups, "profile": store.profile}


def pytest_benchmark_compare_machine_info(
    config: pytest.Config, benchmarksession: Any, machine_info: dict[str, Any], compared_benchmark: dict[str, Any]
) -> None:
    """Refuse comparisons across machine classes (GPU, driver major, TensorRT/ORT, CPU model)."""
    mine = config.stash[BASELINES_KEY].machine_class
    theirs = compared_benchmark.get("machine_info", {}).get("fastnas_bench", {}).get("machine_class")
    if theirs != mine:
        raise pytest.UsageError(
            f"refusing to compare with a run from machine class {theirs!r}; this machine is {mine!r} "
            "(latencies from different GPUs, drivers or runtimes are not comparable)"
        )


@dataclass
class BaselineSession:
    """Stored baselines for this machine class and profile, and what this run produced and judged."""

    machine_class: str
    profile: str
    path: Path
    update: bool
    produced: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Gate results of this run by test name: backend, kind (speedup/latency), resolution, outcome.
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)
    _stored: dict[str, dict[str, Any]] | None = None

    @property
    def stored(self) -> dict[str, dict[str, Any]]:
        if self._stored is None:
            from fastnas_bench.baselines import load_baselines

            self._stored = load_baselines(self.path)
        return self._stored

    def stored_runs(self, test_id: str) -> list[dict[str, Any]]:
        return list(self.stored.get(test_id, {}).get("runs", []))


def unavailable(settings: BenchSettings, backend: str, reason: str) -> NoReturn:
    """Skip a test whose backend cannot run here, with the reason; fail instead where the user
    asked for that backend by name on a GPU run (a nightly must not go green on skips)."""
    if backend in settings.required_backends:
        pytest.fail(f"--backends {backend} was requested but cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


VERDICT_PROPERTY = ("fastnas_bench_verdict", "undecided")


def report_outcome(request: pytest.FixtureRequest, outcome: Any, message: str) -> None:
    """End a test with a verdict's outcome: pass, fail (``message``), or *undecided*.

    Undecided is reported as its own outcome (``U`` / ``UNDECIDED`` and a count in the final line),
    never as a pass; it does not fail the run, because the measurement did not show a failure either.
    """
    from fastnas_bench.verdicts import Outcome

    if outcome is Outcome.FAIL:
        pytest.fail(message, pytrace=False)
    if outcome is Outcome.UNDECIDED:
        request.node.user_properties.append(VERDICT_PROPERTY)
        pytest.skip(f"UNDECIDED: {message}")


def judge_against_stored(request: pytest.FixtureRequest, baselines: BaselineSession, stored_id: str, kind: str,
                         backend: str, current: Any, gate: Any, head: str, versions: dict[str, str],
                         variant_keys: dict[str, str]) -> None:
    """Run a regression gate (``baselines.speedup_gate`` or ``latency_gate``) on ``current`` against the
    stored runs of ``stored_id``; skip with the count while fewer than 5 are stored."""
    from fastnas_bench.baselines import gate_message

    runs = baselines.stored_runs(stored_id)
    verdict = gate(runs, current)
    if verdict is None:
        pytest.skip(f"{len(runs)} stored run(s) of {stored_id} in {baselines.path}; the gate needs ≥ 5 "
                    "(record passing runs with --update-baselines)")
    baselines.gates[request.node.name] = {"backend": backend, "kind": kind, "resolution": verdict.resolution,
                                          "outcome": verdict.outcome.value}
    report_outcome(request, verdict.outcome, gate_message(head, kind, verdict, runs, versions, variant_keys))


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    if report.when == "call" and report.skipped and VERDICT_PROPERTY in getattr(report, "user_properties", ()):
        return "undecided", "U", "UNDECIDED"
    return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    store = session.config.stash.get(BASELINES_KEY, None)
    if store is None or not store.update or not store.produced:
        return
    if exitstatus != 0:
        # A failed or interrupted run must never become the reference.
        session.config.stash[UPDATE_NOTE_KEY] = f"baselines NOT updated: the run did not pass (exit {exitstatus})"
        return
    from fastnas_bench.baselines import write_baselines

    write_baselines(store.path, store.machine_class, store.profile, store.produced)
    session.config.stash[UPDATE_NOTE_KEY] = f"baselines updated: this run appended to {len(store.produced)} entries in {store.path}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    store = config.stash.get(BASELINES_KEY, None)
    if store is None:
        return
    write = terminalreporter.write_line
    speedups = {k: v for k, v in store.produced.items() if "speedup" in v}
    if speedups:
        terminalreporter.write_sep("-", "fastnas-bench: speedup (paired ABBA rounds, same run)")
        for test_id, r in speedups.items():
            write(f"{test_id}: {r['speedup']:.3f}x, {r['confidence']:.0%} CI [{r['ci_low']:.3f}, {r['ci_high']:.3f}] "
                  f"over {r['rounds']} rounds, bound {r['bound']:.2f}x: {r['outcome'].upper()}; "
                  f"FLOPs ratio {r['flops_ratio']:.3f}"
                  + (f", efficiency {r['efficiency']:.2f}" if r["efficiency"] is not None else ""))
    if store.gates:
        terminalreporter.write_sep("-", f"fastnas-bench: regression gates against {store.path}")
        by_kind: dict[tuple[str, str], list[float]] = {}
        for g in store.gates.values():
            by_kind.setdefault((g["kind"], g["backend"]), []).append(g["resolution"])
        for (kind, backend), resolutions in sorted(by_kind.items()):
            what = "speedup drop" if kind == "speedup" else "absolute (calibrated) latency slowdown"
            write(f"resolution on machine class {store.machine_class}, {backend}: the smallest {what} these "
                  f"gates catch is {max(resolutions):.1%} (over {len(resolutions)} test(s))")
    elif speedups:
        write(f"fastnas-bench: no regression gate judged: {store.path} holds fewer than 5 runs per test for machine "
              f"class {store.machine_class}, so its resolution is unknown (record passing runs with --update-baselines)")
    undecided = terminalreporter.stats.get("undecided", [])
    if undecided:
        terminalreporter.write_sep("-", "fastnas-bench: undecided verdicts (the interval straddles the bound)")
        for report in undecided:
            write(f"UNDECIDED {report.nodeid}: {report.longrepr[2].removeprefix('Skipped: UNDECIDED: ')}")
    from fastnas_bench.inject import INJECT_SLOWDOWN_ENV

    if os.environ.get(INJECT_SLOWDOWN_ENV):
        write(f"fastnas-bench: {INJECT_SLOWDOWN_ENV}={os.environ[INJECT_SLOWDOWN_ENV]} slowed this run on purpose")
    note = config.stash.get(UPDATE_NOTE_KEY, None)
    if note:
        write(f"fastnas-bench: {note}")
    if store.produced and store.path.exists():
        orphans = sorted(set(store.stored) - set(store.produced))
        if orphans:
            write(f"fastnas-bench: {len(orphans)} stored baseline(s) in {store.path} were not produced by this run: "
                  + ", ".join(orphans))
