"""Solvers: one step from noise level sigma to sigma_next, given a denoiser that returns x0-hat.

A solver is a frozen dataclass of hyper-parameters with one method

    step(denoise, x, sigma, sigma_next, noise, state) -> (x_next, state)

* ``denoise(x, sigma) -> x0_hat`` is whatever the sampling loop hands over (guided or not);
* ``noise()`` draws a standard normal tensor shaped like x (from the loop's generator);
* ``state`` is explicit: ``None`` on the first step, then whatever the previous step returned (a tuple of
  a float and tensors batched like x). Solvers keep nothing on ``self``: the same object can drive any
  number of sampling runs at once, from any thread.

All solvers work in sigma space (x = x0 + sigma n). Coefficients are Python floats; the only tensor work is
the update itself, which keeps the per-step overhead small.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Solver", "DDIM", "DDPM", "Euler", "Heun", "DPMSolverPP2M", "SOLVERS", "get_solver"]

Denoise = Callable[[torch.Tensor, float], torch.Tensor]
Noise = Callable[[], torch.Tensor]


class Solver:
    """Base class. ``stochastic`` says whether ``step`` draws noise (needed by SCG and SMC proposals)."""

    name: str = ""
    order: int = 1
    evals_per_step: int = 1

    @property
    def stochastic(self) -> bool:
        return False

    def step(
        self, denoise: Denoise, x: torch.Tensor, sigma: float, sigma_next: float, noise: Noise, state=None
    ):
        raise NotImplementedError


@dataclass(frozen=True)
class DDIM(Solver):
    """DDIM (Song et al. 2021) with stochasticity eta; eta=0 is the probability-flow ODE's exponential
    integrator step, eta=1 the DDPM ancestral step (posterior variance beta-tilde).

    In sigma space: sigma_up = eta sigma' sqrt(1 - sigma'^2/sigma^2),
    x' = x0 + sqrt(sigma'^2 - sigma_up^2) eps_hat + sigma_up z.
    """

    eta: float = 0.0
    name = "ddim"

    def __post_init__(self):
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"DDIM eta must lie in [0, 1], got {self.eta}")

    @property
    def stochastic(self) -> bool:
        return self.eta > 0

    def step(self, denoise, x, sigma, sigma_next, noise, state=None):
        x0 = denoise(x, sigma)
        if sigma_next == 0:
            return x0, None
        sigma_up = self.eta * sigma_next * math.sqrt(max(0.0, 1.0 - (sigma_next / sigma) ** 2))
        sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
        x_next = torch.lerp(x0, x, sigma_down / sigma)
        if sigma_up > 0:
            x_next = x_next.add_(noise(), alpha=sigma_up)
        return x_next, None


@dataclass(frozen=True)
class DDPM(DDIM):
    """DDPM ancestral sampling (Ho et al. 2020): the posterior q(x_{t-1} | x_t, x0-hat), i.e. DDIM(eta=1)."""

    eta: float = 1.0
    name = "ddpm"

    def __post_init__(self):
        if self.eta != 1.0:
            raise ValueError("DDPM is DDIM with eta=1; for other values use DDIM(eta=...)")


@dataclass(frozen=True)
class Euler(Solver):
    """Euler step of the probability-flow ODE (EDM Algorithm 2 without the correction), with churn.

    ``churn`` is EDM's gamma_i = S_churn / N per step (capped at sqrt(2) - 1), applied for sigma in
    [churn_min, churn_max]: the sample is first lifted to sigma_hat = sigma (1 + gamma) with fresh noise
    scaled by ``churn_noise`` (S_noise).
    """

    churn: float = 0.0
    churn_min: float = 0.0
    churn_max: float = math.inf
    churn_noise: float = 1.0
    name = "euler"

    def __post_init__(self):
        if self.churn < 0:
            raise ValueError(f"churn must be >= 0, got {self.churn}")

    @property
    def stochastic(self) -> bool:
        return self.churn > 0

    def _lift(self, x, sigma, noise):
        gamma = min(self.churn, math.sqrt(2) - 1) if self.churn_min <= sigma <= self.churn_max else 0.0
        if gamma == 0:
            return x, sigma
        sigma_hat = sigma * (1 + gamma)
        return x + math.sqrt(sigma_hat**2 - sigma**2) * self.churn_noise * noise(), sigma_hat

    def step(self, denoise, x, sigma, sigma_next, noise, state=None):
        x, sigma = self._lift(x, sigma, noise)
        return torch.lerp(denoise(x, sigma), x, sigma_next / sigma), None


@dataclass(frozen=True)
class Heun(Euler):
    """Heun's second-order step (EDM Algorithm 2): Euler, then the trapezoid correction unless sigma' = 0."""

    name = "heun"
    order = 2
    evals_per_step = 2

    def step(self, denoise, x, sigma, sigma_next, noise, state=None):
        x, sigma = self._lift(x, sigma, noise)
        x0 = denoise(x, sigma)
        x_next = torch.lerp(x0, x, sigma_next / sigma)  # the Euler step
        if sigma_next == 0:
            return x_next, None
        h = sigma_next - sigma  # trapezoid: x + h/2 (d + d'), d = (x - x0)/sigma, d' = (x' - x0')/sigma'
        x_corr = torch.add(x, x - x0, alpha=h / (2 * sigma))
        return x_corr.add_(x_next - denoise(x_next, sigma_next), alpha=h / (2 * sigma_next)), None


@dataclass(frozen=True)
class DPMSolverPP2M(Solver):
    """DPM-Solver++(2M) (Lu et al. 2022), data prediction, multistep in lambda = -log sigma.

    The first step, and the final step to sigma = 0, are first order. ``state`` = (sigma_prev, x0_prev).
    """

    name = "dpmpp_2m"
    order = 2

    def step(self, denoise, x, sigma, sigma_next, noise, state=None):
        x0 = denoise(x, sigma)
        if sigma_next == 0:
            return x0, (sigma, x0)
        h = math.log(sigma / sigma_next)
        c = -math.expm1(-h)
        if state is None:
            return torch.add(x * (sigma_next / sigma), x0, alpha=c), (sigma, x0)
        sigma_prev, x0_prev = state
        r = math.log(sigma_prev / sigma) / h  # D = (1 + 1/2r) x0 - (1/2r) x0_prev
        x_next = torch.add(x * (sigma_next / sigma), x0, alpha=c * (1 + 1 / (2 * r)))
        return x_next.add_(x0_prev, alpha=-c / (2 * r)), (sigma, x0)


SOLVERS: dict[str, type[Solver]] = {
    "ddpm": DDPM,
    "ddim": DDIM,
    "euler": Euler,
    "heun": Heun,
    "dpmpp_2m": DPMSolverPP2M,
}


def get_solver(name: str | Solver, **options) -> Solver:
    """A solver by name (``ddpm``, ``ddim``, ``euler``, ``heun``, ``dpmpp_2m``) with its options."""
    if isinstance(name, Solver):
        if options:
            raise ValueError("options are only accepted with a solver name, not with a solver object")
        return name
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {sorted(SOLVERS)}")
    try:
        return SOLVERS[name](**options)
    except TypeError as err:
        raise ValueError(f"bad options for solver {name!r}: {err}") from None
