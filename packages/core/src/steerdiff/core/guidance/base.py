"""What every guidance shares: the hooks the sampling loop calls, the noise interval, reward checks.

A guidance is a dataclass with up to five hooks (all optional, see ``sampling.sample``):

* ``wrap_denoise(fn, ctx, sigma)`` — estimate corrections: return a new ``fn(x, sigma, **kw) -> x0_hat``;
* ``before_step(ctx, x, sigma, sigma_next)`` — move the particles before the solver step (EnKG);
* ``transition(ctx, x, state, sigma, sigma_next)`` — own the step (SCG, SMC; ``owns_transition = True``);
* ``after_step(ctx, x, sigma, sigma_next)`` — adjust the result (replacement of known entries);
* ``finish(ctx, x)`` — at the end (final weights).

``interval = (sigma_lo, sigma_hi)`` switches a guidance on only for sigma_lo < sigma <= sigma_hi (limited-
interval guidance, Kynkäänniemi et al. 2024); outside it the loop behaves exactly as without the guidance.

Candidates and particles are laid out sample-major: the rows of sample b are b*K ... b*K + K - 1
(``repeat_interleave``), and per-sample inputs (conditions, measurements) are expanded the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["Guidance", "match_batch", "evaluate_reward", "weighted_reward", "group"]


@dataclass(kw_only=True)
class Guidance:
    interval: tuple[float, float] | None = None
    owns_transition = False
    shifts_proposal = (
        False  # True for gradient corrections that move x0-hat away from the model's own estimate
    )

    def __post_init__(self):
        if self.interval is not None:
            lo, hi = self.interval
            if not 0 <= lo < hi:
                raise ValueError(
                    f"interval must be (sigma_lo, sigma_hi) with 0 <= sigma_lo < sigma_hi, got {self.interval}"
                )

    def active(self, sigma: float) -> bool:
        if self.interval is None:
            return True
        lo, hi = self.interval
        return lo < sigma <= hi

    def check(self, ctx, x: torch.Tensor) -> None:
        """Validate against the run before it starts (solver, batch layout, shapes)."""

    def wrap_denoise(self, fn: Callable, ctx, sigma: float) -> Callable:
        if type(self).denoise is Guidance.denoise or not self.active(sigma):
            return fn
        return lambda x, s, **kw: self.denoise(fn, ctx, x, s, **kw)

    def denoise(self, fn: Callable, ctx, x: torch.Tensor, sigma: float, **kw) -> torch.Tensor:
        return fn(x, sigma, **kw)

    def before_step(self, ctx, x, sigma, sigma_next):
        return x

    def transition(self, ctx, x, state, sigma, sigma_next):
        return ctx.step(x, state, sigma, sigma_next)

    def after_step(self, ctx, x, sigma, sigma_next):
        return x

    def finish(self, ctx, x):
        return x

    def scratch(self, ctx) -> dict:
        """Per-run mutable state of this guidance (momentum buffers, weights): lives on the run, not on self."""
        return ctx.info.setdefault(f"_state_{id(self)}", {})


def match_batch(t: torch.Tensor, n: int, what: str) -> torch.Tensor:
    """Expand a per-sample tensor (B, ...) to n = B*K rows (sample-major); errors name the mismatch."""
    if t.shape[0] == n:
        return t
    if t.shape[0] == 0 or n % t.shape[0]:
        raise ValueError(
            f"{what} has batch size {t.shape[0]}, which does not divide the {n} rows being sampled; "
            f"give one entry per sample (or per row)"
        )
    return t.repeat_interleave(n // t.shape[0], dim=0)


def group(t: torch.Tensor, k: int) -> torch.Tensor:
    """(B*K, ...) -> (B, K, ...)."""
    return t.reshape(t.shape[0] // k, k, *t.shape[1:])


def evaluate_reward(reward: Callable, x0: torch.Tensor, ctx, what: str = "reward") -> torch.Tensor:
    """Call a black-box reward on a batch of clean estimates; check and count it. Higher is better."""
    with torch.no_grad():
        r = reward(x0)
    r = torch.as_tensor(r, device=x0.device)
    if r.shape != (x0.shape[0],):
        raise ValueError(
            f"the {what} must return one number per sample, shape ({x0.shape[0]},); "
            f"got shape {tuple(r.shape)}"
        )
    r = r.to(torch.float64) if r.dtype == torch.float64 else r.float()
    bad = ~torch.isfinite(r)
    if bad.any():
        raise ValueError(
            f"the {what} returned NaN or inf for {int(bad.sum())} of {r.numel()} samples "
            f"(first at row {int(bad.nonzero()[0, 0])}); make it finite for every input, e.g. "
            f"by clamping or by returning a large penalty"
        )
    ctx.costs.reward_evals += r.numel()
    ctx.costs.reward_calls += 1
    return r


def weighted_reward(terms: Sequence[tuple[float, Callable]]) -> Callable:
    """sum_i w_i r_i(x): one reward from several rules (e.g. SCG over a weighted multi-rule objective)."""
    terms = list(terms)
    if not terms:
        raise ValueError("weighted_reward needs at least one (weight, reward) pair")
    for w, r in terms:
        if not callable(r) or not math.isfinite(float(w)):
            raise ValueError(f"each term must be (finite weight, callable reward), got ({w!r}, {r!r})")

    def reward(x0: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(())
        for w, r in terms:
            total = total + float(w) * torch.as_tensor(r(x0))
        return total

    return reward
