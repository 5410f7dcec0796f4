"""Automatic tuning of guidance strength and the other settings a guidance declares.

Every guided method has a strength to choose, and the right value depends on the model, the target and the
budget. ``tune`` searches it for you on your own validation objective, coarse to fine, at a fixed number of
evaluations (the training-free-guidance recipe of Ye et al. 2024: a log-spaced sweep, then a beam search
that halves its step around the best settings found so far), and returns the choice together with every
evaluation it made, so the whole curve can be plotted or printed. A best value on the edge of its range is
flagged: the range should be widened.

    result = tune(lambda p: validation_loss(ReconstructionGuidance(loss, scale=p["scale"])),
                  {"scale": LogRange(1e-2, 1e2)}, budget=16)
    result.best, result.score, result.curve("scale"), result.at_edge

``space_for(guidance)`` gives the ranges a guidance class declares (its ``tunable`` attribute, or the core's
defaults for the core's classes). Make the objective deterministic (fixed seeds, common random numbers), so
that two settings are compared on the same noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Choice", "LinearRange", "LogRange", "TuningResult", "space_for", "tune"]


@dataclass(frozen=True)
class LogRange:
    """A positive number searched on a log scale between ``low`` and ``high``."""

    low: float
    high: float

    def __post_init__(self):
        if not (0 < self.low < self.high < math.inf):
            raise ValueError(f"LogRange needs 0 < low < high < inf, got ({self.low}, {self.high})")

    def to_unit(self, v: float) -> float:
        return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))

    def from_unit(self, u: float) -> float:
        return math.exp(
            math.log(self.low) + min(max(u, 0.0), 1.0) * (math.log(self.high) - math.log(self.low))
        )


@dataclass(frozen=True)
class LinearRange:
    """A number searched on a linear scale between ``low`` and ``high``."""

    low: float
    high: float

    def __post_init__(self):
        if not (-math.inf < self.low < self.high < math.inf):
            raise ValueError(f"LinearRange needs finite low < high, got ({self.low}, {self.high})")

    def to_unit(self, v: float) -> float:
        return (v - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        return self.low + min(max(u, 0.0), 1.0) * (self.high - self.low)


@dataclass(frozen=True)
class Choice:
    """One of a few discrete values (a step rule, a potential, a candidate count)."""

    values: tuple

    def __init__(self, values: Sequence):
        values = tuple(values)
        if not values:
            raise ValueError("Choice needs at least one value")
        object.__setattr__(self, "values", values)


Dimension = LogRange | LinearRange | Choice


@dataclass
class TuningResult:
    """The chosen settings, their score, every evaluation made, and the settings chosen at a range's edge."""

    best: dict[str, Any]
    score: float
    trials: list[dict[str, Any]] = field(default_factory=list)  # {"params", "score", "round"} in order
    at_edge: list[str] = field(default_factory=list)
    minimize: bool = True

    def curve(self, name: str) -> list[tuple[Any, float]]:
        """(value, best score seen at that value) for one setting, sorted by value."""
        best: dict[Any, float] = {}
        for t in self.trials:
            v, s = t["params"][name], t["score"]
            if v not in best or (s < best[v] if self.minimize else s > best[v]):
                best[v] = s
        return sorted(best.items(), key=lambda kv: (str(type(kv[0])), kv[0]))

    def as_dict(self) -> dict[str, Any]:
        return {"best": self.best, "score": self.score, "at_edge": self.at_edge, "trials": self.trials}


def _round(v: float) -> float:
    return float(f"{v:.6g}")  # settings that print cleanly


