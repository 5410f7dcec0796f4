"""The piano-roll diffusion model: a 2-D U-Net over (pitch, time) in pixel space, EDM preconditioning.

``build_denoiser`` makes the network, ``train_model`` trains it with the core trainer (resumable checkpoints
in ``checkpoint_dir``), ``save_model`` writes a trained model as a core model bundle (domain ``"music"``) and
``load_model`` reads one back. The bundle's domain section holds everything needed to use the model: the roll
layout, the window length and the data it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from steerdiff.core.bundle import Bundle, load_pretrained, save_pretrained
from steerdiff.core.denoiser import Denoiser
from steerdiff.core.nets import build_network
from steerdiff.core.schedules import EDM, sigma_grid
from steerdiff.core.training import TrainConfig, TrainResult, train

from .roll import RollConfig, check_batch

__all__ = [
    "DOMAIN",
    "ModelConfig",
    "MusicModel",
    "EmpiricalDenoiser",
    "build_denoiser",
    "train_model",
    "save_model",
    "load_model",
    "schedule",
    "default_sigmas",
]

DOMAIN = "music"


@dataclass
class ModelConfig:
    """U-Net size. The default (~0.3 M parameters) trains on CPU in minutes."""

    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention: bool = False


@dataclass
class MusicModel:
    """A loaded music model: the denoiser to sample with, its roll layout and window length (time steps),
    and the rest of the bundle's domain section (``info``: the model size, training data and training run)."""

    denoiser: torch.nn.Module
    roll: RollConfig
    length: int
    info: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def bars(self) -> int:
        return self.length // self.roll.steps_per_bar


def schedule() -> EDM:
    """EDM noise levels, sigma_max 40 (rolls live in [-1, 1])."""
    return EDM(sigma_min=0.002, sigma_max=40.0)


def default_sigmas(num_steps: int) -> torch.Tensor:
    return sigma_grid(schedule(), num_steps)


def build_denoiser(roll: RollConfig, model: ModelConfig | None = None) -> Denoiser:
    m = model or ModelConfig()
    net = build_network(
        "unet2d",
        in_channels=roll.num_channels,
        base_channels=m.base_channels,
        channel_mults=tuple(m.channel_mults),
        num_res_blocks=m.num_res_blocks,
        attention_levels=(-1,) if m.attention else (),
        mid_attention=m.attention,
        groups=8,
    )
    return Denoiser(net, "edm", sigma_data=0.5)


def train_model(
    data: torch.Tensor,
    roll: RollConfig,
    checkpoint_dir=None,
    model: ModelConfig | None = None,
    config: TrainConfig | None = None,
    device="auto",
    progress: bool = True,
) -> TrainResult:
    """Train on windows (N, C, P, T) in model space; returns the core's TrainResult (``.ema`` samples).

    With ``checkpoint_dir`` the run keeps a training checkpoint there and resumes from it when run again.
    The initial weights are drawn with ``config.seed``. Save the result for use with :func:`save_model`.
    """
    check_batch(data, roll, "training data")
    config = config or TrainConfig()
    with torch.random.fork_rng(devices=[]):  # the initial weights follow the run's seed
        torch.manual_seed(config.seed)
        denoiser = build_denoiser(roll, model)
    return train(
        denoiser,
        schedule(),
        data.float(),
        config,
        out_dir=checkpoint_dir,
        device=device,
        progress=progress,
    )


def domain_config(
    roll: RollConfig,
    length: int,
    model: ModelConfig | None = None,
    data: dict | None = None,
    training: dict | None = None,
) -> dict:
    """The bundle's domain section: roll layout, window, model size, training data and run."""
    if length % roll.steps_per_bar:
        raise ValueError(
            f"the window length {length} is not a whole number of bars of {roll.steps_per_bar} steps"
        )
    return {
        "roll": roll.to_dict(),
        "pitch_range": [roll.pitch_low, roll.pitch_high],
        "steps_per_bar": roll.steps_per_bar,
        "bars": length // roll.steps_per_bar,
        "length": int(length),
        "channels": list(roll.channels),
        "model": asdict(model or ModelConfig()),
        "data": dict(data or {}),
        "training": dict(training or {}),
    }


def save_model(
    path,
    denoiser: Denoiser,
    roll: RollConfig,
    length: int,
    model: ModelConfig | None = None,
    data: dict | None = None,
    training: dict | None = None,
) -> Path:
    """Write a trained model (pass the EMA denoiser) as a model bundle at ``path`` (atomically)."""
    if not isinstance(denoiser, Denoiser):
        raise ValueError(
            f"only a trained network (a Denoiser) can be saved as a model bundle, got "
            f"{type(denoiser).__name__}; train one with train_model"
        )
    config = domain_config(roll, length, model, data, training)
    return save_pretrained(path, domain=DOMAIN, config=config, denoiser=denoiser, schedule=schedule())


def model_from_bundle(bundle: Bundle) -> MusicModel:
    """The :class:`MusicModel` of a loaded bundle (its domain section checked)."""
    cfg = bundle.config
    try:
        roll = RollConfig(**cfg["roll"])
        length = int(cfg["length"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{bundle.path}/config.json has no valid roll layout in its music section ({err}); the "
            f"bundle is corrupt, save the model again"
        ) from None
    if bundle.denoiser is None:
        raise ValueError(f"{bundle.path} holds no network weights; save the model again with its denoiser")
    info = {k: v for k, v in cfg.items() if k not in ("roll", "length")}
    return MusicModel(bundle.denoiser, roll, length, info, Path(bundle.path))


def load_model(path, device="cpu") -> MusicModel:
    """Load a model bundle written by :func:`save_model` (or ``MusicPipeline.save_pretrained``)."""
    return model_from_bundle(load_pretrained(path, DOMAIN, device=device))


class EmpiricalDenoiser(torch.nn.Module):
    """The exact denoiser of a set of rolls smoothed by isotropic Gaussians of std ``bandwidth``: what
    denoising score matching converges to on that set (it reproduces training pieces). No training: a
    reference model for tests and quick benchmarks. ``x0_hat = sum_k r_k(x) [m_k + s^2 / (s^2 + sigma^2) (x -
    m_k)]``.
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
        var = (
            torch.as_tensor(sigma, dtype=flat.dtype, device=flat.device).expand(x.shape[0])[:, None] ** 2
            + self.bandwidth**2
        )
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.means.T + self.sq  # (B, K)
        r = torch.softmax(-dist / (2 * var), dim=1)
        mean = r @ self.means
        shrink = self.bandwidth**2 / var
        return (mean + shrink * (flat - mean)).reshape(x.shape).to(x.dtype)
