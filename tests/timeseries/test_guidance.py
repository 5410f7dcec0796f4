import inspect
from itertools import pairwise

import pytest
import torch

from steerdiff.timeseries.forecast import complete
from steerdiff.timeseries.guidance import ObservationLoss, quantile_levels, self_guidance

from .conftest import CONTEXT


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
    return complete(
        model,
        y,
        num_samples=6,
        guidance=guidance,
        scale=scale,
        solver=solver,
        num_steps=30,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )


@pytest.mark.parametrize("kind", ["mse", "quantile"])
@pytest.mark.parametrize("solver", ["ddpm", "ddim"])
def test_scale_zero_equals_unconditional_sampling(gaussian_model, kind, solver):
    y = _y()
    assert torch.equal(
        _run(gaussian_model, y, kind, 0.0, solver), _run(gaussian_model, y, "none", 0.0, solver)
    )


@pytest.mark.parametrize("kind", ["mse", "quantile"])
@pytest.mark.parametrize("solver", ["ddpm", "ddim"])
def test_misfit_to_observations_falls_as_the_scale_grows(gaussian_model, kind, solver):
    y = _y()
    misfits = [_misfit(_run(gaussian_model, y, kind, s, solver), y) for s in (0.0, 0.3, 1.0, 3.0, 10.0)]
    assert all(a > b for a, b in pairwise(misfits)), misfits
    assert misfits[-1] < 0.7 * misfits[0]


def test_guidance_leaves_the_window_scale_invariant(gaussian_model):
    # the same window in other units gives the same forecast in those units (mean scaling)
    y = _y()
    a = _run(gaussian_model, y, "quantile", 2.0)
    b = _run(gaussian_model, 1000 * y, "quantile", 2.0)
    assert torch.allclose(1000 * a, b, rtol=1e-3, atol=1e-2)


def test_standardised_model_forecasts_move_with_the_level_and_scale_with_the_units(gaussian_model):
    # with scaling="standard" the same window shifted by c or in other units gives the same forecast, shifted
    # or in those units: (y - mean) / std is invariant to both
    gaussian_model.config.scaling = "standard"
    y = _y()
    a = _run(gaussian_model, y, "quantile", 2.0)
    assert torch.allclose(a + 50.0, _run(gaussian_model, y + 50.0, "quantile", 2.0), atol=1e-3)
    assert torch.allclose(1000 * a, _run(gaussian_model, 1000 * y, "quantile", 2.0), rtol=1e-3, atol=1e-2)


def test_quantile_guidance_orders_samples_by_their_level(gaussian_model):
    y = _y(n=4)
    s = complete(
        gaussian_model,
        y,
        num_samples=9,
        guidance="quantile",
        scale=3.0,
        num_steps=30,
        generator=torch.Generator().manual_seed(0),
    )
    bias = (s[..., :CONTEXT] - y[:, None, :CONTEXT]).mean((0, 2))  # per level, low to high
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
    y[:, :CONTEXT] *= torch.linspace(1, 1e30, CONTEXT)  # wildly off-manifold observations
    with pytest.raises(GuidanceDiverged, match="lower the scale"):
        _run(gaussian_model, y, "mse", 1e30)


# ---- the scale is the paper's s: one guided step against TSDiff's VP formulas, on a tiny random S4D network


def _tiny_model():
    from steerdiff.timeseries.model import TSDiff, TSDiffConfig

    torch.manual_seed(0)
    model = TSDiff(TSDiffConfig(6, 3, lags=(2,), hidden_channels=8, num_blocks=1, d_state=4, emb_dim=8))
    model.denoiser.double()
    return model


