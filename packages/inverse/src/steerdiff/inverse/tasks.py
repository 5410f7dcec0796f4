"""The inverse problems as guided tasks of the core's guidance matrix (``steerdiff.core.matrix``).

* :class:`NavierStokesTask` — recover the initial vorticity of 2-D Navier-Stokes from its final vorticity,
  every ``downsample``-th grid point observed with Gaussian noise (the EnKG paper's problem), with the
  domain's trained field prior (:func:`steerdiff.inverse.benchmark.prepare`: trained once, then loaded from
  the cache).
* :class:`LinearTask` — sparse noisy point observations of a Gaussian random field, with the field's exact
  denoiser as the prior: the posterior is Gaussian and known, so its mean is reported beside the samples.

Each instance gives every target the domain has: the black-box ``forward`` model with its ``observation`` and
``noise_std`` (EnKG), the Gaussian misfit ``loss`` ||G(x) - y||^2 / (2 s^2) (differentiable: DPS on
Navier-Stokes differentiates through the spectral solver), the ``reward`` -loss (best-of-n, SCG, tree search,
SMC) and, where pixels of the unknown itself are observed (the linear problem), the ``known`` entries
(inpainting). Every one of them calls the problem's :class:`~steerdiff.inverse.forward.ForwardModel`, whose
counter gives the extra "fwd evals/sample" of each cell: the simulator runs of every family, whichever cost
column the core books them under (forward, reward or gradient evaluations).

Validation and test truths are the benchmark's held-out fields (seeds 20000 and 10000), disjoint from the
prior's training fields (seed 0). The metric is the relative L2 error of each sample to the truth, averaged
over the samples; the error of the samples' mean, the relative misfit of the samples' measurements and the
forward evaluations per sample are reported beside it.

``guided_tasks(quick)`` gives both tasks: ``quick`` on a 16x16 grid with a prior trained in seconds (it checks
the protocol; the prior is not useful), otherwise the benchmark's full 32x32 setting and its cached prior.
"""

from __future__ import annotations

from pathlib import Path

import torch

from steerdiff.core.matrix import GuidedTask, Target

from .benchmark import FULL, QUICK, Setting, default_cache, override, prepare
from .methods import MethodConfig, sigma_steps
from .metrics import relative_l2
from .problems import InverseProblem, LinearProblem

__all__ = ["InverseTask", "LinearTask", "NavierStokesTask", "guided_tasks"]

SEEDS = {"validation": 20_000, "test": 10_000}  # the benchmark's held-out fields (training fields: seed 0)


