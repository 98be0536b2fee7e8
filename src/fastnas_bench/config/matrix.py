"""Which variants each kind of benchmark runs on, by the fixture name that parametrizes it.

Pure data from the settings: the plugin turns each group into a parametrization, and an empty group
into one skipped case that says which option selects it (never a test that silently vanishes).
"""

from __future__ import annotations

from fastnas_bench.config.settings import BenchSettings


def variant_groups(settings: BenchSettings) -> dict[str, tuple[str, ...]]:
    """Variant names by parametrizing fixture name (``structured_name``, ``rival_name``, ...)."""
    variants = settings.variants
    pruned = settings.pruned_names
    latency = settings.latency_names
    return {
        "pruned_name": pruned,
        "fastnas_name": tuple(n for n in pruned if variants[n].method == "fastnas" and variants[n].latency is None),
        "structured_name": settings.structured_names,
        "flops_name": settings.flops_names,
        "latency_name": latency,
        "latency_aware_name": tuple(n for n in latency if variants[n].method == "fastnas-latency"),
        "rival_name": tuple(n for n in settings.flops_names if variants[n].method != "fastnas"),
        "unstructured_name": tuple(n for n in pruned if n not in settings.structured_names),
    }


def empty_group_reason(fixture: str) -> str:
    """Why a group has no variant this run, and which option would select one."""
    how = ("add --latency-targets (with fastnas-latency in --methods)" if fixture.startswith("latency")
           else "choose methods with --methods")
    return f"no {fixture.removesuffix('_name').replace('_', '-')} variant selected ({how})"
