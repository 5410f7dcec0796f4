import math

import pytest
import torch

from steerdiff.timeseries.refine import refine, representative_sigma

from .conftest import CONTEXT, PRED, prior_cov


def _context(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 1 + 0.3 * torch.sin(torch.arange(CONTEXT) / 3.0 + torch.rand(n, 1, generator=g) * 6)


def _energy_minimiser(c, sigma):
    """For a N(1, K) prior the expected denoising loss at sigma is const + sigma^2 (w-1)' A^2 (w-1),
    A = (K + sigma^2 I)^-1, so with a zero regulariser ML refinement converges to its conditional
    minimiser."""
    length = CONTEXT + PRED
    a = torch.linalg.inv(prior_cov(length) + sigma**2 * torch.eye(length, dtype=torch.float64))
    p = a @ a
    pff, pfc = p[CONTEXT:, CONTEXT:], p[CONTEXT:, :CONTEXT]
    # the model sees mean-scaled windows; scale = mean |c|
    scale = c.abs().mean(1, keepdim=True).double()
    cs = c.double() / scale - 1
    return (1 - torch.linalg.solve(pff, pfc @ cs.T).T) * scale


def test_ml_refinement_moves_a_bad_forecast_to_the_energy_minimum(gaussian_model):
    c = _context()
    base = torch.full((3, 1, PRED), 2.0)
    sigma = 0.5
    out = refine(
        gaussian_model,
        c,
        base,
        method="ml",
        weight=0.0,
        steps=300,
        lr=0.05,
        sigma=sigma,
        num_samples=16,
        generator=torch.Generator().manual_seed(0),
    )
    target = _energy_minimiser(c, sigma)
    err = (out.mean(1) - target).abs().max()
    assert err < 0.05, err
    assert (base[:, 0] - target).abs().max() > 0.5


def test_strong_regulariser_keeps_the_base_and_zero_steps_return_it(gaussian_model):
    c = _context()
    base = 1 + 0.1 * torch.randn(3, 4, PRED, generator=torch.Generator().manual_seed(1))
    same = refine(gaussian_model, c, base, steps=0, num_samples=8)
    assert torch.allclose(same, base.sort(1).values.repeat_interleave(2, 1))
    for method in ("ml", "langevin"):
        out = refine(
            gaussian_model,
            c,
            base,
            method=method,
            regularizer="mse",
            weight=1e4,
            lr=1e-5,
            noise_scale=0.0,
            steps=5,
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.allclose(out, base.sort(1).values, atol=1e-3)


def test_langevin_spreads_a_point_forecast_and_is_reproducible(gaussian_model):
    c = _context()
    base = torch.full((3, 1, PRED), 1.0)

    def run():
        return refine(
            gaussian_model,
            c,
            base,
            method="langevin",
            num_samples=10,
            generator=torch.Generator().manual_seed(3),
        )

    a, b = run(), run()
    assert torch.equal(a, b)
    assert a.shape == (3, 10, PRED) and (a.std(1) > 0.01).all()


def test_representative_sigma_default_and_from_data(gaussian_model):
    # TSDiff's step 20 of 100: t = 0.2 on VPLinear(0.01, 10)
    assert representative_sigma(gaussian_model) == pytest.approx(
        math.sqrt(math.expm1(0.5 * 9.99 * 0.04 + 0.002))
    )
    w = 1 + 0.3 * torch.randn(64, 1, CONTEXT + PRED, generator=torch.Generator().manual_seed(0))
    s = representative_sigma(gaussian_model.__class__(gaussian_model.config, _NetLike(gaussian_model)), w)
    assert gaussian_model.schedule.sigma_min < s < gaussian_model.schedule.sigma_max


class _NetLike(torch.nn.Module):
    """The analytic prior behind the Denoiser.loss interface (eps parametrization)."""

    def __init__(self, model):
        super().__init__()
        self.prior = model.denoiser

    def forward(self, x, sigma):
        return self.prior(x, sigma)

    def loss(self, x0, sigma, noise):
        x = x0 + sigma * noise
        eps_hat = (x - self.prior(x, sigma.expand(x.shape[0]))) / sigma
        return (eps_hat - noise).pow(2).flatten(1).mean(1)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"method": "hmc"}, "unknown refinement 'hmc'"),
        ({"regularizer": "l1"}, "unknown regularizer 'l1'"),
        ({"base": torch.ones(3, 1, PRED + 1)}, "base forecast must be"),
        ({"num_samples": 3, "base": torch.ones(3, 2, PRED)}, "multiple of the 2 base samples"),
    ],
)
def test_refine_errors(gaussian_model, kw, match):
    args = {"base": torch.ones(3, 1, PRED)}
    args.update(kw)
    base = args.pop("base")
    with pytest.raises(ValueError, match=match):
        refine(gaussian_model, _context(), base, **args)
