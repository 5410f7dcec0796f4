"""Transition selection, derivative-free: keep or reweight candidate next states by a black-box reward.

* :class:`StochasticControlGuidance` — SCG (Huang et al. 2024): at each guided step draw n candidate next
  states from the solver's stochastic step, score each by the reward of its x0-hat, keep the best.
* :class:`FeynmanKacSteering` — FK steering / SMC (Singhal et al. 2025): K particles per sample propagated
  by the unguided sampler, weighted by potentials of intermediate rewards, resampled when the effective
  sample size falls below a threshold. The final weights make the particles target
  p(x0) exp(lambda r(x0)), whatever the intermediate potential.

Both need a stochastic solver (ddpm, ddim with eta > 0, euler/heun with churn): with a deterministic step
all candidates coincide. Candidates and particles go through the network in one batched call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..sampling import take
from .base import Guidance, evaluate_reward, group

__all__ = ["StochasticControlGuidance", "FeynmanKacSteering", "systematic_resample", "effective_sample_size"]


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _require_stochastic(ctx, name: str) -> None:
    if not ctx.solver.stochastic:
        raise ValueError(
            f"{name} selects among random transitions, but solver {ctx.solver.name!r} is deterministic "
            f"here; use 'ddpm', 'ddim' with eta > 0, or 'euler'/'heun' with churn > 0"
        )


def _clean_estimate(ctx, x, sigma_next):
    """x0-hat of candidates at the new level (the candidates themselves at sigma = 0)."""
    return x if sigma_next == 0 else ctx.denoise(x, sigma_next)


@dataclass
class StochasticControlGuidance(Guidance):
    """Best-of-n per step. ``reward(x0_hat) -> (N,)``, higher is better; any Python function works.

    Cost per guided step: n network evaluations per sample for the candidates' x0-hat (the chosen one is
    reused by the next step) and n reward evaluations.
    """

    reward: Callable
    num_candidates: int = 8
    executor: Any = None  # evaluate the reward in chunks on a concurrent.futures / Dask executor
    chunk_size: int | None = None  # rows per reward call (default: split over the executor's workers)
    owns_transition = True

    def __post_init__(self):
        super().__post_init__()
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")

    def check(self, ctx, x):
        _require_stochastic(ctx, "StochasticControlGuidance")

    def transition(self, ctx, x, state, sigma, sigma_next):
        b, n = x.shape[0], self.num_candidates
        rep = torch.arange(b, device=x.device).repeat_interleave(n)
        xr = x[rep]
        ctx.remember(xr, sigma, ctx.denoise(x, sigma)[rep])  # x0-hat at x is shared by its candidates
        cand, state = ctx.step(xr, take(state, rep), sigma, sigma_next)
        x0 = _clean_estimate(ctx, cand, sigma_next)
        r = evaluate_reward(self.reward, x0, ctx, executor=self.executor, chunk_size=self.chunk_size)
        best = torch.arange(b, device=x.device) * n + r.view(b, n).argmax(1)
        x_next = cand[best]
        if sigma_next > 0:
            ctx.remember(x_next, sigma_next, x0[best])
        return x_next, take(state, best)


def effective_sample_size(log_w: torch.Tensor) -> torch.Tensor:
    """ESS = 1 / sum w^2 of the normalised weights, per row of a (B, K) tensor of log-weights."""
    w = torch.softmax(log_w, dim=-1)
    return 1.0 / (w**2).sum(-1)


def systematic_resample(log_w: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Ancestor indices (B, K) into each row by systematic resampling (one uniform per row)."""
    b, k = log_w.shape
    cdf = torch.cumsum(torch.softmax(log_w.double(), dim=-1), dim=-1)
    cdf[:, -1] = 1.0
    u = torch.rand(b, 1, generator=generator, dtype=torch.float64, device=log_w.device)
    points = (u + torch.arange(k, dtype=torch.float64, device=log_w.device)) / k
    return torch.searchsorted(cdf, points).clamp_max(k - 1)


