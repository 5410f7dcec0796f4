"""1-D temporal U-Net for sequences (B, C, L), after Diffuser's TemporalUnet (jannerm/diffuser).

Each level holds two residual conv blocks (Conv -> GroupNorm -> Mish, embedding added), then a stride-2
downsampling; the decoder mirrors it with skip connections. Differences from Diffuser: every level's skip
is used (Diffuser drops the finest one), and upsampling is nearest + conv instead of a transposed conv.
Any length works: the input is zero-padded to a multiple of 2**(levels - 1) and the output cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import (
    ConvBlock,
    Downsample,
    EmbSequential,
    ResBlock,
    Upsample,
    check_config,
    check_shape,
    crop_to,
    pad_to_multiple,
    require,
    resolve_config,
)
from .embeddings import NoiseCondEmbedding


@dataclass
class UNet1DConfig:
    in_channels: int  # channels C of (B, C, L), e.g. obs_dim + act_dim
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)  # one entry per level; len - 1 downsamplings
    kernel_size: int = 5
    emb_dim: int = 128
    groups: int = 8  # GroupNorm groups (reduced to divide the channel count)
    activation: str = "mish"
    dropout: float = 0.0
    cond_dim: int = 0
    noise_embedding: str = "sinusoidal"

    def __post_init__(self):
        check_config(self, positive=("in_channels", "base_channels", "emb_dim", "groups"))
        require(self.kernel_size % 2 == 1, f"UNet1DConfig.kernel_size must be odd, got {self.kernel_size}")


class UNet1D(nn.Module):
    """``UNet1D(in_channels=C)``; forward(x (B, C, L), c_noise (B,)) -> (B, C, L) for any L >= 1."""

    name = "unet1d"
    config_class = UNet1DConfig

    def __init__(self, config: UNet1DConfig | None = None, **kwargs):
        super().__init__()
        self.config = cfg = resolve_config(UNet1DConfig, config, kwargs)
        chs = [cfg.base_channels * m for m in cfg.channel_mults]
        n = len(chs)
        self.multiple = 2 ** (n - 1)
        self.embed = NoiseCondEmbedding(cfg.emb_dim, cfg.cond_dim, cfg.noise_embedding)

        def res(i, o):
            return ResBlock(
                i, o, cfg.emb_dim, 1, cfg.kernel_size, cfg.groups, cfg.activation, dropout=cfg.dropout
            )

        self.downs = nn.ModuleList()  # level i: two blocks -> skip i, then downsample
        self.downsamples = nn.ModuleList()
        in_ch = cfg.in_channels
        for i, ch in enumerate(chs):
            self.downs.append(EmbSequential(res(in_ch, ch), res(ch, ch)))
            self.downsamples.append(Downsample(ch, 1) if i < n - 1 else nn.Identity())
            in_ch = ch
        self.mid = EmbSequential(res(chs[-1], chs[-1]), res(chs[-1], chs[-1]))
        self.ups = nn.ModuleList()  # level i (coarse to fine): concat skip i, two blocks, upsample
        for i in reversed(range(n)):
            out = chs[i - 1] if i > 0 else chs[0]
            blocks = [res(2 * chs[i], out), res(out, out)] + ([Upsample(out, 1)] if i > 0 else [])
            self.ups.append(EmbSequential(*blocks))
        self.head = nn.Sequential(
            ConvBlock(chs[0], chs[0], 1, cfg.kernel_size, cfg.groups, cfg.activation),
            nn.Conv1d(chs[0], cfg.in_channels, 1),
        )

    def forward(self, x, c_noise, cond=None, cond_mask=None):
        check_shape(x, ("B", self.config.in_channels, "L"), "UNet1D")
        emb = self.embed(c_noise, cond, cond_mask, batch_size=x.shape[0])
        length = x.shape[-1]
        h = pad_to_multiple(x, self.multiple, dims=1)
        skips = []
        for blocks, down in zip(self.downs, self.downsamples):
            h = blocks(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid(h, emb)
        for blocks in self.ups:
            h = blocks(torch.cat([h, skips.pop()], dim=1), emb)
        return crop_to(self.head(h), (length,))
