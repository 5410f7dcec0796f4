"""Shared fixtures: an exact Gaussian prior over windows stands in for a trained model where maths is
tested."""

import pytest
import torch

from steerdiff.core.analytic import gaussian
from steerdiff.timeseries.model import TSDiff, TSDiffConfig

CONTEXT, PRED = 16, 8


def prior_cov(length: int) -> torch.Tensor:
    i = torch.arange(length, dtype=torch.float64)
    return torch.exp(-((i[:, None] - i[None]) ** 2) / (2 * 3.0**2)) * 0.09 + 0.01 * torch.eye(length)


@pytest.fixture
def gaussian_model():
    """TSDiff with the exact denoiser of N(1, K) windows (no lags): the maths without any training."""
    cfg = TSDiffConfig(CONTEXT, PRED, lags=(), freq="H")
    length = CONTEXT + PRED
    prior = gaussian(torch.ones(length, dtype=torch.float32), prior_cov(length).float())
    return TSDiff(cfg, denoiser=prior)