class InverseTask(GuidedTask):
    """One inverse problem, a prior over its fields, and instances (truth, noisy measurement) per split."""

    metric = "relative L2 error of samples"
    lower_is_better = True
    paper_family = "enkg"

    def __init__(
        self,
        problem: InverseProblem,
        denoiser,
        steps: int,
        name: str,
        settings: dict | None = None,
        device="cpu",
    ):
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if problem.forward.noise_std <= 0:
            raise ValueError(
                f"the {problem.name} problem has noise_std {problem.forward.noise_std}; the Gaussian misfit "
                "and EnKG need a positive measurement noise, e.g. noise_std=1.0"
            )
        self.problem, self.denoiser, self.name = problem, denoiser, name
        self.settings = dict(settings or {})
        self.device = torch.device(device)
        self._sigmas = sigma_steps(denoiser, MethodConfig(num_steps=steps))
        self._instances: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def prior(self):
        return self.denoiser, (1, *self.problem.field_shape)

    def sigmas(self):
        return self._sigmas

    def _fields(self, split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``count`` truths of a split and their noisy measurements (computed once, then kept; drawn
        on the CPU, so that every device gets the same instances)."""
        if split not in SEEDS:
            raise ValueError(f"unknown split {split!r}; choose 'validation' or 'test'")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        have = self._instances.get(split)
        if have is None or have[0].shape[0] < count:
            g = torch.Generator().manual_seed(SEEDS[split])
            truth = self.problem.sample_fields(count, g)
            y = self.problem.forward.measure(truth, g)
            self._instances[split] = (truth.to(self.device), y.to(self.device))
        truth, y = self._instances[split]
        return truth[:count], y[:count]

    def target(self, y: torch.Tensor) -> Target:
        """Every guidance target for one measurement ``y`` (the observation's shape, no batch dimension)."""
        forward, s = self.problem.forward, self.problem.forward.noise_std

        def loss(x0):
            return (forward(x0) - y).flatten(1).pow(2).sum(1) / (2 * s**2)

        return Target(
            loss=loss,
            reward=lambda x0: -loss(x0),
            forward=lambda x0: forward(x0).flatten(1),
            observation=y.flatten(),
            noise_std=s,
        )

    def instances(self, split, count):
        truth, y = self._fields(split, count)
        return [(self.target(y[i]), {"truth": truth[i], "y": y[i]}) for i in range(count)]

    def score(self, context, x):
        forward = self.problem.forward
        evals = forward.evals  # the simulator runs of the draw that made x (reset here, after each draw)
        truth = context["truth"][None].to(x.dtype)
        with torch.no_grad():
            misfit = forward.misfit(forward.simulate(x), context["y"][None].to(x.dtype))
        forward.reset_counts()
        return {
            "rel L2": float(relative_l2(x, truth.expand_as(x)).mean()),
            "rel L2 of mean": float(relative_l2(x.mean(0, keepdim=True), truth).mean()),
            "misfit": float(misfit.mean()),
            "fwd evals/sample": evals / x.shape[0],
        }


class NavierStokesTask(InverseTask):
    """Navier-Stokes initial vorticity from the noisy, subsampled final vorticity, with the trained prior."""

    def __init__(
        self,
        setting: Setting = FULL,
        noise_std: float = 1.0,
        cache=None,
        device="cpu",
        settings: dict | None = None,
        progress: bool = False,
    ):
        problem = setting.problem(noise_std)
        prior = prepare(setting, Path(cache) if cache is not None else default_cache(), device, progress)
        name = f"Navier-Stokes vorticity {setting.size}x{setting.size}, T={setting.horizon:g}"
        super().__init__(problem, prior, setting.num_steps, name, settings, device)

    def not_applicable(self, family, target):
        if family == "inpainting":
            return "the final vorticity is observed, no entry of the initial field"
        return super().not_applicable(family, target)


class LinearTask(InverseTask):
    """A Gaussian random field seen at every ``stride``-th pixel with noise; the exact Gaussian prior."""

    def __init__(
        self,
        size: int = 32,
        stride: int = 2,
        noise_std: float = 0.1,
        steps: int = 16,
        settings: dict | None = None,
        device="cpu",
    ):
        problem = LinearProblem(size=size, stride=stride, noise_std=noise_std, on_blowup="raise")
        name = f"sparse GRF pixels {size}x{size}, stride {stride}"
        super().__init__(problem, problem.grf, steps, name, settings, device)
        self._posterior: dict[str, torch.Tensor] = {}

    def _mask(self) -> torch.Tensor:
        mask = torch.zeros(1, *self.problem.field_shape, dtype=torch.bool, device=self.device)
        stride = self.problem.forward.stride
        mask[..., ::stride, ::stride] = True
        return mask

    def target(self, y):
        target = super().target(y)
        mask = self._mask()
        values = torch.zeros(mask.shape, dtype=y.dtype, device=y.device)
        values[mask] = y.flatten()
        target.known = (mask, values)
        return target

    def instances(self, split, count):
        truth, y = self._fields(split, count)
        have = self._posterior.get(split)
        if have is None or have.shape[0] < count:  # the exact posterior mean, computed once per split
            self._posterior[split] = self.problem.posterior(y.cpu())[0].to(self.device)
        mean = self._posterior[split][:count]
        pairs = super().instances(split, count)
        for (_, context), m in zip(pairs, mean):
            context["posterior_mean"] = m
        return pairs

    def score(self, context, x):
        out = super().score(context, x)
        post = context["posterior_mean"][None].to(x.dtype)
        out["mean vs posterior mean"] = float(relative_l2(x.mean(0, keepdim=True), post).mean())
        out["posterior mean rel L2"] = float(relative_l2(post, context["truth"][None].to(x.dtype)).mean())
        return out


# the quick Navier-Stokes setting: a 16x16 grid (dt 0.02 keeps the CFL number of the 32x32 grid at 0.01), a
# short horizon (5 solver steps) and a prior trained for 40 steps on 64 fields (the benchmark's quick prior at
# this grid: it checks the protocol, it is not a useful prior)
QUICK_NS = override(QUICK, size=16, dt=0.02, horizon=0.1, num_steps=4)
# the matrix's settings per task (samples per instance, instances, tuning trials, budgets): DPS takes one
# gradient step through the Navier-Stokes solver per network evaluation, B steps in a row at a budget of B
# that no batching shortens, so the Navier-Stokes rows get few samples and instances, and in the quick run
# 4 sampler steps and budgets 16 and 64 (the other tasks' quick runs: 8 steps, budgets 32 and 128)
QUICK_SETTINGS = {
    "ns": {"num_samples": 2, "validation": 1, "test": 2, "tune_budget": 2, "budgets": (16, 64)},
    "linear": {"num_samples": 8, "validation": 1, "test": 2, "tune_budget": 2},
}
FULL_SETTINGS = {
    "ns": {"num_samples": 2, "validation": 1, "test": 4, "tune_budget": 3},
    "linear": {"num_samples": 16, "validation": 2, "test": 8, "tune_budget": 6},
}


def guided_tasks(quick: bool = False, device="cpu", cache=None) -> list[GuidedTask]:
    """The inverse domain's guided tasks: Navier-Stokes (the trained prior, cached under ``cache``, default
    ``$STEERDIFF_CACHE/inverse_ns``; trained on first use) and the linear Gaussian-random-field problem."""
    if quick:
        ns = NavierStokesTask(QUICK_NS, cache=cache, device=device, settings=QUICK_SETTINGS["ns"])
        linear = LinearTask(size=16, stride=2, steps=8, settings=QUICK_SETTINGS["linear"], device=device)
    else:
        ns = NavierStokesTask(FULL, cache=cache, device=device, settings=FULL_SETTINGS["ns"])
        linear = LinearTask(size=32, stride=2, steps=16, settings=FULL_SETTINGS["linear"], device=device)
    return [ns, linear]
