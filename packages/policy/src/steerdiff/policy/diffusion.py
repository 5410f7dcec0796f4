"""The trajectory diffusion model: a temporal U-Net over (B, C, L) windows, EDM, trained with the core.

A trained model is saved as a steerdiff model bundle (domain ``"policy"``, kind ``"trajectory"``):
``config.json`` holds the environment id, the observation and action dimensions, the normaliser and the
training window length beside the network and the schedule; ``model.safetensors`` holds the EMA weights.
The U-Net is convolutional, so a model trained on windows of length L samples any length (the paper trains
on 32 and samples 129).

Training windows are padded by default (``ModelConfig.padding = "mask"``, see
:mod:`steerdiff.policy.trajectories`): every episode is used however short, and terminals are as frequent
in the windows as in the data. With ``padding="none"`` windows lie inside episodes, and a horizon that
would leave out more than ``1 - min_coverage`` of the transitions (half, by default) is refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from steerdiff.core.bundle import BundleError, load_pretrained, save_pretrained
from steerdiff.core.denoiser import Denoiser
from steerdiff.core.nets import build_network
from steerdiff.core.runtime import resolve_device
from steerdiff.core.sampling import SampleResult, sample
from steerdiff.core.schedules import EDM, sigma_grid
from steerdiff.core.training import TrainConfig, train

from .data import DatasetError, OfflineDataset
from .envs import action_bounds
from .trajectories import Normalizer, to_transitions, window_coverage, windows

__all__ = ["DOMAIN", "ModelConfig", "SamplerConfig", "TrajectoryDiffusion"]

DOMAIN = "policy"  # the domain name of this package's model bundles


PADDINGS = ("mask", "none")


@dataclass
class ModelConfig:
    horizon: int = 32  # window length (rows) used for training
    stride: int = 8
    padding: str = "mask"  # "mask": windows run past episode ends (a valid channel); "none": inside only
    min_coverage: float = 0.5  # padding "none": the least fraction of the transitions the windows must hold
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)
    emb_dim: int = 128
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.995
    seed: int = 0


@dataclass
class SamplerConfig:
    """EDM sampling (the reference uses Heun, 256 steps, S_churn 80 on [0.05, 50]); fewer steps by default."""

    steps: int = 32
    solver: str = "heun"
    churn: float = 0.0  # EDM's S_churn / steps per step, i.e. the solver's gamma
    churn_min: float = 0.05
    churn_max: float = 50.0
    churn_noise: float = 1.003
    sigma_max: float = 80.0
    sigma_min: float = 0.002
    solver_options: dict = field(default_factory=dict)

    def options(self) -> dict:
        if self.solver in ("heun", "euler"):
            return {
                "churn": self.churn,
                "churn_min": self.churn_min,
                "churn_max": self.churn_max,
                "churn_noise": self.churn_noise,
                **self.solver_options,
            }
        return dict(self.solver_options)


def _median_episode(dataset: OfflineDataset) -> int:
    return int(np.median([b - a for a, b in dataset.episode_bounds()]))


def _longest_horizon(dataset: OfflineDataset, stride: int, min_coverage: float) -> int:
    """The longest unpadded window (rows) whose windows hold at least ``min_coverage`` of the transitions."""
    lo, hi = 2, max(b - a for a, b in dataset.episode_bounds()) + 1  # the coverage falls with the length
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if window_coverage(dataset, mid, stride, padded=False)["fraction"] >= min_coverage:
            lo = mid
        else:
            hi = mid - 1
    return lo


class TrajectoryDiffusion:
    """A trained (or training) trajectory model: ``denoiser`` on normalised windows + ``normalizer``."""

    def __init__(self, denoiser: Denoiser, normalizer: Normalizer, env_id: str | None, horizon: int):
        self.denoiser, self.normalizer, self.env_id, self.horizon = denoiser, normalizer, env_id, horizon
        self.schedule = EDM()
        self.config: ModelConfig | None = None  # the training settings, when known
        self.losses: list[float] = []
        self.coverage: dict | None = None  # what the training windows held of the data (window_coverage)

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    # ---------------------------------------------------------------------------------------------- train
    @classmethod
    def fit(
        cls,
        dataset: OfflineDataset,
        config: ModelConfig | None = None,
        checkpoint_dir=None,
        action_bound: float | None = None,
        device="auto",
        progress: bool = True,
    ) -> TrajectoryDiffusion:
        """Train a model on ``dataset``'s episodes. With ``checkpoint_dir`` the core trainer keeps a training
        checkpoint in ``checkpoint_dir/checkpoint`` and a run that was cut resumes from it."""
        config = config or ModelConfig()
        if config.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {list(PADDINGS)}, got {config.padding!r}")
        if action_bound is None:
            if dataset.env_id is None:
                raise ValueError(
                    "the dataset names no environment; pass action_bound=... (the symmetric "
                    "action limit) or set dataset.env_id"
                )
            action_bound = action_bounds(dataset.env_id)
        padded = config.padding == "mask"
        coverage = window_coverage(dataset, config.horizon, config.stride, padded)
        if not 0 <= config.min_coverage <= 1:
            raise ValueError(f"min_coverage must lie in [0, 1], got {config.min_coverage}")
        if not padded and coverage["fraction"] < config.min_coverage:
            raise DatasetError(
                f"windows of {config.horizon} rows inside episodes hold only "
                f"{100 * coverage['fraction']:.1f}% of the {len(dataset)} transitions (episodes of "
                f"median length {_median_episode(dataset)}); pad the windows (padding 'mask', the default), "
                f"use a horizon of at most {_longest_horizon(dataset, config.stride, config.min_coverage)}, "
                "or lower min_coverage to accept the loss"
            )
        normalizer = Normalizer.fit(dataset, action_bound, mask=padded)
        data = windows(dataset, normalizer, config.horizon, config.stride)
        with torch.random.fork_rng(devices=[]):  # the initial weights follow config.seed, like the batches
            torch.manual_seed(config.seed)
            net = build_network(
                "unet1d",
                in_channels=normalizer.channels,
                base_channels=config.base_channels,
                channel_mults=tuple(config.channel_mults),
                emb_dim=config.emb_dim,
            )
        denoiser = Denoiser(net, "edm", sigma_data=1.0)
        tc = TrainConfig(
            steps=config.steps,
            batch_size=min(config.batch_size, len(data)),
            lr=config.lr,
            warmup_steps=config.warmup_steps,
            ema_decay=config.ema_decay,
            seed=config.seed,
            checkpoint_every=0 if checkpoint_dir is None else max(500, config.steps // 4),
            log_every=max(1, min(100, config.steps)),
        )
        result = train(
            denoiser,
            EDM(),
            data,
            tc,
            out_dir=checkpoint_dir,
            progress=progress,
            device=resolve_device(device),
        )
        model = cls(result.ema.eval().requires_grad_(False), normalizer, dataset.env_id, config.horizon)
        model.losses = result.losses
        model.config = config
        model.coverage = coverage
        return model

    # ------------------------------------------------------------------------------------------- bundle
    def bundle_config(self) -> dict:
        """The ``domain`` section of the model's bundle."""
        n = self.normalizer
        return {
            "kind": "trajectory",
            "env_id": self.env_id,
            "obs_dim": n.obs_dim,
            "act_dim": n.act_dim,
            "action_bound": n.action_bound,
            "horizon": self.horizon,
            "normalizer": asdict(n),
            "training": None if self.config is None else asdict(self.config),
        }

    def save_pretrained(self, path) -> Path:
        """Write the model as a bundle (domain ``"policy"``) to the folder ``path``, atomically."""
        return save_pretrained(
            path, domain=DOMAIN, config=self.bundle_config(), denoiser=self.denoiser, schedule=self.schedule
        )

    @classmethod
    def from_pretrained(cls, path, device="auto") -> TrajectoryDiffusion:
        """Load a trajectory model bundle from :meth:`save_pretrained` (or ``steerdiff-policy train``)."""
        bundle = load_pretrained(path, domain=DOMAIN, device=device)
        cfg = bundle.config
        if cfg.get("kind") != "trajectory":
            raise BundleError(
                f"{path} holds a policy {cfg.get('kind', 'unknown')!r} bundle, not a trajectory "
                "model; give the folder that steerdiff-policy train wrote"
            )
        if bundle.denoiser is None:
            raise BundleError(
                f"{path} holds no denoiser weights; the bundle is corrupt, train the model again"
            )
        try:
            normalizer = Normalizer(**cfg["normalizer"])
            horizon = int(cfg["horizon"])
            training = cfg.get("training")
            if training:
                training = ModelConfig(
                    **{
                        "padding": "mask" if normalizer.mask else "none",
                        **training,
                        "channel_mults": tuple(training["channel_mults"]),
                    }
                )
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(
                f"{path}/config.json has a corrupt policy section ({err}); train the model again"
            ) from None
        model = cls(bundle.denoiser, normalizer, cfg.get("env_id"), horizon)
        model.config = training
        return model

    # --------------------------------------------------------------------------------------------- sample
    def sample(
        self,
        num: int,
        length: int | None = None,
        guidance=(),
        sampler: SamplerConfig | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> SampleResult:
        """``num`` normalised windows (num, C, length) with the given guidance (one batched run)."""
        sampler = sampler or SamplerConfig()
        length = length or self.horizon
        if length < 2:
            raise ValueError(f"length must be >= 2 rows (one transition), got {length}")
        sigmas = sigma_grid(
            self.schedule, sampler.steps, "karras", sigma_min=sampler.sigma_min, sigma_max=sampler.sigma_max
        )
        x = sampler.sigma_max * torch.randn(
            (num, self.normalizer.channels, length), generator=generator, device=self.device
        )
        return sample(
            self.denoiser,
            x,
            sigmas,
            sampler.solver,
            guidance=list(guidance),
            generator=generator,
            progress=progress,
            **sampler.options(),
        )

    def synthesize(
        self,
        num: int,
        length: int | None = None,
        guidance=(),
        sampler: SamplerConfig | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> OfflineDataset:
        """Sample windows and turn them into a dataset of transitions in the D4RL layout."""
        res = self.sample(num, length, guidance, sampler, generator, progress)
        ds = to_transitions(res.x, self.normalizer, self.env_id)
        ds.metadata.update({k: float(v) for k, v in res.costs.as_dict().items()})
        return ds
