"""The trajectory diffusion model: a temporal U-Net over (B, C, L) windows, EDM, trained with the core.

A model directory holds the core checkpoint (``checkpoint/``: config.json + safetensors) and
``trajectory.json`` (normaliser, environment id, training window length). The U-Net is convolutional, so a
model trained on windows of length L samples any length (the paper trains on 32 and samples 129).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from steerdiff.core.checkpoint import load_denoiser
from steerdiff.core.denoiser import Denoiser
from steerdiff.core.nets import build_network
from steerdiff.core.sampling import SampleResult, sample
from steerdiff.core.schedules import EDM, sigma_grid
from steerdiff.core.training import TrainConfig, resolve_device, train

from .data import OfflineDataset
from .envs import action_bounds
from .trajectories import Normalizer, to_transitions, windows

__all__ = ["ModelConfig", "SamplerConfig", "TrajectoryDiffusion"]


@dataclass
class ModelConfig:
    horizon: int = 32                 # window length (rows) used for training
    stride: int = 8
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
    """EDM sampling (the reference uses Heun, 256 steps, S_churn 80 on [0.05, 50]); smaller here by default."""

    steps: int = 32
    solver: str = "heun"
    churn: float = 0.0                # EDM's S_churn / steps per step, i.e. the solver's gamma
    churn_min: float = 0.05
    churn_max: float = 50.0
    churn_noise: float = 1.003
    sigma_max: float = 80.0
    sigma_min: float = 0.002
    solver_options: dict = field(default_factory=dict)

    def options(self) -> dict:
        if self.solver in ("heun", "euler"):
            return {"churn": self.churn, "churn_min": self.churn_min, "churn_max": self.churn_max,
                    "churn_noise": self.churn_noise, **self.solver_options}
        return dict(self.solver_options)


class TrajectoryDiffusion:
    """A trained (or training) trajectory model: ``denoiser`` on normalised windows + ``normalizer``."""

    def __init__(self, denoiser: Denoiser, normalizer: Normalizer, env_id: str | None, horizon: int):
        self.denoiser, self.normalizer, self.env_id, self.horizon = denoiser, normalizer, env_id, horizon
        self.schedule = EDM()

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    # ---------------------------------------------------------------------------------------------- train
    @classmethod
    def fit(cls, dataset: OfflineDataset, config: ModelConfig | None = None, out_dir=None,
            action_bound: float | None = None, device="auto", progress: bool = True) -> TrajectoryDiffusion:
        config = config or ModelConfig()
        if action_bound is None:
            if dataset.env_id is None:
                raise ValueError("the dataset names no environment; pass action_bound=... (the symmetric "
                                 "action limit) or set dataset.env_id")
            action_bound = action_bounds(dataset.env_id)
        normalizer = Normalizer.fit(dataset, action_bound)
        data = windows(dataset, normalizer, config.horizon, config.stride)
        net = build_network("unet1d", in_channels=normalizer.channels, base_channels=config.base_channels,
                            channel_mults=tuple(config.channel_mults), emb_dim=config.emb_dim)
        denoiser = Denoiser(net, "edm", sigma_data=1.0)
        tc = TrainConfig(steps=config.steps, batch_size=min(config.batch_size, len(data)), lr=config.lr,
                         warmup_steps=config.warmup_steps, ema_decay=config.ema_decay, seed=config.seed,
                         checkpoint_every=0 if out_dir is None else max(500, config.steps // 4),
                         log_every=max(1, min(100, config.steps)))
        result = train(denoiser, EDM(), data, tc, out_dir=out_dir, progress=progress,
                       device=resolve_device(device))
        model = cls(result.ema.eval().requires_grad_(False), normalizer, dataset.env_id, config.horizon)
        model.losses = result.losses
        if out_dir is not None:
            model._write_meta(Path(out_dir), config)
        return model

    def _write_meta(self, out: Path, config: ModelConfig) -> None:
        meta = {"env_id": self.env_id, "horizon": self.horizon, "normalizer": json.loads(self.normalizer.to_json()),
                "model_config": asdict(config)}
        tmp = out / f".trajectory.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, out / "trajectory.json")

    @classmethod
    def load(cls, path, device="auto") -> TrajectoryDiffusion:
        path = Path(path)
        meta_path = path / "trajectory.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} is missing; pass the directory written by "
                                    "steerdiff-policy train (it holds trajectory.json and checkpoint/)")
        meta = json.loads(meta_path.read_text())
        denoiser = load_denoiser(path, device=resolve_device(device))
        return cls(denoiser, Normalizer(**meta["normalizer"]), meta["env_id"], int(meta["horizon"]))

    # --------------------------------------------------------------------------------------------- sample
    def sample(self, num: int, length: int | None = None, guidance=(), sampler: SamplerConfig | None = None,
               generator: torch.Generator | None = None, progress: bool = False) -> SampleResult:
        """``num`` normalised windows (num, C, length) with the given guidance (one batched run)."""
        sampler = sampler or SamplerConfig()
        length = length or self.horizon
        if length < 2:
            raise ValueError(f"length must be >= 2 rows (one transition), got {length}")
        sigmas = sigma_grid(self.schedule, sampler.steps, "karras", sigma_min=sampler.sigma_min,
                            sigma_max=sampler.sigma_max)
        x = sampler.sigma_max * torch.randn((num, self.normalizer.channels, length), generator=generator,
                                            device=self.device)
        return sample(self.denoiser, x, sigmas, sampler.solver, guidance=list(guidance), generator=generator,
                      progress=progress, **sampler.options())

    def synthesize(self, num: int, length: int | None = None, guidance=(), sampler: SamplerConfig | None = None,
                   generator: torch.Generator | None = None, progress: bool = False) -> OfflineDataset:
        """Sample windows and turn them into a dataset of transitions in the D4RL layout."""
        res = self.sample(num, length, guidance, sampler, generator, progress)
        ds = to_transitions(res.x, self.normalizer, self.env_id)
        ds.metadata.update({k: float(v) for k, v in res.costs.as_dict().items()})
        return ds
