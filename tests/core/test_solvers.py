"""Solvers against exact answers: no training, the Gaussian(-mixture) denoiser is exact."""

import math
import threading

import pytest
import torch

from steerdiff.core.analytic import GaussianMixture, gaussian
from steerdiff.core.sampling import sample
from steerdiff.core.schedules import EDM, VPCosine, VPLinear, sigma_grid
from steerdiff.core.solvers import DDIM, SOLVERS, get_solver

# Final std of the probability-flow ODE for N(0, 0.5^2) data started at x_T = 80 (EDM sigmas, Karras rho=7).
# Computed independently (shared/reference/inverse_core.md, B.5); exact target 0.499990.
KARRAS_TABLE = {
    5: {"euler": 0.233629, "heun": 1.257886, "dpmpp_2m": 0.432652},
    10: {"euler": 0.365213, "heun": 0.609798, "dpmpp_2m": 0.579387},
    18: {"euler": 0.423031, "heun": 0.527625, "dpmpp_2m": 0.531140},
    40: {"euler": 0.464851, "heun": 0.504877, "dpmpp_2m": 0.505192},
    100: {"euler": 0.485838, "heun": 0.500720, "dpmpp_2m": 0.500738},
}


def _affine_gain(solver, n):
    g = gaussian(torch.zeros(1, dtype=torch.float64), 0.25)
    x = torch.full((1, 1), 80.0, dtype=torch.float64)
    return sample(g, x, sigma_grid(EDM(), n), solver).x.item()


@pytest.mark.parametrize("n", sorted(KARRAS_TABLE))
@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m"])
def test_gaussian_final_std_matches_reference_table(solver, n):
    assert _affine_gain(solver, n) == pytest.approx(KARRAS_TABLE[n][solver], abs=2e-6)


def test_ddim_eta0_is_exactly_euler():
    for n in (5, 18):
        assert _affine_gain("ddim", n) == _affine_gain("euler", n)


def test_point_mass_is_exact_in_one_step():
    point = GaussianMixture([1.0], [[0.3, -1.2]], [0.0])
    x = 80 * torch.randn(7, 2, dtype=torch.float64)
    for solver in ("ddim", "dpmpp_2m", "euler"):
        out = sample(point, x, sigma_grid(EDM(), 1), solver).x
        torch.testing.assert_close(out, torch.tensor([[0.3, -1.2]], dtype=torch.float64).expand(7, 2))


def _mixture(d, seed=1):
    g = torch.Generator().manual_seed(seed)
    means = 2 * torch.randn(4, d, generator=g, dtype=torch.float64)
    return GaussianMixture(
        torch.tensor([0.1, 0.2, 0.3, 0.4]), means, torch.full((4,), 0.25, dtype=torch.float64)
    )


def _slope(ns, errs):
    ln_n = torch.log(torch.tensor(ns, dtype=torch.float64))
    ln_e = torch.log(torch.tensor(errs, dtype=torch.float64))
    ln_n, ln_e = ln_n - ln_n.mean(), ln_e - ln_e.mean()
    return -float((ln_n * ln_e).sum() / (ln_n**2).sum())


