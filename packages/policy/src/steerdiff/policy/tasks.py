"""Policy-guided synthesis as a task of the core's guidance matrix (``steerdiff.core.matrix``).

The prior is the trajectory diffusion model trained on an offline dataset (the policy benchmark's, cached
under ``cache_dir("policy_pgd")``); an instance is a *target policy*, a TD3+BC agent trained on the same
data with its own seed and stopped at one of several training stages (validation and test agents have
different seeds, so no test policy is seen while a strength is chosen). The guidance target is the target
policy's log-likelihood of the sample's actions given its states, summed over the window::

    loss(x0) = - sum_t log pi(a_t | s_t)       (a differentiable loss: DPS; minus it is every selector's reward)

Metric: the target policy's negative log-likelihood of the synthesized actions above its minimum at the same
state, ``log pi(mu(s) | s) - log pi(a | s)``, per transition (nats; 0 when every action is the policy's own
mode, so the ratio to unguided is a ratio of errors). Reported beside it: the plain negative log-likelihood
and the dynamics error, the mean squared error between each synthetic next state and the simulator's from
the same state and action (``steerdiff.policy.dynamics_error``). With a model trained on padded windows (a
valid channel) padding rows are left out of the likelihood, as ``PolicyGuidance`` leaves them out; the
benchmark's models that ``guided_tasks`` uses have no padding, so every row counts.

How the seed paper's guidance sits in the matrix: the ``paper`` column (``PolicySynthesisTask.paper``) is
policy-guided diffusion (Jackson et al. 2024) exactly as this domain synthesizes data
(``PolicyGuidedPipeline.synthesizer`` and ``PolicyGuidance`` with their defaults): Heun on the model's own
Karras grid (sigma 80 to 0.002, no churn), every evaluation's clean estimate moved along
``lambda_k * g / ||g||`` in its action channels, g the gradient of the target policy's log-likelihood taken *at*
the clean estimate (no backpropagation through the denoiser), ``lambda_k`` the paper's schedule (cosine 0.3,
no guidance on the last step); the tuned strength is the pipeline's ``coeff``. At a budget of B network
evaluations per sample it takes ``(B + 1) // 2`` Heun steps (2 evaluations a step, one on the last: 2 S - 1 <= B).
The matrix's ``dps`` family (this task's ``paper_family``, the closest general family) uses the same gradient
of the same log-likelihood but takes it *through* the denoiser's estimate (grad_x of loss(D(x)), DPS-style),
weighted by sigma^2 as a score correction with one tuned strength, on the matrix's own grid and solver.

Families that do not apply: ``inpainting`` (policy synthesis observes no trajectory entries: the paper
samples whole windows, start states included, and the actions the policy wants depend on states the model
draws, so nothing is known in advance) and ``enkg`` (there is no forward model or measurement of the
trajectory, only the policy's likelihood of the sample's own actions).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from steerdiff.core.matrix import GuidedTask, Target
from steerdiff.core.sampling import Costs
from steerdiff.core.schedules import EDM, sigma_grid
from steerdiff.core.tuning import LogRange

from .agents import Agent, load_agent, make_agent
from .benchmark import FULL, QUICK, _key, dataset, dataset_and_model, default_cache, split_task
from .data import OfflineDataset
from .diffusion import SamplerConfig
from .envs import action_bounds
from .evaluation import dynamics_error
from .guidance import trajectory_log_likelihood
from .pipeline import PolicyGuidedPipeline
from .training import train_agent
from .trajectories import to_transitions

__all__ = ["PolicyLoss", "PolicySynthesisTask", "TargetPolicies", "guided_tasks"]

SPLITS = ("validation", "test")
SPLIT_SEED = {"validation": 10_000, "test": 20_000}  # agent seeds: disjoint between the splits

# The two settings of guided_tasks. ``bench``: the policy benchmark's setting whose dataset and trajectory
# model are used (and cached). Quick: the benchmark's quick dataset and model (2000 transitions, 150 updates);
# 4 sampler steps and budgets of 16 and 64, since DPS spends a budget on that many sequential forward and
# backward passes of the U-Net and the quick matrix of every domain has a minute. Full: the benchmark's full
# Pendulum dataset (20 000 transitions) with its default trajectory model (16-row windows, base width 16, 3000
# updates; minutes on one thread), 16 steps, budgets 64 and 256: the Pendulum-specific full model (width 64,
# 8000 updates) trains for about an hour and costs six times more per network evaluation, which a full
# matrix at equal budgets cannot afford in its time. ``stages``: the update counts the target agents stop at
# (instance i stops at stages[i % len(stages)]).
QUICK_TASK = dict(
    env="Pendulum-v1",
    bench=QUICK,
    steps=4,
    stages=(100, 300),
    hidden=64,
    settings=dict(budgets=(16, 64), num_samples=4, validation=1, test=2, tune_budget=2),
)
FULL_TASK = dict(
    env="Pendulum-v1",
    bench={**FULL, "models": {}},
    steps=16,
    stages=(300, 1000, 3000),
    hidden=128,
    settings=dict(num_samples=16, validation=2, test=8, tune_budget=4),
)


class TargetPolicies:
    """Target policies by split and index: TD3+BC (or IQL) agents trained on ``real`` for one of ``stages``
    updates each, with seed ``SPLIT_SEED[split] + index``; kept as agent bundles under ``cache`` (a folder,
    or None to train every time) keyed by their settings, so a second call loads them."""

    def __init__(
        self,
        real: OfflineDataset,
        stages=(300, 1000, 3000),
        hidden: int = 128,
        algorithm: str = "td3bc",
        cache: Path | None = None,
        batch_size: int = 128,
    ):
        stages = tuple(int(s) for s in stages)
        if not stages or min(stages) < 1:
            raise ValueError(f"stages must be positive update counts, e.g. (300, 1000), got {stages}")
        if real.env_id is None:
            raise ValueError("the dataset names no environment; set real.env_id (e.g. 'Pendulum-v1')")
        self.real, self.stages, self.hidden, self.algorithm = real, stages, int(hidden), algorithm
        self.cache = None if cache is None else Path(cache)
        self.batch_size = int(batch_size)
        self._loaded: dict[tuple[str, int], Agent] = {}

    def settings(self, split: str, index: int) -> dict:
        """What the agent of ``split`` number ``index`` is: its algorithm, width, updates and seed."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        return {
            "algorithm": self.algorithm,
            "hidden": self.hidden,
            "updates": self.stages[index % len(self.stages)],
            "seed": SPLIT_SEED[split] + index,
            "batch_size": self.batch_size,
        }

    def __call__(self, split: str, index: int) -> Agent:
        if (split, index) in self._loaded:
            return self._loaded[split, index]
        s = self.settings(split, index)
        path = None
        if self.cache is not None:
            path = self.cache / f"agent-{s['algorithm']}-{_key(s)}"
        if path is not None and (path / "config.json").exists():
            agent = load_agent(path, device="cpu")
        else:
            real = self.real
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s["seed"])
                agent = make_agent(
                    s["algorithm"],
                    real.obs_dim,
                    real.act_dim,
                    action_bounds(real.env_id),
                    real.observations.mean(0),
                    real.observations.std(0),
                    env_id=real.env_id,
                    hidden=s["hidden"],
                )
                train_agent(agent, real, s["updates"], s["batch_size"], seed=s["seed"])
            if path is not None:
                agent.save_pretrained(path)
        agent = agent.eval().requires_grad_(False)
        self._loaded[split, index] = agent
        return agent


