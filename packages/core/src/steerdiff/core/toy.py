"""Built-in 2-D datasets for the quickstart, tutorials and tests: no files, no downloads."""

from __future__ import annotations

import math

import torch

from .analytic import GaussianMixture

__all__ = ["TOY_DATASETS", "toy_dataset", "ring_mixture"]


def ring_mixture(modes: int = 8, radius: float = 2.0, std: float = 0.15) -> GaussianMixture:
    """``modes`` equal Gaussians on a circle: an exact mixture, so its samples and denoiser are known."""
    angle = torch.arange(modes, dtype=torch.float64) * 2 * math.pi / modes
    means = radius * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return GaussianMixture(
        torch.ones(modes, dtype=torch.float64), means, torch.full((modes,), std**2, dtype=torch.float64)
    )


def _ring8(n, gen):
    return ring_mixture().sample(n, gen).float()


def _moons(n, gen):
    upper = torch.rand(n, generator=gen) < 0.5
    t = torch.rand(n, generator=gen) * math.pi
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    pts = torch.stack([x - 0.5, y - 0.25], 1) * 1.5
    return pts + 0.05 * torch.randn(n, 2, generator=gen)


def _spiral(n, gen):
    t = 3 * math.pi * torch.sqrt(torch.rand(n, generator=gen))
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / (1.5 * math.pi)
    return pts + 0.05 * torch.randn(n, 2, generator=gen)


TOY_DATASETS = {"ring8": _ring8, "moons": _moons, "spiral": _spiral}


def toy_dataset(name: str, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` float32 points of shape (n, 2) from ``ring8`` (8 Gaussians), ``moons`` or ``spiral``."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; choose one of {sorted(TOY_DATASETS)}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    return TOY_DATASETS[name](n, torch.Generator().manual_seed(seed))
