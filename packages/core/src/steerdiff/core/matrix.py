"""The guidance matrix: every guidance family on every guided task, at equal budgets, in one protocol.

A *task* (``GuidedTask``) is a prior plus a family of guided problems: for each validation or test
instance it gives the guidance target — a differentiable ``loss`` where one exists, a ``reward`` (any Python
function, higher is better), a black-box ``forward`` model with its ``observation``, ``known`` entries — and
scores a batch of samples with the task's own metric. Which families apply follows from which targets the
task provides; a task may rule a family out with a reason.

``run_matrix`` runs every family on every task at each budget of network evaluations per sample, with the
same seeds for every family: the family's strength is chosen on the validation instances by the core's
automatic search (``steerdiff.core.tune``), then the test instances are scored once. Each cell holds the
metric's mean and standard error over test instances, its ratio to the unguided row, the measured costs
(network, forward-model and reward evaluations per sample) and the wall time.

Families and how a budget of B network evaluations per sample over S sampler steps is spent:

==============  ==============================================================================
unguided        S steps, one sample (the floor every family is measured against)
best_of_n       n = B // S unguided samples, the best by reward kept
dps             reconstruction guidance on ``loss``, B steps (one evaluation per step)
inpainting      replacement of ``known`` entries, B steps
scg             stochastic control guidance, n = B // S candidates per step
tree            tree search, 2 beams of n = B // (2 S) children, best beam kept
smc             Feynman–Kac steering with K = B // S particles, one particle drawn by the final weights
enkg            ensemble Kalman guidance on ``forward`` / ``observation``, J = B // (2 S) members
paper           the domain's seed paper's own method (its schedule, normalisation and defaults), as
                the task draws it with ``GuidedTask.paper`` at the same budget
==============  ==============================================================================
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .guidance import (
    EnsembleKalmanGuidance,
    FeynmanKacSteering,
    Inpainting,
    ReconstructionGuidance,
    StochasticControlGuidance,
)
from .guidance.search import TreeSearchGuidance
from .sampling import Costs, sample
from .tuning import LogRange, tune

__all__ = [
    "FAMILIES",
    "Cell",
    "GuidedTask",
    "PosteriorTask",
    "Target",
    "linear_gaussian_task",
    "ring_mixture_task",
    "run_cell",
    "run_matrix",
]

FAMILIES = ("unguided", "best_of_n", "dps", "inpainting", "scg", "tree", "smc", "enkg", "paper")
# the strength each family's automatic search tunes (families without one have nothing to tune)
STRENGTH = {
    "dps": LogRange(1e-3, 10.0),
    "smc": LogRange(1e-2, 1e2),
    "tree": LogRange(1e-2, 1e2),
    "enkg": LogRange(1e-2, 2.0),
}
TREE_BEAMS = 2


@dataclass
class Target:
    """What one guided problem steers toward; give what exists."""

    loss: Callable | None = None  # differentiable, lower is better: x0 (N, ...) -> (N,)
    reward: Callable | None = None  # any function, higher is better: x0 -> (N,)
    forward: Callable | None = None  # black-box model x0 -> (N, M), matched to observation (M,)
    observation: torch.Tensor | None = None
    known: tuple[torch.Tensor, torch.Tensor] | None = None  # (mask, values) of observed entries
    noise_std: float | None = None  # measurement noise of the observation, where known

    def selection_reward(self) -> Callable | None:
        """The reward selection methods use: the reward, or minus the loss."""
        if self.reward is not None:
            return self.reward
        if self.loss is not None:
            loss = self.loss
            return lambda x0: -loss(x0)
        return None


class GuidedTask:
    """One domain's guided problems. Subclass it and fill in the four methods and the attributes.

    ``prior()`` returns the denoiser and the shape of one sample; ``sigmas()`` the sampler's grid (S steps);
    ``instances(split, count)`` the ``(Target, context)`` pairs of a split ("validation" or "test");
    ``score(context, x)`` the task's metric of a batch of samples drawn for that instance: a number, or a
    dict whose first entry is the metric and whose other entries are reported beside it (``Cell.extras``).
    """

    name: str = "task"
    metric: str = "metric"
    lower_is_better: bool = True
    solver: str = "ddpm"  # a stochastic solver, so that selection and particle methods apply
    paper_family: str | None = None  # the family the domain's seed paper proposes, where there is one
    paper_strength: LogRange | None = None  # the range the "paper" family's strength is tuned over, if any
    # what EnKG returns per sample: "mean" (the ensemble mean, its estimate of the posterior mean) or "member"
    # (one member drawn at random: a sample, for metrics of samples or outputs that do not average, e.g. rolls)
    ensemble_output: str = "mean"
    settings: dict = {}  # overrides of run_cell's settings for this task (num_samples, validation, test, ...)
    device: torch.device | str = "cpu"  # where samples are drawn (the prior's device)

    def prior(self) -> tuple[Callable, tuple[int, ...]]:
        raise NotImplementedError

    def sigmas(self) -> torch.Tensor:
        raise NotImplementedError

    def instances(self, split: str, count: int) -> list[tuple[Target, Any]]:
        raise NotImplementedError

    def score(self, context: Any, x: torch.Tensor) -> float | dict[str, float]:
        raise NotImplementedError

    def paper(
        self, target: Target, budget: int, params: dict, num_samples: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, Costs]:
        """The seed paper's own method on one target at ``budget`` network evaluations per sample:
        ``num_samples`` samples and their costs (``params["scale"]`` is the tuned strength when
        ``paper_strength`` is set). Override it where the domain's method is not one of the families as the
        matrix runs them."""
        raise NotImplementedError

    def not_applicable(self, family: str, target: Target) -> str | None:
        """Why ``family`` does not apply to this task (None when it does); override to add reasons."""
        if family == "paper" and type(self).paper is GuidedTask.paper:
            return "no seed paper's method of its own (its family is one of the columns)"
        needs = {
            "best_of_n": (target.selection_reward(), "no reward or loss to select by"),
            "dps": (target.loss, "no differentiable loss"),
            "inpainting": (target.known, "no observed entries"),
            "scg": (target.selection_reward(), "no reward or loss to select by"),
            "tree": (target.selection_reward(), "no reward or loss to select by"),
            "smc": (target.selection_reward(), "no reward or loss to weight by"),
            "enkg": (
                target.forward if target.observation is not None else None,
                "no forward model and observation",
            ),
        }
        if family in needs and needs[family][0] is None:
            return needs[family][1]
        return None


@dataclass
class Cell:
    """One family on one task at one budget."""

    task: str
    family: str
    budget: int
    mean: float | None = None
    se: float | None = None
    relative: float | None = None  # mean / unguided mean at the same budget
    nfe: float | None = None  # network evaluations per sample, measured
    forward_evals: float | None = None  # per sample
    reward_evals: float | None = None  # per sample
    gradient_evals: float | None = None  # per sample (backward passes through the network)
    seconds: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    not_applicable: str | None = None
    error: str | None = None  # why scoring the test instances failed (the tuned strength made it diverge)
    extras: dict[str, float] = field(default_factory=dict)  # means of the task's other reported metrics
    scores: list[float] = field(default_factory=list)  # the metric per test instance (same instances per row)
    tuning: list[dict[str, Any]] = field(default_factory=list)


def _draw(
    family: str, task: GuidedTask, target: Target, budget: int, params: dict, num_samples: int, seed: int
) -> tuple[torch.Tensor, Costs]:
    """``num_samples`` samples of one family for one target at one budget; returns samples and costs."""
    gen = torch.Generator(device=task.device).manual_seed(seed)
    if family == "paper":
        x0, costs = task.paper(target, budget, params, num_samples, gen)
        costs.num_samples = num_samples
        return x0, costs
    denoiser, shape = task.prior()
    sigmas = task.sigmas()
    steps = len(sigmas) - 1
    per = 1  # rows per output sample
    guidance: list = []
    solver = task.solver
    grid = sigmas
    reward: Any = target.selection_reward()
    if family in ("dps", "inpainting"):
        from .schedules import EDM, sigma_grid

        grid = sigma_grid(EDM(sigma_min=float(sigmas[-2]), sigma_max=float(sigmas[0])), max(budget, 1))
        if family == "dps":
            guidance = [ReconstructionGuidance(target.loss, scale=params["scale"])]  # type: ignore[arg-type]
        else:
            mask, values = target.known  # type: ignore[misc]
            guidance = [Inpainting(values=values, mask=mask)]
    elif family == "best_of_n":
        per = max(budget // steps, 1)
    elif family == "scg":
        guidance = [StochasticControlGuidance(reward, num_candidates=max(budget // steps, 1))]
    elif family == "tree":
        per = TREE_BEAMS
        branch = max(budget // (steps * TREE_BEAMS), 1)
        guidance = [
            TreeSearchGuidance(
                reward, num_beams=per, branch=branch, selection="sample", temperature=params["scale"]
            )
        ]
    elif family == "smc":
        per = max(budget // steps, 2)
        guidance = [FeynmanKacSteering(reward, per, lam=params["scale"])]
    elif family == "enkg":
        per = max(budget // (2 * steps), 2)
        solver = "euler"
        guidance = [
            EnsembleKalmanGuidance(
                target.forward,  # type: ignore[arg-type]  # applicability checked by run_cell
                target.observation,  # type: ignore[arg-type]
                per,
                scale=params["scale"],
                noise_std=target.noise_std,
                ode_steps=1,
            )
        ]
    elif family != "unguided":
        raise ValueError(f"unknown family {family!r}; families: {FAMILIES}")
    x = float(grid[0]) * torch.randn(num_samples * per, *shape, generator=gen, device=task.device)
    out = sample(denoiser, x, grid, solver, guidance=guidance, generator=gen)
    x0 = out.x
    if family == "best_of_n":
        r = reward(x0).view(num_samples, per)
        out.costs.reward_evals += x0.shape[0]
        x0 = x0.view(num_samples, per, *shape)[torch.arange(num_samples), r.argmax(1)]
    elif family == "tree":
        x0 = x0[::per]
    elif family == "smc":
        w = out.info["weights"]  # (num_samples, K)
        pick = torch.multinomial(w.double(), 1, generator=gen)[:, 0]
        x0 = x0.view(num_samples, per, *shape)[torch.arange(num_samples), pick]
    elif family == "enkg":
        members = x0.view(num_samples, per, *shape)
        if task.ensemble_output == "mean":
            x0 = members.mean(1)  # the ensemble mean is EnKG's estimate of the posterior mean
        elif task.ensemble_output == "member":
            pick = torch.randint(per, (num_samples,), generator=gen, device=gen.device).to(members.device)
            x0 = members[torch.arange(num_samples, device=members.device), pick]
        else:
            raise ValueError(f"ensemble_output must be 'mean' or 'member', got {task.ensemble_output!r}")
    costs = out.costs
    costs.num_samples = num_samples  # costs per output sample, whatever rows it took
    return x0, costs


def _evaluate(family, task, instances, budget, params, num_samples, seed):
    """Scores (the metric per instance), the other metrics per instance, summed costs and seconds."""
    scores, extras, total = [], [], Costs(num_samples=0)
    t0 = time.perf_counter()
    for i, (target, context) in enumerate(instances):
        x, costs = _draw(family, task, target, budget, params, num_samples, seed + 7919 * i)
        result = task.score(context, x)
        if isinstance(result, dict):
            values = [float(v) for v in result.values()]
            scores.append(values[0])
            extras.append(dict(zip(list(result)[1:], values[1:])))
        else:
            scores.append(float(result))
        for k, v in vars(costs).items():
            setattr(total, k, getattr(total, k) + v)
    return scores, extras, total, time.perf_counter() - t0


def run_cell(
    task: GuidedTask,
    family: str,
    budget: int,
    *,
    validation: int = 2,
    test: int = 4,
    num_samples: int = 16,
    tune_budget: int = 6,
    seed: int = 0,
) -> Cell:
    """One cell of the matrix: tune the family's strength on validation instances, score test instances."""
    cell = Cell(task=task.name, family=family, budget=budget)
    val = task.instances("validation", validation)
    tests = task.instances("test", test)
    reason = task.not_applicable(family, tests[0][0])
    steps = len(task.sigmas()) - 1
    if reason is None and family in ("best_of_n", "scg", "smc") and budget < 2 * steps:
        reason = f"the budget {budget} is below two samples' worth of {steps} steps"
    if reason is None and family in ("tree", "enkg") and budget < 4 * steps:
        reason = f"the budget {budget} is below four samples' worth of {steps} steps"
    if reason is not None:
        cell.not_applicable = reason
        return cell
    sign = 1.0 if task.lower_is_better else -1.0
    params: dict[str, Any] = {}
    space = task.paper_strength if family == "paper" else STRENGTH.get(family)
    if space is not None:

        def objective(p):
            try:
                scores, _, _, _ = _evaluate(family, task, val, budget, p, num_samples, seed + 10_000)
            except ValueError:  # a strength that makes the sampler fail counts as the worst
                return math.inf
            return sign * sum(scores) / len(scores)

        found = tune(objective, {"scale": space}, budget=tune_budget)
        params = dict(found.best)
        cell.tuning = [{"scale": t["params"]["scale"], "validation": sign * t["score"]} for t in found.trials]
    try:
        scores, extras, costs, seconds = _evaluate(family, task, tests, budget, params, num_samples, seed)
    except ValueError as err:  # the sampler or the target failed (non-finite values): the cell says so
        cell.params, cell.error = params, str(err).splitlines()[0]
        return cell
    n = len(scores)
    for name in extras[0] if extras else ():
        cell.extras[name] = sum(e[name] for e in extras) / n
    mean = sum(scores) / n
    var = sum((s - mean) ** 2 for s in scores) / max(n - 1, 1)
    cell.mean, cell.se, cell.seconds, cell.params = mean, math.sqrt(var / n), seconds, params
    cell.scores = scores
    per = costs.num_samples or 1
    cell.nfe = costs.network_evals / per
    cell.forward_evals = costs.forward_evals / per
    cell.reward_evals = costs.reward_evals / per
    cell.gradient_evals = costs.gradient_evals / per
    return cell


