"""Rule-guided generation: one function, every method, the same sampler and cost accounting.

``generate(denoiser, config, num_samples, num_steps, length, method=..., objective=..., n=...)``

=============  =============================================================================================
method         what it does (``n`` is the width; every method but DPS costs about ``n`` x ``num_steps`` NFE)
=============  =============================================================================================
unguided       plain DDPM ancestral sampling (n is ignored: 1 x num_steps NFE)
best_of_n      n independent unguided samples per output, keep the one with the lowest rule loss
scg            stochastic control guidance (Huang et al. 2024): n candidate next states per step, keep the
               best by the rule on their x0-hat (``Objective.guidance_reward``)
smc            Feynman-Kac steering / SMC with n particles and potential lam * reward, resampled on low ESS;
               the output is the particle with the largest final weight
tree_search    beam search (the core's TreeSearchGuidance): ``beams`` beams per sample, each branching into n
               children per step, the best ``beams`` children kept ("top") or drawn by softmax(reward /
               temperature) ("sample"); the output is the best beam; costs beams x n NFE per guided step
dps            gradient guidance on the rules' differentiable relaxation (ReconstructionGuidance, DPS
               normalisation); rules without one (chords, custom rules) are left out
=============  =============================================================================================

``window=(start, stop)``: the guided steps, as fractions of the run's steps (the core's step window; steps i
with floor(start N) <= i < floor(stop N) are guided). SCG, SMC and tree search default to the window chosen on
validation chorales (nearly every step: only the first ~6 % run unguided; the SCG paper guides t < 750 of 1000);
DPS defaults to every step. ``lam`` (SMC) and ``dps_scale`` default to the values chosen on validation chorales (``DEFAULTS``).

``known`` / ``known_mask`` condition on given bars (continuation, infilling) with the core's Inpainting,
combined with any method.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from steerdiff.core.guidance import (
    FeynmanKacSteering,
    Inpainting,
    ReconstructionGuidance,
    StochasticControlGuidance,
)
from steerdiff.core.guidance.search import TreeSearchGuidance
from steerdiff.core.sampling import Costs, SampleResult, sample

from .model import default_sigmas
from .roll import RollConfig, check_batch
from .rules import Objective

__all__ = ["METHODS", "GUIDED", "DEFAULTS", "default_lam", "generate", "bars_mask", "check_window"]

METHODS = ("unguided", "best_of_n", "scg", "smc", "tree_search", "dps")
GUIDED = tuple(m for m in METHODS if m != "unguided")

# defaults chosen on validation chorales with the core's tune (docs/music/defaults.json, written by
# python benchmarks/music_scg.py --tune): the guided window of the search methods, SMC's lambda per rule (its
# reward's scale differs from rule to rule; "multi" for several rules) and the DPS scale (unit-norm gradient,
# so one scale serves every rule)
DEFAULTS = {
    "window": {
        "scg": (0.05625, 1.0),
        "smc": (0.05625, 1.0),
        "tree_search": (0.05625, 1.0),
        "dps": (0.0, 1.0),
    },
    "lam": {
        "pitch_histogram": 10000.0,
        "note_density": 10000.0,
        "chord_progression": 31.6228,
        "multi": 7.49894,
    },
    "dps_scale": 74.9894,
}


def default_lam(objective: Objective | None) -> float:
    """SMC's default lambda for ``objective``: the validated value of its rule, "multi" for several rules
    (or a rule without its own value)."""
    table = DEFAULTS["lam"]
    if objective is None or len(objective.terms) != 1:
        return float(table["multi"])
    term = objective.terms[0]
    return float(table.get(term.rule.name, table["multi"])) / term.weight


def bars_mask(config: RollConfig, length: int, bars, num_channels: int | None = None) -> torch.Tensor:
    """(C, P, length) bool mask, True on the given bar indices (0-based): the bars that are known."""
    mask = torch.zeros(num_channels or config.num_channels, config.num_pitches, length, dtype=torch.bool)
    n_bars = length // config.steps_per_bar
    for b in bars:
        if not 0 <= b < n_bars:
            raise ValueError(f"bar {b} is outside the {n_bars} bars of a {length}-step roll")
        mask[..., b * config.steps_per_bar : (b + 1) * config.steps_per_bar] = True
    return mask


def check_window(window) -> tuple[float, float]:
    """``window`` as a (start, stop) pair of fractions with 0 <= start < stop <= 1, or a clear error."""
    try:
        start, stop = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(
            f"window must be two numbers (start, stop), fractions of the sampler steps, got {window!r}"
        ) from None
    if not 0 <= start < stop <= 1:
        raise ValueError(
            f"window must satisfy 0 <= start < stop <= 1 (fractions of the sampler steps; (0.25, 1) guides "
            f"the last three quarters), got ({start:g}, {stop:g})"
        )
    return start, stop


def generate(
    denoiser: Callable,
    config: RollConfig,
    num_samples: int,
    length: int,
    num_steps: int = 50,
    method: str = "unguided",
    objective: Objective | None = None,
    n: int = 8,
    window: tuple[float, float] | None = None,
    lam: float | None = None,
    dps_scale: float | None = None,
    beams: int = 2,
    selection: str = "top",
    temperature: float = 1.0,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device=None,
    progress: bool = False,
    solver: str = "ddpm",
) -> SampleResult:
    """Sample ``num_samples`` rolls (B, C, P, length) in model space, steered toward ``objective``.

    ``window``: the guided steps as (start, stop) fractions of ``num_steps`` (default per method, ``DEFAULTS``).
    ``lam``: SMC's inverse temperature on the reward. ``dps_scale``: DPS step size. ``beams``, ``selection``,
    ``temperature``: tree search (``n`` children per beam). ``solver``: the core solver (default DDPM
    ancestral sampling; SCG, SMC and tree search select among random transitions, so they need a stochastic
    one). Returns the core's ``SampleResult``; its costs count every network evaluation, per output sample.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    if method != "unguided" and objective is None:
        raise ValueError(
            f"method {method!r} steers toward rules, but none were given; give rules with targets, or use "
            f"method 'unguided'"
        )
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not isinstance(beams, int) or beams < 1:
        raise ValueError(f"beams must be a positive integer, got {beams!r}")
    if objective is not None and objective.num_steps != length:
        raise ValueError(f"the objective was built for {objective.num_steps} steps but length={length}")
    window = check_window(window if window is not None else DEFAULTS["window"].get(method, (0.0, 1.0)))
    window = None if window == (0.0, 1.0) else window
    lam = default_lam(objective) if lam is None else float(lam)
    dps_scale = float(DEFAULTS["dps_scale"] if dps_scale is None else dps_scale)
    device = (
        torch.device(device)
        if device is not None
        else next(
            (p.device for p in getattr(denoiser, "parameters", lambda: iter(()))()), torch.device("cpu")
        )
    )
    sigmas = default_sigmas(num_steps)
    rows, guidance = num_samples, []
    if method == "best_of_n":
        rows = num_samples * n
    elif method == "smc":
        rows = num_samples * n
        guidance.append(
            FeynmanKacSteering(objective.guidance_reward, num_particles=max(n, 2), lam=lam, window=window)
        )
    elif method == "scg":
        guidance.append(StochasticControlGuidance(objective.guidance_reward, num_candidates=n, window=window))
    elif method == "tree_search":
        rows = num_samples * beams
        guidance.append(
            TreeSearchGuidance(
                objective.guidance_reward,
                num_beams=beams,
                branch=n,
                selection=selection,
                temperature=temperature,
                window=window,
            )
        )
    elif method == "dps":
        guidance.append(
            ReconstructionGuidance(
                lambda x0: objective.relaxed_loss(x0, partial=True),
                scale=dps_scale,
                weight="sigma",
                normalize="unit",
                window=window,
            )
        )
    if known is not None or known_mask is not None:
        if known is None or known_mask is None:
            raise ValueError(
                "conditioning needs both known (the roll) and known_mask (which entries are given)"
            )
        known = torch.as_tensor(known, dtype=torch.float32)
        check_batch(known if known.ndim == 4 else known[None], config, "known")
        mask = torch.as_tensor(known_mask).bool().expand_as(known)
        guidance.insert(0, Inpainting(values=known.to(device), mask=mask.to(device)))
    shape = (rows, config.num_channels, config.num_pitches, length)
    x = float(sigmas[0]) * torch.randn(shape, generator=generator, device=device)
    result = sample(denoiser, x, sigmas, solver, guidance=guidance, generator=generator, progress=progress)
    if method in ("best_of_n", "smc", "tree_search"):
        per = rows // num_samples
        if method == "best_of_n":
            score = objective.reward(result.x)
            result.costs.reward_evals += rows
            pick = score.view(num_samples, -1).argmax(1)
        elif method == "smc":
            pick = result.info["weights"].reshape(num_samples, -1).argmax(1)
        else:  # the search keeps each sample's beams sorted by reward: the first is the best
            pick = torch.zeros(num_samples, dtype=torch.long, device=device)
        result.x = result.x[pick + torch.arange(num_samples, device=device) * per]
        costs = result.costs
        result.costs = Costs(
            num_samples=num_samples, **{k: v for k, v in vars(costs).items() if k != "num_samples"}
        )
    return result
