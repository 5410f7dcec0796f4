"""Solvers of inverse problems on one problem and one budget, each returning estimates, ensemble and costs.

=========  =====================================================================================  =========
method     what it does                                                                           needs
=========  =====================================================================================  =========
``enkg``   ensemble Kalman guidance (core ``EnsembleKalmanGuidance``): J particles follow the     G only
           prior's probability-flow ODE (Euler, Karras grid); before each guided step they move
           along the ensemble-preconditioned misfit direction of G(ODE clean estimate)
``eki``    ensemble Kalman inversion without the diffusion prior: J particles drawn from the       G only
           problem's ``ensemble_prior`` Gaussian random field, ``iterations`` of the same update (core
           ``enkg_direction``), Frobenius-normalised step, halved whenever it would raise the misfit
``dps``    diffusion posterior sampling (core ``ReconstructionGuidance``, mode "forward"): the     dG/dx
           gradient of ||G(x0_hat) - y|| through the network and the differentiable simulator
``scg``    stochastic control guidance (core ``StochasticControlGuidance``): best of n DDPM        G only
           candidates per step by -||G(x0_hat) - y||^2
``smc``    Feynman-Kac steering / SMC (core ``FeynmanKacSteering``) with the Gaussian              G only
           log-likelihood of G(x0_hat) as reward (temperature ``likelihood_std``)
=========  =====================================================================================  =========

Every method solves B problem instances at once (``y`` is (B, ...)) with J = ``num_particles`` particles each
in one batch of B*J rows. The estimate is the ensemble mean (SMC: the weighted mean). Costs come from the
forward model's own counters (``forward_calls`` = sequential rounds, ``forward_evals`` = total) and from the
sampling loop (network evaluations, gradient evaluations), plus wall time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from steerdiff.core.guidance import (
    ENKG_STEP_SIZES,
    EnsembleKalmanGuidance,
    FeynmanKacSteering,
    Guidance,
    ReconstructionGuidance,
    StochasticControlGuidance,
    enkg_direction,
    enkg_step_size,
)
from steerdiff.core.sampling import sample
from steerdiff.core.schedules import karras_sigmas

from .forward import ForwardModel

__all__ = ["METHODS", "MethodConfig", "Solution", "guided_steps", "sigma_steps", "solve"]

METHODS = ("enkg", "eki", "dps", "scg", "smc")


@dataclass
class MethodConfig:
    num_particles: int = 32  # J per problem instance (every method)
    num_steps: int = 40  # diffusion steps (Karras grid, rho = 7)
    scale: float = 2.0  # EnKG / EKI step scale (reference: 2.0)
    step_size: str = "frobenius"  # EnKG / EKI: "frobenius" (scale / ||A||_F, reference code) or "trace"
    # (scale / (tr C_yy + m noise^2), the paper's Proposition 1)
    dps_scale: float = 1.0  # DPS step zeta on ||G(x0_hat) - y|| (field units)
    num_updates: int = 1  # EnKG corrections per guided step (reference NS: 2)
    window: tuple[float, float] = (0.05, 0.95)  # EnKG: guided steps (start, stop) as fractions of num_steps
    # (the core's step window: steps floor(start N) <= i < floor(stop N); the reference skips about 5% each end)
    ode_factor: int = 4  # EnKG: ODE steps for the clean estimate: min(1 + (N - i) // factor, 20)
    iterations: int = 100  # EKI iterations
    num_candidates: int = 8  # SCG candidates per step
    likelihood_std: float = 1.0  # SMC temperature / DPS noise level of the Gaussian likelihood
    sigma_max: float | None = None  # defaults to the prior's range
    sigma_min: float | None = None


@dataclass
class Solution:
    estimate: torch.Tensor  # (B, 1, H, W)
    ensemble: torch.Tensor  # (B, J, 1, H, W)
    costs: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def sigma_steps(prior, cfg: MethodConfig) -> torch.Tensor:
    """The Karras noise levels of ``cfg.num_steps`` steps over the prior's range, then 0."""
    hi = cfg.sigma_max or getattr(prior, "sigma_max", 80.0)
    lo = cfg.sigma_min or getattr(prior, "sigma_min", 0.002)
    return torch.cat([karras_sigmas(hi, lo, cfg.num_steps), torch.zeros(1, dtype=torch.float64)])


def guided_steps(cfg: MethodConfig) -> int:
    """How many of the ``cfg.num_steps`` steps EnKG guides (those in ``cfg.window``)."""
    window = Guidance(window=tuple(cfg.window))
    return sum(window.in_window(i, cfg.num_steps) for i in range(cfg.num_steps))


def _misfit_sq(forward: ForwardModel, y_rows: torch.Tensor):
    def loss(x0):
        return (forward(x0) - y_rows).flatten(1).pow(2).sum(1)

    return loss