@pytest.mark.parametrize("solver,order", [("euler", 1), ("ddim", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_convergence_order_on_gaussian_mixture(solver, order):
    """Log-log slope of the error to a fine reference solve of the same ODE from the same noise."""
    gmm = _mixture(2)
    x_t = 80 * torch.randn(400, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = sample(gmm, x_t, sigma_grid(EDM(), 640), "heun").x
    ns = [10, 20, 40]
    errs = [(sample(gmm, x_t, sigma_grid(EDM(), n), solver).x - ref).norm(dim=1).mean().item() for n in ns]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert abs(_slope(ns, errs) - order) < 0.35, (errs, _slope(ns, errs))


def test_ode_reference_solution_has_the_mixture_distribution():
    gmm = _mixture(2)
    n = 4000
    x_t = 80 * torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = sample(gmm, x_t, sigma_grid(EDM(), 100), "heun").x
    # mode occupancy matches the mixture weights within 4 binomial standard errors
    assign = torch.cdist(x, gmm.means).argmin(1)
    freq = torch.bincount(assign, minlength=4).double() / n
    se = torch.sqrt(gmm.weights * (1 - gmm.weights) / n)
    assert ((freq - gmm.weights).abs() < 4 * se).all(), (freq, gmm.weights)


@pytest.mark.parametrize("schedule", [EDM(), VPLinear(), VPCosine()])
def test_ddpm_ancestral_matches_mean_and_covariance(schedule):
    gmm = _mixture(2, seed=5)
    n = 6000
    gen = torch.Generator().manual_seed(11)
    sig = sigma_grid(schedule, 300, spacing="log_snr")
    x = sample(
        gmm, sig[0] * torch.randn(n, 2, generator=gen, dtype=torch.float64), sig, "ddpm", generator=gen
    ).x
    mean, cov = gmm.mean(), gmm.cov()
    se_mean = torch.sqrt(torch.diagonal(cov) / n)
    assert ((x.mean(0) - mean).abs() < 4 * se_mean).all(), (x.mean(0), mean)
    emp = torch.cov(x.T)
    se_cov = torch.sqrt((torch.diagonal(cov)[:, None] * torch.diagonal(cov)[None] + cov**2) / n)
    assert ((emp - cov).abs() < 5 * se_cov).all(), (emp, cov)


def test_ddim_on_vp_schedule_converges_first_order():
    """DDIM on the DDPM linear schedule, uniform in t, from the exact VP marginal (reference B.5 setting)."""
    sched = VPLinear()
    g = gaussian(torch.zeros(1, dtype=torch.float64), 0.25)
    errs = []
    for n in (10, 50, 250):
        sig = sigma_grid(sched, n, spacing="uniform_t")
        x = torch.full((1, 1), math.sqrt(0.25 + sig[0].item() ** 2), dtype=torch.float64)
        gain = sample(g, x, sig, "ddim").x.item()
        errs.append(abs(gain - 0.5))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.01


def test_same_seed_same_samples_and_seeds_differ():
    gmm = _mixture(3)
    sig = sigma_grid(EDM(), 20)

    def run(seed, solver, **kw):
        gen = torch.Generator().manual_seed(seed)
        x = sig[0] * torch.randn(16, 3, generator=gen, dtype=torch.float64)
        return sample(gmm, x, sig, solver, generator=gen, **kw).x

    for solver, kw in [("ddpm", {}), ("ddim", {"eta": 0.5}), ("heun", {"churn": 0.2})]:
        assert torch.equal(run(0, solver, **kw), run(0, solver, **kw))
        assert not torch.allclose(run(0, solver, **kw), run(1, solver, **kw))


def test_solver_is_stateless_across_threads():
    """One solver object drives two interleaved runs; each equals its run alone."""
    gmm = _mixture(2)
    solver = get_solver("dpmpp_2m")
    sig = sigma_grid(EDM(), 25)
    xs = [
        80 * torch.randn(50, 2, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
        for s in (0, 1)
    ]
    alone = [sample(gmm, x, sig, solver).x for x in xs]
    results = [None, None]

    def work(k):
        for _ in range(3):
            results[k] = sample(gmm, xs[k], sig, solver).x

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in (0, 1):
        assert torch.equal(results[k], alone[k])


def test_network_evaluations_are_counted():
    gmm = _mixture(2)
    sig = sigma_grid(EDM(), 10)
    x = 80 * torch.randn(8, 2, dtype=torch.float64)
    assert sample(gmm, x, sig, "euler").costs.nfe == 10
    assert sample(gmm, x, sig, "heun").costs.nfe == 19  # 2N - 1: no correction on the last step
    assert sample(gmm, x, sig, "dpmpp_2m").costs.network_calls == 10


def test_progress_bar_and_callback():
    gmm = _mixture(2)
    seen = []
    sample(
        gmm,
        80 * torch.randn(2, 2, dtype=torch.float64),
        sigma_grid(EDM(), 4),
        "ddim",
        progress=True,
        callback=lambda info: seen.append(info["i"]),
    )
    assert seen == [0, 1, 2, 3]


def test_bad_solver_inputs():
    gmm = _mixture(2)
    sig = sigma_grid(EDM(), 5)
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown solver 'rk4'"):
        sample(gmm, x, sig, "rk4")
    with pytest.raises(ValueError, match="eta"):
        DDIM(eta=2.0)
    with pytest.raises(ValueError, match="bad options for solver 'euler'"):
        get_solver("euler", eta=0.5)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample(gmm, x, torch.tensor([1.0, 2.0, 0.0]), "ddim")
    with pytest.raises(ValueError, match="NaN"):
        sample(gmm, torch.full((4, 2), float("nan")), sig, "ddim")
    with pytest.raises(ValueError, match="expected 2 values per sample"):
        sample(gmm, torch.randn(4, 3, dtype=torch.float64), sig, "ddim")
    with pytest.raises(ValueError, match="returned shape"):
        sample(lambda x, s: x[:, :1], x, sig, "ddim")
    assert set(SOLVERS) == {"ddpm", "ddim", "euler", "heun", "dpmpp_2m"}
