"""What every guidance shares: the hooks the sampling loop calls, when they run, reward checks.

A guidance is a dataclass with up to five hooks (all optional, see ``sampling.sample``):

* ``wrap_denoise(fn, ctx, sigma)`` — estimate corrections: return a new ``fn(x, sigma, **kw) -> x0_hat``;
* ``before_step(ctx, x, sigma, sigma_next)`` — move the particles before the solver step (EnKG);
* ``transition(ctx, x, state, sigma, sigma_next)`` — own the step (SCG, SMC; ``owns_transition = True``);
* ``after_step(ctx, x, sigma, sigma_next)`` — adjust the result (replacement of known entries);
* ``finish(ctx, x)`` — at the end (final weights).

When a guidance runs: ``interval = (sigma_lo, sigma_hi)`` switches it on only for the steps that start at
sigma_lo < sigma <= sigma_hi (limited-interval guidance, Kynkäänniemi et al. 2024), and ``window = (start,
stop)``, fractions of the run's N steps, only for steps i with floor(start N) <= i < floor(stop N) (diffusers'
guiders' start/stop). Both hold together. One rule for every hook: the step's *starting* point decides, so
every evaluation inside a step (Heun's second one, churn's raised level, SCG/SMC candidates) is guided or
not as a whole. Outside, the loop behaves exactly as without the guidance. The sampling loop enforces this
in one place (:meth:`Guidance.is_active`); hooks need not check it.

``shifts_proposal`` says whether a guidance changes the transitions the model proposes, which would bias the
weights of Feynman-Kac steering. It is derived, safely: a class that overrides ``denoise``, ``wrap_denoise``,
``before_step`` or ``after_step`` shifts the proposal unless the class itself sets ``shifts_proposal``.

Candidates and particles are laid out sample-major: the rows of sample b are b*K ... b*K + K - 1
(``repeat_interleave``), and per-sample inputs (conditions, measurements) are expanded the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..parallel import map_rows

__all__ = ["Guidance", "PROPOSAL_HOOKS", "match_batch", "evaluate_reward", "weighted_reward", "group"]


PROPOSAL_HOOKS = ("denoise", "wrap_denoise", "before_step", "after_step")


def _bad_pair(value) -> bool:
    try:
        lo, hi = value
        return not (math.isfinite(float(lo)) and not math.isnan(float(hi)))
    except (TypeError, ValueError):
        return True


@dataclass(kw_only=True)
class Guidance:
    interval: tuple[float, float] | None = None
    window: tuple[float, float] | None = None
    owns_transition = False
    # whether the guidance moves the model's transitions (derived per class in __init_subclass__)
    shifts_proposal = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # safe by default: overriding a hook that moves x0-hat or the particles shifts the proposal, unless
        # this very class says otherwise; a class that overrides nothing inherits its parent's answer
        if "shifts_proposal" not in cls.__dict__ and any(h in cls.__dict__ for h in PROPOSAL_HOOKS):
            cls.shifts_proposal = True

    def __post_init__(self):
        if self.interval is not None:
            if _bad_pair(self.interval) or not 0 <= self.interval[0] < self.interval[1]:
                raise ValueError(
                    f"interval must be (sigma_lo, sigma_hi) with 0 <= sigma_lo < sigma_hi, got {self.interval}"
                )
            self.interval = (float(self.interval[0]), float(self.interval[1]))
        if self.window is not None:
            if _bad_pair(self.window) or not 0 <= self.window[0] < self.window[1] <= 1:
                raise ValueError(
                    f"window must be (start, stop), fractions of the run's steps with 0 <= start < stop <= 1 "
                    f"(e.g. (0.0, 0.75) guides the first three quarters), got {self.window}"
                )
            self.window = (float(self.window[0]), float(self.window[1]))

    def active(self, sigma: float) -> bool:
        """Whether ``sigma`` lies in the noise interval (sigma_lo, sigma_hi]."""
        if self.interval is None:
            return True
        lo, hi = self.interval
        return lo < sigma <= hi

    def in_window(self, step: int, num_steps: int) -> bool:
        """Whether step ``step`` of ``num_steps`` lies in the step window (diffusers' start/stop rule)."""
        if self.window is None:
            return True
        start, stop = self.window
        return math.floor(start * num_steps + 1e-9) <= step < math.floor(stop * num_steps + 1e-9)

    def is_active(self, sigma: float, step: int, num_steps: int) -> bool:
        """Whether the step ``step`` of ``num_steps``, starting at ``sigma``, is guided: the one rule the
        sampling loop applies to every hook of every step."""
        return self.active(sigma) and self.in_window(step, num_steps)

    def check(self, ctx, x: torch.Tensor) -> None:
        """Validate against the run before it starts (solver, batch layout, shapes)."""

    def wrap_denoise(self, fn: Callable, ctx, sigma: float) -> Callable:
        """The denoiser of a guided step (the loop calls it only on steps where the guidance is active)."""
        if type(self).denoise is Guidance.denoise:
            return fn
        return lambda x, s, **kw: self.denoise(fn, ctx, x, s, **kw)

    def wrap_inactive(self, fn: Callable, ctx, sigma: float) -> Callable:
        """The denoiser of a step where the guidance is off: unchanged, unless the guidance is what makes the
        model usable at all (classifier-free guidance still passes its condition)."""
        return fn

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


def evaluate_reward(
    reward: Callable,
    x0: torch.Tensor,
    ctx,
    what: str = "reward",
    executor: Any = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Call a black-box reward on a batch of clean estimates; check and count it. Higher is better.

    With an ``executor`` (``concurrent.futures``, Dask) or a ``chunk_size``, the rows go through
    ``steerdiff.core.map_rows`` in chunks; the result is the same, and a failing row is named.
    """
    with torch.no_grad():
        if executor is not None or chunk_size is not None:
            r = map_rows(reward, x0, executor=executor, chunk_size=chunk_size, what=what)
        else:
            r = reward(x0)
    r = torch.as_tensor(r, device=x0.device)
    if r.shape != (x0.shape[0],):
        raise ValueError(
            f"the {what} must return one number per sample, shape ({x0.shape[0]},); "
            f"got shape {tuple(r.shape)}"
        )
    r = r.to(torch.float64) if r.dtype == torch.float64 else r.float()
    ctx.check_finite(
        r,
        lambda bad: (
            f"the {what} returned NaN or inf for {int(bad.sum())} of {r.numel()} samples "
            f"(first at row {int(bad.nonzero()[0, 0])}); make it finite for every input, e.g. "
            f"by clamping or by returning a large penalty"
        ),
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
