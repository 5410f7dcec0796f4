"""Forecasting and imputation in chunks of rows: the same paths as in one call, with bounded memory."""

import importlib

import pytest
import torch

from steerdiff.core.guidance import ReconstructionGuidance
from steerdiff.timeseries.forecast import RowChunks, chunk_rows, forecast, impute
from steerdiff.timeseries.guidance import ObservationLoss, SelfGuidance, quantile_levels, self_guidance
from steerdiff.timeseries.model import TSDiff, TSDiffConfig

from .conftest import CONTEXT, PRED

fc = importlib.import_module("steerdiff.timeseries.forecast")  # the module (the package exports a function)


@pytest.fixture
def net_model():
    """A small untrained S4D network (the chunking does not depend on training), lags included."""
    torch.manual_seed(0)
    return TSDiff(
        TSDiffConfig(CONTEXT, PRED, lags=(4,), freq="H", hidden_channels=8, num_blocks=1, d_state=8)
    )


def _history(model, n=3):
    g = torch.Generator().manual_seed(1)
    return 1 + 0.1 * torch.randn(n, model.spec.history_length, generator=g)


@pytest.mark.parametrize("guidance", ["quantile", "mse", "none"])
def test_chunked_forecast_equals_one_call(net_model, guidance, monkeypatch):
    history = _history(net_model)
    opts = {"num_samples": 4, "guidance": guidance, "scale": 1.0, "num_steps": 8}
    whole = forecast(net_model, history, batch_size=3, generator=torch.Generator().manual_seed(0), **opts)
    one = forecast(net_model, history, batch_size=1, generator=torch.Generator().manual_seed(0), **opts)
    monkeypatch.setattr(fc, "ROW_BUDGET", 3 * net_model.spec.length * 8)  # 3 rows: chunks cut through windows
    assert chunk_rows(net_model, 4) == 3
    cut = forecast(net_model, history, generator=torch.Generator().manual_seed(0), **opts)
    assert whole.shape == (3, 4, PRED) and torch.isfinite(whole).all()
    torch.testing.assert_close(one, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cut, whole, rtol=1e-5, atol=1e-5)
    assert not whole.is_inference()  # usable with autograd afterwards, also after inference_mode


def test_chunked_impute_equals_one_call_and_keeps_observed_values(net_model, monkeypatch):
    y = torch.cat([_history(net_model), torch.ones(3, PRED)], 1)
    y[:, 6:10] = float("nan")
    opts = {"num_samples": 5, "scale": 2.0, "num_steps": 8}
    whole = impute(net_model, y, batch_size=3, generator=torch.Generator().manual_seed(3), **opts)
    monkeypatch.setattr(fc, "ROW_BUDGET", 2 * net_model.spec.length * 8)
    cut = impute(net_model, y, generator=torch.Generator().manual_seed(3), **opts)
    torch.testing.assert_close(cut, whole, rtol=1e-5, atol=1e-5)
    obs = y[:, net_model.spec.max_lag :]
    keep = torch.isfinite(obs)[:, None].expand_as(cut)
    assert torch.equal(cut[keep], obs[:, None].expand_as(cut)[keep])


def test_analytic_denoiser_chunks_too(gaussian_model, monkeypatch):
    history = 1 + 0.1 * torch.randn(2, CONTEXT, generator=torch.Generator().manual_seed(0))
    whole = forecast(
        gaussian_model, history, num_samples=3, num_steps=6, generator=torch.Generator().manual_seed(0)
    )
    monkeypatch.setattr(fc, "ROW_BUDGET", 2 * gaussian_model.spec.length * 64)
    cut = forecast(
        gaussian_model, history, num_samples=3, num_steps=6, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(cut, whole, rtol=1e-5, atol=1e-5)


def test_default_chunk_is_bounded_by_the_budget_and_batch_size_counts_windows(net_model):
    rows = chunk_rows(net_model, 100)
    assert rows * net_model.spec.length * 8 <= fc.ROW_BUDGET < (rows + 1) * net_model.spec.length * 8
    assert chunk_rows(net_model, 16, batch_size=5) == 80
    with pytest.raises(ValueError, match="batch_size must be a positive number of windows"):
        chunk_rows(net_model, 16, batch_size=0)


def test_row_chunks_returns_the_same_estimate(net_model):
    x = torch.randn(7, net_model.spec.channels, net_model.spec.length)
    with torch.no_grad():
        want = net_model.denoiser(x, 0.7)
        got = RowChunks(net_model.denoiser, 3)(x, 0.7)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("quantiles", [None, quantile_levels(4)])
def test_observation_loss_rows_is_the_slice_of_the_whole_loss(quantiles):
    observed = torch.randn(3, 2, 5)
    observed[0, 1, :2] = float("nan")
    loss = ObservationLoss(observed, quantiles)
    x0 = torch.randn(12, 2, 5)
    whole = loss(x0)
    for a, b in [(0, 12), (0, 3), (3, 9), (10, 12)]:
        torch.testing.assert_close(loss.rows(a, b, 12)(x0[a:b]), whole[a:b])
    with pytest.raises(ValueError, match="do not split over 3 observed windows"):
        loss.rows(0, 4, 10)


def test_chunked_guidance_needs_an_observation_loss_and_restores_weight_gradients(net_model):
    with pytest.raises(ValueError, match="chunk_rows needs an ObservationLoss"):
        SelfGuidance(loss=lambda x0: x0.sum((1, 2)), chunk_rows=4)
    with pytest.raises(ValueError, match="chunk_rows must be a positive number of rows"):
        self_guidance(torch.zeros(1, 2, 3), 1.0, "mse", chunk_rows=0)
    assert isinstance(self_guidance(torch.zeros(1, 2, 3), 1.0, "mse"), ReconstructionGuidance)
    assert all(p.requires_grad for p in net_model.denoiser.parameters())  # a fresh network trains
    forecast(net_model, _history(net_model, 1), num_samples=2, num_steps=3)
    assert all(p.requires_grad for p in net_model.denoiser.parameters())
