"""The diffusion prior over fields: a 2-D U-Net with periodic padding, trained with the core, used in
physical units, saved and loaded as a core model bundle (domain ``"inverse"``).

The network sees fields divided by ``scale`` (chosen so the training data has standard deviation
``sigma_data`` = 0.5, EDM's convention); :class:`FieldPrior` undoes it, so every method works on the
physical field: D_phys(x; sigma) = scale * D(x / scale; sigma / scale). Its noise range is EDM's
[0.002, 80] times ``scale``.

A prior bundle is a folder with ``config.json`` and ``model.safetensors`` (the EMA weights). The ``domain``
section of ``config.json`` holds what is needed to use the prior correctly:

* ``kind``: ``"field_prior"``;
* ``field_shape``: the (1, H, W) shape of one field;
* ``scale``, ``sigma_data``: the normaliser (network input = field / scale);
* ``sigma_min``, ``sigma_max``: the noise range in network units (physical range = these times ``scale``);
* ``prior_config``: the network and training settings (:class:`PriorConfig`);
* ``problem``: the problem the prior was trained for (``{"name": ..., "options": {...}}``: grid, time step,
  Reynolds number, horizon, observation stride, noise), or ``null``;
* ``training``: number of training fields, training steps and final loss.

``train_prior(fields, out_dir)`` keeps resumable training checkpoints in ``out_dir/checkpoint`` and writes the
bundle to ``out_dir/model``; ``load_prior`` reads a bundle folder or such a run folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from steerdiff.core.bundle import BundleError, load_pretrained, save_pretrained
from steerdiff.core.denoiser import Denoiser
from steerdiff.core.nets import build_network
from steerdiff.core.schedules import EDM
from steerdiff.core.training import TrainConfig, train

__all__ = [
    "DOMAIN",
    "FieldPrior",
    "PriorConfig",
    "build_prior_network",
    "load_prior",
    "model_dir",
    "train_prior",
]

DOMAIN = "inverse"
KIND = "field_prior"
SIGMA_DATA = 0.5


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

    def __post_init__(self):
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        for name in ("base_channels", "num_res_blocks", "steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"PriorConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"PriorConfig.lr must be positive, got {self.lr}")


def build_prior_network(config: PriorConfig | None = None) -> nn.Module:
    """The circular-padded 2-D U-Net of a prior with ``config`` (untrained)."""
    config = config or PriorConfig()
    return build_network(
        "unet2d",
        in_channels=1,
        base_channels=config.base_channels,
        channel_mults=tuple(config.channel_mults),
        num_res_blocks=config.num_res_blocks,
        attention_levels=(-1,) if config.attention else (),
        mid_attention=config.attention,
        padding_mode="circular",
    )


class FieldPrior(nn.Module):
    """A denoiser on physical fields: ``prior(x, sigma) -> x0_hat`` with sigma a scalar or (B,).

    ``info`` holds the facts a bundle records beside the weights (``field_shape``, ``prior_config``,
    ``problem``, ``training``); see the module docstring.
    """

    def __init__(
        self,
        denoiser: Denoiser | nn.Module,
        scale: float = 1.0,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        info: dict | None = None,
    ):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"the prior's scale must be positive, got {scale}")
        self.denoiser, self.scale = denoiser, float(scale)
        self.sigma_min, self.sigma_max = sigma_min * self.scale, sigma_max * self.scale
        self.info = dict(info or {})

    @property
    def field_shape(self) -> tuple[int, ...] | None:
        """The (1, H, W) shape of one field, when known."""
        shape = self.info.get("field_shape")
        return tuple(shape) if shape else None

    @property
    def problem_spec(self) -> dict | None:
        """``{"name": ..., "options": {...}}`` of the problem the prior was trained for, when known."""
        return self.info.get("problem")

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        return self.scale * self.denoiser(x / self.scale, sigma / self.scale)

    def domain_config(self) -> dict:
        """The ``domain`` section of the prior's bundle."""
        return {
            "kind": KIND,
            "field_shape": list(self.field_shape) if self.field_shape else None,
            "scale": self.scale,
            "sigma_data": SIGMA_DATA,
            "sigma_min": self.sigma_min / self.scale,
            "sigma_max": self.sigma_max / self.scale,
            "prior_config": self.info.get("prior_config"),
            "problem": self.problem_spec,
            "training": self.info.get("training"),
        }

    def save_pretrained(self, path) -> Path:
        """Write the prior as a model bundle (domain ``"inverse"``) to the folder ``path``, atomically."""
        if not isinstance(self.denoiser, Denoiser):
            raise ValueError(
                "only a prior with a trained network (a core Denoiser) can be saved; an analytic "
                f"prior such as {type(self.denoiser).__name__} is rebuilt from its parameters instead"
            )
        return save_pretrained(
            path, domain=DOMAIN, config=self.domain_config(), denoiser=self.denoiser, schedule=EDM()
        )

    @classmethod
    def from_pretrained(cls, path, device="cpu") -> FieldPrior:
        return load_prior(path, device=device)


