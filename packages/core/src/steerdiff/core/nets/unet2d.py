"""2-D U-Net for fields and piano rolls (B, C, H, W), in the DDPM / guided-diffusion layout.

``num_res_blocks`` residual blocks per level (optionally followed by self-attention at the levels listed
in ``attention_levels``; level 0 is full resolution), stride-2 downsampling between levels, a middle
block, and a decoder that concatenates one skip per encoder block.

Any H, W work: the input is padded to a multiple of 2**(levels - 1) and the output cropped back.
``padding_mode="circular"`` makes every convolution (and that padding) periodic, for fields on a torus.
The network is then exactly equivariant to shifts by multiples of 2**(levels - 1) whenever H and W are
such multiples themselves; other sizes still work but the wrap-around is only approximate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (
    PADDING_MODES,
    Downsample,
    EmbSequential,
    ResBlock,
    Upsample,
    check_config,
    check_shape,
    crop_to,
    groups_for,
    make_activation,
    pad_to_multiple,
    require,
    resolve_config,
)
from .embeddings import NoiseCondEmbedding


@dataclass
class UNet2DConfig:
    in_channels: int
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (-1,)  # self-attention levels: 0 = full resolution, -1 = coarsest
    mid_attention: bool = True
    num_heads: int = 4
    emb_dim: int = 128
    groups: int = 8
    activation: str = "silu"
    dropout: float = 0.0
    padding_mode: str = "zeros"  # "zeros" | "circular" (periodic fields)
    cond_dim: int = 0
    noise_embedding: str = "sinusoidal"

    def __post_init__(self):
        check_config(
            self,
            positive=("in_channels", "base_channels", "num_res_blocks", "num_heads", "emb_dim", "groups"),
        )
        self.attention_levels = tuple(int(a) for a in self.attention_levels)
        n = len(self.channel_mults)
        require(
            all(-n <= a < n for a in self.attention_levels),
            f"UNet2DConfig.attention_levels must lie in {-n}..{n - 1} for {n} levels, "
            f"got {self.attention_levels}",
        )
        for level in set(self.attention_levels) | ({n - 1} if self.mid_attention else set()):
            ch = self.base_channels * self.channel_mults[level]
            require(
                ch % self.num_heads == 0,
                f"UNet2DConfig: {ch} channels at attention level {level} are not divisible by "
                f"num_heads={self.num_heads}",
            )
        require(
            self.padding_mode in PADDING_MODES,
            f"UNet2DConfig.padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}",
        )


class Attention2d(nn.Module):
    """Multi-head self-attention over all H*W positions, with a residual connection."""

    def __init__(self, channels: int, num_heads: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups_for(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (B, heads, HW, c/heads) each
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet2D(nn.Module):
    """``UNet2D(in_channels=C)``; forward(x (B, C, H, W), c_noise (B,)) -> (B, C, H, W) for any H, W >= 1."""

    name = "unet2d"
    config_class = UNet2DConfig

    def __init__(self, config: UNet2DConfig | None = None, **kwargs):
        super().__init__()
        self.config = cfg = resolve_config(UNet2DConfig, config, kwargs)
        n = len(cfg.channel_mults)
        self.multiple = 2 ** (n - 1)
        pm = cfg.padding_mode
        self.embed = NoiseCondEmbedding(cfg.emb_dim, cfg.cond_dim, cfg.noise_embedding)

        def res(i, o):
            return ResBlock(i, o, cfg.emb_dim, 2, 3, cfg.groups, cfg.activation, pm, cfg.dropout)

        def attn(ch):
            return Attention2d(ch, cfg.num_heads, cfg.groups)

        def has_attention(level):
            return level in cfg.attention_levels or level - n in cfg.attention_levels

        ch = cfg.base_channels
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1, padding_mode=pm)
        self.downs = nn.ModuleList()  # each entry produces one skip
        skip_chs = [ch]
        for level, mult in enumerate(cfg.channel_mults):
            out = cfg.base_channels * mult
            for _ in range(cfg.num_res_blocks):
                layers = [res(ch, out)]
                if has_attention(level):
                    layers.append(attn(out))
                self.downs.append(EmbSequential(*layers))
                ch = out
                skip_chs.append(ch)
            if level < n - 1:
                self.downs.append(EmbSequential(Downsample(ch, 2, pm)))
                skip_chs.append(ch)
        self.mid = EmbSequential(res(ch, ch), *([attn(ch)] if cfg.mid_attention else []), res(ch, ch))
        self.ups = nn.ModuleList()  # each entry consumes one skip
        for level in reversed(range(n)):
            out = cfg.base_channels * cfg.channel_mults[level]
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_chs.pop(), out)]
                if has_attention(level):
                    layers.append(attn(out))
                if level > 0 and i == cfg.num_res_blocks:
                    layers.append(Upsample(out, 2, pm))
                self.ups.append(EmbSequential(*layers))
                ch = out
        self.head = nn.Sequential(
            nn.GroupNorm(groups_for(ch, cfg.groups), ch),
            make_activation(cfg.activation),
            nn.Conv2d(ch, cfg.in_channels, 3, padding=1, padding_mode=pm),
        )

    def forward(self, x, c_noise, cond=None, cond_mask=None):
        check_shape(x, ("B", self.config.in_channels, "H", "W"), "UNet2D")
        emb = self.embed(c_noise, cond, cond_mask, batch_size=x.shape[0])
        size = tuple(x.shape[-2:])
        h = self.conv_in(pad_to_multiple(x, self.multiple, dims=2, mode=self.config.padding_mode))
        skips = [h]
        for block in self.downs:
            h = block(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for block in self.ups:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return crop_to(self.head(h), size)
