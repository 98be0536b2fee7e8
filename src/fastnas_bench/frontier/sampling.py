"""Width configurations to measure: uniform, FastNAS-like, latency-greedy and random, each landing in a
FLOPs window.

Pure: the search space comes in as hparam → choices, FLOPs and the latency table's cost as functions,
so the sampling is tested without a model. Four families, because each probes another part of
the latency/FLOPs plane:

- uniform: every hparam at the same fraction of its full width (the nearest choice), the classic
  width multiplier, one point per fraction;
- FastNAS-like: what FastNAS itself selects from a sensitivity map (score lost per width choice) of a
  trained source of the same search space: modelopt's binary searcher sets every hparam to its
  narrowest choice that loses at most a threshold and bisects the threshold until the FLOPs
  constraint holds, so every configuration it can return is the threshold rule at one of the
  map's values; the family spreads over those (only where a map is given: the frontier's own
  network is untrained);
- latency-greedy: the latency table's greedy walk (:func:`~fastnas_bench.methods._lib.greedy.greedy_select`)
  with each choice's loss the share of convolution MACs it removes, stopped at several predicted
  latency targets: the configurations that save the most predicted time per FLOP given up, i.e.
  the candidates for the frontier's fast side;
- random: every hparam a random choice at or above a random floor (so the draws spread over the
  whole window instead of piling up at the mean width), rejected outside the window.

"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fastnas_bench.errors import BadInputError
from fastnas_bench.keys import digest
from fastnas_bench.methods._lib.greedy import greedy_select
from fastnas_bench.methods._lib.latency_table import ConvShape

log = logging.getLogger(__name__)

Family = Literal["uniform", "fastnas-like", "latency-greedy", "random"]
FAMILIES: tuple[Family, ...] = ("uniform", "fastnas-like", "latency-greedy", "random")
#: FLOPs ratios a sampled configuration must land in: the range pruning targets (0.9 barely prunes,
#: and below 0.4 a detector of this size loses most of its accuracy).
FLOPS_WINDOW = (0.4, 0.9)
#: Width fractions the uniform family tries (each hparam at the choice nearest fraction × full). FLOPs
#: go about as the fraction squared, so the window is reached from about 0.6 to 0.95; many fractions
#: round to the same widths at a channel divisor of 16.
UNIFORM_FRACTIONS = tuple(float(f) for f in np.linspace(0.5, 1.0, 41))
#: Predicted latency ratios the greedy walk is read at (the lowest clipped to what the table can reach).
GREEDY_RATIOS = (0.4, 0.95)
#: Random draws allowed per configuration wanted before the window is declared out of reach.
DRAWS_PER_CONFIG = 50
#: Lowest random floor, as a fraction of each hparam's full width.
RANDOM_FLOOR = 0.25
#: Bumped when the sampling changes what a seed gives; part of the plan's key.
SAMPLING_VERSION = 1

Widths = dict[str, int]


@dataclass(frozen=True)
class FrontierConfig:
    """One width configuration of the search space.

    Attributes:
        family: How it was sampled.
        widths: (hparam, width) of every prunable hparam, sorted by name.
        flops_ratio: Its FLOPs over the full network's (Ultralytics' counter).
    """

    family: Family
    widths: tuple[tuple[str, int], ...]
    flops_ratio: float

    @property
    def digest(self) -> str:
        """Content digest of the widths: the configuration's identity in every stored result."""
        return widths_digest(dict(self.widths))

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "widths": dict(self.widths), "flops_ratio": self.flops_ratio,
                "digest": self.digest}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FrontierConfig:
        return cls(data["family"], tuple(sorted((str(h), int(w)) for h, w in data["widths"].items())),
                   float(data["flops_ratio"]))


def widths_digest(widths: Mapping[str, int]) -> str:
    return digest({h: int(w) for h, w in widths.items()})


def family_counts(n: int, greedy: bool, fastnas: bool = False) -> dict[Family, int]:
    """How many of ``n`` configurations each family is asked for; random fills what the others fall short of."""
    uniform = n // 10
    fastnas_like = n // 10 if fastnas else 0
    latency_greedy = n // 5 if greedy else 0
    return {"uniform": uniform, "fastnas-like": fastnas_like, "latency-greedy": latency_greedy,
            "random": n - uniform - fastnas_like - latency_greedy}


