"""Denoiser networks. All share one interface:

    net(x, c_noise, cond=None, cond_mask=None) -> tensor of x's exact shape

with ``c_noise`` of shape (B,) (c_noise = ln(sigma)/4), an optional ``cond`` of shape (B, cond_dim) and an
optional bool ``cond_mask`` (B,) whose False rows use the learned null condition (classifier-free guidance).

Each network keeps its dataclass config in ``net.config`` and its registry key in ``net.name``, so a
checkpoint stores ``{"name": net.name, "config": dataclasses.asdict(net.config)}`` as JSON and rebuilds the
network with ``build_network(name, **config)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .blocks import config_fields
from .embeddings import NoiseCondEmbedding
from .mlp import MLP, MLPConfig
from .s4d import S4DLayer, S4DNet, S4DNetConfig
from .unet1d import UNet1D, UNet1DConfig
from .unet2d import UNet2D, UNet2DConfig

NETWORKS: dict[str, Any] = {"mlp": MLP, "unet1d": UNet1D, "unet2d": UNet2D, "s4d": S4DNet}


def build_network(name: str, **config) -> nn.Module:
    """Build a registered network from its name and config fields, e.g. ``build_network("mlp", dim=2)``."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; valid names: {sorted(NETWORKS)}")
    cls = NETWORKS[name]
    fields = config_fields(cls.config_class)
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown} for network {name!r}; valid fields: {fields}")
    missing = [
        f.name
        for f in dataclasses.fields(cls.config_class)
        if f.name not in config and f.default is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"network {name!r} needs config field(s) {missing}")
    return cls(cls.config_class(**config))


__all__ = [
    "MLP",
    "MLPConfig",
    "UNet1D",
    "UNet1DConfig",
    "UNet2D",
    "UNet2DConfig",
    "S4DNet",
    "S4DNetConfig",
    "S4DLayer",
    "NoiseCondEmbedding",
    "NETWORKS",
    "build_network",
]