def train_prior(
    fields: torch.Tensor,
    out_dir=None,
    config: PriorConfig | None = None,
    device=None,
    progress: bool = True,
    problem=None,
) -> FieldPrior:
    """Train the field prior on (N, 1, H, W) fields; the same fields and ``config`` (its ``seed`` sets the
    initial weights and the training noise) give the same prior on the same device and thread count.

    With ``out_dir`` the training checkpoints go to ``out_dir/checkpoint`` (a killed run resumes from there)
    and the finished prior is saved as a bundle to ``out_dir/model``. ``problem`` (an
    :class:`~steerdiff.inverse.problems.InverseProblem`) is recorded in the bundle as the problem the prior
    was trained for.
    """
    config = config or PriorConfig()
    if not isinstance(fields, torch.Tensor) or fields.ndim != 4 or fields.shape[1] != 1:
        got = tuple(fields.shape) if isinstance(fields, torch.Tensor) else type(fields).__name__
        raise ValueError(f"training fields must have shape (N, 1, H, W), got {got}")
    if not torch.isfinite(fields).all():
        raise ValueError("the training fields contain NaN or inf; drop those fields")
    std = float(fields.std())
    if not std > 0:
        raise ValueError("the training fields are constant (standard deviation 0); give varied fields")
    scale = std / SIGMA_DATA
    with torch.random.fork_rng(devices=[]):  # the initial weights follow config.seed, not the global state
        torch.manual_seed(config.seed)
        denoiser = Denoiser(build_prior_network(config), "edm")
    tc = TrainConfig(
        steps=config.steps,
        batch_size=min(config.batch_size, fields.shape[0]),
        lr=config.lr,
        ema_decay=config.ema_decay,
        seed=config.seed,
        checkpoint_every=max(config.steps // 4, 250),
        warmup_steps=min(100, config.steps // 10),
    )
    result = train(
        denoiser,
        EDM(),
        (fields / scale).float().contiguous(),
        tc,
        out_dir=out_dir,
        progress=progress,
        device=device,
    )
    spec = {"name": problem.name, "options": problem.config()} if problem is not None else None
    info = {
        "field_shape": list(fields.shape[1:]),
        "prior_config": asdict(config),
        "problem": spec,
        "training": {
            "num_fields": int(fields.shape[0]),
            "train_steps": result.step,
            "final_loss": float(result.losses[-1]) if result.losses else None,
        },
    }
    prior = FieldPrior(result.ema.eval().requires_grad_(False), scale, info=info)
    if out_dir is not None:
        prior.save_pretrained(Path(out_dir) / "model")
    return prior


def model_dir(path) -> Path:
    """A bundle folder, or a training run folder that holds one in ``model/``."""
    path = Path(path)
    if not (path / "config.json").exists() and (path / "model").is_dir():
        return path / "model"
    return path


def load_prior(path, device="cpu") -> FieldPrior:
    """Load a prior bundle (or the ``model/`` bundle of a ``train_prior`` run folder) onto ``device``."""
    bundle = load_pretrained(model_dir(path), domain=DOMAIN, device=device)
    cfg = bundle.config
    if cfg.get("kind") != KIND or bundle.denoiser is None:
        raise BundleError(
            f"{bundle.path} holds no field prior (kind {cfg.get('kind')!r}); give a folder "
            "written by `steerdiff-inverse train-prior` or FieldPrior.save_pretrained"
        )
    try:
        scale, lo, hi = float(cfg["scale"]), float(cfg["sigma_min"]), float(cfg["sigma_max"])
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(
            f"{bundle.path / 'config.json'} lacks the prior's scale or noise range ({err!r}); "
            "the bundle is corrupt, save it again"
        ) from None
    info = {k: cfg.get(k) for k in ("field_shape", "prior_config", "problem", "training")}
    return FieldPrior(bundle.denoiser, scale, lo, hi, info=info)
