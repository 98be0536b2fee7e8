"""Command-line value parsers: each raises a one-line error naming the bad value.

Shared by the pytest options and the ``fastnas-bench`` command; :func:`arg_type` turns a parser into
an argparse ``type=`` that reports the error as a usage error at parse time.
"""

from __future__ import annotations

import argparse
from typing import Any

from fastnas_bench.backends.registry import BACKEND_NAMES
from fastnas_bench.errors import BadInputError
from fastnas_bench.methods.registry import METHOD_NAMES
from fastnas_bench.variants.profiles import PROFILES
from fastnas_bench.variants.spec import parse_flops_target, parse_latency_target, parse_model

__all__ = ["arg_type", "parse_backends", "parse_batch_sizes", "parse_divisors", "parse_flops_target", "parse_flops_targets",
           "parse_fraction", "parse_imgsz", "parse_latency_targets", "parse_methods", "parse_model",
           "parse_positive_float", "parse_positive_int", "parse_profile"]


def arg_type(parse):  # type: ignore[no-untyped-def]
    """Wrap a parser so argparse reports BadInputError/ValueError as a usage error naming the value."""

    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except (BadInputError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    wrapped.__name__ = parse.__name__
    return wrapped


def parse_profile(text: str) -> str:
    if text not in PROFILES:
        raise BadInputError(f"unknown profile {text!r}; expected one of {', '.join(PROFILES)}")
    return text


def _parse_names(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Comma-separated names, deduplicated in order; every one must be in ``allowed``."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in allowed]
    if not names or unknown:
        raise BadInputError(f"unknown {what}(s) {unknown or text!r}; expected a subset of {', '.join(allowed)}")
    return names


def parse_backends(text: str) -> tuple[str, ...]:
    return _parse_names(text, BACKEND_NAMES, "backend")


def parse_methods(text: str) -> tuple[str, ...]:
    return _parse_names(text, METHOD_NAMES, "pruning method")


def parse_flops_targets(text: str) -> tuple[float, ...]:
    targets = tuple(dict.fromkeys(parse_flops_target(v) for v in text.split(",") if v.strip()))
    if not targets:
        raise BadInputError(f"FLOPs targets {text!r} name no target")
    return targets


def parse_latency_targets(text: str) -> tuple[float, ...]:
    targets = tuple(dict.fromkeys(parse_latency_target(v) for v in text.split(",") if v.strip()))
    if not targets:
        raise BadInputError(f"latency targets {text!r} name no target")
    return targets


def parse_divisors(text: str) -> tuple[int, ...]:
    try:
        divisors = tuple(dict.fromkeys(int(v) for v in text.split(",")))
    except ValueError:
        raise BadInputError(f"channel divisors {text!r} must be comma-separated integers") from None
    if not divisors or any(d < 1 for d in divisors):
        raise BadInputError(f"channel divisors {text!r} must all be ≥ 1")
    return divisors


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise BadInputError(f"batch sizes {text!r} must be comma-separated integers") from None
    if not sizes or any(b < 1 for b in sizes):
        raise BadInputError(f"batch sizes {text!r} must all be ≥ 1")
    return tuple(dict.fromkeys(sizes))


#: Most build seeds one run may ask for: each is a full fine-tune of every variant.
MAX_SEEDS = 20


def parse_seeds(text: str) -> tuple[int, ...]:
    """Build seeds: ``N`` (seeds 0..N-1), a range ``A-B`` or a list ``3,7``."""
    try:
        if "-" in text:
            first, last = (int(v) for v in text.split("-"))
            seeds = tuple(range(first, last + 1))
        elif "," in text:
            seeds = tuple(dict.fromkeys(int(v) for v in text.split(",")))
        else:
            seeds = tuple(range(int(text)))
    except ValueError:
        raise BadInputError(f"seeds {text!r} must be a count N, a range A-B or a list A,B,...") from None
    if not 1 <= len(seeds) <= MAX_SEEDS or min(seeds) < 0:
        raise BadInputError(f"seeds {text!r} must name 1 to {MAX_SEEDS} seeds, none negative")
    return seeds


def parse_positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise BadInputError(f"{text!r} must be a positive number")
    return value


def parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadInputError(f"{text!r} must be a positive integer") from None
    if value < 1:
        raise BadInputError(f"{text!r} must be a positive integer")
    return value


def parse_fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise BadInputError(f"{text!r} must lie in [0, 1]")
    return value


def parse_imgsz(text: str) -> int:
    value = int(text)
    if value < 32 or value % 32:
        raise BadInputError(f"imgsz {text!r} must be a positive multiple of 32")
    return value
