"""Ensemble update: ensemble Kalman guidance (EnKG; Zheng et al. 2024), derivative-free.

Before each guided solver step, every ensemble of J particles {x_j} (one ensemble per sample) is moved by

    x_j <- x_j - w * sum_k A_jk (x_k - x_mean),     A_jk = <y_hat_j - y, y_hat_k - y_mean> / J,

where y_hat_j = G(phi(x_j)) is the black-box forward model applied to a clean estimate phi(x_j) obtained by a
deterministic ODE solve (Euler, Karras steps) down to sigma_min. This is C_xy (y_hat_j - y): statistical
linearisation of the gradient of 1/2 ||G(phi(x_j)) - y||^2, preconditioned by the ensemble covariance.
No gradient of G and no backpropagation through the network. If G o phi is affine, it equals
C_xx grad_x 1/2 ||G(phi(x_j)) - y||^2 exactly (:func:`enkg_direction` is tested for this identity).

Step size w: ``"frobenius"`` — scale / ||A||_F, as the reference code does; ``"trace"`` — scale / tr(C_yy), as
the paper's Proposition 1 states. Optional linear decay to ``lr_min_ratio`` over the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..schedules import karras_sigmas
from .base import Guidance, group, match_batch

__all__ = ["EnsembleKalmanGuidance", "enkg_direction"]


def enkg_direction(x: torch.Tensor, y_hat: torch.Tensor, y: torch.Tensor):
    """The ensemble update direction and its J x J matrix.

    ``x`` (B, J, D), ``y_hat`` (B, J, M), ``y`` (B, M). Returns ``g`` (B, J, D) with
    g_j = (1/J) sum_k <y_hat_j - y, y_hat_k - y_mean> (x_k - x_mean), and ``A`` (B, J, J).
    """
    j = x.shape[1]
    dx = x - x.mean(1, keepdim=True)
    dy = y_hat - y_hat.mean(1, keepdim=True)
    a = (y_hat - y[:, None]) @ dy.transpose(1, 2) / j
    return a @ dx, a


@dataclass
class EnsembleKalmanGuidance(Guidance):
    """EnKG. ``forward(x0) -> y_hat`` is a batched black-box model; ``y`` the measurement(s); ``x`` holds
    B * J rows (J = ``num_particles`` per sample). The guided estimate is the ensemble mean (or any member).

    ``ode_steps``: inner Euler steps of phi; None uses the reference rule min(1 + (N - i) // ode_factor,
    max_ode_steps) at step i of N (more steps early, when x is noisy; 1 step = Tweedie's estimate).
    ``num_updates`` correction iterations per guided step. Use ``interval`` for the guidance window.
    ``noise_std`` (the measurement noise, Gamma = noise_std^2 I) enters the "trace" step as
    scale / (tr C_yy + m noise_std^2), which stays bounded when the ensemble collapses.

    EnKG is an optimiser-like guidance: it drives every ensemble toward a low-misfit point near the posterior
    mode and shrinks it, so use the ensemble mean as the estimate, not the spread as an uncertainty. With the
    "frobenius" step each update moves particles by about ``scale`` times the ensemble spread whatever the
    residual, so results depend strongly on ``scale``: tune it on held-out problems.
    """

    forward: Callable
    y: torch.Tensor
    num_particles: int
    scale: float = 2.0
    num_updates: int = 1
    ode_steps: int | None = None
    ode_factor: int = 4
    max_ode_steps: int = 20
    step_size: str = "frobenius"
    lr_min_ratio: float = 0.0
    noise_std: float = 0.0
    sigma_min: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.num_particles < 2:
            raise ValueError(
                f"ensemble Kalman guidance needs at least 2 particles per sample, got {self.num_particles}"
            )
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")
        if self.step_size not in ("frobenius", "trace"):
            raise ValueError(f"step_size must be 'frobenius' or 'trace', got {self.step_size!r}")
        if self.num_updates < 1 or (self.ode_steps is not None and self.ode_steps < 1):
            raise ValueError("num_updates and ode_steps must be >= 1")
        self.y = torch.as_tensor(self.y)
        if not torch.isfinite(self.y).all():
            raise ValueError("the measurement y contains NaN or inf")

    def check(self, ctx, x):
        if x.shape[0] % self.num_particles:
            raise ValueError(
                f"the batch of {x.shape[0]} rows is not a multiple of num_particles="
                f"{self.num_particles}; sample B * J rows for B ensembles of J particles"
            )

    def _measurements(self, b: int, y_hat: torch.Tensor) -> torch.Tensor:
        y = self.y.to(device=y_hat.device, dtype=y_hat.dtype)
        if y.shape == y_hat.shape[1:]:
            y = y.expand(b, *y.shape)
        elif y.shape[1:] != y_hat.shape[1:]:
            raise ValueError(
                f"the forward model returns measurements of shape {tuple(y_hat.shape[1:])} but y has "
                f"shape {tuple(self.y.shape)}; they must match (with or without a batch dimension)"
            )
        else:
            y = match_batch(y, b, "y")
        return y.reshape(b, -1)

    def clean_estimate(self, ctx, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """phi(x): deterministic Euler solve of the unguided probability-flow ODE from sigma to 0."""
        n = len(ctx.sigmas) - 1
        steps = self.ode_steps or min(1 + (n - ctx.step_index) // self.ode_factor, self.max_ode_steps)
        lo = self.sigma_min or min(s for s in ctx.sigmas if s > 0)
        grid = karras_sigmas(sigma, min(lo, sigma), steps).tolist() + [0.0]
        for s, s_next in zip(grid, grid[1:]):
            x0 = ctx.unguided(x, s)
            x = x0 + (s_next / s) * (x - x0)
        return x

    def before_step(self, ctx, x, sigma, sigma_next):
        j = self.num_particles
        b = x.shape[0] // j
        n = len(ctx.sigmas) - 1
        lr_scale = self.scale * ((1 - self.lr_min_ratio) * (n - ctx.step_index) / n + self.lr_min_ratio)
        for _ in range(self.num_updates):
            y_hat = self.forward(self.clean_estimate(ctx, x, sigma))
            y_hat = torch.as_tensor(y_hat).to(device=x.device, dtype=x.dtype)
            if y_hat.shape[0] != x.shape[0]:
                raise ValueError(
                    f"the forward model must return one measurement per particle "
                    f"({x.shape[0]} rows), got {y_hat.shape[0]}"
                )
            ctx.costs.forward_evals += x.shape[0]
            ctx.costs.forward_calls += 1
            bad = ~torch.isfinite(y_hat.reshape(x.shape[0], -1)).all(1)
            if bad.any():
                raise ValueError(
                    f"the forward model returned NaN or inf for {int(bad.sum())} of {x.shape[0]} "
                    f"particles at sigma={sigma:.4g}; guard it (penalty or clamp) or reduce the scale"
                )
            y = self._measurements(b, y_hat)
            y_hat = group(y_hat.reshape(x.shape[0], -1), j)
            g, a = enkg_direction(group(x.reshape(x.shape[0], -1), j), y_hat, y)
            if self.step_size == "frobenius":
                denom = a.flatten(1).norm(dim=1)
            else:  # tr(C_yy + Gamma): the noise keeps the step bounded once the ensemble has collapsed
                denom = (y_hat - y_hat.mean(1, keepdim=True)).pow(2).sum((1, 2)) / j + y.shape[
                    1
                ] * self.noise_std**2
            w = lr_scale / denom.clamp_min(1e-12)
            x = x - (w[:, None, None] * g).reshape(x.shape)
        return x
