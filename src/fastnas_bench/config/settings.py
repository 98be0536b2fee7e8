"""The resolved, immutable benchmark settings of a session: profile, device, backends and variants."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fastnas_bench.backends.base import BackendTarget
from fastnas_bench.backends.registry import default_backends, get_backend_class, layer_timing_backends
from fastnas_bench.errors import BadInputError
from fastnas_bench.host import cpu_threads, machine_class, require_cuda
from fastnas_bench.measure.ab import WORKER_BACKENDS, Reference, resolve_reference
from fastnas_bench.measure.measurer import MeasurePlan
from fastnas_bench.methods.registry import get_method_class
from fastnas_bench.variants.profiles import PROFILES, Profile
from fastnas_bench.variants.spec import LatencyBudget, VariantSpec
from fastnas_bench.verdicts.outcome import AB_TOLERANCE


@dataclass(frozen=True)
class BenchSettings:
    """Everything a benchmark session runs with; built once from the options, never mutated.

    Attributes:
        profile: The profile after option overrides.
        device: ``cpu`` or ``cuda``.
        backends: Backends to parametrize over.
        threads: CPU threads given to every backend.
        rebuild_variants: Rebuild cached variants once this session.
        cache_dir: Cache root override, or ``None`` for the default.
        required_backends: Backends whose absence fails the run (named explicitly with ``--gpu``).
    """

    profile: Profile
    device: str
    backends: tuple[str, ...]
    threads: int
    rebuild_variants: bool
    cache_dir: str | None
    methods: tuple[str, ...] = ("fastnas",)
    #: Backends the user named with --gpu --backends: one that cannot run fails instead of skipping.
    required_backends: tuple[str, ...] = ()
    flops_targets: tuple[float, ...] = ()
    channel_divisors: tuple[int, ...] = ()
    #: Latency budgets (pruned/baseline latency) and the backends variants are cut for.
    latency_targets: tuple[float, ...] = ()
    latency_backends: tuple[str, ...] = ()
    #: Machine class latency cuts are measured on (set when latency targets are).
    machine: str = ""
    #: Python interpreter of the A/B reference environment (``--ab-reference``), or ``None``.
    ab_reference: Reference | None = None
    #: How much slower side B may be than side A before test_ab fails.
    ab_tolerance: float = AB_TOLERANCE
    #: Build seeds: every variant is built with each for the accuracy verdicts (paired by seed);
    #: latency is measured on seed 0's builds (a seed changes weights, not widths).
    seeds: tuple[int, ...] = (0,)
    #: Run the checks that the verdicts can fail (``--self-checks``).
    self_checks: bool = False

    @property
    def ab_gates(self) -> int:
        """test_ab verdicts this run makes: the family its false-alarm rate is split over."""
        runnable = [t for t in self.targets if t.backend in WORKER_BACKENDS and t.precision == "fp32"]
        return len(runnable) * len(self.variants) * len(self.profile.batch_sizes) if self.device == "cpu" else 0

    @property
    def variants(self) -> dict[str, VariantSpec]:
        """Variant specs by name (``baseline``, ``fastnas66``, ``l2struct66``, ...), baseline first."""
        targets = self.flops_targets or (self.profile.pruned.flops_target,)
        divisors = self.channel_divisors or (self.profile.pruned.channel_divisor,)
        variants = {"baseline": self.profile.baseline}
        for method in self.methods:
            if get_method_class(method).budget == "latency":
                continue
            for target in targets:
                for divisor in divisors:
                    spec = replace(self.profile.pruned, method=method, flops_target=target, channel_divisor=divisor)  # type: ignore[arg-type]
                    # The divisor joins the name only when several are compared (fastnas66d8 ...).
                    variants[spec.name + (f"d{divisor}" if len(divisors) > 1 else "")] = spec
        for backend in self.latency_backends:
            for target in self.latency_targets:
                for method in self.methods:
                    if get_method_class(method).budget == "flops":
                        continue
                    spec = replace(self.profile.pruned, method=method, flops_target=None,
                                   latency=self.latency_budget(target, backend))
                    variants[spec.name] = spec
        return variants

    @property
    def measure_plan(self) -> MeasurePlan:
        """How this session's measurements run: device, threads, image size, the profile's rounds."""
        p = self.profile
        return MeasurePlan(device=self.device, threads=self.threads, imgsz=p.bench_imgsz, warmup_rounds=p.warmup_rounds,
                           rounds=p.rounds, speedup_rounds=p.speedup_rounds, rebuild=self.rebuild_variants)

    def latency_budget(self, target: float, backend: str) -> LatencyBudget:
        """A budget measured the way this run's benchmarks measure: first batch size, benchmark imgsz."""
        precision = get_backend_class(backend).precisions[self.device][0]
        return LatencyBudget(target=target, backend=backend, machine=self.machine, precision=precision,
                             imgsz=self.profile.bench_imgsz, batch=self.profile.batch_sizes[0], threads=self.threads,
                             device=self.device)

    @property
    def latency_names(self) -> tuple[str, ...]:
        """Variants cut to a latency budget."""
        return tuple(n for n, spec in self.variants.items() if spec.latency is not None)

    @property
    def pruned_names(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.variants.items() if spec.method != "baseline")

    @property
    def primary_pruned_name(self) -> str:
        """The first FastNAS variant selected, else the first pruned one (names carry targets and divisors)."""
        return next((n for n in self.pruned_names if self.variants[n].method == "fastnas"
                     and self.variants[n].latency is None), self.pruned_names[0])

    @property
    def flops_names(self) -> tuple[str, ...]:
        """Structured variants pruned to a FLOPs target."""
        return tuple(n for n in self.structured_names if self.variants[n].flops_target is not None)

    @property
    def structured_names(self) -> tuple[str, ...]:
        """Pruned variants that change shapes, so a dense backend should run them faster."""
        return tuple(n for n, spec in self.variants.items()
                     if spec.method != "baseline" and get_method_class(spec.method).structured)

    @property
    def targets(self) -> tuple[BackendTarget, ...]:
        """(backend, precision) pairs to benchmark: each backend at the precisions it declares here."""
        return tuple(BackendTarget(name, precision) for name in self.backends
                     for precision in get_backend_class(name).precisions[self.device])


