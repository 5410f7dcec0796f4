"""Policy guidance (Jackson et al. 2024): steer trajectory samples toward a target policy's actions.

At every denoising step k of N except the last, the clean estimate's action channels move along the
gradient of the target policy's action log-likelihood summed over the window,

    g = grad_u  sum_t log pi( tanh(unnorm(u_t)) | unnorm(s_t) )        (u: normalised pre-tanh actions)
    x0_hat[action channels] += lambda_k * g        (optionally g / ||g|| per sample)
    lambda_k = coeff * [ (1 - k / N) + cosine * sin(pi (k + 1) / N) ]   (the paper's schedule)

Observation, reward and done channels are never touched directly; the model keeps them consistent with the
guided actions. The gradient is taken at the clean estimate (``at="denoised"``, default) or at the noisy
sample (``at="noisy"``, the reference code's default); neither backpropagates through the network, so a
guided evaluation costs one policy forward/backward (counted in ``costs.gradient_evals``). The
behaviour-policy score is deliberately left out, so samples stay on the data's support.

``apply`` says what the step lambda_k g moves: the clean estimate (``"estimate"``, default, above; every
denoiser call of the solver is corrected, so Heun guides twice per step) or, as the reference code does,
the noisy sample itself once before each solver step (``"sample"``; with ``at="denoised"`` its x0-hat is
one extra network call). A shift of the sample is carried into the next step (and partly undone by the
denoiser at high noise); a shift of x0-hat enters an Euler step scaled by 1 - sigma_next / sigma, but Heun
applies it twice. At Heun 32 steps both reach about the same likelihood at the same coefficient.

Because it is an estimate correction (a ``Guidance`` subclass), it composes with every core solver and
every other guidance (inpainting of a start state, classifier-free guidance ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from steerdiff.core.guidance import Guidance

from .trajectories import Normalizer

__all__ = ["PolicyGuidance", "guidance_schedule", "trajectory_log_likelihood"]


def guidance_schedule(k: int, n: int, coeff: float, cosine: float = 0.3) -> float:
    """lambda_k = coeff [(1 - k/N) + cosine sin(pi (k+1)/N)]."""
    return coeff * ((1 - k / n) + cosine * math.sin(math.pi * (k + 1) / n))


def trajectory_log_likelihood(policy, traj: torch.Tensor, normalizer: Normalizer) -> torch.Tensor:
    """sum_t log pi(a_t | s_t) over each window's rows (B, C, L) -> (B,); differentiable in ``traj``'s
    action channels (states are detached: only actions are steered). With a mask channel, padding rows
    (valid <= 0.5) are left out."""
    b, c, length = traj.shape
    if c != normalizer.channels:
        raise ValueError(f"trajectories have {c} channels but the normaliser expects {normalizer.channels}")
    raw = normalizer.unnormalize(traj, dim=1)
    obs = raw[:, normalizer.obs].detach().transpose(1, 2).reshape(b * length, normalizer.obs_dim)
    act = normalizer.channel_to_action(raw[:, normalizer.act]).transpose(1, 2).reshape(b * length, -1)
    lp = policy.log_prob(obs, act)
    if lp.shape != (b * length,):
        raise ValueError(
            f"policy.log_prob(obs, action) must return one value per row, shape ({b * length},); "
            f"got {tuple(lp.shape)}"
        )
    lp = lp.reshape(b, length)
    if normalizer.mask:
        lp = lp * (raw[:, normalizer.valid] > 0.5).detach().to(lp.dtype)
    return lp.sum(1)


@dataclass(kw_only=True)
class PolicyGuidance(Guidance):
    """``policy`` has ``log_prob(obs (N, obs_dim), action (N, act_dim)) -> (N,)`` in env units."""

    policy: Any
    normalizer: Normalizer
    coeff: float = 1.0
    cosine: float = 0.3
    normalize: bool = False
    at: str = "denoised"
    apply: str = "estimate"

    def __post_init__(self):
        super().__post_init__()
        if not hasattr(self.policy, "log_prob"):
            raise TypeError("policy must have a log_prob(obs, action) method (e.g. a TD3BC or IQL agent)")
        if self.at not in ("denoised", "noisy"):
            raise ValueError(f"at must be 'denoised' or 'noisy', got {self.at!r}")
        if self.apply not in ("estimate", "sample"):
            raise ValueError(
                f"apply must be 'estimate' (move x0-hat) or 'sample' (move the noisy sample, as "
                f"the reference code does), got {self.apply!r}"
            )
        if not math.isfinite(self.coeff) or self.coeff < 0:
            raise ValueError(f"coeff must be a finite number >= 0, got {self.coeff}")

    def check(self, ctx, x):
        if x.ndim != 3 or x.shape[1] != self.normalizer.channels:
            raise ValueError(
                f"policy guidance needs trajectories (B, {self.normalizer.channels}, L); got {tuple(x.shape)}"
            )

    def action_gradient(self, traj: torch.Tensor) -> torch.Tensor:
        """grad of the summed log-likelihood w.r.t. the normalised trajectory; zero outside the actions."""
        with torch.enable_grad():
            t = traj.detach().requires_grad_(True)
            lp = trajectory_log_likelihood(self.policy, t, self.normalizer)
            (grad,) = torch.autograd.grad(lp.sum(), t)
        if not torch.isfinite(grad).all():
            raise FloatingPointError("the policy's log-likelihood gradient is NaN or inf; check the policy")
        mask = torch.zeros(traj.shape[1], 1, dtype=grad.dtype, device=grad.device)
        mask[self.normalizer.act] = 1
        grad = grad * mask
        if self.normalize:
            grad = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, 1, 1)
        return grad

    def weight(self, ctx) -> float:
        """lambda_k of the current step; 0 on the last step (the paper guides every step but the last)."""
        n, k = len(ctx.sigmas) - 1, ctx.step_index
        return 0.0 if self.coeff == 0 or k >= n - 1 else guidance_schedule(k, n, self.coeff, self.cosine)

    def denoise(self, fn, ctx, x, sigma, **kw):
        x0 = fn(x, sigma, **kw)
        lam = self.weight(ctx) if self.apply == "estimate" else 0.0
        if lam == 0:
            return x0
        grad = self.action_gradient(x0 if self.at == "denoised" else x)
        ctx.costs.gradient_evals += x.shape[0]
        return x0 + lam * grad

    def before_step(self, ctx, x, sigma, sigma_next):
        lam = self.weight(ctx) if self.apply == "sample" else 0.0
        if lam == 0:
            return x
        grad = self.action_gradient(ctx.unguided(x, sigma) if self.at == "denoised" else x)
        ctx.costs.gradient_evals += x.shape[0]
        return x + lam * grad
