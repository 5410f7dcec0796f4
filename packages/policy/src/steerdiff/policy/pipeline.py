"""The public entry point: a trajectory diffusion model that synthesizes transitions, guided by an agent.

    from steerdiff.policy import PolicyGuidedPipeline, load_agent

    pipe = PolicyGuidedPipeline.from_pretrained("runs/policy/train/model")
    agent = load_agent("runs/policy/train-agent/agent")
    data = pipe.synthesize(agent=agent, coeff=1.0, num_samples=64, steps=32, solver="heun")

``synthesize`` returns an :class:`~steerdiff.policy.data.OfflineDataset` of synthetic transitions in the D4RL
layout; without an agent (or with ``coeff=0``) the samples are unguided. With ``shards="folder"`` it samples
in chunks through :func:`steerdiff.core.sample_in_shards`: resumable, split over the processes of a
``torchrun`` launch, and the same transitions whatever their number (rank 0 gets them, other ranks None).
"""

from __future__ import annotations

from pathlib import Path

import torch

from steerdiff.core.sampling import SampleResult
from steerdiff.core.solvers import SOLVERS

from .agents import Agent, load_agent
from .data import DatasetError, OfflineDataset
from .diffusion import ModelConfig, SamplerConfig, TrajectoryDiffusion
from .guidance import PolicyGuidance
from .synthesis import Synthesizer
from .trajectories import to_transitions

__all__ = ["PolicyGuidedPipeline"]