def _multinomial_resample(log_w, generator=None):
    w = torch.softmax(log_w.double(), dim=-1)
    return torch.multinomial(w, log_w.shape[1], replacement=True, generator=generator)


_RESAMPLERS = {"systematic": systematic_resample, "multinomial": _multinomial_resample}
_POTENTIALS = ("difference", "max", "sum")


@dataclass
class FeynmanKacSteering(Guidance):
    """SMC with reward potentials. ``x`` holds B * K rows: K particles for each of B samples.

    With r_t = reward(x0_hat(x_t)) the intermediate target at step t is p(x_t) exp(lambda phi_t), where the
    potential phi_t is, per particle path: ``difference`` r_t (the incremental weight is then
    lambda (r_t - r_{t+1})), ``max`` max_{s>=t} r_s, or ``sum`` the running sum of the rewards r_s, s >= t,
    divided by their number (so that lambda keeps the scale of one reward). The last step sets phi_0 = r(x0),
    so the weighted particles target p(x0) exp(lambda r(x0)) whatever the potential — the exact posterior
    when r is a log-likelihood and lambda = 1. Resampling (``systematic`` or ``multinomial``) happens in the
    groups whose ESS falls below ``ess_threshold`` * K; never after the last step unless ``final_resample``.

    At high noise Tweedie's x0-hat is a poor stand-in for x0, so a sharp reward makes the early potentials
    over-confident: that only adds variance. Start steering later with ``interval=(0, sigma_start)``, or give
    a noise-aware ``twist(x0_hat, sigma) -> (N,)`` for the intermediate rewards (e.g. a likelihood whose
    variance is inflated by the uncertainty of x0-hat at sigma, as in twisted SMC); the final weights always
    use ``reward`` itself, so any twist keeps the target exact.

    ``info["weights"]`` (B, K) holds the final normalised weights, ``info["ess"]`` the ESS trace (steps, B)
    before resampling, ``info["resampled"]`` how many times each group was resampled.
    """

    reward: Callable
    num_particles: int
    lam: float = 1.0
    potential: str = "difference"
    ess_threshold: float = 0.5
    resampling: str = "systematic"
    final_resample: bool = False
    twist: Callable | None = None
    executor: Any = None  # evaluate the reward in chunks on a concurrent.futures / Dask executor
    chunk_size: int | None = None  # rows per reward call (default: split over the executor's workers)
    owns_transition = True

    def __post_init__(self):
        super().__post_init__()
        if self.num_particles < 2:
            raise ValueError(
                f"FeynmanKacSteering needs at least 2 particles per sample, got {self.num_particles}"
            )
        if self.potential not in _POTENTIALS:
            raise ValueError(f"potential must be one of {list(_POTENTIALS)}, got {self.potential!r}")
        if self.resampling not in _RESAMPLERS:
            raise ValueError(f"resampling must be one of {list(_RESAMPLERS)}, got {self.resampling!r}")
        if not 0.0 <= self.ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold must lie in [0, 1], got {self.ess_threshold}")
        if not _finite(self.lam):
            raise ValueError(
                f"lam must be a finite number (the reward's inverse temperature; 1 targets p(x0) exp(r(x0))), "
                f"got {self.lam!r}"
            )

    def check(self, ctx, x):
        _require_stochastic(ctx, "FeynmanKacSteering")
        shifted = [type(g).__name__ for g in ctx.guidance if g is not self and g.shifts_proposal]
        if shifted:
            raise ValueError(
                f"FeynmanKacSteering weights assume the model's own transitions, but {', '.join(shifted)} "
                f"shifts them, which would bias the weighted result; steer with the reward alone "
                f"(put the likelihood into the reward) or use that guidance without SMC. A guidance that "
                f"leaves the model's transitions as they are can say so with shifts_proposal = False on "
                f"its class"
            )
        if x.shape[0] % self.num_particles:
            raise ValueError(
                f"the batch of {x.shape[0]} rows is not a multiple of num_particles="
                f"{self.num_particles}; sample B * K rows for B samples of K particles"
            )

    def _intermediate(self, ctx, x0, sigma):
        if self.twist is None:
            return evaluate_reward(self.reward, x0, ctx, executor=self.executor, chunk_size=self.chunk_size)
        return evaluate_reward(
            lambda z: self.twist(z, sigma),
            x0,
            ctx,
            "twist",
            executor=self.executor,
            chunk_size=self.chunk_size,
        )

    def _potential(self, st, r):
        """The potential's value phi_t along each particle's path, given the new intermediate reward."""
        st["max"] = torch.maximum(st["max"], r)
        st["sum"] = st["sum"] + r
        st["count"] += 1
        if self.potential == "max":
            return st["max"]
        if self.potential == "sum":
            return st["sum"] / st["count"]
        return r

    def transition(self, ctx, x, state, sigma, sigma_next):
        st, k = self.scratch(ctx), self.num_particles
        if "log_w" not in st:  # first guided step: weight by lambda r_T
            x0 = ctx.denoise(x, sigma)
            r = self._intermediate(ctx, x0, sigma)
            st.update(max=r, sum=r, count=1, phi=r, log_w=self.lam * r, ess=[], resampled=None)
            ctx.remember(x, sigma, x0)
        x_next, state = ctx.step(x, state, sigma, sigma_next)
        x0 = _clean_estimate(ctx, x_next, sigma_next)
        if sigma_next == 0:
            phi = evaluate_reward(self.reward, x0, ctx, executor=self.executor, chunk_size=self.chunk_size)
        else:
            phi = self._potential(st, self._intermediate(ctx, x0, sigma_next))
        st["log_w"] = st["log_w"] + self.lam * (phi - st["phi"])
        st["phi"] = phi
        st["final"] = sigma_next == 0
        log_w = group(st["log_w"], k)
        ess = effective_sample_size(log_w)
        st["ess"].append(ess)
        if st["resampled"] is None:
            st["resampled"] = torch.zeros(log_w.shape[0], dtype=torch.long, device=x.device)
        need = ess < self.ess_threshold * k
        if sigma_next == 0:
            need = torch.full_like(need, self.final_resample)
        if sigma_next > 0:
            ctx.remember(x_next, sigma_next, x0)
        # on an accelerator (deferred checks) every step resamples the groups that need it without asking the
        # device whether any does: a host-device synchronisation per step costs more than the resampler
        if ctx.defer_checks or need.any():
            anc = _RESAMPLERS[self.resampling](log_w, ctx.generator)
            anc = torch.where(need[:, None], anc, torch.arange(k, device=x.device))
            rows = (anc + k * torch.arange(anc.shape[0], device=x.device)[:, None]).reshape(-1)
            x_next, x0, state = x_next[rows], x0[rows], take(state, rows)
            for key in ("max", "sum", "phi"):
                st[key] = st[key][rows]
            st["log_w"] = torch.where(
                need.repeat_interleave(k), torch.zeros_like(st["log_w"]), st["log_w"][rows]
            )
            st["resampled"] += need.long()
            if sigma_next > 0:
                ctx.remember(x_next, sigma_next, x0)
        return x_next, state

    def finish(self, ctx, x):
        st = self.scratch(ctx)
        if "log_w" in st:
            if not st["final"]:  # the last step ran outside the interval: apply the final potential now
                r = evaluate_reward(self.reward, x, ctx, executor=self.executor, chunk_size=self.chunk_size)
                st["log_w"] = st["log_w"] + self.lam * (r - st["phi"])
            ctx.info["weights"] = torch.softmax(group(st["log_w"], self.num_particles), dim=-1)
            ctx.info["ess"] = torch.stack(st["ess"])
            ctx.info["resampled"] = st["resampled"]
        return x
