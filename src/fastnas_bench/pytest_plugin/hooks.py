"""pytest plugin: the ``fastnas-bench`` option group and hooks, each handing its work to the session.

Hooks and options only (as pytest-benchmark's ``plugin.py``): settings, environment, storage,
baselines and the terminal summary belong to :class:`~fastnas_bench.pytest_plugin.session.BenchSession`;
fixtures live in the project's ``fixtures/`` package.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastnas_bench import progress
from fastnas_bench.backends.registry import BACKEND_NAMES, get_backend_class
from fastnas_bench.config.matrix import empty_group_reason, variant_groups
from fastnas_bench.config.options import (
    arg_type,
    parse_backends,
    parse_batch_sizes,
    parse_divisors,
    parse_flops_target,
    parse_flops_targets,
    parse_fraction,
    parse_imgsz,
    parse_latency_targets,
    parse_methods,
    parse_model,
    parse_positive_float,
    parse_profile,
    parse_seeds,
)
from fastnas_bench.pytest_plugin.outcomes import VERDICT_PROPERTY
from fastnas_bench.pytest_plugin.session import SESSION_KEY, BenchSession
from fastnas_bench.variants.profiles import PROFILES
from fastnas_bench.verdicts.gates import GATE_TESTS

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
    add("--fastnas-profile", dest="fastnas_profile", type=arg_type(parse_profile), default=None,
        # argparse %-formats help strings; the descriptions contain percentages.
        help="benchmark profile: " + "; ".join(f"{p.name} ({p.description})" for p in PROFILES.values()).replace("%", "%%"))
    add("--backends", type=arg_type(parse_backends), default=None,
        help=f"comma-separated, of: {','.join(BACKEND_NAMES)} (default: those the device runs by default)")
    add("--methods", type=arg_type(parse_methods), default=None,
        help="pruning methods to compare: fastnas (default), l2struct, unstructured (at the same FLOPs) and "
             "fastnas-latency (to a measured latency budget, with --latency-targets)")
    add("--flops-target", type=arg_type(parse_flops_target), default=None,
        help="pruned/baseline FLOPs upper bound, e.g. 0.66 or 66%%")
    add("--flops-targets", type=arg_type(parse_flops_targets), default=None,
        help="several FLOPs targets for a sweep, e.g. 0.9,0.8,0.66,0.5 (one variant per target and method; "
             "FastNAS reuses its sensitivity map, so extra targets cost no new score calls)")
    add("--latency-targets", type=arg_type(parse_latency_targets), default=None,
        help="latency budgets, pruned/baseline latency on the backend named by --latency-backends, e.g. 0.75,0.66: "
             "one variant per budget, backend and method that takes one (fastnas-latency cuts to it; fastnas "
             "and l2struct bisect their FLOPs target until the measured latency meets it)")
    add("--latency-backends", type=arg_type(parse_backends), default=None,
        help="backends the latency budgets are measured on and cut for (default: onnxruntime on CPU, "
             "pytorch on CUDA); test ids name it, e.g. fastnas-latency@onnxruntime-lat75")
    add("--channel-divisors", type=arg_type(parse_divisors), default=None,
        help="FastNAS channel granularities to compare at equal FLOPs, e.g. 8,16,32,64")
    add("--min-speedup", type=arg_type(parse_positive_float), default=None,
        help="required baseline/pruned speedup (overrides the profile's)")
    add("--max-map-drop", type=arg_type(parse_fraction), default=None, help="allowed mAP50-95 drop (absolute)")
    add("--max-recall-drop", type=arg_type(parse_fraction), default=None, help="allowed recall drop (absolute)")
    add("--batch-sizes", type=arg_type(parse_batch_sizes), default=None, help="comma-separated batch sizes, e.g. 1,8")
    add("--imgsz", type=arg_type(parse_imgsz), default=None, help="benchmark input size in pixels")
    add("--data", default=None, help="dataset YAML (e.g. coco128.yaml) or 'generated'")
    add("--model", type=arg_type(parse_model), default=None, help="YOLOv8 scale: n, s, m, l, x")
    add("--weights", default=None, help="pretrained .pt to start from (default: train from YAML / profile)")
    add("--cache-dir", default=None, help="variant cache root (default: $FASTNAS_BENCH_CACHE or the user cache dir)")
    add("--seeds", type=arg_type(parse_seeds), default=None,
        help="build seeds: N (0..N-1), A-B or A,B,...: every variant is fine-tuned with each (the source is shared) "
             "and the accuracy drops are judged paired by seed, their intervals widened by the builds' spread "
             "(default: seed 0)")
    add("--self-checks", action="store_true",
        help="also run the checks that the verdicts can fail (a damaged variant must fail the accuracy drops); "
             "CI runs them, a normal run skips them saying so")
    add("--rebuild-variants", action="store_true", help="rebuild cached variants and exports once this session")
    add("--update-baselines", action="store_true",
        help="record this run in the stored baselines with its gates' outcomes (a run that ran to its end, "
             "passed or failed; the gates do not read figures their gate failed)")
    add("--baselines-dir", default=None, help="stored baselines root (default: <rootdir>/baselines)")
    add("--results-store", default=None,
        help="an fsspec URL (s3://bucket/prefix, file:///shared/dir) holding the stored runs of every machine class "
             "instead of --baselines-dir: the gates read this class's history there, and --update-baselines records "
             "the run and its saved pytest-benchmark JSON there (default: $FASTNAS_BENCH_RESULTS)")
    add("--ab-reference", default=None,
        help="run test_ab: this environment (B) against a reference Python environment (A) in paired rounds; "
             "'self' (A/A), a venv folder or a python executable (it needs only its backend: onnxruntime+numpy, "
             "or torch+ultralytics+numpy), or a git commit/branch/tag of this checkout")
    add("--ab-tolerance", type=arg_type(parse_fraction), default=None,
        help="B may be this much slower than A before test_ab fails (default 0.03)")


def session_of(config: pytest.Config) -> BenchSession:
    return config.stash[SESSION_KEY]


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its storage option
def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    config.stash[SESSION_KEY] = BenchSession.start(config)


@pytest.hookimpl(trylast=True)  # after the terminal reporter and capture manager exist
def pytest_sessionstart(session: pytest.Session) -> None:
    """Show build progress on the terminal while pytest captures the fixtures' output."""
    session_of(session.config).show_progress(session.config)


