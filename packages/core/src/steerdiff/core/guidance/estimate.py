"""Estimate corrections: change x0-hat before the solver step, so they compose with every solver.

* :class:`ClassifierFreeGuidance` — D = D_u + w (D_c - D_u), one batched call for both branches;
  optional guidance rescale (Lin et al. 2023).
* :class:`AdaptiveProjectedGuidance` — APG (Sadat et al. 2025): momentum, norm threshold, and a split of the
  guidance direction into parts parallel and orthogonal to D_c.
* :class:`ClassifierGuidance` — D += scale sigma^2 grad_x log p(y | x, sigma) (a score correction).
* :class:`ReconstructionGuidance` — a differentiable loss of x0-hat: DPS / universal forward guidance
  through the network, or universal backward guidance optimised on x0-hat alone.
* :class:`Inpainting` — replacement of known entries by their noised values after each step, with optional
  RePaint resampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .base import Guidance, match_batch

__all__ = [
    "ClassifierFreeGuidance",
    "AdaptiveProjectedGuidance",
    "ClassifierGuidance",
    "ReconstructionGuidance",
    "Inpainting",
]


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1)))


@dataclass
class ClassifierFreeGuidance(Guidance):
    """Classifier-free guidance for a conditional denoiser ``D(x, sigma, cond=..., cond_mask=...)``.

    ``scale`` w: 1 is the conditional model, 0 the unconditional one. The unconditional branch uses
    ``cond_mask=False`` (steerdiff networks' learned null condition) unless ``uncond`` is given, in which
    case it is passed as ``cond``. Outside ``interval`` the conditional model alone is used (and one
    network evaluation per sample is saved). ``rescale`` in [0, 1] blends in the std-rescaled output.
    """

    # CFG defines the (conditional) model being sampled rather than shifting it away from that model, so
    # Feynman-Kac steering may reweight it: the weights then target the guided model tilted by the reward
    shifts_proposal = False

    cond: Any
    scale: float = 1.0
    uncond: Any = None
    rescale: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.rescale <= 1.0:
            raise ValueError(f"rescale must lie in [0, 1], got {self.rescale}")

    def _branch_kwargs(self, n: int, conditional: bool) -> dict:
        cond = match_batch(torch.as_tensor(self.cond), n, "cond")
        if self.uncond is not None:
            return {"cond": cond if conditional else match_batch(torch.as_tensor(self.uncond), n, "uncond")}
        return {
            "cond": cond,
            "cond_mask": torch.full((n,), conditional, dtype=torch.bool, device=cond.device),
        }

    def wrap_denoise(self, fn, ctx, sigma):
        return lambda x, s, **kw: self.denoise(fn, ctx, x, s, **kw)

    def wrap_inactive(self, fn, ctx, sigma):
        return lambda x, s, **kw: fn(x, s, **kw, **self._branch_kwargs(x.shape[0], True))

    def denoise(self, fn, ctx, x, sigma, **kw):
        n = x.shape[0]
        c, u = self._branch_kwargs(n, True), self._branch_kwargs(n, False)
        both = {k: torch.cat([c[k], u[k]]) for k in c}
        d_c, d_u = fn(torch.cat([x, x]), sigma, **kw, **both).chunk(2)
        out = self.combine(ctx, d_c, d_u)
        if self.rescale > 0:
            dims = tuple(range(1, x.ndim))
            ratio = d_c.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True).clamp_min(1e-12)
            out = self.rescale * out * ratio + (1 - self.rescale) * out
        return out

    def combine(self, ctx, d_c: torch.Tensor, d_u: torch.Tensor) -> torch.Tensor:
        return d_u + self.scale * (d_c - d_u)


@dataclass
class AdaptiveProjectedGuidance(ClassifierFreeGuidance):
    """APG on the denoised prediction: D = D_c + (w - 1) (Delta_perp + eta Delta_par).

    Delta = D_c - D_u, optionally with momentum (m <- Delta + beta m, the paper's beta = -0.5) and rescaled to
    norm at most ``norm_threshold`` per sample; the projection onto D_c is done in float64. With eta=1,
    no threshold and no momentum it is exactly classifier-free guidance.
    """

    eta: float = 0.0
    norm_threshold: float = math.inf
    momentum: float = 0.0

    def combine(self, ctx, d_c, d_u):
        delta = d_c - d_u
        if self.momentum != 0:
            st = self.scratch(ctx)
            buf = st.get("momentum")
            if buf is not None and buf.shape != delta.shape:
                raise ValueError(
                    "APG momentum needs the same batch at every step; it cannot be combined with "
                    "candidate selection (SCG/SMC). Set momentum=0 there."
                )
            delta = delta if buf is None else delta + self.momentum * buf
            st["momentum"] = delta
        dims = tuple(range(1, delta.ndim))
        if math.isfinite(self.norm_threshold):
            norm = delta.flatten(1).norm(dim=1)
            delta = delta * _per_sample(
                torch.clamp(self.norm_threshold / norm.clamp_min(1e-12), max=1.0), delta
            )
        d64, c64 = delta.double(), d_c.double()
        coef = (d64 * c64).sum(dims, keepdim=True) / (c64 * c64).sum(dims, keepdim=True).clamp_min(1e-300)
        parallel = coef * c64
        update = (d64 - parallel) + self.eta * parallel
        return d_c + (self.scale - 1) * update.to(d_c.dtype)


def _needs_grad(value: torch.Tensor, what: str, n: int, ctx) -> torch.Tensor:
    value = torch.as_tensor(value)
    if value.shape != (n,):
        raise ValueError(
            f"the {what} must return one number per sample, shape ({n},); got {tuple(value.shape)}"
        )
    if not value.requires_grad:
        raise TypeError(
            f"the {what} is not differentiable (its output carries no gradient — a count, a threshold, "
            f"or code under no_grad/numpy). Gradient guidance cannot use it; use a derivative-free "
            f"method instead: StochasticControlGuidance, FeynmanKacSteering or EnsembleKalmanGuidance"
        )
    ctx.check_finite(value, lambda bad: f"the {what} returned NaN or inf for {int(bad.sum())} of {n} samples")
    return value


@dataclass
class ClassifierGuidance(Guidance):
    """Classifier guidance (Dhariwal & Nichol 2021): score += scale grad_x log p(y | x, sigma).

    ``log_prob(x, sigma) -> (B,)`` is a noise-aware classifier's log-probability of the target class.
    """

    shifts_proposal = True

    log_prob: Callable
    scale: float = 1.0

    def denoise(self, fn, ctx, x, sigma, **kw):
        x0 = fn(x, sigma, **kw)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            lp = _needs_grad(
                self.log_prob(xg, torch.full((x.shape[0],), sigma, device=x.device)),
                "classifier log-probability",
                x.shape[0],
                ctx,
            )
            (grad,) = torch.autograd.grad(lp.sum(), xg)
        ctx.costs.gradient_evals += x.shape[0]
        return x0 + (self.scale * sigma**2 * grad).to(x0.dtype)


_WEIGHTS = {"score": lambda s: s**2, "sigma": lambda s: s, "none": lambda s: 1.0}
_NORMALIZE = ("none", "dps", "unit")


@dataclass
class ReconstructionGuidance(Guidance):
    """Guidance by a differentiable loss of x0-hat, ``loss(x0_hat) -> (B,)`` (e.g. ||y - A x0_hat||^2).

    ``mode="forward"`` (DPS, universal forward guidance): g = grad_x loss(D(x)) through the network, and
    x0_hat <- D - scale * weight(sigma) * normalize(g). With the default ``weight="score"`` (sigma^2) this
    adds -scale * g to the score, so scale=1 with loss = ||y - A x0||^2 / (2 s_y^2) is the DPS likelihood
    score. ``normalize``: "none"; "dps" divides by sqrt(loss) per sample (DPS's zeta / ||y - A x0_hat||);
    "unit" makes g unit-norm per sample.

    ``mode="backward"`` (universal backward guidance): x0_hat is held fixed and a shift Delta is optimised by
    ``inner_steps`` gradient steps of size ``lr`` on loss(x0_hat + Delta); x0_hat <- x0_hat + scale * Delta.
    No backpropagation through the network.
    """

    shifts_proposal = True

    loss: Callable
    scale: float = 1.0
    mode: str = "forward"
    weight: str = "score"
    normalize: str = "none"
    inner_steps: int = 1
    lr: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in ("forward", "backward"):
            raise ValueError(f"mode must be 'forward' or 'backward', got {self.mode!r}")
        if self.weight not in _WEIGHTS:
            raise ValueError(f"weight must be one of {list(_WEIGHTS)}, got {self.weight!r}")
        if self.normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {list(_NORMALIZE)}, got {self.normalize!r}")
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1, got {self.inner_steps}")

    def _normalized(self, grad, value):
        if self.normalize == "dps":
            return grad / _per_sample(value.detach().clamp_min(1e-12).sqrt(), grad)
        if self.normalize == "unit":
            return grad / _per_sample(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)
        return grad

    def denoise(self, fn, ctx, x, sigma, **kw):
        n = x.shape[0]
        if self.mode == "backward":
            x0 = fn(x, sigma, **kw).detach()
            delta = torch.zeros_like(x0)
            for _ in range(self.inner_steps):
                with torch.enable_grad():
                    d = delta.requires_grad_(True)
                    value = _needs_grad(self.loss(x0 + d), "loss", n, ctx)
                    (grad,) = torch.autograd.grad(value.sum(), d)
                delta = delta.detach() - self.lr * self._normalized(grad, value)
                ctx.costs.gradient_evals += n
            return x0 + (self.scale * delta).to(x0.dtype)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = fn(xg, sigma, **kw)
            value = _needs_grad(self.loss(x0), "loss", n, ctx)
            (grad,) = torch.autograd.grad(value.sum(), xg)
        ctx.costs.gradient_evals += n
        step = self.scale * _WEIGHTS[self.weight](sigma) * self._normalized(grad, value)
        return x0.detach() - step.to(x0.dtype)


@dataclass
class Inpainting(Guidance):
    """Condition on known entries: after each step, entries where ``mask`` is True are replaced by the known
    ``values`` noised to the new level (values + sigma_next z); at sigma = 0 they are exact.

    ``resample`` r > 0 repeats each step r more times after re-noising the result back to sigma (RePaint,
    Lugmayr et al. 2022), which harmonises the unknown part with the known one at r+1 times the cost.
    ``values`` and ``mask`` have the sample shape, with or without the batch dimension.
    """

    # replacement defines the conditional model being sampled (known entries fixed), so Feynman-Kac steering
    # may reweight it: the weights then target that conditional model tilted by the reward
    shifts_proposal = False

    values: torch.Tensor
    mask: torch.Tensor
    resample: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.resample < 0:
            raise ValueError(f"resample must be >= 0, got {self.resample}")
        self.mask = torch.as_tensor(self.mask).bool()
        self.values = torch.as_tensor(self.values)
        if self.values.shape != self.mask.shape:
            raise ValueError(
                f"values {tuple(self.values.shape)} and mask {tuple(self.mask.shape)} must have one shape"
            )
        if torch.isnan(self.values[self.mask]).any():
            raise ValueError("known values contain NaN where the mask says they are observed")

    @property
    def owns_transition(self) -> bool:  # type: ignore[override]
        return self.resample > 0

    def _expand(self, t, x):
        if t.shape == x.shape[1:]:
            return t.to(x.device).expand_as(x)
        if t.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"known values/mask of shape {tuple(t.shape)} do not match samples of shape "
                f"{tuple(x.shape[1:])}"
            )
        return match_batch(t.to(x.device), x.shape[0], "known values")

    def check(self, ctx, x):
        self._expand(self.mask, x)

    def _replace(self, ctx, x, sigma_next):
        known = self._expand(self.values, x).to(x.dtype)
        if sigma_next > 0:
            known = known + sigma_next * ctx.randn_like(x)
        return torch.where(self._expand(self.mask, x), known, x)

    def after_step(self, ctx, x, sigma, sigma_next):
        return self._replace(ctx, x, sigma_next)

    def transition(self, ctx, x, state, sigma, sigma_next):
        for _ in range(self.resample):
            x_next, _ = ctx.step(x, state, sigma, sigma_next)
            x_next = self._replace(ctx, x_next, sigma_next)
            x = x_next + math.sqrt(sigma**2 - sigma_next**2) * ctx.randn_like(x_next)
        return ctx.step(x, state, sigma, sigma_next)