def solve(
    method: str,
    prior,
    problem,
    y: torch.Tensor,
    config: MethodConfig | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Solution:
    """Solve ``problem`` for measurements ``y`` (B, *obs_shape) with ``method`` and the diffusion ``prior``
    (a denoiser on physical fields, e.g. :class:`~steerdiff.inverse.prior.FieldPrior`; unused by EKI).
    Particles and measurements are held in ``dtype`` (the prior network's dtype)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    cfg = config or MethodConfig()
    if cfg.step_size not in ENKG_STEP_SIZES:
        raise ValueError(f"step_size must be one of {list(ENKG_STEP_SIZES)}, got {cfg.step_size!r}")
    if method == "enkg" and guided_steps(cfg) == 0:
        raise ValueError(
            f"window={tuple(cfg.window)} guides none of the {cfg.num_steps} steps; widen it (e.g. (0.0, 1.0)) "
            "or use more steps"
        )
    if cfg.num_particles < 2:
        raise ValueError(
            f"num_particles must be >= 2 (ensemble methods need a spread), got {cfg.num_particles}"
        )
    forward = problem.forward
    y = forward.check_measurement(y).to(dtype)
    b, j = y.shape[0], cfg.num_particles
    device = y.device
    shape = (1, *problem.field_shape)
    y_rows = y.repeat_interleave(j, 0)
    forward.reset_counts()
    t0 = time.perf_counter()
    costs, info, weights = {}, {}, None
    if method == "eki":
        x = _eki(forward, problem, y, cfg, b, j, generator, device)
    else:
        sig = sigma_steps(prior, cfg)
        x = float(sig[0]) * torch.randn((b * j, *shape), generator=generator, device=device, dtype=dtype)
        if method == "enkg":
            guide = EnsembleKalmanGuidance(
                forward,
                y,
                j,
                scale=cfg.scale,
                num_updates=cfg.num_updates,
                ode_factor=cfg.ode_factor,
                step_size=cfg.step_size,
                noise_std=forward.noise_std,
                window=tuple(cfg.window),
            )
            solver, opts = "euler", {}
        elif method == "dps":
            if not forward.differentiable:
                raise TypeError(
                    f"DPS needs gradients of the forward model, but {forward.name} is declared "
                    "differentiable=False; use enkg, eki, scg or smc"
                )
            guide = ReconstructionGuidance(
                _misfit_sq(forward, y_rows),
                scale=cfg.dps_scale,
                mode="forward",
                weight="none",
                normalize="dps",
            )
            solver, opts = "ddpm", {}
        elif method == "scg":
            loss = _misfit_sq(forward, y_rows.repeat_interleave(cfg.num_candidates, 0))
            guide = StochasticControlGuidance(lambda x0: -loss(x0), num_candidates=cfg.num_candidates)
            solver, opts = "ddpm", {}
        else:
            loss = _misfit_sq(forward, y_rows)
            guide = FeynmanKacSteering(lambda x0: -loss(x0) / (2 * cfg.likelihood_std**2), num_particles=j)
            solver, opts = "ddpm", {}
        result = sample(
            prior, x, sig, solver, guidance=[guide], generator=generator, progress=progress, **opts
        )
        x = result.x
        costs.update(network_evals=result.costs.network_evals, gradient_evals=result.costs.gradient_evals)
        if method == "smc":
            weights = result.info["weights"]
            info["ess_final"] = (1.0 / weights.pow(2).sum(-1)).tolist()
    wall = time.perf_counter() - t0
    ensemble = x.reshape(b, j, *shape)
    if weights is None:
        estimate = ensemble.mean(1)
    else:
        estimate = (weights.to(ensemble.dtype).reshape(b, j, 1, 1, 1) * ensemble).sum(1)
    costs = {"network_evals": 0, "gradient_evals": 0, **costs, **forward.counts(), "wall_time": wall}
    info["config"] = asdict(cfg)
    return Solution(estimate=estimate, ensemble=ensemble, costs=costs, info=info)


def _eki(forward, problem, y, cfg, b, j, generator, device):
    """Ensemble Kalman inversion (Iglesias et al. 2013) from a Gaussian-random-field ensemble, no diffusion
    prior.

    Safeguarded: a step is kept only if it does not raise the instance's ensemble-mean misfit (a blown-up row
    scores the penalty, so it counts as a rise); otherwise that instance stays put and its step is halved. The
    forward outputs of a kept step are the next iteration's, so the guard costs no extra forward calls."""
    x = problem.ensemble_prior.sample(b * j, generator, device, dtype=y.dtype)
    y_flat = y.reshape(b, -1).to(x.dtype)

    def flat(t):
        return t.reshape(b, j, -1)

    def misfit(y_hat):  # ensemble mean of ||y_hat_j - y||^2, per instance
        return (y_hat - y_flat[:, None]).pow(2).sum(-1).mean(1)

    y_hat = flat(forward(x)).to(x.dtype)
    current, scale = misfit(y_hat), torch.full((b,), float(cfg.scale), dtype=x.dtype, device=device)
    for _ in range(cfg.iterations):
        g, a = enkg_direction(flat(x), y_hat, y_flat)
        w = enkg_step_size(a, y_hat, scale, cfg.step_size, forward.noise_std)
        x_new = flat(x) - w[:, None, None] * g
        y_new = flat(forward(x_new.reshape(x.shape))).to(x.dtype)
        new = misfit(y_new)
        keep = torch.isfinite(new) & (new <= current)
        x = torch.where(keep[:, None, None], x_new, flat(x)).reshape(x.shape)
        y_hat = torch.where(keep[:, None, None], y_new, y_hat)
        current = torch.where(keep, new, current)
        scale = torch.where(keep, scale, 0.5 * scale)
    return x