def sample_configs(
    n: int,
    seed: int,
    choices: Mapping[str, Sequence[int]],
    flops_ratio: Callable[[Widths], float],
    greedy: tuple[Mapping[str, Mapping[int, float]], Callable[[Widths], float]] | None = None,
    window: tuple[float, float] = FLOPS_WINDOW,
    sensitivity: Mapping[str, Mapping[int, float]] | None = None,
) -> list[FrontierConfig]:
    """``n`` distinct configurations in the FLOPs ``window``: uniform, then FastNAS-like, then latency-greedy,
    then random.

    Args:
        n: Configurations wanted.
        seed: Seed of the random family (the others are deterministic).
        choices: hparam → the widths it can take.
        flops_ratio: FLOPs of a configuration (every hparam named) over the full network's.
        greedy: (loss, cost_ms) of the greedy walk (see module doc), or ``None`` to leave that family out.
        window: FLOPs ratios accepted, inclusive.
        sensitivity: FastNAS's sensitivity map (hparam → choice → score lost; see
            :func:`check_sensitivity_map`), or ``None`` to leave the FastNAS-like family out.

    Returns:
        The configurations, family by family; fewer than ``n`` only where random draws ran out
        (logged).

    Raises:
        BadInputError: where ``n`` < 1 or the search space is empty.
    """
    if n < 1:
        raise BadInputError(f"configs {n} must be at least 1")
    ladders = {h: sorted(set(int(w) for w in choices[h])) for h in sorted(choices)}
    if not ladders or not all(ladders.values()):
        raise BadInputError(f"search space {dict(choices)!r} has no hparam with choices to sample")
    counts = family_counts(n, greedy is not None, sensitivity is not None)
    # FLOPs counted once per distinct configuration (a count exports the subnet: about a second).
    known: dict[str, float] = {}

    def ratio(widths: Widths) -> float:
        key = widths_digest(widths)
        if key not in known:
            known[key] = float(flops_ratio(widths))
        return known[key]

    def inside(widths: Widths) -> bool:
        return window[0] <= ratio(widths) <= window[1]

    picked: dict[str, FrontierConfig] = {}

    def take(family: Family, candidates: Sequence[Widths], count: int) -> None:
        fresh = [w for w in dict((widths_digest(w), w) for w in candidates).values()
                 if widths_digest(w) not in picked and inside(w)]
        # Spread over what is there: every k-th of the candidates, which come ordered by size.
        for i in sorted({round(x) for x in np.linspace(0, len(fresh) - 1, min(count, len(fresh)))}):
            w = fresh[i]
            picked[widths_digest(w)] = FrontierConfig(family, tuple(sorted(w.items())), ratio(w))

    take("uniform", uniform_widths(ladders), counts["uniform"])
    if sensitivity is not None and counts["fastnas-like"]:
        take("fastnas-like", fastnas_widths(ladders, sensitivity), counts["fastnas-like"])
    if greedy is not None and counts["latency-greedy"]:
        take("latency-greedy", greedy_path(ladders, *greedy, counts["latency-greedy"]), counts["latency-greedy"])
    rng = np.random.default_rng(seed)
    draws = 0
    while len(picked) < n and draws < DRAWS_PER_CONFIG * n:
        draws += 1
        w = random_widths(ladders, rng)
        key = widths_digest(w)
        if key not in picked and inside(w):
            picked[key] = FrontierConfig("random", tuple(sorted(w.items())), ratio(w))
    if len(picked) < n:
        log.warning("sampled %d of %d configurations: %d random draws found no more in FLOPs window %s",
                    len(picked), n, draws, window)
    return list(picked.values())


def uniform_widths(ladders: Mapping[str, Sequence[int]]) -> list[Widths]:
    """One configuration per :data:`UNIFORM_FRACTIONS`, each hparam at the choice nearest the fraction of
    its full width (the wider of two equally near), narrowest first."""
    return [{h: min(ladder, key=lambda w: (abs(w - f * ladder[-1]), -w)) for h, ladder in ladders.items()}
            for f in UNIFORM_FRACTIONS]


def check_sensitivity_map(choices: Mapping[str, Sequence[int]], sensitivity: Mapping[str, Mapping[int, float]],
                          source: str) -> None:
    """Raise :class:`BadInputError` unless ``sensitivity`` (read from ``source``) maps hparams of this search
    space to widths they can take: a map of another network or channel divisor would select nonsense."""
    if not sensitivity:
        raise BadInputError(f"sensitivity map {source}: it is empty")
    unknown = sorted(set(sensitivity) - set(choices))
    if unknown:
        raise BadInputError(f"sensitivity map {source}: hparam {unknown[0]!r} (and {len(unknown) - 1} more) is not "
                            "in this search space; was it made for another model or channel divisor?")
    for h, row in sensitivity.items():
        # The same widths exactly, as modelopt requires of a stored map: a coarser divisor's map holds a subset.
        mapped, allowed = set(int(w) for w in row), set(int(w) for w in choices[h])
        if mapped != allowed:
            odd = sorted(mapped ^ allowed)[0]
            raise BadInputError(f"sensitivity map {source}: {h} width {odd} is "
                                f"{'not one of its choices' if odd in mapped else 'missing from the map'} "
                                f"{sorted(allowed)}; was it made for another channel divisor?")


