"""One sampling loop for every solver, with guidance hooks and cost accounting.

The loop walks a decreasing grid of noise levels. At each step it

1. lets every guidance adjust the particles before the step (``before_step``: ensemble updates such as EnKG);
2. takes the solver step with a denoiser wrapped by every guidance's ``denoise`` (estimate corrections:
   classifier-free, classifier, reconstruction guidance ...). One guidance may own the ``transition``
   instead (transition selection: SCG, SMC), drawing candidates or particles through the same step;
3. lets every guidance adjust the result (``after_step``: replacement of known entries).

Costs are counted in sample units: ``network_evals`` adds the batch size of every network call, so
``nfe`` (= network_evals / num_samples) is the familiar number of function evaluations per sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .denoiser import Denoiser, expand_sigma
from .solvers import Solver, get_solver

__all__ = ["Costs", "SampleResult", "SamplingContext", "sample", "take"]


@dataclass
class Costs:
    """What a guided sample cost. Evaluations are counted per batch item; calls per batched call."""

    num_samples: int = 1
    network_evals: int = 0
    network_calls: int = 0
    forward_evals: int = 0
    forward_calls: int = 0
    gradient_evals: int = 0
    reward_evals: int = 0
    reward_calls: int = 0

    @property
    def nfe(self) -> float:
        """Network evaluations per sample."""
        return self.network_evals / self.num_samples

    def as_dict(self) -> dict[str, float]:
        d = {k: v for k, v in vars(self).items()}
        d["nfe"] = self.nfe
        return d


@dataclass
class SampleResult:
    x: torch.Tensor
    costs: Costs
    info: dict[str, Any] = field(default_factory=dict)


def take(state, index: torch.Tensor):
    """Index every tensor in a (nested tuple) solver state along the batch dimension."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state[index]
    if isinstance(state, tuple):
        return tuple(take(s, index) for s in state)
    return state


class _CountingDenoiser:
    """Calls the user's denoiser with sigma broadcast to the batch and counts every evaluation."""

    def __init__(self, denoiser: Callable, costs: Costs):
        self.denoiser = denoiser
        self.costs = costs

    def __call__(self, x: torch.Tensor, sigma, **kwargs) -> torch.Tensor:
        # a Denoiser takes the float directly (its fast path); other callables get sigma of shape (B,)
        scalar_ok = isinstance(self.denoiser, Denoiser) and isinstance(sigma, float)
        out = self.denoiser(x, sigma if scalar_ok else expand_sigma(sigma, x), **kwargs)
        if out.shape != x.shape:
            raise ValueError(f"the denoiser returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
        self.costs.network_evals += x.shape[0]
        self.costs.network_calls += 1
        return out


@dataclass
class SamplingContext:
    """What guidance hooks see: the model, the guided denoiser, the grid, the generator and the costs."""

    model: _CountingDenoiser
    solver: Solver
    sigmas: list[float]
    generator: torch.Generator | None
    costs: Costs
    info: dict[str, Any]
    step_index: int = 0
    guidance: Sequence = ()
    _cache: tuple | None = None

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """x0-hat with every active estimate correction applied (the denoiser the solver uses)."""
        if self._cache is not None and self._cache[0] is x and self._cache[1] == sigma:
            return self._cache[2]
        fn = self.model
        for g in self.guidance:
            fn = g.wrap_denoise(fn, self, sigma)
        return fn(x, sigma)

    def unguided(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """x0-hat of the model alone, without any guidance (counted like every network call)."""
        return self.model(x, sigma)

    def remember(self, x: torch.Tensor, sigma: float, x0: torch.Tensor) -> None:
        """Tell the loop that x0-hat at (x, sigma) is known, so the next step does not evaluate it again."""
        self._cache = (x, sigma, x0)

    def step(self, x: torch.Tensor, state, sigma: float, sigma_next: float):
        """One solver step with the guided denoiser."""
        return self.solver.step(self.denoise, x, sigma, sigma_next, lambda: self.randn_like(x), state)


def sample(
    denoiser: Callable,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    solver: str | Solver = "ddim",
    guidance: Sequence = (),
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
    **solver_options,
) -> SampleResult:
    """Integrate from ``x`` (noise at ``sigmas[0]``, e.g. ``sigmas[0] * randn``) down the grid.

    ``denoiser(x, sigma) -> x0_hat`` takes sigma of shape (B,). ``sigmas`` must be decreasing and
    non-negative (``schedules.sigma_grid`` builds one). Returns the final sample, the costs and whatever
    the guidance recorded in ``info`` (weights, ESS traces ...).
    """
    solver = get_solver(solver, **solver_options)
    sig = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    if len(sig) < 2:
        raise ValueError(f"need at least two noise levels (start and end), got {len(sig)}")
    if any(not math.isfinite(s) or s < 0 for s in sig) or any(a <= b for a, b in zip(sig, sig[1:])):
        raise ValueError("sigmas must be finite, non-negative and strictly decreasing, e.g. sigma_grid(...)")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a batched tensor of shape (batch, ...) holding the initial noise")
    if not torch.isfinite(x).all():
        raise ValueError("the initial x contains NaN or inf")
    guidance = list(guidance)
    owners = [g for g in guidance if g.owns_transition]
    if len(owners) > 1:
        names = ", ".join(type(g).__name__ for g in owners)
        raise ValueError(f"only one transition-selection guidance can run at a time, got {names}")
    costs = Costs(num_samples=x.shape[0])
    ctx = SamplingContext(
        model=_CountingDenoiser(denoiser, costs),
        solver=solver,
        sigmas=sig,
        generator=generator,
        costs=costs,
        info={},
        guidance=guidance,
    )
    for g in guidance:
        g.check(ctx, x)
    owner = owners[0] if owners else None
    steps = range(len(sig) - 1)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"sampling ({solver.name})", leave=False)
    with torch.no_grad():  # gradient guidance turns autograd on where it needs it
        x = _run(ctx, x, sig, steps, guidance, owner, callback)
        for g in guidance:
            x = g.finish(ctx, x)
    return SampleResult(x=x, costs=costs, info={k: v for k, v in ctx.info.items() if not k.startswith("_")})


def _run(ctx, x, sig, steps, guidance, owner, callback):
    state = None
    for i in steps:
        ctx.step_index = i
        s, s_next = sig[i], sig[i + 1]
        for g in guidance:
            if g.active(s):
                x = g.before_step(ctx, x, s, s_next)
        if owner is not None and owner.active(s):
            x, state = owner.transition(ctx, x, state, s, s_next)
        else:
            x, state = ctx.step(x, state, s, s_next)
        for g in guidance:
            if g.active(s):
                x = g.after_step(ctx, x, s, s_next)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s, "sigma_next": s_next, "costs": ctx.costs})
    return x
