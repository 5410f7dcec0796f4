"""Denoisers: a network plus its parametrization, always answering with the clean estimate x0-hat.

Every parametrization is written in one form (Karras et al. 2022, sigma space, see ``schedules``):

    x0_hat = D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))

========  ==================  =======================  =======================
name      c_skip              c_out                    network predicts
========  ==================  =======================  =======================
eps       1                   -sigma                   the noise eps
x0        0                   1                        the clean sample x0
v         sd^2/(s^2+sd^2)     -s sd / sqrt(s^2+sd^2)   v = alpha eps - s_t x0
edm       sd^2/(s^2+sd^2)     +s sd / sqrt(s^2+sd^2)   EDM's preconditioned target
========  ==================  =======================  =======================

with c_in = 1/sqrt(sigma^2 + sd^2) (for sd = 1 exactly the VP input x_t) and c_noise = ln(sigma)/4.
The training target of F follows from the same coefficients, F* = (x0 - c_skip x) / c_out, so the plain
mean-square error on F is the standard loss of each parametrization (eps-MSE, x0-MSE, v-MSE, EDM's
lambda(sigma)-weighted loss). eps-hat and the score are derived from x0-hat.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PARAMETRIZATIONS", "Denoiser", "eps_from_x0", "score_from_x0", "expand_sigma"]

PARAMETRIZATIONS = ("eps", "x0", "v", "edm")


def expand_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """sigma as a (B,) tensor on x's device: a float or 0-d tensor is broadcast, a (B,) tensor checked."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        return sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(
            f"sigma must be a scalar or of shape ({x.shape[0]},) for a batch of {x.shape[0]}, "
            f"got shape {tuple(sigma.shape)}"
        )
    return sigma


def _view(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


def eps_from_x0(x: torch.Tensor, sigma, x0: torch.Tensor) -> torch.Tensor:
    """eps-hat = (x - x0-hat) / sigma."""
    return (x - x0) / _view(expand_sigma(sigma, x), x)


def score_from_x0(x: torch.Tensor, sigma, x0: torch.Tensor) -> torch.Tensor:
    """Tweedie: grad log p_sigma(x) = (x0-hat - x) / sigma^2."""
    return (x0 - x) / _view(expand_sigma(sigma, x), x) ** 2


class Denoiser(nn.Module):
    """Wraps a network ``net(x_in, c_noise, **cond) -> F`` into x0-hat = D(x; sigma).

    ``sigma_data`` defaults to 1 for eps, x0 and v (the VP convention) and 0.5 for edm.
    """

    def __init__(self, net: nn.Module, parametrization: str = "eps", sigma_data: float | None = None):
        super().__init__()
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"unknown parametrization {parametrization!r}; choose one of {list(PARAMETRIZATIONS)}"
            )
        if sigma_data is None:
            sigma_data = 0.5 if parametrization == "edm" else 1.0
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.net = net
        self.parametrization = parametrization
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in, c_noise) for a tensor of noise levels."""
        sd = self.sigma_data
        norm = torch.sqrt(sigma**2 + sd**2)
        c_in = 1.0 / norm
        c_noise = torch.log(sigma) / 4
        if self.parametrization == "eps":
            return torch.ones_like(sigma), -sigma, c_in, c_noise
        if self.parametrization == "x0":
            return torch.zeros_like(sigma), torch.ones_like(sigma), c_in, c_noise
        c_skip = sd**2 / norm**2
        c_out = sigma * sd / norm
        return c_skip, (-c_out if self.parametrization == "v" else c_out), c_in, c_noise

    def raw(self, x: torch.Tensor, sigma, **cond) -> torch.Tensor:
        """The network's own output F at noise level sigma."""
        sigma = expand_sigma(sigma, x)
        _, _, c_in, c_noise = self.coefficients(sigma)
        return self.net(_view(c_in, x) * x, c_noise, **cond)

    def scalar_coefficients(self, sigma: float) -> tuple[float, float, float]:
        """(c_skip, c_out, c_in) for one noise level, in Python floats (the sampling fast path)."""
        sd = self.sigma_data
        norm = math.sqrt(sigma**2 + sd**2)
        if self.parametrization == "eps":
            return 1.0, -sigma, 1.0 / norm
        if self.parametrization == "x0":
            return 0.0, 1.0, 1.0 / norm
        c_out = sigma * sd / norm
        return sd**2 / norm**2, (-c_out if self.parametrization == "v" else c_out), 1.0 / norm

    def forward(self, x: torch.Tensor, sigma, **cond) -> torch.Tensor:
        if isinstance(sigma, (float, int)):  # one level for the whole batch: Python arithmetic, few kernels
            if not sigma > 0:
                raise ValueError(
                    "the denoiser is defined for sigma > 0 only; at sigma = 0 the sample is clean"
                )
            c_skip, c_out, c_in = self.scalar_coefficients(float(sigma))
            c_noise = torch.full((x.shape[0],), math.log(sigma) / 4, dtype=x.dtype, device=x.device)
            out = self.net(x * c_in, c_noise, **cond)
            if c_skip == 0.0:
                return out if c_out == 1.0 else out * c_out
            return torch.add(x if c_skip == 1.0 else x * c_skip, out, alpha=c_out)
        sigma = expand_sigma(sigma, x)
        if not torch.all(sigma > 0):
            raise ValueError("the denoiser is defined for sigma > 0 only; at sigma = 0 the sample is clean")
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        out = self.net(_view(c_in, x) * x, c_noise, **cond)
        return _view(c_skip, x) * x + _view(c_out, x) * out

    def training_target(self, x: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """F* such that D(x; sigma) = x0 exactly when the network outputs F*."""
        c_skip, c_out, _, _ = self.coefficients(sigma)
        return (x0 - _view(c_skip, x) * x) / _view(c_out, x)

    def loss(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, **cond) -> torch.Tensor:
        """Per-sample denoising score-matching loss (mean over non-batch dims)."""
        sigma = expand_sigma(sigma, x0)
        if not torch.all(sigma > 0):
            raise ValueError("training noise levels must be positive")
        if noise.shape != x0.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)} but the data has shape {tuple(x0.shape)}")
        x = x0 + _view(sigma, x0) * noise
        target = self.training_target(x, x0, sigma)
        out = self.raw(x, sigma, **cond)
        return (out - target).pow(2).flatten(1).mean(1)

    def extra_repr(self) -> str:
        return f"parametrization={self.parametrization!r}, sigma_data={self.sigma_data:g}"
