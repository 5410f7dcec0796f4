"""MLP denoiser for flat data (B, D): a residual stack with the noise embedding in every block."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import check_config, check_shape, make_activation, require, resolve_config
from .embeddings import NoiseCondEmbedding

NORMS = ("layernorm", "none")


@dataclass
class MLPConfig:
    dim: int  # data dimension D
    hidden: int = 256  # width of the residual stream
    depth: int = 4  # number of residual blocks
    emb_dim: int = 128
    norm: str = "layernorm"  # "layernorm" | "none"
    film: bool = False  # False: add the embedding; True: FiLM scale and shift
    activation: str = "silu"
    dropout: float = 0.0
    cond_dim: int = 0
    noise_embedding: str = "sinusoidal"

    def __post_init__(self):
        check_config(self, positive=("dim", "hidden", "depth", "emb_dim"))
        require(self.norm in NORMS, f"MLPConfig.norm must be one of {NORMS}, got {self.norm!r}")


class MLPBlock(nn.Module):
    """h + Linear(act(Linear(act(norm(h) + emb))))  (or FiLM: norm(h) * (1 + scale) + shift)."""

    def __init__(self, width: int, emb_dim: int, norm: str, film: bool, act: str, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width) if norm == "layernorm" else nn.Identity()
        self.film = film
        self.emb = nn.Sequential(make_activation(act), nn.Linear(emb_dim, 2 * width if film else width))
        self.body = nn.Sequential(
            make_activation(act),
            nn.Linear(width, width),
            make_activation(act),
            nn.Dropout(dropout),
            nn.Linear(width, width),
        )

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        y = self.norm(h)
        if self.film:
            scale, shift = self.emb(emb).chunk(2, dim=-1)
            y = y * (1 + scale) + shift
        else:
            y = y + self.emb(emb)
        return h + self.body(y)


class MLP(nn.Module):
    """``MLP(MLPConfig(dim=D))`` or ``MLP(dim=D, ...)``; forward(x (B, D), c_noise (B,)) -> (B, D)."""

    name = "mlp"
    config_class = MLPConfig

    def __init__(self, config: MLPConfig | None = None, **kwargs):
        super().__init__()
        self.config = cfg = resolve_config(MLPConfig, config, kwargs)
        self.embed = NoiseCondEmbedding(cfg.emb_dim, cfg.cond_dim, cfg.noise_embedding)
        self.proj_in = nn.Linear(cfg.dim, cfg.hidden)
        self.blocks = nn.ModuleList(
            MLPBlock(cfg.hidden, cfg.emb_dim, cfg.norm, cfg.film, cfg.activation, cfg.dropout)
            for _ in range(cfg.depth)
        )
        self.proj_out = nn.Sequential(
            nn.LayerNorm(cfg.hidden) if cfg.norm == "layernorm" else nn.Identity(),
            make_activation(cfg.activation),
            nn.Linear(cfg.hidden, cfg.dim),
        )

    def forward(self, x, c_noise, cond=None, cond_mask=None):
        check_shape(x, ("B", self.config.dim), "MLP")
        emb = self.embed(c_noise, cond, cond_mask, batch_size=x.shape[0])
        h = self.proj_in(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.proj_out(h)