def pytest_unconfigure(config: pytest.Config) -> None:
    progress.set_sink(None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    settings = session_of(metafunc.config).settings
    gpu_marks = [pytest.mark.gpu] if settings.device == "cuda" else []
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", [
            pytest.param(t, id=t.id, marks=gpu_marks + [getattr(pytest.mark, m) for m in get_backend_class(t.backend).marks])
            for t in settings.targets
        ])
    if "variant_name" in metafunc.fixturenames:
        metafunc.parametrize("variant_name", list(settings.variants))
    for fixture, names in variant_groups(settings).items():
        if fixture in metafunc.fixturenames:
            if names:
                metafunc.parametrize(fixture, names)
            else:
                metafunc.parametrize(fixture, [pytest.param(None, id="none",
                                                            marks=pytest.mark.skip(reason=empty_group_reason(fixture)))])
    if "batch_size" in metafunc.fixturenames:
        sizes = settings.profile.batch_sizes
        metafunc.parametrize("batch_size", sizes, ids=[f"bs{b}" for b in sizes])


#: The test that applies Holm's procedure to the run's stored-run gates: it needs all of them, so it runs last.
FAMILY_TEST = "test_regression_family"


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: getattr(item, "originalname", item.name) == FAMILY_TEST)  # stable: the rest keep order


def pytest_collection_finish(session: pytest.Session) -> None:
    bench = session.config.stash.get(SESSION_KEY, None)
    if bench is not None:
        bench.gate_tests = max(1, sum(_can_gate(item, bench.settings.device) for item in session.items))


def _can_gate(item: pytest.Item, device: str) -> bool:
    """A stored-run gate test whose backend runs on this device (TensorRT's skip on a CPU run is no gate)."""
    if getattr(item, "originalname", "") not in GATE_TESTS:
        return False
    target = getattr(getattr(item, "callspec", None), "params", {}).get("target")
    return target is None or device in get_backend_class(target.backend).devices


def pytest_report_header(config: pytest.Config) -> list[str]:
    return session_of(config).header()


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    if report.when == "call" and report.skipped and VERDICT_PROPERTY in getattr(report, "user_properties", ()):
        return "undecided", "U", "UNDECIDED"
    return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    bench = session.config.stash.get(SESSION_KEY, None)
    if bench is not None:
        bench.finish(exitstatus, stopped_early=bool(session.shouldstop or session.shouldfail))
        if bench.record_error is not None and session.exitstatus == pytest.ExitCode.OK:
            # A run asked to record itself that did not is no green run: CI must see it (the summary says why).
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    bench = config.stash.get(SESSION_KEY, None)
    if bench is not None:
        bench.terminal_summary(terminalreporter)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    session_of(config).machine_info(machine_info)


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    bench = config.stash.get(SESSION_KEY, None)
    if bench is not None:
        bench.saved_json(output_json)


def pytest_benchmark_compare_machine_info(
    config: pytest.Config, benchmarksession: Any, machine_info: dict[str, Any], compared_benchmark: dict[str, Any]
) -> None:
    session_of(config).check_comparable(compared_benchmark)
