from itertools import pairwise

import pytest
import torch
from .conftest import CONTEXT
from steerdiff.timeseries.forecast import complete
from steerdiff.timeseries.guidance import ObservationLoss, quantile_levels, self_guidance


def _y(n=3, seed=0):
    """Windows with an observed context (N(1, .) values) and a NaN future."""
    g = torch.Generator().manual_seed(seed)
    y = 1 + 0.3 * torch.randn(n, CONTEXT + 8, generator=g)
    y[:, CONTEXT:] = float("nan")
    return y


def _misfit(samples, y):
    obs = y[:, None, :CONTEXT]
    return float((samples[..., :CONTEXT] - obs).pow(2).mean())


def _run(model, y, guidance, scale, solver="ddpm", seed=1, **kw):
    return complete(model, y, num_samples=6, guidance=guidance, scale=scale, solver=solver, num_steps=30,
                    generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("kind", ["mse", "quantile"])
@pytest.mark.parametrize("solver", ["ddpm", "ddim"])
def test_scale_zero_equals_unconditional_sampling(gaussian_model, kind, solver):
    y = _y()
    assert torch.equal(_run(gaussian_model, y, kind, 0.0, solver), _run(gaussian_model, y, "none", 0.0, solver))


@pytest.mark.parametrize("kind", ["mse", "quantile"])
@pytest.mark.parametrize("solver", ["ddpm", "ddim"])
def test_misfit_to_observations_falls_as_the_scale_grows(gaussian_model, kind, solver):
    y = _y()
    misfits = [_misfit(_run(gaussian_model, y, kind, s, solver), y) for s in (0.0, 0.3, 1.0, 3.0, 10.0)]
    assert all(a > b for a, b in pairwise(misfits)), misfits
    assert misfits[-1] < 0.6 * misfits[0]


def test_guidance_leaves_the_window_scale_invariant(gaussian_model):
    # the same window in other units gives the same forecast in those units (mean scaling)
    y = _y()
    a = _run(gaussian_model, y, "quantile", 2.0)
    b = _run(gaussian_model, 1000 * y, "quantile", 2.0)
    assert torch.allclose(1000 * a, b, rtol=1e-3, atol=1e-2)


def test_quantile_guidance_orders_samples_by_their_level(gaussian_model):
    y = _y(n=4)
    s = complete(gaussian_model, y, num_samples=9, guidance="quantile", scale=3.0, num_steps=30,
                 generator=torch.Generator().manual_seed(0))
    bias = (s[..., :CONTEXT] - y[:, None, :CONTEXT]).mean((0, 2))     # per level, low to high
    assert bias[:3].mean() < 0 < bias[-3:].mean()
    assert torch.all(bias[1:] - bias[:-1] > -0.02)


def test_quantile_levels_and_loss_by_hand():
    assert torch.allclose(quantile_levels(4), torch.tensor([0.2, 0.4, 0.6, 0.8]))
    observed = torch.tensor([[[1.0, float("nan"), 3.0]]])
    x0 = torch.tensor([[[0.0, 100.0, 4.0]], [[2.0, -5.0, 3.0]]])
    assert torch.equal(ObservationLoss(observed)(x0), torch.tensor([2.0, 1.0]))
    # levels 1/3, 2/3: errors y - x0 = (1, -1) and (-1, 0)
    q = ObservationLoss(observed, quantile_levels(2))(x0)
    assert torch.allclose(q, torch.tensor([1 / 3 + 2 / 3, 1 / 3]))


def test_self_guidance_errors():
    obs = torch.zeros(1, 1, 4)
    with pytest.raises(ValueError, match="unknown self-guidance 'l1'"):
        self_guidance(obs, 1.0, "l1")
    with pytest.raises(ValueError, match="needs num_samples"):
        self_guidance(obs, 1.0, "quantile")
    with pytest.raises(ValueError, match="scale must be >= 0"):
        self_guidance(obs, -1.0, "mse")
    with pytest.raises(ValueError, match="levels in"):
        ObservationLoss(obs, torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="cannot carry 3 quantile levels"):
        ObservationLoss(obs, quantile_levels(3))(torch.zeros(4, 1, 4))


def test_divergence_is_a_clear_error(gaussian_model):
    from steerdiff.timeseries.forecast import GuidanceDiverged
    y = _y()
    y[:, :CONTEXT] *= torch.linspace(1, 1e30, CONTEXT)                # wildly off-manifold observations
    with pytest.raises(GuidanceDiverged, match="lower the scale"):
        _run(gaussian_model, y, "mse", 1e30)