def run_matrix(
    tasks: Sequence[GuidedTask], budgets: Sequence[int], families: Sequence[str] = FAMILIES, **kwargs
) -> list[Cell]:
    """Every family on every task at every budget (``run_cell``'s settings apply to all of them).

    A task's ``settings`` override these for that task (``budgets`` included), so that a large prior can use
    fewer samples or instances than a small one.
    """
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; choose from {FAMILIES}")
    cells = []
    for task in tasks:
        own = dict(task.settings)
        for budget in own.pop("budgets", budgets):
            row = [run_cell(task, f, budget, **{**kwargs, **own}) for f in families]
            floor = next((c for c in row if c.family == "unguided" and c.mean is not None), None)
            for c in row:
                if floor is not None and c.mean is not None and floor.mean:
                    c.relative = c.mean / floor.mean
            cells.extend(row)
    return cells


class PosteriorTask(GuidedTask):
    """An exact prior (a Gaussian mixture) and linear measurements y = A x + noise: the posterior is exact.

    The metric is the distance between the samples' mean and the exact posterior mean, so every family is
    measured against the answer itself. The loss is the negative log-likelihood, the reward the
    log-likelihood, the forward model ``x -> A x``.
    """

    metric = "|sample mean - posterior mean|"
    lower_is_better = True

    def __init__(self, prior, A: torch.Tensor, noise_std: float, steps: int = 16, name: str = "posterior"):
        from .schedules import EDM, sigma_grid

        self.name = name
        self._prior = prior
        self.A = torch.as_tensor(A, dtype=prior.means.dtype)
        self.noise_std = float(noise_std)
        self._sigmas = sigma_grid(EDM(), steps)

    def prior(self):
        return self._prior, (self._prior.dim,)

    def sigmas(self):
        return self._sigmas

    def instances(self, split, count):
        base = {"validation": 1, "test": 2}[split] * 1_000_003
        out = []
        for i in range(count):
            gen = torch.Generator().manual_seed(base + i)
            truth = self._prior.sample(1, gen)[0]
            y = self.A @ truth + self.noise_std * torch.randn(
                self.A.shape[0], generator=gen, dtype=truth.dtype
            )
            A, s = self.A, self.noise_std

            def loss(x0, y=y, A=A, s=s):
                return ((x0.to(A.dtype) @ A.T - y) ** 2).sum(1) / (2 * s**2)

            target = Target(
                loss=loss,
                reward=lambda x0, loss=loss: -loss(x0),
                forward=lambda x0, A=A: x0.to(A.dtype) @ A.T,
                observation=y,
                noise_std=s,
            )
            out.append((target, self._prior.posterior(self.A, y, self.noise_std).mean()))
        return out

    def score(self, context, x):
        return float((x.to(context.dtype).mean(0) - context).norm())


def linear_gaussian_task(d: int = 16, m: int = 4, noise_std: float = 0.3, steps: int = 16, seed: int = 0):
    """A correlated Gaussian prior in d dimensions and m random linear measurements."""
    from .analytic import gaussian

    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    eig = torch.logspace(math.log10(0.1), math.log10(2.0), d, dtype=torch.float64)
    prior = gaussian(torch.randn(d, generator=gen, dtype=torch.float64), (q * eig) @ q.T)
    A = torch.randn(m, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
    return PosteriorTask(prior, A, noise_std, steps, name=f"linear-Gaussian d={d}")


def ring_mixture_task(noise_std: float = 0.3, steps: int = 16):
    """Eight Gaussians on a ring, the first coordinate observed: a two-mode posterior."""
    from .toy import ring_mixture

    prior = ring_mixture()
    return PosteriorTask(
        prior, torch.tensor([[1.0, 0.0]], dtype=prior.means.dtype), noise_std, steps, name="2-D ring mixture"
    )