def fastnas_widths(ladders: Mapping[str, Sequence[int]], sensitivity: Mapping[str, Mapping[int, float]]) -> list[Widths]:
    """Every configuration FastNAS's binary searcher can select from ``sensitivity``, widest first.

    At a threshold t, modelopt sets each mapped hparam to its narrowest choice that loses at most t
    (``BinarySearcher._apply_fastnas_according_to_threshold``) and leaves the others at full width; the
    selection only changes where t crosses a value of the map, so those values give them all.
    """
    thresholds = sorted({float(v) for row in sensitivity.values() for v in row.values()})
    selections = []
    for t in thresholds:
        selections.append({h: min((int(w) for w, v in sensitivity[h].items() if v <= t), default=ladder[-1])
                           if h in sensitivity else ladder[-1] for h, ladder in ladders.items()})
    return selections


def random_widths(ladders: Mapping[str, Sequence[int]], rng: np.random.Generator) -> Widths:
    """Every hparam a uniform choice among its widths at or above one random floor of the full width."""
    floor = rng.uniform(RANDOM_FLOOR, 1.0)
    widths = {}
    for h, ladder in ladders.items():
        allowed = [w for w in ladder if w >= floor * ladder[-1]] or [ladder[-1]]
        widths[h] = int(allowed[rng.integers(len(allowed))])
    return widths


def greedy_path(ladders: Mapping[str, Sequence[int]], loss: Mapping[str, Mapping[int, float]],
                cost_ms: Callable[[Widths], float], count: int) -> list[Widths]:
    """The greedy walk's selections at ``count`` predicted latency ratios over :data:`GREEDY_RATIOS`,
    fastest first.

    The walk to the lowest ratio passes through the selection for every higher one (it is the same
    deterministic walk, stopped later), so one walk gives them all: the first step at or under each
    ratio is what :func:`greedy_select` returns for that ratio.
    """
    full_ms = cost_ms({h: ladder[-1] for h, ladder in ladders.items()})
    floor_ms = cost_ms({h: ladder[0] for h, ladder in ladders.items()})
    lowest = max(GREEDY_RATIOS[0], floor_ms / full_ms)
    if lowest >= GREEDY_RATIOS[1]:
        return []
    path: list[tuple[Widths, float]] = []
    # Where the floor is the lowest ratio, floor_ms / full_ms * full_ms can round below floor_ms: aim at it exactly.
    greedy_select(loss, ladders, cost_ms, max(lowest * full_ms, floor_ms),
                  on_step=lambda w, ms: path.append((w, ms / full_ms)))
    selections = []
    for target in np.linspace(lowest, GREEDY_RATIOS[1], count):
        reached = next((w for w, r in path if r <= target), None)
        if reached is not None:
            selections.append(reached)
    return selections


def macs_loss(choices: Mapping[str, Sequence[int]], shapes: Mapping[str, ConvShape],
              active: Callable[[Widths], Mapping[str, tuple[int, int]]]) -> dict[str, dict[int, float]]:
    """hparam → choice → share of the convolutions' MACs removed with only that hparam at that choice
    (its widest reads 0): the greedy walk's loss, so it narrows first what saves time at the least work.

    Args:
        choices: hparam → widths.
        shapes: The network's convolutions (their geometry).
        active: (in, out) width of every convolution at a configuration (unnamed hparams at full width).
    """

    def macs(widths: Widths) -> int:
        at = active(widths)
        return sum(conv_macs(s.kernel, s.stride, s.padding, s.height, s.width, *at[n]) for n, s in shapes.items())

    full = macs({})
    return {h: {int(w): 1.0 - macs({h: int(w)}) / full for w in ladder} for h, ladder in choices.items()}


def conv_macs(kernel: int, stride: int, padding: int, height: int, width: int, cin: int, cout: int) -> int:
    """Multiply-accumulates of one dense convolution on a ``height`` × ``width`` input.

    Only a weight for the greedy walk (the share of a network's convolution work a choice removes);
    every FLOPs ratio reported is Ultralytics' count of the exported subnet.
    """
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1
    return kernel * kernel * cin * cout * out_h * out_w