def tune(
    objective: Callable[[dict[str, Any]], float],
    space: Mapping[str, Dimension],
    *,
    budget: int = 20,
    minimize: bool = True,
    initial: int = 5,
    beam: int = 2,
    start: Mapping[str, Any] | None = None,
) -> TuningResult:
    """Search ``space`` for the settings that minimize (or maximize) ``objective(params) -> float``.

    Coarse to fine, never more than ``budget`` evaluations: first each setting alone over ``initial`` evenly
    spaced points of its range (fewer when the budget cannot pay for them, ends included) (log-spaced for ``LogRange``; every value of a ``Choice``), the others at
    ``start`` (default: the middle of each range, the first choice); then, around the ``beam`` best settings
    so far, moves of one setting at a time by a step that halves every round. Non-finite scores count as the
    worst. Returns the best settings, every trial and the settings whose best value lies on a range's edge.
    """
    if not space:
        raise ValueError("tune needs at least one setting to search, e.g. {'scale': LogRange(0.01, 100)}")
    for name, dim in space.items():
        if not isinstance(dim, (LogRange, LinearRange, Choice)):
            raise ValueError(f"setting {name!r}: give a LogRange, LinearRange or Choice, got {dim!r}")
    if budget < 1 or initial < 2 or beam < 1:
        raise ValueError(f"need budget >= 1, initial >= 2 and beam >= 1, got {budget}, {initial}, {beam}")
    sign = 1.0 if minimize else -1.0
    names = list(space)
    # a budget too small for the coarse grids spreads what it has over each whole range (both ends included)
    initial = max(2, min(initial, budget // len(space)))
    trials: list[dict[str, Any]] = []
    seen: dict[tuple, float] = {}  # points in unit coordinates (exact on the search's dyadic lattice)

    def value(name: str, u: Any) -> Any:
        dim = space[name]
        return u if isinstance(dim, Choice) else _round(dim.from_unit(u))

    def evaluate(point: dict[str, Any], round_: int) -> None:
        k = tuple(round(point[n], 12) if not isinstance(space[n], Choice) else point[n] for n in names)
        if k in seen or len(trials) >= budget:
            return
        params = {n: value(n, point[n]) for n in names}
        s = float(objective(dict(params)))
        s = s if math.isfinite(s) else sign * math.inf
        seen[k] = s
        trials.append({"params": params, "score": s, "round": round_})

    def ranked() -> list[dict[str, Any]]:
        return [dict(zip(names, k)) for k, _ in sorted(seen.items(), key=lambda kv: sign * kv[1])]

    center: dict[str, Any] = {}
    start = dict(start or {})
    for name, dim in space.items():
        given = name in start
        if isinstance(dim, Choice):
            center[name] = start[name] if given else dim.values[0]
        else:
            center[name] = min(max(dim.to_unit(start[name]), 0.0), 1.0) if given else 0.5
    # round 0: each setting alone over a coarse grid, then the best value of each, together
    best_alone = dict(center)
    for name, dim in space.items():
        grid = dim.values if isinstance(dim, Choice) else [i / (initial - 1) for i in range(initial)]
        for u in grid:
            evaluate({**center, name: u}, 0)
        alone = [
            (k, sc)
            for k, sc in seen.items()
            if all(
                k[i] == (round(center[m], 12) if not isinstance(space[m], Choice) else center[m])
                for i, m in enumerate(names)
                if m != name
            )
        ]
        best_alone[name] = min(alone, key=lambda ks: sign * ks[1])[0][names.index(name)]
    evaluate(best_alone, 0)
    # refinement: around the beam of best points, move one setting at a time by a step that halves
    step, round_ = 0.5 / (initial - 1), 1
    continuous = [n for n in names if not isinstance(space[n], Choice)]
    while continuous and len(trials) < budget and step > 1e-6:
        for point in ranked()[:beam]:
            for name in continuous:
                for u in (point[name] - step, point[name] + step):
                    if -1e-12 <= u <= 1 + 1e-12:
                        evaluate({**point, name: min(max(u, 0.0), 1.0)}, round_)
        step, round_ = step / 2, round_ + 1
    best_point = ranked()[0]
    best = {n: value(n, best_point[n]) for n in names}
    best_score = min(seen.values(), key=lambda v: sign * v)
    at_edge = [n for n in continuous if best_point[n] in (0.0, 1.0)]
    return TuningResult(best=best, score=best_score, trials=trials, at_edge=at_edge, minimize=minimize)


def space_for(guidance: Any) -> dict[str, Dimension]:
    """The settings a guidance (class or instance) declares as tunable, with their ranges.

    A class declares them in a ``tunable`` attribute (``{"scale": LogRange(0.01, 100)}``); the core's own
    guidance classes have defaults here.
    """
    cls = guidance if isinstance(guidance, type) else type(guidance)
    declared = getattr(cls, "tunable", None)
    if declared:
        return dict(declared)
    for base in cls.__mro__:
        if base.__name__ in _DEFAULTS and base.__module__.startswith("steerdiff.core"):
            return dict(_DEFAULTS[base.__name__])
    raise ValueError(
        f"{cls.__name__} declares no tunable settings; give tune() a space, e.g. "
        "{'scale': LogRange(0.01, 100)}, or set a class attribute tunable = {...}"
    )


_DEFAULTS: dict[str, dict[str, Dimension]] = {
    "ReconstructionGuidance": {"scale": LogRange(1e-3, 1e2)},
    "ClassifierGuidance": {"scale": LogRange(1e-2, 1e2)},
    "AdaptiveProjectedGuidance": {"scale": LinearRange(1.0, 15.0), "eta": LinearRange(0.0, 1.0)},
    "ClassifierFreeGuidance": {"scale": LinearRange(1.0, 15.0)},
    "FeynmanKacSteering": {"lam": LogRange(1e-2, 1e2)},
    "EnsembleKalmanGuidance": {"scale": LogRange(1e-2, 1e1)},
    "TreeSearchGuidance": {"temperature": LogRange(1e-2, 1e2)},
}
