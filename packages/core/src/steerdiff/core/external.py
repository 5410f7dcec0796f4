"""Steer models trained elsewhere: adapters that turn them into steerdiff denoisers.

steerdiff samples in sigma space (``x = x0 + sigma * n``) with a denoiser ``D(x, sigma) -> x0-hat``. A model
trained with another library speaks its own language; these adapters translate, so every solver and every
guidance runs on it unchanged:

* ``DiscreteTimeDenoiser``: any discrete-time model (DDPM, DDIM, Stable-Diffusion style) that predicts eps, v
  or x0 from ``(x_t, t)``, given its ``alphas_cumprod``. ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps`` is the
  sigma-space sample scaled by ``1 / sqrt(1 + sigma^2)``, and ``sigma_t = sqrt((1 - a_t) / a_t)``; a sigma
  between two of the model's levels maps to a fractional ``t`` (linear in log sigma), as k-diffusion does.
* ``SigmaDenoiser``: any continuous-sigma model that predicts x0, eps or v from ``(x, sigma)``.
* ``from_diffusers``: a diffusers ``UNet1DModel`` / ``UNet2DModel`` (or any model whose output has
  ``.sample``) with its scheduler's config; ``timestep_sigmas`` gives the sigma grid of a diffusers scheduler's
  timesteps, so steerdiff's DDIM walks the very same steps as diffusers' own loop.

Every adapter is differentiable (gradient guidance backpropagates through the wrapped model) and accepts
batched inputs of any shape the model accepts. diffusers is optional: nothing here imports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .denoiser import expand_sigma

__all__ = ["PREDICTIONS", "DiscreteTimeDenoiser", "SigmaDenoiser", "from_diffusers", "timestep_sigmas"]

PREDICTIONS = ("epsilon", "v_prediction", "sample")


def _check_prediction(prediction: str) -> str:
    aliases = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
    prediction = aliases.get(prediction, prediction)
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction type {prediction!r}; use one of {PREDICTIONS} (or eps, v, x0)")
    return prediction


def _x0_from(prediction: str, out: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0-hat in sigma space from a model output; ``x`` is the sigma-space sample, sigma broadcast to x."""
    if prediction == "epsilon":
        return x - sigma * out
    if prediction == "sample":
        return out
    # v = a eps - s x0 with a = 1 / sqrt(1 + sigma^2), s = sigma a; x_t = a x; so x0 = a x_t - s v
    a = torch.rsqrt(1 + sigma**2)
    return a * (a * x) - sigma * a * out


