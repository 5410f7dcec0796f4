"""Refine: improve any base forecaster's sample paths with the model's implicit density.

The energy of a forecast f (scaled as the model's windows, the context held at its observed values) is

    E(f) = || eps - eps_hat(w(f) + sigma_tau eps, sigma_tau) ||^2  +  weight * R(f, f_base)

where w(f) is the lagged window of context + f (lags follow f), the first term is the denoising loss at one
representative noise level sigma_tau with fresh noise eps at every iteration (a stand-in for -log p(w)), and R
is the squared error to the base forecast ("mse") or the pinball loss with base paths sorted and sample i
paired with level i/(n+1) ("quantile"). Two ways to use it (Kollovieh et al. 2023, sec. 4.2):

* ``ml``: maximum likelihood, ``steps`` of gradient descent f <- f - lr grad E;
* ``langevin``: energy-based sampling, f <- f - lr grad E + sqrt(2 lr) noise_scale xi.
"""

from __future__ import annotations

import math

import torch

from .data import lagged, scale_by_context
from .guidance import quantile_levels
from .model import TSDiff

__all__ = ["METHODS", "REGULARIZERS", "refine", "representative_sigma"]

METHODS = ("ml", "langevin")
REGULARIZERS = ("mse", "quantile")
DEFAULT_T = 0.2  # TSDiff's default representative step 20 of 100


def representative_sigma(
    model: TSDiff,
    windows: torch.Tensor | None = None,
    num_levels: int = 100,
    generator: torch.Generator | None = None,
) -> float:
    """The noise level whose denoising loss on ``windows`` is closest to the mean over all levels
    (TSDiff's choice of tau). Without windows, the level at diffusion time 0.2 (step 20 of 100)."""
    if windows is None:
        return float(model.schedule.sigma(torch.tensor(DEFAULT_T, dtype=torch.float64)))
    levels = model.sigmas(num_levels)[:-1].float()
    w = windows.to(model.device)
    with torch.no_grad():
        losses = torch.stack(
            [
                model.denoiser.loss(
                    w, s.to(w.device), torch.randn(w.shape, generator=generator, device=w.device)
                ).mean()
                for s in levels
            ]
        )
    return float(levels[(losses - losses.mean()).abs().argmin()])


def _pinball(err: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.maximum(k * err, (k - 1) * err)


def refine(
    model: TSDiff,
    history: torch.Tensor,
    base: torch.Tensor,
    method: str = "ml",
    regularizer: str = "quantile",
    weight: float = 1.0,
    steps: int = 20,
    lr: float = 0.1,
    noise_scale: float = 0.1,
    sigma: float | None = None,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Refine base sample paths ``base`` (N, S_base, pred) given ``history`` (N, max_lag + context).

    Returns (N, S, pred), S = ``num_samples`` (default S_base; a point forecast with S_base = 1 is repeated).
    """
    if method not in METHODS:
        raise ValueError(f"unknown refinement {method!r}; choose one of {list(METHODS)}")
    if regularizer not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {regularizer!r}; choose one of {list(REGULARIZERS)}")
    spec = model.spec
    history = torch.as_tensor(history, dtype=torch.float32)
    base = torch.as_tensor(base, dtype=torch.float32)
    if history.ndim != 2 or history.shape[1] != spec.history_length:
        raise ValueError(f"history must be (N, {spec.history_length}), got {tuple(history.shape)}")
    if base.ndim != 3 or base.shape[0] != history.shape[0] or base.shape[2] != spec.prediction_length:
        raise ValueError(
            f"base forecast must be (N={history.shape[0]}, samples, {spec.prediction_length}), got "
            f"{tuple(base.shape)}"
        )
    if not torch.isfinite(history).all() or not torch.isfinite(base).all():
        raise ValueError("refinement needs a fully observed history and finite base forecasts")
    n, s_base = base.shape[:2]
    s = num_samples or s_base
    if s % s_base:
        raise ValueError(f"num_samples={s} must be a multiple of the {s_base} base samples")
    device = model.device
    sigma = representative_sigma(model) if sigma is None else float(sigma)
    hist, loc, scale = scale_by_context(history, spec)  # loc, scale: (N, 1)
    hist = hist.to(device).repeat_interleave(s, 0)  # (N*S, T)
    f_base = ((base - loc[:, None]) / scale[:, None]).sort(dim=1).values.repeat_interleave(s // s_base, 1)
    f_base = f_base.reshape(n * s, -1).to(device)
    k = quantile_levels(s).to(device).repeat(n)[:, None]
    f = f_base.clone()
    denoiser = model.denoiser

    def energy_grad(f):
        with torch.enable_grad():
            f = f.detach().requires_grad_(True)
            w = lagged(torch.cat([hist, f], 1), spec)
            eps = torch.randn(w.shape, generator=generator, device=device)
            x = w + sigma * eps
            eps_hat = (x - denoiser(x, sigma)) / sigma
            e = (eps - eps_hat).pow(2).flatten(1).sum(1)
            r = (f - f_base).pow(2) if regularizer == "mse" else _pinball(f_base - f, k)
            (grad,) = torch.autograd.grad((e + weight * r.sum(1)).sum(), f)
        return grad

    iterations = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterations = tqdm(iterations, desc=f"refining ({method})", leave=False)
    for _ in iterations:
        f = f - lr * energy_grad(f)
        if method == "langevin":
            f = f + math.sqrt(2 * lr) * noise_scale * torch.randn(f.shape, generator=generator, device=device)
    return (f.reshape(n, s, -1).cpu() * scale[:, None] + loc[:, None]).float()