class PolicyLoss:
    """Minus ``policy``'s log-likelihood of each window's actions given its states: (N, C, L) -> (N,).
    Keeps the policy, so that the paper's own guidance can be built from the same target."""

    def __init__(self, policy: Agent, normalizer):
        self.policy, self.normalizer = policy, normalizer

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        return -trajectory_log_likelihood(self.policy, x0, self.normalizer)


class PolicySynthesisTask(GuidedTask):
    """Synthesize trajectories that a target policy would have taken: the prior is ``pipeline``'s trajectory
    model, instance ``i`` of a split is the target policy ``policies(split, i)`` (an agent with
    ``log_prob(obs, action)`` and ``mean_action(obs)``), sampled on ``steps`` Karras steps of the model's
    EDM grid (sigma 80 to 0.002, the pipeline's own)."""

    metric = "target-policy NLL above its minimum (nats/transition)"
    lower_is_better = True
    solver = "ddpm"  # stochastic, so that selection and particle families apply
    paper_family = "dps"
    # the pipeline's guidance coefficient: the domain's benchmark range (0.1 to 3) and one step beyond,
    # centred on its default of 1
    paper_strength = LogRange(0.1, 10.0)

    def __init__(
        self,
        pipeline: PolicyGuidedPipeline,
        policies: Callable[[str, int], Agent],
        steps: int = 16,
        name: str | None = None,
        settings: dict | None = None,
        dynamics: bool = True,
    ):
        if not isinstance(pipeline, PolicyGuidedPipeline):
            raise TypeError(f"pipeline must be a PolicyGuidedPipeline, got {type(pipeline).__name__}")
        if not callable(policies):
            raise TypeError("policies must be a callable (split, index) -> agent, e.g. TargetPolicies(...)")
        if not isinstance(steps, int) or steps < 2:
            raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
        self.pipeline, self.policies, self.steps = pipeline, policies, steps
        self.name = name or f"policy synthesis ({pipeline.env_id or 'offline data'})"
        self.settings = dict(settings or {})
        self.dynamics = bool(dynamics) and pipeline.env_id is not None
        self.device = pipeline.device
        sampler = SamplerConfig()
        self._sigmas = sigma_grid(
            EDM(), steps, "karras", sigma_min=sampler.sigma_min, sigma_max=sampler.sigma_max
        )

    def prior(self):
        n = self.pipeline.normalizer
        return self.pipeline.model.denoiser, (n.channels, self.pipeline.horizon)

    def sigmas(self):
        return self._sigmas

    def loss(self, agent: Agent) -> Callable[[torch.Tensor], torch.Tensor]:
        """Minus ``agent``'s log-likelihood of each window's actions given its states: (N, C, L) -> (N,)."""
        return PolicyLoss(agent, self.pipeline.normalizer)

    @staticmethod
    def paper_steps(budget: int) -> int:
        """Heun steps of the paper's sampler within ``budget`` network evaluations per sample: 2 S - 1 <= B."""
        if not isinstance(budget, int) or budget < 3:
            raise ValueError(
                f"the paper's Heun sampler needs a budget of at least 3 network evaluations (2 steps), "
                f"got {budget!r}"
            )
        return (budget + 1) // 2

    def paper(
        self, target: Target, budget: int, params: dict, num_samples: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, Costs]:
        """Policy-guided diffusion as the domain synthesizes data (``PolicyGuidedPipeline.synthesizer``'s
        guidance, sampler and defaults) toward the target's policy with ``coeff = params["scale"]``, on
        ``paper_steps(budget)`` Heun steps; the samples (num_samples, C, L) and their costs."""
        if not isinstance(target.loss, PolicyLoss):
            raise ValueError("the target's loss holds no policy; build targets with task.instances(...)")
        synth = self.pipeline.synthesizer(
            coeff=float(params["scale"]), num_samples=num_samples, steps=self.paper_steps(budget)
        )
        guidance = synth.guidance(target.loss.policy)  # none at coeff 0: plain Heun
        out = self.pipeline.model.sample(num_samples, synth.length, guidance, synth.sampler, generator)
        return out.x, out.costs

    def instances(self, split: str, count: int):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        out = []
        for i in range(count):
            agent = self.policies(split, i)
            self.pipeline.check_agent(agent)
            out.append((Target(loss=self.loss(agent)), agent))
        return out

    def not_applicable(self, family: str, target: Target) -> str | None:
        if family == "inpainting":
            return (
                "no observed trajectory entries: the target is a policy, whose actions depend on the "
                "states the model draws (the paper samples whole windows, start states included)"
            )
        if family == "enkg":
            return "no forward model or measurement: the target is the policy's likelihood of the sample's own actions"
        return super().not_applicable(family, target)

    @torch.no_grad()
    def score(self, agent: Agent, x: torch.Tensor) -> dict[str, float]:
        if not torch.isfinite(x).all():
            raise ValueError("the samples hold NaN or inf; the guidance strength is too large")
        ds = to_transitions(x, self.pipeline.normalizer, self.pipeline.env_id)
        dev = agent.obs_mean.device
        obs = torch.from_numpy(ds.observations).to(dev)
        act = torch.from_numpy(ds.actions).to(dev)
        lp = agent.log_prob(obs, act)
        best = agent.log_prob(obs, agent.mean_action(obs) * agent.config.action_bound)
        out = {
            "NLL above minimum": float((best - lp).mean()),
            "NLL (nats/transition)": float(-lp.mean()),
        }
        if self.dynamics:
            out["dynamics MSE"] = float(np.nanmean(dynamics_error(ds, self.pipeline.env_id)))
        return out


def guided_tasks(quick: bool) -> list[GuidedTask]:
    """The policy domain's tasks for the guidance matrix: synthesis on Pendulum-v1 guided by TD3+BC target
    policies. ``quick``: the policy benchmark's quick dataset and model (a few seconds to train, once);
    otherwise its full dataset with the default trajectory model (a few minutes, once). Both are cached
    under ``cache_dir("policy_pgd")`` (``$STEERDIFF_CACHE``), the target agents beside them."""
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    spec = QUICK_TASK if quick else FULL_TASK
    cache = default_cache()
    real, pipe, _ = dataset_and_model(spec["env"], spec["bench"], 0, cache)
    _, root = dataset(spec["env"], spec["bench"], 0, cache)  # the dataset's cache folder
    policies = TargetPolicies(real, spec["stages"], spec["hidden"], cache=root / "targets")
    env_id, _ = split_task(spec["env"])
    return [
        PolicySynthesisTask(
            pipe,
            policies,
            steps=spec["steps"],
            name=f"policy synthesis ({env_id})",
            settings=spec["settings"],
        )
    ]
