"""``fastnas-bench``: prebuild variants, export them for stock Ultralytics, and report saved runs."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fastnas_bench.config.options import (
    arg_type,
    parse_backends,
    parse_divisors,
    parse_flops_targets,
    parse_fraction,
    parse_latency_targets,
    parse_methods,
    parse_positive_int,
    parse_profile,
    parse_seeds,
)
from fastnas_bench.config.settings import LATENCY_BACKEND_DEFAULT, latency_machine, resolve_settings
from fastnas_bench.errors import BadInputError
from fastnas_bench.variants.profiles import PROFILES
from fastnas_bench.verdicts.outcome import AB_TOLERANCE

if TYPE_CHECKING:  # torch-free at import: the CLI parses arguments before loading anything heavy
    from fastnas_bench.variants.cache import ArtifactCache
    from fastnas_bench.variants.spec import VariantSpec
    from fastnas_bench.variants.variant import Variant

log = logging.getLogger("fastnas_bench")


def _build(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from fastnas_bench.variants.build import build_variant
    from fastnas_bench.variants.cache import ensure_cache_root

    profile = PROFILES[args.profile]
    cache = ensure_cache_root(args.cache_dir)
    device = args.device or profile.device
    # The same variants, names and budgets as `pytest benchmarks` with these options.
    # (Device from --device: a CUDA profile may be dry-run on the CPU.)
    settings = resolve_settings({"profile": args.profile, "gpu": profile.device == "cuda", "methods": args.methods,
                                 "flops_targets": args.flops_targets, "channel_divisors": args.channel_divisors,
                                 "latency_targets": args.latency_targets, "latency_backends": args.latency_backends})
    if settings.latency_targets and device != settings.device:
        settings = replace(settings, device=device, machine=latency_machine(device),
                           latency_backends=args.latency_backends or LATENCY_BACKEND_DEFAULT[device])
    if args.rebuild:  # renew the shared source first; everything else derives from it
        build_variant(profile.pruned.source(), cache, device, rebuild=True)
    # Seed by seed, baseline first within each (settings.variants is ordered so).
    rows = {(name, seed): build_variant(spec.with_seed(seed), cache, device, rebuild=args.rebuild)
            for seed in args.seeds for name, spec in settings.variants.items()}
    print(f"{'variant':<36} {'seed':>4} {'divisor':>7} {'params':>10} {'GFLOPs':>8} {'ratio':>6} {'mAP50-95':>9} "
          f"{'recall':>7} {'build s':>8}  entry")
    for (name, seed), v in sorted(rows.items(), key=lambda item: list(settings.variants).index(item[0][0])):
        ratio = v.gflops / rows["baseline", seed].gflops
        print(f"{name:<36} {seed:>4} {v.spec.channel_divisor:>7} {v.params / 1e6:>9.2f}M {v.gflops:>8.2f} {ratio:>6.3f} "
              f"{v.map50_95:>9.4f} {v.recall:>7.4f} {v.meta['build_seconds']:>8.1f}  {v.path}")
    if len(args.seeds) > 1:
        _seed_table(settings.variants, rows, args.seeds, cache, device)
    return 0


def _seed_table(variants: dict[str, VariantSpec], rows: dict[tuple[str, int], Variant], seeds: tuple[int, ...],
                cache: ArtifactCache, device: str) -> None:
    """Per variant, the build-to-build spread of its accuracy and of its drop from the baseline of the
    same seed, on the held-out val split, with the one-sided bound a profile may take from it."""
    from fastnas_bench.variants.build import resolve_data
    from fastnas_bench.verdicts.accuracy import BOUND_CONFIDENCE, METRICS, build_spread, metrics_of_stats
    from fastnas_bench.yolo.per_image import cached_per_image_stats

    data = resolve_data(next(iter(variants.values())).data, cache).report_yaml
    stats = {key: cached_per_image_stats(v, cache, data, device) for key, v in rows.items()}
    figures = {key: metrics_of_stats(s) for key, s in stats.items()}
    print(f"\nbuild-to-build spread over seeds {','.join(map(str, seeds))} on the held-out val split "
          f"({len(stats['baseline', seeds[0]].images)} images); bound: one-sided {BOUND_CONFIDENCE:.0%} upper "
          "prediction bound for one more build")
    print(f"{'variant':<36} {'metric':<15} {'mean':>8} {'sd':>8} {'drop mean':>10} {'drop sd':>8} {'drop bound':>10}")
    for name in variants:
        for metric in METRICS:
            values = [figures[name, s][metric] for s in seeds]
            level = build_spread(values)
            line = f"{name:<36} {metric:<15} {level.mean:>8.4f} {level.sd:>8.4f}"
            if name != "baseline":
                drop = build_spread([figures["baseline", s][metric] - v for s, v in zip(seeds, values)])
                line += f" {drop.mean:>+10.4f} {drop.sd:>8.4f} {drop.upper:>+10.4f}"
            print(line)


def _ab(args: argparse.Namespace) -> int:
    """This environment (B) against a reference (A) on each backend x variant; exit 1 on a failed verdict."""
    import tempfile

    from fastnas_bench.backends._lib.agreement import check_images
    from fastnas_bench.host import cpu_threads
    from fastnas_bench.measure.ab import WORKER_BACKENDS, compare_variant, resolve_reference
    from fastnas_bench.variants.build import build_variant, resolve_data
    from fastnas_bench.variants.cache import ensure_cache_root
    from fastnas_bench.verdicts.outcome import Outcome, family_confidence, not_slower
    from fastnas_bench.yolo.export import export_onnx

    reference = resolve_reference(args.reference)
    unsupported = [b for b in args.backends if b not in WORKER_BACKENDS]
    if unsupported:
        raise BadInputError(f"A/B workers run {', '.join(WORKER_BACKENDS)} on the CPU, not {', '.join(unsupported)}")
    profile = PROFILES[args.profile]
    if profile.device != "cpu":
        raise BadInputError(f"A/B workers run on the CPU; profile {args.profile!r} runs on {profile.device}")
    cache = ensure_cache_root(args.cache_dir)
    settings = resolve_settings({"profile": args.profile})
    unknown = [n for n in args.variants if n not in settings.variants]
    if unknown:
        raise BadInputError(f"unknown variant(s) {unknown} of profile {args.profile!r}; expected of "
                            f"{', '.join(settings.variants)}")
    imgsz, threads = profile.bench_imgsz, cpu_threads()
    spec = profile.baseline
    val_list = resolve_data(spec.data, cache).report_yaml.parent / "val.txt"
    images = check_images(args.batch, imgsz, val_list=val_list)
    confidence = family_confidence(len(args.backends) * len(args.variants))
    failed = False
    print(f"A = {reference} ({reference.python}), B = {sys.executable}; B may be ≤ {args.tolerance:.0%} slower")
    with tempfile.TemporaryDirectory(prefix="fastnas-ab-") as work:
        for name in args.variants:
            variant = build_variant(settings.variants[name], cache, "cpu")
            for backend in args.backends:
                result = compare_variant(variant, backend, args.batch, imgsz, threads, reference,
                                         lambda v, i, b: export_onnx(v, cache, i, b), Path(work), confidence=confidence,
                                         images=images, progress=log.info)
                outcome = not_slower(result, args.tolerance)
                failed |= outcome is Outcome.FAIL
                versions = "; ".join(f"{side}: " + ", ".join(f"{k} {v}" for k, v in sorted(found.items()))
                                     for side, found in sorted(result.versions.items()))
                print(f"{backend:<12} {name:<12} bs{args.batch}  {result.describe()}  {outcome.value.upper()}  [{versions}]")
    return 1 if failed else 0


def _ab_env(args: argparse.Namespace) -> int:
    """Make a reference environment for `ab --reference` (and `--ab-reference`); print its python."""
    from fastnas_bench.measure.ab_env import make_reference_env

    python = make_reference_env(Path(args.path), args.specs, args.backends,
                                requirements_file=Path(args.requirements) if args.requirements else None,
                                pip_args=args.pip_args or ())
    print(python)
    return 0


def _baselines(args: argparse.Namespace) -> int:
    """Show the stored runs of this machine class, accept an intended shift, or move runs between a results
    store and the baselines files."""
    from fastnas_bench.host import machine_class
    from fastnas_bench.verdicts.baselines import BaselineStore, pull, push
    from fastnas_bench.verdicts.results_store import RESULTS_STORE_ENV, ResultsStore, resolve_url

    moving = args.action in ("pull", "push")
    # show/accept read one place, as the plugin does: a store and an explicit --baselines-dir contradict each
    # other there; pull/push move runs between the two, so they take both.
    url = resolve_url(args.results_store, None if moving else args.baselines_dir)
    results = ResultsStore.open(url) if url else None
    root = Path(args.baselines_dir or "baselines")
    if moving:
        if results is None:
            raise BadInputError(f"baselines {args.action} needs --results-store URL (or ${RESULTS_STORE_ENV})")
        if args.action == "pull":
            pulled = pull(results, root, args.machine_class, args.profile_filter)
            for path, added in pulled:
                print(f"{path}: {added} run(s) added from {results.url}")
            if not pulled:
                print(f"no stored runs in {results.url}" + (f" for machine class {args.machine_class}"
                                                            if args.machine_class else ""))
            return 0
        pushed = push(results, root, args.machine_class, args.profile_filter)
        for path, created, present in pushed:
            print(f"{path}: {created} run(s) stored in {results.url}, {present} already there")
        if not pushed:
            print(f"no baselines files under {root}")
        return 0
    profile = PROFILES[args.profile_filter or "cpu"]
    store = BaselineStore(root, args.machine_class or machine_class(profile.device), profile.name, results)
    if args.action == "accept":
        if not args.tests:
            raise BadInputError("baselines accept needs --tests PATTERN (a shell pattern of stored test ids, '*' for all)")
        count = store.accept(args.tests, args.reason or "")
        print(f"accepted a shift of {count} stored test id(s) matching {args.tests!r} in {store.where}: their gates "
              "judge only runs recorded from now on (≥ 5 needed before they gate again)")
        return 0
    if not store.stored:
        print(f"no stored runs in {store.where}")
        return 0
    print(f"{store.where} (machine class {store.machine_class})")
    for test_id, entry in sorted(store.stored.items()):
        runs = entry.get("runs", [])
        outcomes = ", ".join(f"{o} {sum(r.get('gate', 'ungated') == o for r in runs)}"
                             for o in sorted({r.get("gate", "ungated") for r in runs}))
        shift = store.accepted_shift(test_id)
        print(f"{test_id}: {len(runs)} run(s) ({outcomes}); {len(store.history(test_id))} read by its gate"
              + (f"; shift accepted at {shift['at']}: {shift['reason']}" if shift else ""))
    return 0


def _report(args: argparse.Namespace) -> int:
    from fastnas_bench.report.fleet import no_runs_line
    from fastnas_bench.report.write import step_summary_path, write_no_runs_report, write_report, write_report_docs

    # In GitHub Actions the fleet table (or the newest run's headline) also lands in the job summary.
    summary = Path(args.job_summary) if args.job_summary else step_summary_path()
    if bool(args.runs) == bool(args.results_store):
        raise BadInputError("report needs saved run files or --results-store URL (one of the two)")
    if args.results_store:
        from fastnas_bench.verdicts.results_store import ResultsStore

        store = ResultsStore.open(args.results_store)
        by_class = store.saved_runs_by_class(args.profile, newest=args.newest)
        docs = [run for runs in by_class.values() for run in runs]
        # A class (or the whole profile) whose runners have not saved a run yet is news, not an error: the
        # fleet's other classes are still reported, and a nightly's report job stays green.
        waiting = [cls for cls, runs in by_class.items() if not runs]
        note = no_runs_line(args.profile, waiting if docs else [], store.url)
        if not docs:
            print(note)
            outputs = write_no_runs_report(Path(args.out), note, job_summary=summary)
        else:
            if waiting:
                print(note)
            outputs = write_report_docs(docs, Path(args.out), job_summary=summary, no_runs=note if waiting else None)
    else:
        outputs = write_report([Path(p) for p in args.runs], Path(args.out), job_summary=summary)
    for path in outputs:
        print(path)
    return 0


def _export(args: argparse.Namespace) -> int:
    from fastnas_bench.yolo.stock import export_stock_checkpoint

    print(export_stock_checkpoint(Path(args.variant), Path(args.out)))
    return 0


def _frontier(args: argparse.Namespace) -> int:
    """Measured latency vs FLOPs of sampled width configurations, on each backend; resumes what is in --out."""
    from fastnas_bench.frontier.settings import FrontierSettings

    # Validated before anything heavy loads: a bad value costs no search space and no timing.
    settings = FrontierSettings(backends=args.backends, configs=args.configs, rounds=args.rounds, seed=args.seed,
                                imgsz=args.imgsz, threads=args.threads,
                                sensitivity_map=Path(args.sensitivity_map) if args.sensitivity_map else None)
    from fastnas_bench.frontier.run import run_frontier

    for path in run_frontier(settings, Path(args.out), args.cache_dir):
        print(path)
    return 0


def _nodes(args: argparse.Namespace) -> int:
    """Per-op-type and per-node ORT time of a baseline and a pruned ONNX model; writes nodes.md and nodes.json."""
    from fastnas_bench.measure.nodes import NodePlan

    plan = NodePlan(rounds=args.rounds, warmup=args.warmup, threads=args.threads)  # checked before ORT loads
    from fastnas_bench.measure.node_profile import run_nodes

    markdown, paths = run_nodes(Path(args.baseline), Path(args.pruned), plan, Path(args.out))
    print(markdown)
    for path in paths:
        print(path)
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastnas-bench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build (or verify cached) baseline and pruned variants")
    build.add_argument("--profile", type=arg_type(parse_profile), default="cpu", help=f"one of {', '.join(PROFILES)}")
    build.add_argument("--flops-targets", type=arg_type(parse_flops_targets),
                       default=None, help="comma-separated FLOPs targets, e.g. 0.9,0.8,0.66,0.5")
    build.add_argument("--methods", type=arg_type(parse_methods), default=("fastnas",),
                       help="pruning methods: fastnas, l2struct, unstructured, fastnas-latency (comma-separated)")
    build.add_argument("--latency-targets", type=arg_type(parse_latency_targets), default=None,
                       help="latency budgets to cut to, e.g. 0.75,0.66 (with fastnas-latency, fastnas or l2struct)")
    build.add_argument("--latency-backends", type=arg_type(parse_backends), default=None,
                       help="backends the budgets are measured on (default: onnxruntime on CPU, pytorch on CUDA)")
    build.add_argument("--channel-divisors", type=arg_type(parse_divisors), default=None,
                       help="FastNAS channel divisors to build, e.g. 8,16,32,64 (default: the profile's)")
    build.add_argument("--device", default=None, help="cpu or cuda (default: the profile's)")
    build.add_argument("--cache-dir", default=None, help="cache root (default: $FASTNAS_BENCH_CACHE or user cache)")
    build.add_argument("--rebuild", action="store_true", help="rebuild the entries even if cached")
    build.add_argument("--seeds", type=arg_type(parse_seeds), default=(0,),
                       help="build seeds: N (0..N-1), A-B or A,B,...: every variant is fine-tuned with each (the source "
                            "is shared); with ≥ 2, print each variant's build-to-build spread and its drop's one-sided bound")
    build.set_defaults(func=_build)

    ab = sub.add_parser("ab", help="paired A/B latency: this environment (B) against a reference one (A)")
    ab.add_argument("--reference", required=True,
                    help="'self' (A/A), a venv folder or a python executable (it needs only its backend: "
                         "onnxruntime+numpy, or torch+ultralytics+numpy), or a git commit/branch/tag of this checkout "
                         "(its worker and export settings, in this environment). Make an environment: "
                         "fastnas-bench ab-env ref onnxruntime==1.31.1")
    ab.add_argument("--profile", type=arg_type(parse_profile), default="cpu", help="a CPU profile")
    ab.add_argument("--backends", type=arg_type(parse_backends), default=("onnxruntime", "pytorch"),
                    help="onnxruntime and/or pytorch (comma-separated)")
    ab.add_argument("--variants", type=lambda s: tuple(v.strip() for v in s.split(",") if v.strip()),
                    default=("baseline", "fastnas66"), help="variant names of the profile (comma-separated)")
    ab.add_argument("--batch", type=int, default=1, help="batch size")
    ab.add_argument("--tolerance", type=arg_type(parse_fraction), default=AB_TOLERANCE,
                    help="B may be this much slower than A before the verdict fails")
    ab.add_argument("--cache-dir", default=None, help="cache root (default: $FASTNAS_BENCH_CACHE or user cache)")
    ab.set_defaults(func=_ab)

    ab_env = sub.add_parser("ab-env", help="make a reference environment for `ab --reference` from version specs; "
                                           "built aside and renamed into place, so a failed install leaves nothing")
    ab_env.add_argument("path", metavar="PATH",
                        help="the environment's folder (absent or empty: an environment is never overwritten)")
    ab_env.add_argument("specs", nargs="*", metavar="SPEC",
                        help="pip requirement specs, e.g. onnxruntime==1.31.1; each replaces its project's default")
    ab_env.add_argument("--backends", type=lambda s: tuple(b.strip() for b in s.split(",") if b.strip()),
                        default=("onnxruntime",),
                        help="A/B worker backends it must run, onnxruntime and/or pytorch (comma-separated); "
                             "installs onnxruntime+numpy, torch+ultralytics+numpy")
    ab_env.add_argument("--requirements", default=None, metavar="FILE",
                        help="a lock file (pip freeze output) to install with -r")
    ab_env.add_argument("--pip-arg", dest="pip_args", action="append", default=None, metavar="ARG",
                        help="an extra `pip install` argument, repeatable; options with '=', e.g. "
                             "--pip-arg=--index-url=URL")
    ab_env.set_defaults(func=_ab_env)

    baselines = sub.add_parser("baselines", help="the stored runs the regression gates read: show them, accept "
                                                 "an intended shift (the gates' window starts again), or pull/push "
                                                 "them between a results store and the baselines files")
    baselines.add_argument("action", choices=("show", "accept", "pull", "push"))
    baselines.add_argument("--profile", dest="profile_filter", type=arg_type(parse_profile), default=None,
                           help=f"one of {', '.join(PROFILES)} (show/accept: default cpu; pull/push: default all)")
    baselines.add_argument("--baselines-dir", default=None,
                           help="stored baselines root (default: ./baselines); show/accept: not beside a results store")
    baselines.add_argument("--results-store", default=None,
                           help="an fsspec URL of a results store (default: $FASTNAS_BENCH_RESULTS): show/accept act "
                                "on it instead of the files; pull copies its runs into the files, push the reverse")
    baselines.add_argument("--machine-class", default=None,
                           help="show/accept: default this machine's; pull/push: default every class")
    baselines.add_argument("--tests", default=None, help="accept (required): a shell pattern of stored test ids, e.g. "
                                                         "'test_latency[[]onnxruntime-*', or '*' for all")
    baselines.add_argument("--reason", default=None, help="accept: why the shift is intended (kept in the file)")
    baselines.set_defaults(func=_baselines)

    report = sub.add_parser("report", help="Markdown + JSON + PNG report from saved pytest-benchmark runs; over "
                                           "several machine classes, one merged machine x backend table")
    report.add_argument("runs", nargs="*", help="saved run JSON files (from --benchmark-autosave/--benchmark-json)")
    report.add_argument("--results-store", default=None,
                        help="read the saved runs of --profile from this results store (fsspec URL) instead of files: "
                             "the newest of each machine class")
    report.add_argument("--profile", type=arg_type(parse_profile), default="cpu",
                        help="with --results-store: the profile whose runs to read")
    report.add_argument("--newest", type=arg_type(parse_positive_int), default=1,
                        help="with --results-store: runs per machine class (default 1)")
    report.add_argument("--out", default="fastnas-report", help="output directory")
    report.add_argument("--job-summary", default=None, help="append the fleet table (one machine class: the newest "
                                                            "run's headline table) to this Markdown file "
                                                            "(default: $GITHUB_STEP_SUMMARY where set)")
    report.set_defaults(func=_report)

    export = sub.add_parser("export", help="write a variant as a checkpoint stock Ultralytics loads (no fastnas-bench "
                                           "needed): YOLO(out).predict/.val/.export work on it")
    export.add_argument("variant", help="a variant's cache entry (the path `build` prints) or its model.pt")
    export.add_argument("out", help="output .pt path")
    export.set_defaults(func=_export)

    from fastnas_bench.frontier.settings import FrontierSettings as Frontier  # its defaults; torch-free

    frontier = sub.add_parser("frontier", help="measured latency vs FLOPs of sampled width configurations of the cpu "
                                               "profile's yolov8n search space, per backend: Pareto set, efficiency, "
                                               "latency-table rank correlation (resumable)")
    frontier.add_argument("--out", required=True, help="results folder: plan, one file per measurement, report, plot")
    frontier.add_argument("--backends", type=arg_type(parse_backends), default=Frontier.backends,
                          help="CPU backends to time (comma-separated)")
    frontier.add_argument("--configs", type=arg_type(parse_positive_int), default=Frontier.configs,
                          help="configurations to sample")
    frontier.add_argument("--rounds", type=arg_type(parse_positive_int), default=Frontier.rounds,
                          help="ABBA rounds per configuration and backend (≥ 15: three batches of 5), fixed in advance")
    frontier.add_argument("--seed", type=int, default=Frontier.seed, help="seed of the random configurations")
    frontier.add_argument("--imgsz", type=arg_type(parse_positive_int), default=Frontier.imgsz,
                          help="input side in pixels")
    frontier.add_argument("--threads", type=arg_type(parse_positive_int), default=Frontier.threads,
                          help="CPU threads of every backend")
    frontier.add_argument("--cache-dir", default=None, help="cache root of the latency tables "
                                                           "(default: $FASTNAS_BENCH_CACHE or user cache)")
    frontier.add_argument("--sensitivity-map", default=None, metavar="PATH",
                          help="a FastNAS search checkpoint of this search space (or its folder), e.g. the cpu "
                               "profile's <cache>/search/fastnas-*/fastnas_search.pth: adds the FastNAS-like family")
    frontier.set_defaults(func=_frontier)

    from fastnas_bench.measure.nodes import NodePlan  # its defaults; torch-free

    nodes = sub.add_parser("nodes", help="where an ONNX model's time goes on ONNX Runtime (CPU): per op type and per "
                                         "node, baseline against pruned, from ORT's profiler")
    nodes.add_argument("baseline", metavar="BASELINE.onnx", help="the baseline's ONNX export")
    nodes.add_argument("pruned", metavar="PRUNED.onnx", help="the pruned variant's ONNX export")
    nodes.add_argument("--rounds", type=int, default=NodePlan.rounds,
                       help="timed inferences per model, in A B B A blocks (odd: one more)")
    nodes.add_argument("--warmup", type=int, default=NodePlan.warmup, help="untimed inferences per model first")
    nodes.add_argument("--threads", type=int, default=NodePlan.threads, help="ORT intra-op threads")
    nodes.add_argument("--out", default="fastnas-nodes", help="output folder of nodes.md and nodes.json")
    nodes.set_defaults(func=_nodes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    from fastnas_bench.measure.ab import ABWorkerError
    from fastnas_bench.measure.ab_env import EnvBuildError

    try:
        return int(args.func(args))
    except (BadInputError, ABWorkerError, EnvBuildError) as e:
        # Exit 2, not 1: a bad option, a broken A/B worker or a failed install is no verdict (1 is a failed one).
        print(f"fastnas-bench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
