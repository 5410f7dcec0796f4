"""One sampling loop for every solver, with guidance hooks and cost accounting.

The loop walks a decreasing grid of noise levels. At each step it

1. decides, once, which guidance is on for this step (:meth:`Guidance.is_active`: its noise interval and step
   window, judged at the step's *starting* sigma and index; this holds for every evaluation in the step);
2. lets every active guidance adjust the particles before the step (``before_step``: ensemble updates, EnKG);
3. takes the solver step with a denoiser wrapped by every active guidance's ``denoise`` (estimate corrections:
   classifier-free, classifier, reconstruction guidance ...). One guidance may own the ``transition``
   instead (transition selection: SCG, SMC), drawing candidates or particles through the same step;
4. lets every active guidance adjust the result (``after_step``: replacement of known entries).

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


def _changes_estimate(g) -> bool:
    from .guidance.base import Guidance

    t = type(g)
    return any(
        getattr(t, h) is not getattr(Guidance, h) for h in ("denoise", "wrap_denoise", "wrap_inactive")
    )


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
    _active: tuple[bool, ...] | None = None  # per guidance: on for the current step (set by the loop)
    defer_checks: bool = False  # finite checks at the end of the run (one host-device sync, not one per step)
    _pending: list = field(default_factory=list)

    def check_finite(self, values: torch.Tensor, message: Callable[[torch.Tensor], str]) -> None:
        """Refuse NaN or inf in ``values`` (a reward, a loss, forward-model outputs: one row per sample) with
        ``message(bad)``, ``bad`` the rows that hold one.

        Immediate by default. With ``defer_checks`` (the default on accelerators) the check is queued on the
        device and made once when the run ends, so that the loop never waits for the device; the run then
        raises for the first step where it failed."""
        bad = ~torch.isfinite(values.detach().reshape(values.shape[0], -1)).all(1)
        if not self.defer_checks:
            if bad.any():
                raise ValueError(message(bad))
            return
        self._pending.append((bad.any(), bad, message, self.step_index))

    def flush_checks(self) -> None:
        """Make the queued finite checks (one synchronisation); raise for the first that failed."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        failed = torch.stack([p[0] for p in pending]).cpu()
        if failed.any():
            _, bad, message, step = pending[int(failed.nonzero()[0, 0])]
            raise ValueError(f"{message(bad.cpu())} (at step {step} of {len(self.sigmas) - 1})")

    def is_active(self, g) -> bool:
        """Whether guidance ``g`` is on for the current step (decided once per step by the loop)."""
        if self._active is None:
            return True
        return next((on for h, on in zip(self.guidance, self._active) if h is g), False)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """x0-hat with every active estimate correction applied (the denoiser the solver uses)."""
        c = self._cache
        if c is not None and c[0] is x and c[1] == sigma and c[3] == self._denoise_key():
            return c[2]
        fn = self.model
        for i, g in enumerate(self.guidance):
            on = g.active(sigma) if self._active is None else self._active[i]
            fn = g.wrap_denoise(fn, self, sigma) if on else g.wrap_inactive(fn, self, sigma)
        return fn(x, sigma)

    def unguided(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """x0-hat of the model alone, without any guidance (counted like every network call)."""
        return self.model(x, sigma)

    def remember(self, x: torch.Tensor, sigma: float, x0: torch.Tensor) -> None:
        """Tell the loop that x0-hat at (x, sigma) is known, so the next step does not evaluate it again.

        The value is reused only while the same guidance is on: at the edge of an interval or window the next
        step evaluates x0-hat afresh with its own guidance."""
        self._cache = (x, sigma, x0, self._denoise_key())

    def _denoise_key(self) -> tuple[bool, ...] | None:
        """Which of the guidance that change x0-hat are on: what a remembered x0-hat depends on."""
        if self._active is None:
            return None
        return tuple(on for g, on in zip(self.guidance, self._active) if _changes_estimate(g))

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
    allow_nonzero_end: bool = False,
    defer_checks: bool | None = None,
    **solver_options,
) -> SampleResult:
    """Integrate from ``x`` (noise at ``sigmas[0]``, e.g. ``sigmas[0] * randn``) down the grid.

    ``denoiser(x, sigma) -> x0_hat`` takes sigma of shape (B,). ``sigmas`` must be decreasing and
    non-negative and end at 0 (``schedules.sigma_grid`` builds one); a grid that stops above 0 returns samples
    that still carry that much noise, so it is refused unless ``allow_nonzero_end=True`` (e.g. to run part of
    a grid, then continue from the result). ``guidance``: :class:`~steerdiff.core.guidance.Guidance` objects
    (a list, or one alone). Returns the final sample, the costs and whatever the guidance recorded in
    ``info`` (weights, ESS traces ...).

    Rewards, losses and forward-model outputs are checked for NaN and inf. ``defer_checks`` (default: on when
    ``x`` is on an accelerator, off on the CPU) makes those checks once at the end of the run instead of at
    every step, so the loop never waits for the device; a failure then names its step.
    """
    from .guidance.base import Guidance

    solver = get_solver(solver, **solver_options)
    sig = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    if len(sig) < 2:
        raise ValueError(f"need at least two noise levels (start and end), got {len(sig)}")
    if any(not math.isfinite(s) or s < 0 for s in sig) or any(a <= b for a, b in zip(sig, sig[1:])):
        raise ValueError("sigmas must be finite, non-negative and strictly decreasing, e.g. sigma_grid(...)")
    if sig[-1] != 0 and not allow_nonzero_end:
        raise ValueError(
            f"the step grid ends at sigma={sig[-1]:.4g}, not 0, so the samples would still carry that much "
            f"noise; end it at 0 (sigma_grid does), or pass allow_nonzero_end=True to stop early on purpose"
        )
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a batched tensor of shape (batch, ...) holding the initial noise")
    if x.shape[0] == 0:
        raise ValueError(
            f"x has an empty batch (shape {tuple(x.shape)}); pass at least one sample of initial noise"
        )
    if not torch.isfinite(x).all():
        raise ValueError("the initial x contains NaN or inf")
    guidance = [guidance] if isinstance(guidance, Guidance) else list(guidance)
    for i, g in enumerate(guidance):
        if not isinstance(g, Guidance):
            what = "a function" if callable(g) else f"a {type(g).__name__}"
            name = getattr(g, "__name__", "f") if callable(g) else "f"
            raise ValueError(
                f"guidance[{i}] is {what} ({g!r}), not a Guidance; pass guidance objects from "
                f"steerdiff.core.guidance, e.g. ReconstructionGuidance({name}) for a differentiable loss of "
                f"x0-hat, StochasticControlGuidance({name}) or FeynmanKacSteering({name}, K) for a reward"
            )
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
        defer_checks=x.device.type != "cpu" if defer_checks is None else bool(defer_checks),
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
    ctx.flush_checks()
    return SampleResult(x=x, costs=costs, info={k: v for k, v in ctx.info.items() if not k.startswith("_")})


def _run(ctx, x, sig, steps, guidance, owner, callback):
    state, n = None, len(sig) - 1
    for i in steps:
        ctx.step_index = i
        s, s_next = sig[i], sig[i + 1]
        # the one place that decides which guidance is on: the step's starting sigma and index, for every hook
        # and every evaluation of this step (Heun's second one, churn's raised level, candidates)
        ctx._active = on = tuple(g.is_active(s, i, n) for g in guidance)
        for g, g_on in zip(guidance, on):
            if g_on:
                x = g.before_step(ctx, x, s, s_next)
        if owner is not None and ctx.is_active(owner):
            x, state = owner.transition(ctx, x, state, s, s_next)
        else:
            x, state = ctx.step(x, state, s, s_next)
        for g, g_on in zip(guidance, on):
            if g_on:
                x = g.after_step(ctx, x, s, s_next)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s, "sigma_next": s_next, "costs": ctx.costs})
    return x