#: The backend latency cuts are measured on when --latency-backends is not given. Not TensorRT on
#: CUDA: a latency table times dozens of networks, and each would need its own engine build.
LATENCY_BACKEND_DEFAULT: dict[str, tuple[str, ...]] = {"cpu": ("onnxruntime",), "cuda": ("pytorch",)}


def latency_machine(device: str) -> str:
    """The machine class latency cuts are measured on; a one-line error where ``device`` is missing."""
    if device == "cuda":
        require_cuda()
    return machine_class(device)


def resolve_settings(opts: dict[str, Any]) -> BenchSettings:
    """Combine profile defaults with the options; contradictions raise ``BadInputError``.

    Args:
        opts: Option values keyed by dest (``None`` where not given).
    """
    gpu = bool(opts.get("gpu"))
    if opts.get("flops_target") is not None and opts.get("flops_targets"):
        raise BadInputError("give either --flops-target or --flops-targets, not both")
    profile = PROFILES[opts.get("profile") or ("paper" if gpu else "cpu")]
    if profile.device == "cuda" and not gpu:
        raise BadInputError(f"profile {profile.name!r} runs on CUDA; add --gpu")
    pruned = profile.pruned
    spec_overrides = {
        "flops_target": opts.get("flops_target"),
        "data": opts.get("data"),
        "model": opts.get("model"),
        "weights": opts.get("weights"),
    }
    pruned = replace(pruned, **{k: v for k, v in spec_overrides.items() if v is not None})
    if opts.get("weights"):
        pruned = replace(pruned, epochs=0)  # given weights are the source as they are
    bench_overrides: dict[str, Any] = {"pruned": pruned}
    if opts.get("imgsz"):
        bench_overrides["bench_imgsz"] = opts["imgsz"]
    if opts.get("batch_sizes"):
        bench_overrides["batch_sizes"] = opts["batch_sizes"]
    if opts.get("min_speedup") is not None:
        bench_overrides["min_speedup"] = opts["min_speedup"]
    if opts.get("max_map_drop") is not None:
        bench_overrides["max_map_drop"] = opts["max_map_drop"]
    if opts.get("max_recall_drop") is not None:
        bench_overrides["max_recall_drop"] = opts["max_recall_drop"]
    profile = replace(profile, **bench_overrides)

    device = "cuda" if gpu else "cpu"
    methods = opts.get("methods") or ("fastnas",)
    latency_targets = opts.get("latency_targets") or ()
    latency_backends = opts.get("latency_backends") or ()
    # Reading a method's budget imports it (torch): only where methods or budgets were named.
    named = bool(opts.get("methods")) or bool(latency_targets)
    needs_latency = [m for m in methods if get_method_class(m).budget == "latency"] if named else []
    if needs_latency and not latency_targets:
        raise BadInputError(f"method(s) {', '.join(needs_latency)} prune to a latency budget: add --latency-targets")
    if latency_backends and not latency_targets:
        raise BadInputError("--latency-backends names the backends to cut for: add --latency-targets")
    if latency_targets and not any(get_method_class(m).budget != "flops" for m in methods):
        raise BadInputError(f"--latency-targets: none of the methods {', '.join(methods)} takes a latency budget "
                            "(add fastnas-latency, fastnas or l2struct to --methods)")
    machine = ""
    if latency_targets:
        latency_backends = latency_backends or LATENCY_BACKEND_DEFAULT[device]
        labels = [round(t * 100) for t in latency_targets]
        if len(set(labels)) != len(labels):
            raise BadInputError(f"latency targets {','.join(map(str, latency_targets))} name the same percentage twice")
        if any(get_method_class(m).budget == "latency" for m in methods):
            # Any device: `fastnas-bench build --device` may cut a CUDA profile on the CPU; the latency
            # table refuses a backend it cannot time on the device the build runs on.
            timed = tuple(dict.fromkeys(b for d in ("cpu", "cuda") for b in layer_timing_backends(d)))
            untimed = [b for b in latency_backends if b not in timed]
            if untimed:
                raise BadInputError(f"the latency-aware cut cannot cut for {', '.join(untimed)}: its latency table times "
                                    f"single layers on {', '.join(timed)} only")
        machine = latency_machine(device)
    # Every backend is parametrized by default, so one that cannot run here shows as a skip with
    # its reason rather than vanishing from the report.
    backends = opts.get("backends") or default_backends(device)
    if not gpu and backends == ("tensorrt",):
        raise BadInputError("--backends tensorrt needs --gpu (TensorRT runs on CUDA only)")
    return BenchSettings(
        profile=profile,
        device=device,
        backends=tuple(backends),
        required_backends=tuple(opts.get("backends") or ()) if gpu else (),
        threads=cpu_threads(),
        rebuild_variants=bool(opts.get("rebuild_variants")),
        cache_dir=opts.get("cache_dir"),
        methods=methods,
        flops_targets=opts.get("flops_targets") or (),
        channel_divisors=opts.get("channel_divisors") or (),
        latency_targets=tuple(latency_targets),
        latency_backends=tuple(latency_backends),
        machine=machine,
        ab_reference=resolve_reference(opts["ab_reference"]) if opts.get("ab_reference") else None,
        ab_tolerance=opts["ab_tolerance"] if opts.get("ab_tolerance") is not None else AB_TOLERANCE,
        seeds=tuple(opts.get("seeds") or (0,)),
        self_checks=bool(opts.get("self_checks")),
    )
