"""S4D sequence layer in pure PyTorch, and a TSDiff-style backbone built from it.

S4D (Gu et al., 2022) is a diagonal state-space model per channel h, with N/2 complex modes n:

    x'(t) = A x(t) + B u(t),   y(t) = 2 Re(C x(t)) + D u(t),   A_n = -1/2 + i pi n   (S4D-Lin), B = 1.

Zero-order hold with step dt gives  x_k = dA x_{k-1} + dB u_k  with  dA = exp(dt A),  dB = (dA - 1) / A,
so y = K * u + D u  with the kernel  K_l = 2 Re(sum_n C_n dB_n dA_n^l)  (a Vandermonde product), applied as
a causal convolution with an FFT of length 2L. ``bidirectional=True`` adds a second kernel run backwards in
time (the S4 / TSDiff recipe), so every output sees the whole sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import check_config, check_shape, require, resolve_config
from .embeddings import NoiseCondEmbedding


class S4DLayer(nn.Module):
    """S4D layer on (B, H, L): SSM convolution + skip D, then GELU, dropout and a GLU output projection."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        bidirectional: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dropout: float = 0.0,
    ):
        super().__init__()
        require(d_model >= 1, f"S4DLayer d_model must be >= 1, got {d_model}")
        require(
            d_state >= 2 and d_state % 2 == 0,
            f"S4DLayer d_state must be an even number >= 2 (conjugate pairs of modes), got {d_state}",
        )
        require(0 < dt_min <= dt_max, f"S4DLayer needs 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        h, n = d_model, d_state // 2
        self.d_model, self.bidirectional = d_model, bidirectional
        self.log_dt = nn.Parameter(torch.rand(h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.log_A_real = nn.Parameter(torch.full((h, n), math.log(0.5)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n, dtype=torch.float32).repeat(h, 1))
        # C per direction, stored as (real, imag) pairs: (directions, H, N/2, 2)
        directions = 2 if bidirectional else 1
        self.C = nn.Parameter(torch.view_as_real(torch.randn(directions, h, n, dtype=torch.cfloat)))
        self.D = nn.Parameter(torch.randn(h))
        self.post = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Conv1d(h, 2 * h, 1), nn.GLU(dim=1))

    @property
    def dt(self) -> torch.Tensor:
        return self.log_dt.exp()

    @property
    def A(self) -> torch.Tensor:
        return torch.complex(-self.log_A_real.exp(), self.A_imag)

    def kernel(self, length: int) -> torch.Tensor:
        """The SSM kernels K (directions, H, L), by ZOH discretisation and a Vandermonde product."""
        A = self.A
        dtA = A * self.dt[:, None]  # (H, N/2)
        CB = torch.view_as_complex(self.C) * (torch.exp(dtA) - 1) / A  # C * dB
        steps = torch.arange(length, device=A.device, dtype=self.log_dt.dtype)
        vandermonde = torch.exp(dtA[..., None] * steps)  # (H, N/2, L): dA ** l
        return 2 * torch.einsum("khn,hnl->khl", CB, vandermonde).real

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        """y = K * u + D u: the linear state-space part alone (FFT convolution)."""
        check_shape(u, ("B", self.d_model, "L"), "S4DLayer", "u")
        length = u.shape[-1]
        k = self.kernel(length)
        if self.bidirectional:  # causal kernel on [0, L), reversed anti-causal kernel on (L, 2L)
            k = nn.functional.pad(k[0], (0, length)) + nn.functional.pad(k[1].flip(-1), (length, 0))
        else:
            k = k[0]
        n = 2 * length
        y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :length]
        return y + u * self.D[:, None]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.post(self.ssm(u))


@dataclass
class S4DNetConfig:
    in_channels: int
    hidden_channels: int = 64
    num_blocks: int = 3
    d_state: int = 64  # TSDiff uses 128
    bidirectional: bool = True
    emb_dim: int = 128
    dropout: float = 0.0
    init_skip: bool = False  # TSDiff's init_skip: add the input to the output
    cond_dim: int = 0
    noise_embedding: str = "sinusoidal"

    def __post_init__(self):
        check_config(self, positive=("in_channels", "hidden_channels", "num_blocks", "emb_dim"))
        require(
            self.d_state >= 2 and self.d_state % 2 == 0,
            f"S4DNetConfig.d_state must be an even number >= 2, got {self.d_state}",
        )


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of (B, H, L), separately at every position (keeps causality)."""

    def forward(self, x):
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class S4DBlock(nn.Module):
    """SSSD/TSDiff residual block: + embedding, pre-LN S4D with residual, tanh*sigmoid gate, then
    1x1 convs to a residual output and a skip output (the last block has only the skip)."""

    def __init__(
        self, hidden: int, emb_dim: int, d_state: int, bidirectional: bool, dropout: float, last: bool = False
    ):
        super().__init__()
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, hidden))
        self.norm = ChannelLayerNorm(hidden)
        self.s4 = S4DLayer(hidden, d_state, bidirectional, dropout=dropout)
        self.gate = nn.Conv1d(hidden, 2 * hidden, 1)
        self.res_out = None if last else nn.Conv1d(hidden, hidden, 1)  # the last block only feeds the skips
        self.skip_out = nn.Conv1d(hidden, hidden, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor):
        h = x + self.emb(emb)[:, :, None]
        h = h + self.s4(self.norm(h))
        a, b = self.gate(h).chunk(2, dim=1)
        h = torch.tanh(a) * torch.sigmoid(b)
        res = None if self.res_out is None else (x + self.res_out(h)) / math.sqrt(2)
        return res, self.skip_out(h)


class S4DNet(nn.Module):
    """TSDiff-style S4 backbone; forward(x (B, C, L), c_noise (B,)) -> (B, C, L) for any L >= 1."""

    name = "s4d"
    config_class = S4DNetConfig

    def __init__(self, config: S4DNetConfig | None = None, **kwargs):
        super().__init__()
        self.config = cfg = resolve_config(S4DNetConfig, config, kwargs)
        c, h = cfg.in_channels, cfg.hidden_channels
        self.embed = NoiseCondEmbedding(cfg.emb_dim, cfg.cond_dim, cfg.noise_embedding)
        self.proj_in = nn.Sequential(nn.Conv1d(c, h, 1), nn.ReLU())
        last = cfg.num_blocks - 1
        self.blocks = nn.ModuleList(
            S4DBlock(h, cfg.emb_dim, cfg.d_state, cfg.bidirectional, cfg.dropout, last=(i == last))
            for i in range(cfg.num_blocks)
        )
        self.proj_out = nn.Sequential(nn.Conv1d(h, h, 1), nn.ReLU(), nn.Conv1d(h, c, 1))

    def forward(self, x, c_noise, cond=None, cond_mask=None):
        check_shape(x, ("B", self.config.in_channels, "L"), "S4DNet")
        emb = self.embed(c_noise, cond, cond_mask, batch_size=x.shape[0])
        h = self.proj_in(x)
        skip = 0
        for block in self.blocks:
            h, s = block(h, emb)
            skip = skip + s
        out = self.proj_out(skip / math.sqrt(len(self.blocks)))
        return out + x if self.config.init_skip else out
