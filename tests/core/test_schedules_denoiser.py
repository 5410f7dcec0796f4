"""Schedules, step grids, denoiser parametrizations and the analytic references."""

import math

import pytest
import torch
from torch import nn

from steerdiff.core.analytic import GaussianMixture, gaussian, linear_gaussian_posterior
from steerdiff.core.denoiser import PARAMETRIZATIONS, Denoiser, eps_from_x0, score_from_x0
from steerdiff.core.schedules import EDM, SCHEDULES, VE, VPCosine, VPLinear, get_schedule, sigma_grid

ALL_SCHEDULES = [VPLinear(), VPCosine(), VE(), EDM()]


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: s.name)
def test_time_and_sigma_are_inverse(schedule):
    t = torch.linspace(schedule.t_min, schedule.t_max, 50, dtype=torch.float64)
    torch.testing.assert_close(schedule.t_of_sigma(schedule.sigma(t)), t)
    assert schedule.sigma(torch.tensor(schedule.t_min, dtype=torch.float64)) == pytest.approx(
        schedule.sigma_min
    )


def test_vp_linear_matches_discrete_ddpm():
    """The continuous VP-linear schedule is the limit of DDPM's 1000 betas in [1e-4, 0.02]."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    sigma_cont = VPLinear().sigma(t)
    sigma_disc = torch.sqrt(1 / alpha_bar - 1)
    assert ((sigma_cont / sigma_disc - 1).abs() < 0.05).all()  # within 5% at every step
    assert VPLinear().alpha(torch.tensor(1.0)) == pytest.approx(1 / math.sqrt(2))


def test_vp_cosine_alpha_bar():
    s = 0.008
    t = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    torch.testing.assert_close(1 / (1 + VPCosine().sigma(t) ** 2), f)


@pytest.mark.parametrize("spacing", ["karras", "uniform_t", "log_snr"])
@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: s.name)
def test_grids_are_decreasing_and_end_at_zero(schedule, spacing):
    g = sigma_grid(schedule, 12, spacing)
    assert g.shape == (13,) and g[-1] == 0
    assert (g[:-1].diff() < 0).all()
    assert g[0].item() == pytest.approx(schedule.sigma_max) and g[-2].item() == pytest.approx(
        schedule.sigma_min
    )


def test_grid_formulas():
    edm = EDM()
    g = sigma_grid(edm, 5, "karras", rho=7)[:-1]
    ramp = torch.linspace(0, 1, 5, dtype=torch.float64)
    torch.testing.assert_close(g, (80 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7)
    logs = torch.log(sigma_grid(edm, 6, "log_snr")[:-1])
    torch.testing.assert_close(logs.diff(), torch.full((5,), logs.diff()[0].item(), dtype=torch.float64))
    t = VPLinear().t_of_sigma(sigma_grid(VPLinear(), 6, "uniform_t")[:-1])
    torch.testing.assert_close(t.diff(), torch.full((5,), t.diff()[0].item(), dtype=torch.float64))


def test_schedule_registry_and_round_trip():
    for name in SCHEDULES:
        s = get_schedule(name)
        assert get_schedule(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        get_schedule("cosine")
    with pytest.raises(ValueError, match="num_steps"):
        sigma_grid(EDM(), 0)
    with pytest.raises(ValueError, match="unknown spacing"):
        sigma_grid(EDM(), 4, "linear")
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        EDM(sigma_min=10, sigma_max=1)


def test_training_sigma_distributions():
    gen = torch.Generator().manual_seed(0)
    s = EDM().sample_training_sigma(20000, gen)
    assert torch.log(s).mean().item() == pytest.approx(-1.2, abs=0.05)
    assert torch.log(s).std().item() == pytest.approx(1.2, abs=0.05)
    v = VPLinear()
    s = v.sample_training_sigma(20000, gen)
    t = v.t_of_sigma(s.double())
    assert t.min() >= v.t_min - 1e-6 and t.max() <= 1 + 1e-6
    assert t.mean().item() == pytest.approx((v.t_min + 1) / 2, abs=0.02)


class Oracle(nn.Module):
    """A 'network' that outputs the exact training target for a known x0, via a stored reference."""

    def __init__(self):
        super().__init__()
        self.answer = None

    def forward(self, x_in, c_noise):
        return self.answer


@pytest.mark.parametrize("param", PARAMETRIZATIONS)
def test_parametrizations_round_trip(param):
    """If the network outputs the training target F*, the denoiser returns x0 exactly; zero loss."""
    den = Denoiser(Oracle(), param).double()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 80.0], dtype=torch.float64)
    x = x0 + sigma[:, None] * noise
    den.net.answer = den.training_target(x, x0, sigma)
    torch.testing.assert_close(den(x, sigma), x0)
    assert den.loss(x0, sigma, noise).abs().max() < 1e-12
    torch.testing.assert_close(eps_from_x0(x, sigma, x0), noise)


def test_standard_targets_per_parametrization():
    """eps predicts the noise, x0 the data, v = alpha eps - s_t x0 in VP space."""
    x0, noise = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    sigma = torch.tensor([0.3, 1.0, 2.0, 7.0], dtype=torch.float64)
    x = x0 + sigma[:, None] * noise
    tgt = {p: Denoiser(Oracle(), p).training_target(x, x0, sigma) for p in PARAMETRIZATIONS}
    torch.testing.assert_close(tgt["eps"], noise)
    torch.testing.assert_close(tgt["x0"], x0)
    alpha, s_t = (1 / torch.sqrt(1 + sigma**2))[:, None], (sigma / torch.sqrt(1 + sigma**2))[:, None]
    torch.testing.assert_close(tgt["v"], alpha * noise - s_t * x0)


def test_denoiser_bad_inputs():
    with pytest.raises(ValueError, match="unknown parametrization 'score'"):
        Denoiser(Oracle(), "score")
    den = Denoiser(Oracle(), "x0")
    den.net.answer = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        den(torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="sigma > 0"):
        den(torch.zeros(3, 2), 0.0)


def test_mixture_denoiser_is_tweedie():
    """Exact D equals x + sigma^2 grad log p_sigma computed by autograd through the mixture density."""
    gmm = GaussianMixture(
        [0.3, 0.7],
        [[-1.0, 0.5], [2.0, 1.0]],
        torch.tensor([[[0.5, 0.2], [0.2, 0.3]], [[0.1, 0.0], [0.0, 0.4]]], dtype=torch.float64),
    )
    x = torch.randn(20, 2, dtype=torch.float64).requires_grad_()
    sigma = torch.linspace(0.05, 5.0, 20, dtype=torch.float64)
    (grad,) = torch.autograd.grad(gmm.log_prob(x, sigma).sum(), x)
    torch.testing.assert_close(gmm.denoise(x.detach(), sigma), x.detach() + sigma[:, None] ** 2 * grad)
    torch.testing.assert_close(score_from_x0(x.detach(), sigma, gmm.denoise(x.detach(), sigma)), grad)


def test_mixture_moments_and_sampling():
    gmm = GaussianMixture([0.25, 0.75], [[0.0, 0.0], [4.0, -2.0]], [1.0, 0.25])
    x = gmm.sample(40000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(0), gmm.mean(), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), gmm.cov(), atol=0.1, rtol=0)


def test_gaussian_posterior_matches_formula():
    gen = torch.Generator().manual_seed(2)
    d, m = 4, 2
    L = torch.randn(d, d, generator=gen, dtype=torch.float64)
    cov = L @ L.T + 0.5 * torch.eye(d, dtype=torch.float64)
    mu = torch.randn(d, generator=gen, dtype=torch.float64)
    A = torch.randn(m, d, generator=gen, dtype=torch.float64)
    y = torch.randn(m, generator=gen, dtype=torch.float64)
    mean, c = linear_gaussian_posterior(mu, cov, A, y, 0.3)
    c_ref = torch.linalg.inv(torch.linalg.inv(cov) + A.T @ A / 0.09)
    torch.testing.assert_close(c, c_ref)
    torch.testing.assert_close(mean, c_ref @ (torch.linalg.solve(cov, mu) + A.T @ y / 0.09))


def test_mixture_posterior_weights_follow_the_evidence():
    prior = GaussianMixture([0.5, 0.5], [[-2.0], [2.0]], [0.1, 0.1])
    post = prior.posterior(torch.ones(1, 1), torch.tensor([1.9]), 0.2)
    assert post.weights[1] > 0.999
    assert post.means[1].item() == pytest.approx(2.0 + 0.1 / 0.14 * (1.9 - 2.0))
    with pytest.raises(ValueError, match="A must have shape"):
        prior.posterior(torch.ones(1, 2), torch.tensor([1.0]), 0.2)
    with pytest.raises(ValueError, match="noise_std must be positive"):
        prior.posterior(torch.ones(1, 1), torch.tensor([1.0]), 0.0)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([-1.0, 2.0], [[0.0], [1.0]], [1.0, 1.0])
    assert gaussian([0.0, 0.0], 1.0).dim == 2
