"""Small MLPs for agents and world models; an ensemble of E MLPs runs as one batched matmul."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["EnsembleLinear", "EnsembleMLP", "mlp"]


def mlp(inp: int, out: int, hidden: int = 256, layers: int = 2) -> nn.Sequential:
    mods, d = [], inp
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    return nn.Sequential(*mods, nn.Linear(d, out))


class EnsembleLinear(nn.Module):
    """E independent linear layers: (E, N, in) -> (E, N, out)."""

    def __init__(self, ensemble: int, inp: int, out: int):
        super().__init__()
        bound = 1 / math.sqrt(inp)
        self.weight = nn.Parameter(torch.empty(ensemble, inp, out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """E MLPs evaluated together. Input (N, in) is shared by all members, or (E, N, in) one per member."""

    def __init__(
        self,
        ensemble: int,
        inp: int,
        out: int,
        hidden: int = 256,
        layers: int = 2,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.ensemble = ensemble
        dims = [inp] + [hidden] * layers
        self.layers = nn.ModuleList(
            EnsembleLinear(ensemble, a, b) for a, b in zip(dims, dims[1:], strict=False)
        )
        self.head = EnsembleLinear(ensemble, dims[-1], out)
        self.act = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.expand(self.ensemble, *x.shape)
        for layer in self.layers:
            x = self.act(layer(x))
        return self.head(x)
