"""Small pieces shared by the networks: shape checks, config handling, and the conv blocks of both U-Nets.

The conv blocks are written once for 1-D and 2-D (``dims`` = 1 or 2).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import NOISE_EMBEDDINGS

ACTIVATIONS = {"silu": nn.SiLU, "mish": nn.Mish, "gelu": nn.GELU, "relu": nn.ReLU}
PADDING_MODES = ("zeros", "circular")


def require(ok: bool, message: str) -> None:
    """Raise ValueError(message) unless ``ok`` (used by the config dataclasses)."""
    if not ok:
        raise ValueError(message)


def check_config(config, positive: tuple[str, ...]) -> None:
    """Checks every network config shares: positive sizes, an even emb_dim, known names, cond_dim >= 0."""
    name = type(config).__name__
    for field in positive:
        value = getattr(config, field)
        require(value >= 1, f"{name}.{field} must be >= 1, got {value}")
    require(config.emb_dim % 2 == 0, f"{name}.emb_dim must be even, got {config.emb_dim}")
    require(config.cond_dim >= 0, f"{name}.cond_dim must be >= 0, got {config.cond_dim}")
    require(
        config.noise_embedding in NOISE_EMBEDDINGS,
        f"{name}.noise_embedding must be one of {NOISE_EMBEDDINGS}, got {config.noise_embedding!r}",
    )
    if hasattr(config, "activation"):
        require(
            config.activation in ACTIVATIONS,
            f"{name}.activation must be one of {list(ACTIVATIONS)}, got {config.activation!r}",
        )
    if hasattr(config, "channel_mults"):
        config.channel_mults = tuple(int(m) for m in config.channel_mults)  # JSON gives lists
        require(
            len(config.channel_mults) >= 1 and min(config.channel_mults) >= 1,
            f"{name}.channel_mults must be a non-empty tuple of ints >= 1, got {config.channel_mults}",
        )


def make_activation(name: str) -> nn.Module:
    require(name in ACTIVATIONS, f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def resolve_config(config_class: type, config, kwargs: dict):
    """``Net(config)`` or ``Net(**fields)``: return the config dataclass either way."""
    if config is None:
        return config_class(**kwargs)
    if kwargs:
        raise ValueError(
            f"pass either a {config_class.__name__} or keyword fields, not both (got {sorted(kwargs)})"
        )
    if not isinstance(config, config_class):
        raise ValueError(f"expected a {config_class.__name__}, got {type(config).__name__}")
    return config


def config_fields(config_class: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class)]


def check_shape(x: torch.Tensor, pattern: tuple, owner: str, what: str = "x") -> None:
    """Check ``x.shape`` against a pattern of ints (fixed sizes) and strings (free sizes, e.g. "B", "L")."""
    ok = x.ndim == len(pattern) and all(
        isinstance(p, str) or size == p for size, p in zip(x.shape, pattern, strict=False)
    )
    if not ok:
        expected = "(" + ", ".join(str(p) for p in pattern) + ")"
        raise ValueError(f"{owner} expects {what} of shape {expected}, got {tuple(x.shape)}")


def groups_for(channels: int, groups: int) -> int:
    """The largest group count <= ``groups`` that divides ``channels``."""
    return math.gcd(channels, groups)


def pad_to_multiple(x: torch.Tensor, multiple: int, dims: int, mode: str = "zeros") -> torch.Tensor:
    """Pad the last ``dims`` axes at their end up to a multiple of ``multiple``.

    "zeros" pads with zeros; "circular" continues the signal periodically (wraps around, any amount).
    """
    for axis in range(x.ndim - dims, x.ndim):
        size = x.shape[axis]
        target = -(-size // multiple) * multiple
        if target == size:
            continue
        if mode == "circular":
            index = torch.arange(target, device=x.device) % size
            x = x.index_select(axis, index)
        else:
            pad = [0, 0] * (x.ndim - 1 - axis) + [0, target - size]
            x = F.pad(x, pad)
    return x


def crop_to(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Crop the trailing axes of ``x`` back to ``shape``."""
    index = (...,) + tuple(slice(0, s) for s in shape)
    return x[index]


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    return (nn.Conv1d if dims == 1 else nn.Conv2d)(*args, **kwargs)


class ConvBlock(nn.Sequential):
    """Conv -> GroupNorm -> activation (Diffuser's Conv1dBlock, for any ``dims``)."""

    def __init__(self, in_ch, out_ch, dims, kernel_size=3, groups=8, act="silu", padding_mode="zeros"):
        super().__init__(
            conv_nd(dims, in_ch, out_ch, kernel_size, padding=kernel_size // 2, padding_mode=padding_mode),
            nn.GroupNorm(groups_for(out_ch, groups), out_ch),
            make_activation(act),
        )


class ResBlock(nn.Module):
    """Two conv blocks with the (noise + condition) embedding added in between, plus a residual path.

    This is Diffuser's ResidualTemporalBlock, written for 1-D and 2-D inputs.
    """

    def __init__(
        self,
        in_ch,
        out_ch,
        emb_dim,
        dims,
        kernel_size=3,
        groups=8,
        act="silu",
        padding_mode="zeros",
        dropout=0.0,
    ):
        super().__init__()
        self.block1 = ConvBlock(in_ch, out_ch, dims, kernel_size, groups, act, padding_mode)
        self.emb = nn.Sequential(make_activation(act), nn.Linear(emb_dim, out_ch))
        self.dropout = nn.Dropout(dropout)
        self.block2 = ConvBlock(out_ch, out_ch, dims, kernel_size, groups, act, padding_mode)
        self.skip = conv_nd(dims, in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.dims = dims

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        e = self.emb(emb)
        h = self.block1(x) + e.reshape(*e.shape, *([1] * self.dims))
        return self.block2(self.dropout(h)) + self.skip(x)


class Downsample(nn.Module):
    """Halve every spatial size with a stride-2 convolution (sizes must be even)."""

    def __init__(self, channels, dims, padding_mode="zeros"):
        super().__init__()
        self.conv = conv_nd(dims, channels, channels, 3, stride=2, padding=1, padding_mode=padding_mode)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """Double every spatial size: nearest-neighbour upsampling, then a convolution.

    (Diffuser uses a transposed convolution; this one also supports circular padding.)
    """

    def __init__(self, channels, dims, padding_mode="zeros"):
        super().__init__()
        self.conv = conv_nd(dims, channels, channels, 3, padding=1, padding_mode=padding_mode)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class EmbSequential(nn.Sequential):
    """A Sequential that hands the embedding to the blocks that take one."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x