class PolicyGuidedPipeline:
    """A trained trajectory diffusion model and the jobs done with it: synthesize guided or unguided data."""

    def __init__(self, model: TrajectoryDiffusion):
        if not isinstance(model, TrajectoryDiffusion):
            raise TypeError(
                f"PolicyGuidedPipeline needs a TrajectoryDiffusion model, got {type(model).__name__}"
            )
        self.model = model

    # ------------------------------------------------------------------------------------------ creation
    @classmethod
    def train(
        cls,
        dataset: OfflineDataset,
        config: ModelConfig | None = None,
        checkpoint_dir=None,
        action_bound: float | None = None,
        device="auto",
        progress: bool = False,
    ) -> PolicyGuidedPipeline:
        """Train the trajectory model on ``dataset`` (``checkpoint_dir``: where a cut run resumes from)."""
        return cls(
            TrajectoryDiffusion.fit(
                dataset,
                config,
                checkpoint_dir=checkpoint_dir,
                action_bound=action_bound,
                device=device,
                progress=progress,
            )
        )

    @classmethod
    def from_pretrained(cls, path, device="auto") -> PolicyGuidedPipeline:
        """Load a trajectory model bundle (the ``model`` folder ``steerdiff-policy train`` writes)."""
        return cls(TrajectoryDiffusion.from_pretrained(path, device=device))

    def save_pretrained(self, path) -> Path:
        """Write the model as a bundle to the folder ``path``, atomically."""
        return self.model.save_pretrained(path)

    # ---------------------------------------------------------------------------------------- properties
    @property
    def env_id(self) -> str | None:
        return self.model.env_id

    @property
    def horizon(self) -> int:
        """The window length (rows) the model was trained on."""
        return self.model.horizon

    @property
    def normalizer(self):
        return self.model.normalizer

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------------------------------- sampling
    def check_agent(self, agent: Agent) -> None:
        """Raise if ``agent`` acts in another environment than the model's data."""
        n = self.normalizer
        if agent.config.obs_dim != n.obs_dim or agent.config.act_dim != n.act_dim:
            raise DatasetError(
                f"the agent has observation/action dimensions ({agent.config.obs_dim}, "
                f"{agent.config.act_dim}) but the trajectory model ({n.obs_dim}, {n.act_dim}); "
                f"use an agent trained in the model's environment ({self.env_id})"
            )

    def synthesizer(
        self,
        coeff: float = 1.0,
        num_samples: int = 64,
        steps: int = 32,
        solver: str = "heun",
        length: int | None = None,
        seed: int = 0,
        normalize_gradient: bool = True,
        churn: float = 0.0,
        **guidance,
    ) -> Synthesizer:
        """A callable ``synth(agent or None) -> OfflineDataset`` that ``train_agent`` regenerates data with;
        each call draws a new set. ``guidance``: further :class:`PolicyGuidance` settings (``cosine``,
        ``at``, ``apply``)."""
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)}")
        for name, value in (("num_samples", num_samples), ("steps", steps)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if length is not None and length < 2:
            raise ValueError(f"length must be >= 2 rows (one transition), got {length}")
        sampler = SamplerConfig(steps=steps, solver=solver, churn=churn)
        return Synthesizer(
            self.model,
            num=num_samples,
            length=length,
            coeff=coeff,
            normalize=normalize_gradient,
            sampler=sampler,
            seed=seed,
            **guidance,
        )

    def synthesize(
        self,
        agent: Agent | str | Path | None = None,
        coeff: float = 1.0,
        num_samples: int = 64,
        steps: int = 32,
        solver: str = "heun",
        length: int | None = None,
        seed: int = 0,
        normalize_gradient: bool = True,
        churn: float = 0.0,
        shards=None,
        chunk_size: int = 64,
        progress: bool = False,
        **guidance,
    ) -> OfflineDataset | None:
        """Synthetic transitions: ``num_samples`` windows of ``length`` rows (default: the training window),
        guided toward ``agent``'s actions with strength ``coeff`` (unguided without an agent or with
        ``coeff=0``), sampled with ``solver`` in ``steps`` steps. ``agent`` may be an agent or its bundle
        folder. The dataset's ``metadata`` holds the sampling costs.

        ``shards`` (a folder): sample ``chunk_size`` windows at a time with
        :func:`steerdiff.core.sample_in_shards`, each chunk from its own seed and kept in ``shards/shards``:
        a cut run resumes, and under ``torchrun`` the ranks share the chunks and give the same transitions
        as one process. Rank 0 returns the dataset, the other ranks ``None``."""
        if isinstance(agent, (str, Path)):
            agent = load_agent(agent, device=self.device)
        if agent is not None:
            self.check_agent(agent)
        synth = self.synthesizer(
            coeff, num_samples, steps, solver, length, seed, normalize_gradient, churn, **guidance
        )
        if shards is None:
            return synth(agent)
        return self._synthesize_in_shards(synth, agent, shards, chunk_size, progress)

    def _synthesize_in_shards(self, synth: Synthesizer, agent, shards, chunk_size: int, progress: bool):
        from steerdiff.core.sharding import fingerprint, sample_in_shards

        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
        if agent is not None:
            agent.eval()
        guidance, device = synth.guidance(agent), self.device
        costs: dict[str, float] = {}

        def job(start, stop, generator):
            gen = torch.Generator(device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            res = self.model.sample(stop - start, synth.length, guidance, synth.sampler, gen)
            for k, v in res.costs.as_dict().items():
                costs[k] = costs.get(k, 0.0) + float(v)
            return res.x

        key = {  # shards of another model, agent or setting are never reused
            "model": fingerprint(self.model.denoiser),
            "agent": fingerprint(agent) if isinstance(agent, torch.nn.Module) else None,
            "coeff": synth.coeff if agent is not None else 0.0,
            "length": synth.length or self.horizon,
            "sampler": {k: v for k, v in vars(synth.sampler).items() if k != "solver_options"},
            "guidance": [synth.cosine, synth.normalize, synth.at, synth.apply],
        }
        x = sample_in_shards(
            job, synth.num, shards, chunk_size=int(chunk_size), seed=synth.seed, key=key, progress=progress
        )
        if x is None:  # a torchrun rank other than 0: rank 0 merges
            return None
        ds = to_transitions(x, self.normalizer, self.env_id)
        ds.metadata.update({"num_samples": float(synth.num), "chunk_size": float(chunk_size)})
        ds.metadata.update({f"{k}_this_process": v for k, v in costs.items() if k != "num_samples"})
        return ds

    def sample(
        self,
        num_samples: int = 64,
        agent: Agent | None = None,
        coeff: float = 1.0,
        steps: int = 32,
        solver: str = "heun",
        length: int | None = None,
        seed: int = 0,
        normalize_gradient: bool = True,
        extra_guidance=(),
    ) -> SampleResult:
        """The normalised windows themselves (num_samples, C, length), with their sampling costs; other
        guidance (e.g. core ``Inpainting`` of a start state) composes through ``extra_guidance``."""
        guidance = list(extra_guidance)
        if agent is not None and coeff > 0:
            self.check_agent(agent)
            guidance.insert(
                0,
                PolicyGuidance(
                    policy=agent, normalizer=self.normalizer, coeff=coeff, normalize=normalize_gradient
                ),
            )
        gen = torch.Generator(self.device).manual_seed(seed)
        return self.model.sample(
            num_samples, length, guidance, SamplerConfig(steps=steps, solver=solver), gen
        )
