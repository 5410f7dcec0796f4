"""The piano-roll diffusion model: a 2-D U-Net over (pitch, time) in pixel space, EDM preconditioning.

``build_denoiser`` makes the network, ``train_model`` trains it with the core trainer and writes the roll
layout (``music.json``) beside the checkpoint, ``load_model`` reads both back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from steerdiff.core.checkpoint import load_denoiser
from steerdiff.core.denoiser import Denoiser
from steerdiff.core.nets import build_network
from steerdiff.core.schedules import EDM, sigma_grid
from steerdiff.core.training import TrainConfig, train

from .roll import RollConfig, atomic_write_bytes, check_batch

__all__ = ["ModelConfig", "EmpiricalDenoiser", "build_denoiser", "train_model", "load_model", "schedule", "default_sigmas", "MUSIC_JSON"]

MUSIC_JSON = "music.json"


@dataclass
class ModelConfig:
    """U-Net size. The default (~0.3 M parameters) trains on CPU in minutes."""

    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention: bool = False


def schedule() -> EDM:
    """EDM noise levels, sigma_max 40 (rolls live in [-1, 1])."""
    return EDM(sigma_min=0.002, sigma_max=40.0)


def default_sigmas(num_steps: int) -> torch.Tensor:
    return sigma_grid(schedule(), num_steps)


def build_denoiser(roll: RollConfig, model: ModelConfig | None = None) -> Denoiser:
    m = model or ModelConfig()
    net = build_network("unet2d", in_channels=roll.num_channels, base_channels=m.base_channels,
                        channel_mults=tuple(m.channel_mults), num_res_blocks=m.num_res_blocks,
                        attention_levels=(-1,) if m.attention else (), mid_attention=m.attention,
                        groups=8)
    return Denoiser(net, "edm", sigma_data=0.5)


def train_model(data: torch.Tensor, roll: RollConfig, out_dir, model: ModelConfig | None = None,
                config: TrainConfig | None = None, device="auto", progress: bool = True):
    """Train on windows (N, C, P, T) in model space; returns the core's TrainResult (``.ema`` samples)."""
    check_batch(data, roll, "training data")
    denoiser = build_denoiser(roll, model)
    result = train(denoiser, schedule(), data.float(), config or TrainConfig(), out_dir=out_dir, device=device,
                   progress=progress)
    meta = {"roll": roll.to_dict(), "model": asdict(model or ModelConfig()), "length": int(data.shape[-1])}
    atomic_write_bytes(Path(out_dir) / MUSIC_JSON, json.dumps(meta, indent=2).encode())
    return result


def load_model(out_dir, device="cpu") -> tuple[Denoiser, RollConfig, int]:
    """(EMA denoiser, roll config, window length) of a run written by ``train_model``."""
    path = Path(out_dir) / MUSIC_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {out_dir} is not a steerdiff-music training run; train one with "
                                f"`steerdiff-music train` first")
    meta = json.loads(path.read_text())
    return load_denoiser(out_dir, device=device), RollConfig(**meta["roll"]), int(meta["length"])


class EmpiricalDenoiser(torch.nn.Module):
    """The exact denoiser of a set of rolls smoothed by isotropic Gaussians of std ``bandwidth``: what denoising
    score matching converges to on that set (it reproduces training pieces). No training: a reference model
    for tests and quick benchmarks. ``x0_hat = sum_k r_k(x) [m_k + s^2 / (s^2 + sigma^2) (x - m_k)]``.
    """

    def __init__(self, data: torch.Tensor, bandwidth: float = 0.05):
        super().__init__()
        if data.ndim < 2 or data.shape[0] < 1:
            raise ValueError(f"data must be a non-empty batch (K, ...), got shape {tuple(data.shape)}")
        self.register_buffer("means", data.flatten(1).clone())
        self.register_buffer("sq", self.means.pow(2).sum(1))
        self.bandwidth = float(bandwidth)

    def forward(self, x: torch.Tensor, sigma, **_) -> torch.Tensor:
        flat = x.flatten(1).to(self.means.dtype)
        var = torch.as_tensor(sigma, dtype=flat.dtype, device=flat.device).expand(x.shape[0])[:, None] ** 2 \
            + self.bandwidth**2
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.means.T + self.sq  # (B, K)
        r = torch.softmax(-dist / (2 * var), dim=1)
        mean = r @ self.means
        shrink = self.bandwidth**2 / var
        return (mean + shrink * (flat - mean)).reshape(x.shape).to(x.dtype)
