"""Rule-guided generation: one function, every method, the same sampler and cost accounting.

``generate(denoiser, config, num_samples, num_steps, length, method=..., objective=..., n=...)``

=============  =============================================================================================
method         what it does (``n`` is the width; every method but DPS costs about ``n`` x ``num_steps`` NFE)
=============  =============================================================================================
unguided       plain DDPM ancestral sampling (n is ignored: 1 x num_steps NFE)
best_of_n      n independent unguided samples per output, keep the one with the lowest rule loss
scg            stochastic control guidance (Huang et al. 2024): n candidate next states per step, keep the
best
               by the rule on their x0-hat (``Objective.guidance_reward``); only on the last
               ``guide_fraction`` of the steps (the guided window), so the early noisy steps run unguided as
               in the paper (t < 750 of 1000: 0.75)
smc            Feynman-Kac steering / SMC with n particles and potential lam * reward over the same window,
               resampled on low ESS; the output is the particle with the largest final weight
dps            gradient guidance on the rules' differentiable relaxation (ReconstructionGuidance, DPS
               normalisation); rules without one (chords, custom rules) are left out
=============  =============================================================================================

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
from steerdiff.core.sampling import Costs, SampleResult, sample

from .model import default_sigmas
from .roll import RollConfig, check_batch
from .rules import Objective

__all__ = ["METHODS", "generate", "guided_interval", "bars_mask"]

METHODS = ("unguided", "best_of_n", "scg", "smc", "dps")


def bars_mask(config: RollConfig, length: int, bars, num_channels: int | None = None) -> torch.Tensor:
    """(C, P, length) bool mask, True on the given bar indices (0-based): the bars that are known."""
    mask = torch.zeros(num_channels or config.num_channels, config.num_pitches, length, dtype=torch.bool)
    n_bars = length // config.steps_per_bar
    for b in bars:
        if not 0 <= b < n_bars:
            raise ValueError(f"bar {b} is outside the {n_bars} bars of a {length}-step roll")
        mask[..., b * config.steps_per_bar : (b + 1) * config.steps_per_bar] = True
    return mask


def guided_interval(sigmas: torch.Tensor, fraction: float) -> tuple[float, float] | None:
    """The core's ``interval`` that switches a guidance on for the last ``round(fraction * steps)`` steps of
    the grid ``sigmas`` (steps + 1 levels ending at 0); None when every step is guided."""
    steps = len(sigmas) - 1
    guided = max(1, round(fraction * steps))
    return None if guided >= steps else (0.0, float(sigmas[steps - guided]))


def generate(
    denoiser: Callable,
    config: RollConfig,
    num_samples: int,
    length: int,
    num_steps: int = 50,
    method: str = "unguided",
    objective: Objective | None = None,
    n: int = 8,
    guide_fraction: float = 0.75,
    lam: float = 10.0,
    dps_scale: float = 1.0,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device=None,
    progress: bool = False,
    solver: str = "ddpm",
) -> SampleResult:
    """Sample ``num_samples`` rolls (B, C, P, length) in model space, steered toward ``objective``.

    ``guide_fraction``: SCG/SMC steer only the last ``round(guide_fraction * num_steps)`` steps (1: every
    step). ``lam``: SMC's inverse temperature on the reward. ``dps_scale``: DPS step size. ``solver``: the
    core solver (default DDPM ancestral sampling; SCG and SMC select among random transitions, so they need a
    stochastic one). Returns the core's ``SampleResult``; its costs count every network evaluation, per output
    sample.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    if method != "unguided" and objective is None:
        raise ValueError(f"method {method!r} needs an objective (rules with targets)")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 < guide_fraction <= 1:
        raise ValueError(
            f"guide_fraction must lie in (0, 1] (the share of steps that are guided), got {guide_fraction}"
        )
    if objective is not None and objective.num_steps != length:
        raise ValueError(f"the objective was built for {objective.num_steps} steps but length={length}")
    device = (
        torch.device(device)
        if device is not None
        else next(
            (p.device for p in getattr(denoiser, "parameters", lambda: iter(()))()), torch.device("cpu")
        )
    )
    sigmas = default_sigmas(num_steps)
    interval = guided_interval(sigmas, guide_fraction)
    rows, guidance = num_samples, []
    if method == "best_of_n":
        rows = num_samples * n
    elif method == "smc":
        rows = num_samples * n
        guidance.append(
            FeynmanKacSteering(objective.guidance_reward, num_particles=max(n, 2), lam=lam, interval=interval)
        )
    elif method == "scg":
        guidance.append(
            StochasticControlGuidance(objective.guidance_reward, num_candidates=n, interval=interval)
        )
    elif method == "dps":
        guidance.append(
            ReconstructionGuidance(
                lambda x0: objective.relaxed_loss(x0, partial=True),
                scale=dps_scale,
                weight="sigma",
                normalize="unit",
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
    if method in ("best_of_n", "smc"):
        if method == "best_of_n":
            score = objective.reward(result.x)
            result.costs.reward_evals += rows
        else:
            score = result.info["weights"].reshape(-1)
        pick = score.view(num_samples, -1).argmax(1) + torch.arange(num_samples, device=device) * (
            rows // num_samples
        )
        result.x = result.x[pick]
        costs = result.costs
        result.costs = Costs(
            num_samples=num_samples, **{k: v for k, v in vars(costs).items() if k != "num_samples"}
        )
    return result