def _default_call(model: Callable, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
    out = model(x, t, **cond)
    return out.sample if hasattr(out, "sample") else out


class DiscreteTimeDenoiser(nn.Module):
    """A discrete-time eps-, v- or x0-prediction model as a steerdiff denoiser.

    ``model(x_t, t, **cond)`` returns the prediction (a tensor, or an object with ``.sample``); ``call`` may
    replace that convention, ``call(model, x_t, t, **cond)``. ``alphas_cumprod`` has one entry per training
    timestep. ``cond_arg`` renames steerdiff's ``cond`` keyword (classifier-free guidance passes ``cond=``)
    to the model's own (``"class_labels"``, ``"encoder_hidden_states"``); ``cond_mask`` is dropped.
    """

    def __init__(
        self,
        model: Callable,
        alphas_cumprod,
        prediction: str = "epsilon",
        *,
        call: Callable | None = None,
        cond_arg: str = "cond",
    ):
        super().__init__()
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
        if ac.numel() < 2 or not torch.isfinite(ac).all() or (ac <= 0).any() or (ac >= 1).any():
            raise ValueError("alphas_cumprod must hold at least two values strictly between 0 and 1")
        if (ac[1:] > ac[:-1]).any():
            raise ValueError("alphas_cumprod must be non-increasing in t (the noise grows with t)")
        self.model = model
        self.prediction = _check_prediction(prediction)
        self.call = call or _default_call
        self.cond_arg = cond_arg
        log_sigmas = 0.5 * (torch.log1p(-ac) - torch.log(ac))
        self.register_buffer("log_sigmas", log_sigmas, persistent=False)

    log_sigmas: torch.Tensor

    @property
    def sigma_min(self) -> float:
        return float(self.log_sigmas[0].exp())

    @property
    def sigma_max(self) -> float:
        return float(self.log_sigmas[-1].exp())

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timesteps for noise levels (linear in log sigma between the model's levels)."""
        log_sigma = torch.as_tensor(sigma, dtype=torch.float64, device=self.log_sigmas.device).log()
        ls = self.log_sigmas
        low = torch.clamp(torch.searchsorted(ls, log_sigma, right=True) - 1, 0, ls.numel() - 2)
        w = ((log_sigma - ls[low]) / (ls[low + 1] - ls[low])).clamp(0, 1)
        t = low + w
        return torch.where((t - t.round()).abs() < 1e-6, t.round(), t)  # the model's own levels: integers

    def t_to_sigma(self, t) -> torch.Tensor:
        """Noise levels of (integer or fractional) timesteps."""
        t = torch.as_tensor(t, dtype=torch.float64, device=self.log_sigmas.device)
        low = t.floor().long().clamp(0, self.log_sigmas.numel() - 2)
        w = t - low
        return torch.lerp(self.log_sigmas[low], self.log_sigmas[low + 1], w).exp()

    def forward(self, x: torch.Tensor, sigma, **cond: Any) -> torch.Tensor:
        sigma = expand_sigma(sigma, x).to(x.dtype)
        if (sigma <= 0).any():
            raise ValueError(
                "a discrete-time model has no level at sigma = 0; end the grid with a final step "
                "to 0 (the solvers return x0-hat there without calling the model)"
            )
        s = sigma.reshape(-1, *[1] * (x.ndim - 1))
        t = self.sigma_to_t(sigma).to(x.dtype)
        kwargs = {}
        if cond.get("cond") is not None:
            kwargs[self.cond_arg] = cond["cond"]
        out = self.call(self.model, x * torch.rsqrt(1 + s**2), t, **kwargs)
        if out.shape != x.shape:
            raise ValueError(
                f"the model returned shape {tuple(out.shape)} for input {tuple(x.shape)}; its "
                "output must match the input (one prediction per entry)"
            )
        return _x0_from(self.prediction, out, x, s)


class SigmaDenoiser(nn.Module):
    """A continuous-sigma model ``model(x, sigma, **cond)`` that predicts x0, eps or v, as a denoiser.

    ``scale_input=True`` feeds the model the variance-preserving input ``x / sqrt(1 + sigma^2)`` (models
    trained on VP inputs with sigma as their time variable); otherwise the sigma-space sample itself.
    """

    def __init__(self, model: Callable, prediction: str = "sample", *, scale_input: bool = False):
        super().__init__()
        self.model = model
        self.prediction = _check_prediction(prediction)
        self.scale_input = scale_input

    def forward(self, x: torch.Tensor, sigma, **cond: Any) -> torch.Tensor:
        sigma = expand_sigma(sigma, x).to(x.dtype)
        s = sigma.reshape(-1, *[1] * (x.ndim - 1))
        inp = x * torch.rsqrt(1 + s**2) if self.scale_input else x
        out = self.model(inp, sigma, **cond)
        if out.shape != x.shape:
            raise ValueError(f"the model returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
        return _x0_from(self.prediction, out, x, s)


def _scheduler_config(scheduler) -> dict:
    config = getattr(scheduler, "config", scheduler)
    return dict(config) if not isinstance(config, dict) else config


def from_diffusers(model: Callable, scheduler, *, cond_arg: str = "class_labels") -> DiscreteTimeDenoiser:
    """A diffusers model (``UNet1DModel``, ``UNet2DModel``, ...) with its scheduler (or the scheduler's config).

    The noise levels come from the scheduler's ``alphas_cumprod`` (or are rebuilt from ``beta_schedule``,
    ``beta_start``, ``beta_end`` and ``num_train_timesteps`` in a config), the prediction from
    ``prediction_type``. Classifier-free guidance's ``cond`` goes to the model as ``cond_arg``.
    """
    ac = getattr(scheduler, "alphas_cumprod", None)
    config = _scheduler_config(scheduler)
    if ac is None:
        ac = _alphas_cumprod(config)
    prediction = config.get("prediction_type", "epsilon")
    return DiscreteTimeDenoiser(model, ac, prediction, cond_arg=cond_arg)


def _alphas_cumprod(config: dict) -> torch.Tensor:
    n = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if kind == "linear":
        betas = torch.linspace(start, end, n, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        f = [math.cos((i / n + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(n + 1)]
        betas = torch.tensor([min(1 - f[i + 1] / f[i], 0.999) for i in range(n)], dtype=torch.float64)
    else:
        raise ValueError(
            f"beta_schedule {kind!r} is not supported; pass the scheduler itself (its "
            "alphas_cumprod) instead of its config"
        )
    return torch.cumprod(1 - betas, 0)


def timestep_sigmas(alphas_cumprod, timesteps, final_alpha_cumprod: float = 1.0) -> torch.Tensor:
    """The sigma grid of a discrete sampler's timesteps, ending at the final level (0 when it is 1).

    ``timesteps`` is e.g. a diffusers scheduler's ``timesteps`` after ``set_timesteps(N)``; steerdiff's DDIM
    on this grid takes the same steps as the scheduler's DDIM. A scheduler whose final level is not clean
    (``set_alpha_to_one=False``: ``final_alpha_cumprod = alphas_cumprod[0]``) ends the grid above 0; sample it
    with ``sample(..., allow_nonzero_end=True)``, or take one more step to 0 with a grid from ``sigma_grid``.
    """
    ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
    t = torch.as_tensor(timesteps).long().flatten()
    sig = torch.sqrt((1 - ac[t]) / ac[t])
    final = math.sqrt(max(0.0, (1 - final_alpha_cumprod) / final_alpha_cumprod))
    return torch.cat([sig, torch.tensor([final], dtype=torch.float64)])