def _paper_energy_grad(model, x_vp, sigma, observed, levels):
    """grad_{x_t} E in VP coordinates, x0-hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar) (TSDiff's
    fast_denoise)."""
    abar = 1 / (1 + sigma**2)
    with torch.enable_grad():
        xv = x_vp.detach().requires_grad_(True)
        x_sig = xv / abar**0.5  # the core's sigma space: x = x_t / sqrt(abar)
        eps = (x_sig - model.denoiser(x_sig, sigma)) / sigma
        x0 = (xv - (1 - abar) ** 0.5 * eps) / abar**0.5
        mask = torch.isfinite(observed)
        e = torch.where(mask, observed, 0.0) - x0
        if levels is None:
            energy = torch.where(mask, e**2, 0.0).sum()
        else:
            k = levels.double().repeat(x0.shape[0] // levels.numel())[:, None, None]
            energy = torch.where(mask, torch.maximum(k * e, (k - 1) * e), 0.0).sum()
        (grad,) = torch.autograd.grad(energy, xv)
    return eps.detach(), grad


@pytest.mark.parametrize("kind", ["mse", "quantile"])
@pytest.mark.parametrize("index", [0, 40, 97])
def test_guided_step_is_the_papers_formula(kind, index):
    from steerdiff.core.sampling import sample

    model = _tiny_model()
    n, s_scale = 4, 3.0
    g = torch.Generator().manual_seed(index)
    observed = torch.randn(n, 2, 9, generator=g, dtype=torch.float64)
    observed[:, 0, 6:] = float("nan")
    observed[:, 1, 8:] = float("nan")
    levels = quantile_levels(n) if kind == "quantile" else None
    guide = self_guidance(observed[:1].expand(n, -1, -1), s_scale, kind, n if levels is not None else None)
    grid = model.sigmas(100)
    sigma, sigma_next = float(grid[index]), float(grid[index + 1])
    abar, abar_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
    x_vp = torch.randn(n, 2, 9, generator=g, dtype=torch.float64)
    eps, grad = _paper_energy_grad(model, x_vp, sigma, observed[:1].expand(n, -1, -1), levels)
    grid2 = torch.tensor([sigma, sigma_next], dtype=torch.float64)

    # DDIM (eta = 0): the TSDiff code's guided noise eps + s sqrt(1 - abar) grad E, then the DDIM update
    one_step = (
        {"allow_nonzero_end": True} if "allow_nonzero_end" in inspect.signature(sample).parameters else {}
    )
    ours = (
        sample(model.denoiser, x_vp / abar**0.5, grid2, "ddim", guidance=[guide], **one_step).x
        * abar_next**0.5
    )
    eps_g = eps + s_scale * (1 - abar) ** 0.5 * grad
    paper = abar_next**0.5 * (x_vp - (1 - abar) ** 0.5 * eps_g) / abar**0.5 + (1 - abar_next) ** 0.5 * eps_g
    assert torch.allclose(ours, paper, rtol=1e-9, atol=1e-9)

    # DDPM: the paper's eq. 2, mu_theta(x_t) + s beta_tilde_t grad log p(y | x_t) + sqrt(beta_tilde_t) z
    ours = (
        sample(
            model.denoiser,
            x_vp / abar**0.5,
            grid2,
            "ddpm",
            guidance=[guide],
            generator=torch.Generator().manual_seed(7),
            **one_step,
        ).x
        * abar_next**0.5
    )
    z = torch.randn(x_vp.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    alpha = abar / abar_next
    beta = 1 - alpha
    beta_tilde = beta * (1 - abar_next) / (1 - abar)
    mu = (x_vp - beta / (1 - abar) ** 0.5 * eps) / alpha**0.5
    paper = mu - s_scale * beta_tilde * grad + beta_tilde**0.5 * z
    assert torch.allclose(ours, paper, rtol=1e-9, atol=1e-9)


def test_last_ddpm_step_is_unguided_like_the_paper():
    # beta_tilde_1 = 0: the paper's final step is the model mean (= x0-hat), whatever the observations
    from steerdiff.core.sampling import sample

    model = _tiny_model()
    x = torch.randn(2, 2, 9, dtype=torch.float64)
    grid = model.sigmas(100)[-2:]
    guide = self_guidance(torch.zeros(2, 2, 9, dtype=torch.float64), 5.0, "mse")
    guided = sample(model.denoiser, x, grid, "ddpm", guidance=[guide]).x
    assert torch.equal(guided, sample(model.denoiser, x, grid, "ddpm").x)


def test_ddpm_step_weight_by_hand():
    from steerdiff.timeseries.guidance import ddpm_step_weight

    # sigma^2 = 3 (abar 1/4), sigma'^2 = 1 (abar' 1/2): alpha = 1/2, beta = 1/2, beta_tilde = 1/2 * (1/2) /
    # (3/4) = 1/3; weight = beta_tilde sqrt(alpha) / beta = (2/3) sqrt(1/2)
    assert ddpm_step_weight(3**0.5, 1.0) == pytest.approx(2 / 3 * 0.5**0.5)
    assert ddpm_step_weight(1.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="sigma_next < sigma"):
        ddpm_step_weight(1.0, 2.0)
