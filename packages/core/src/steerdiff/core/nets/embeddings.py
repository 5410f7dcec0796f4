"""Embeddings of the noise level and of an optional condition vector.

Every network turns ``c_noise`` (B,) into one vector per batch item with :class:`NoiseCondEmbedding`:

    emb = MLP(features(c_noise)) + (MLP(cond) where cond_mask else null)

``c_noise`` follows the core's convention c_noise = ln(sigma) / 4, so it lies roughly in [-2, 1.5].
The learned ``null`` vector stands in for a missing condition: rows where ``cond`` is None or
``cond_mask`` is False. Classifier-free guidance trains with random ``cond_mask`` dropout and samples
with a cond and an uncond half in one batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NOISE_EMBEDDINGS = ("sinusoidal", "fourier")


class SinusoidalFeatures(nn.Module):
    """Transformer/DDPM sinusoidal features of ``scale * c_noise``.

    ``scale`` = 250 maps c_noise in [-2, 1.5] onto a range of ~900, like DDPM's 1000 integer steps, so the
    usual frequencies 1 ... 1/max_period resolve both nearby and distant noise levels.
    """

    def __init__(self, dim: int, max_period: float = 10000.0, scale: float = 250.0):
        super().__init__()
        half = dim // 2
        freqs = scale * torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    freqs: torch.Tensor

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        args = c[:, None].to(self.freqs.dtype) * self.freqs
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class FourierFeatures(nn.Module):
    """Random Fourier features (Song et al.'s Gaussian Fourier projection) with a fixed seed."""

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        freqs = 2 * math.pi * scale * torch.randn(dim // 2, generator=gen)
        self.register_buffer("freqs", freqs)  # saved with the weights

    freqs: torch.Tensor

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        args = c[:, None].to(self.freqs.dtype) * self.freqs
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def mlp2(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))


class NoiseCondEmbedding(nn.Module):
    """``(c_noise, cond, cond_mask) -> (B, emb_dim)``, checking the shapes of all three."""

    def __init__(self, emb_dim: int, cond_dim: int = 0, kind: str = "sinusoidal"):
        super().__init__()
        if kind not in NOISE_EMBEDDINGS:
            raise ValueError(f"unknown noise embedding {kind!r}; choose one of {list(NOISE_EMBEDDINGS)}")
        self.features = SinusoidalFeatures(emb_dim) if kind == "sinusoidal" else FourierFeatures(emb_dim)
        self.noise_mlp = mlp2(emb_dim, emb_dim)
        self.cond_dim = cond_dim
        if cond_dim > 0:
            self.cond_mlp = mlp2(cond_dim, emb_dim)
            self.null = nn.Parameter(0.02 * torch.randn(emb_dim))

    def forward(self, c_noise: torch.Tensor, cond=None, cond_mask=None, *, batch_size: int) -> torch.Tensor:
        if not torch.is_tensor(c_noise) or c_noise.shape != (batch_size,):
            got = tuple(c_noise.shape) if torch.is_tensor(c_noise) else type(c_noise).__name__
            raise ValueError(
                f"c_noise must have shape (B,) = ({batch_size},), one noise level per batch item; got {got}"
            )
        if not c_noise.is_floating_point():
            raise ValueError(f"c_noise must be a float tensor (c_noise = ln(sigma)/4), got {c_noise.dtype}")
        emb = self.noise_mlp(self.features(c_noise))
        if self.cond_dim == 0:
            if cond is not None or cond_mask is not None:
                raise ValueError(
                    "this network was built with cond_dim=0 and takes no cond/cond_mask; "
                    "build it with cond_dim > 0 for conditional use"
                )
            return emb
        return emb + self.embed_cond(cond, cond_mask, batch_size)

    def embed_cond(self, cond, cond_mask, batch_size: int) -> torch.Tensor:
        if cond is None:
            if cond_mask is not None:
                raise ValueError("cond_mask was given without cond; for an unconditional call pass neither")
            return self.null.expand(batch_size, -1)
        if not torch.is_tensor(cond) or cond.shape != (batch_size, self.cond_dim):
            got = tuple(cond.shape) if torch.is_tensor(cond) else type(cond).__name__
            raise ValueError(
                f"cond must have shape (B, cond_dim) = ({batch_size}, {self.cond_dim}), got {got}"
            )
        if not cond.is_floating_point():
            raise ValueError(f"cond must be a float tensor, got dtype {cond.dtype}")
        cond = cond.to(self.null.dtype)
        if cond_mask is None:
            return self.cond_mlp(cond)
        is_tensor = torch.is_tensor(cond_mask)
        if not is_tensor or cond_mask.shape != (batch_size,) or cond_mask.dtype != torch.bool:
            got = f"{tuple(cond_mask.shape)} {cond_mask.dtype}" if is_tensor else type(cond_mask).__name__
            raise ValueError(f"cond_mask must be a bool tensor of shape (B,) = ({batch_size},), got {got}")
        keep = cond_mask[:, None]
        # zero the dropped rows first, so NaN/garbage there cannot leak into gradients
        cond = torch.where(keep, cond, torch.zeros_like(cond))
        return torch.where(keep, self.cond_mlp(cond), self.null)
