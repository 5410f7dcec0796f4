"""The diffusion prior over fields: a 2-D U-Net with periodic padding, trained with the core, used in
physical units.

The network sees fields divided by ``scale`` (chosen so the training data has standard deviation
``sigma_data`` = 0.5, EDM's convention); :class:`FieldPrior` undoes it, so every method works on the
physical field: D_phys(x; sigma) = scale * D(x / scale; sigma / scale). Its noise range is EDM's
[0.002, 80] times ``scale``. A prior directory holds the core checkpoint and ``prior.json`` (scale, grid).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from steerdiff.core.checkpoint import load_denoiser
from steerdiff.core.denoiser import Denoiser
from steerdiff.core.io import write_json
from steerdiff.core.nets import build_network
from steerdiff.core.schedules import EDM
from steerdiff.core.training import TrainConfig, train
from torch import nn

__all__ = ["FieldPrior", "PriorConfig", "load_prior", "train_prior", "write_json"]


@dataclass
class PriorConfig:
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention: bool = False
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    ema_decay: float = 0.999
    seed: int = 0


class FieldPrior(nn.Module):
    """A denoiser on physical fields: ``prior(x, sigma) -> x0_hat`` with sigma a scalar or (B,)."""

    def __init__(self, denoiser: Denoiser | nn.Module, scale: float = 1.0, sigma_min: float = 0.002,
                 sigma_max: float = 80.0):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"the prior's scale must be positive, got {scale}")
        self.denoiser, self.scale = denoiser, float(scale)
        self.sigma_min, self.sigma_max = sigma_min * self.scale, sigma_max * self.scale

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        return self.scale * self.denoiser(x / self.scale, sigma / self.scale)


def train_prior(fields: torch.Tensor, out_dir, config: PriorConfig | None = None, device=None,
                progress: bool = True) -> FieldPrior:
    """Train the field prior on (N, 1, H, W) fields; the checkpoint and prior.json go to ``out_dir``."""
    config = config or PriorConfig()
    if fields.ndim != 4 or fields.shape[1] != 1:
        raise ValueError(f"training fields must have shape (N, 1, H, W), got {tuple(fields.shape)}")
    scale = float(fields.std()) / 0.5
    net = build_network("unet2d", in_channels=1, base_channels=config.base_channels,
                        channel_mults=tuple(config.channel_mults), num_res_blocks=config.num_res_blocks,
                        attention_levels=(-1,) if config.attention else (), mid_attention=config.attention,
                        padding_mode="circular")
    denoiser = Denoiser(net, "edm")
    tc = TrainConfig(steps=config.steps, batch_size=min(config.batch_size, fields.shape[0]), lr=config.lr,
                     ema_decay=config.ema_decay, seed=config.seed, checkpoint_every=max(config.steps // 4, 250),
                     warmup_steps=min(100, config.steps // 10))
    result = train(denoiser, EDM(), (fields / scale).float().contiguous(), tc, out_dir=out_dir, progress=progress,
                   device=device)
    write_json(Path(out_dir) / "prior.json", {"scale": scale, "field_shape": list(fields.shape[1:]),
                                              "config": asdict(config), "final_loss": result.losses[-1]})
    return FieldPrior(result.ema.eval().requires_grad_(False), scale)


def load_prior(path, device="cpu") -> FieldPrior:
    path = Path(path)
    meta = path / "prior.json"
    if not meta.exists():
        raise FileNotFoundError(f"{meta} is missing: {path} is not a prior directory; create one with "
                                "`steerdiff-inverse train-prior --data FIELDS --out DIR`")
    info = json.loads(meta.read_text())
    return FieldPrior(load_denoiser(path, device=device), info["scale"])
