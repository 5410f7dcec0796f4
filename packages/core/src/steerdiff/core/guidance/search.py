"""Tree search over the sampler's random transitions, for rewards without gradients.

:class:`TreeSearchGuidance` keeps ``num_beams`` partial paths (beams) per sample. At every guided step each
beam branches into ``branch`` children (the solver's own stochastic step with independent noise), every child
is scored by the reward of its clean estimate, and ``num_beams`` children survive. This is the family whose
greedy end (one beam) is stochastic control guidance (best of n per step) and whose selection by sampling is
the value-weighted selection of SVDD (Li et al. 2024) and the sampling-based tree search of TreeG (Guo et al.
2025):

* ``selection="top"``: the best ``num_beams`` of the ``num_beams * branch`` children (beam search);
* ``selection="sample"``: ``num_beams`` children drawn without replacement with probabilities
  ``softmax(reward / temperature)`` (keeps diversity; temperature -> 0 is ``"top"``).

``branch`` may be a function of the step's noise level (branch out where selection matters, e.g. more
children at low noise where x0-hat is informative). The last step, to sigma = 0, does not branch: most solvers
return x0-hat there, so its children would be copies of one another. All children of all beams go through the network in one
batched call. At the end the beams of each sample are sorted by their final reward, best first, and
``info["beam_rewards"]`` (B, num_beams) holds those rewards; take ``x[::num_beams]`` for the best beam of
every sample.

Cost per guided step and per beam: ``branch`` network evaluations and ``branch`` reward evaluations, so a
sample (all its beams) costs ``num_beams * branch`` evaluations per step, which is what to hold equal when
comparing with best-of-n or SMC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..sampling import take
from .base import Guidance, evaluate_reward, group

__all__ = ["TreeSearchGuidance"]

_SELECTIONS = ("top", "sample")


@dataclass
class TreeSearchGuidance(Guidance):
    """Beam / tree search: ``x`` holds B * num_beams rows; ``reward(x0_hat) -> (N,)``, higher is better."""

    reward: Callable
    num_beams: int = 4
    branch: int | Callable[[float], int] = 4
    selection: str = "top"
    temperature: float = 1.0
    executor: Any = None  # evaluate the reward in chunks on a concurrent.futures / Dask executor
    chunk_size: int | None = None  # rows per reward call (default: split over the executor's workers)
    owns_transition = True
    shifts_proposal = False  # children are the model's own transitions; only the selection steers

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise ValueError(f"num_beams must be a positive integer, got {self.num_beams!r}")
        if not callable(self.branch) and (not isinstance(self.branch, int) or self.branch < 1):
            raise ValueError(f"branch must be a positive integer or a function of sigma, got {self.branch!r}")
        if self.selection not in _SELECTIONS:
            raise ValueError(f"selection must be one of {list(_SELECTIONS)}, got {self.selection!r}")
        if not (self.temperature > 0 and self.temperature < float("inf")):
            raise ValueError(f"temperature must be a positive finite number, got {self.temperature!r}")

    def check(self, ctx, x):
        if not ctx.solver.stochastic:
            raise ValueError(
                f"TreeSearchGuidance branches on random transitions, but solver {ctx.solver.name!r} is "
                "deterministic here; use 'ddpm', 'ddim' with eta > 0, or 'euler'/'heun' with churn > 0"
            )
        if x.shape[0] % self.num_beams:
            raise ValueError(
                f"the batch of {x.shape[0]} rows is not a multiple of num_beams={self.num_beams}; sample "
                "B * num_beams rows for B samples"
            )

    def children(self, sigma: float) -> int:
        n = self.branch(sigma) if callable(self.branch) else self.branch
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"branch({sigma:g}) returned {n!r}; it must return a positive integer")
        return n

    def transition(self, ctx, x, state, sigma, sigma_next):
        # the step to sigma = 0 returns x0-hat itself for most solvers: its children would be copies
        k, n = self.num_beams, self.children(sigma) if sigma_next > 0 else 1
        rows = x.shape[0]
        b = rows // k
        rep = torch.arange(rows, device=x.device).repeat_interleave(n)
        xr = x[rep]
        ctx.remember(xr, sigma, ctx.denoise(x, sigma)[rep])  # a beam's x0-hat is shared by its children
        cand, state = ctx.step(xr, take(state, rep), sigma, sigma_next)
        x0 = cand if sigma_next == 0 else ctx.denoise(cand, sigma_next)
        r = evaluate_reward(self.reward, x0, ctx, executor=self.executor, chunk_size=self.chunk_size).view(
            b, k * n
        )
        if self.selection == "top" or k * n == k:
            keep = r.topk(k, dim=1).indices
        else:
            p = torch.softmax(r.double() / self.temperature, dim=1)
            keep = torch.multinomial(p, k, replacement=False, generator=ctx.generator)
        keep = (keep + k * n * torch.arange(b, device=x.device)[:, None]).reshape(-1)
        x_next = cand[keep]
        if sigma_next > 0:
            ctx.remember(x_next, sigma_next, x0[keep])
        return x_next, take(state, keep)

    def finish(self, ctx, x):
        k = self.num_beams
        r = group(evaluate_reward(self.reward, x, ctx, executor=self.executor, chunk_size=self.chunk_size), k)
        order = r.argsort(dim=1, descending=True)
        ctx.info["beam_rewards"] = r.gather(1, order)
        rows = (order + k * torch.arange(r.shape[0], device=x.device)[:, None]).reshape(-1)
        return x[rows]
