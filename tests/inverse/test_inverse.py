import math

import pytest
import torch

from steerdiff.core.analytic import gaussian
from steerdiff.core.bundle import BundleError
from steerdiff.inverse.fields import GaussianRandomField
from steerdiff.inverse.forward import ForwardModelBlowup, FunctionForwardModel
from steerdiff.inverse.methods import MethodConfig, guided_steps, solve
from steerdiff.inverse.metrics import evaluate, relative_l2
from steerdiff.inverse.navier_stokes import NavierStokes2D
from steerdiff.inverse.prior import FieldPrior, PriorConfig, load_prior, train_prior
from steerdiff.inverse.problems import LinearProblem, NavierStokesProblem, SaturatedProblem, make_problem

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------- Navier-Stokes


def test_navier_stokes_keeps_the_mean_vorticity():
    ns = NavierStokes2D(size=32, horizon=0.5, dt=1e-2)
    w0 = GaussianRandomField(32).sample(3, gen(), dtype=F64) * 3
    assert w0.mean().abs() < 1e-12
    w = ns(w0)
    assert w.mean((1, 2, 3)).abs().max() < 1e-12
    assert (w - w0).norm() > 0.1 * w0.norm()  # the flow did move
    shifted = ns(w0 + 0.7)  # the mean mode is conserved, whatever it is
    torch.testing.assert_close(shifted.mean((1, 2, 3)), torch.full((3,), 0.7, dtype=F64))


@pytest.mark.parametrize("k", [(1, 0), (2, 3)])
def test_unforced_fourier_mode_decays_at_the_viscous_rate(k):
    ns = NavierStokes2D(size=32, reynolds=50.0, horizon=2.0, dt=1e-3, forcing_amplitude=0.0)
    y, x = ns.grid(dtype=F64)
    w0 = (1.5 * torch.cos(k[0] * x + k[1] * y))[None, None]
    w = ns(w0)
    rate = (k[0] ** 2 + k[1] ** 2) / ns.reynolds
    torch.testing.assert_close(w, w0 * math.exp(-rate * ns.horizon), rtol=1e-6, atol=1e-9)


def test_batched_and_single_runs_agree():
    ns = NavierStokes2D(size=32, horizon=0.3, dt=1e-2)
    w0 = GaussianRandomField(32).sample(4, gen(1)) * 3
    batched = ns(w0)
    single = torch.cat([ns(w0[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_navier_stokes_is_differentiable_and_checks_shapes():
    ns = NavierStokes2D(size=16, horizon=0.1, dt=2e-2)
    w0 = GaussianRandomField(16).sample(2, gen()).requires_grad_(True)
    (grad,) = torch.autograd.grad(ns(w0).pow(2).sum(), w0)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"shape \(B, 1, 16, 16\).*x\[:, None\]"):
        ns(torch.zeros(2, 16, 16))


# ------------------------------------------------------------------------------------------- fields, prior


def test_wiener_filter_is_the_exact_gaussian_denoiser():
    grf = GaussianRandomField(8, alpha=3.0, tau=3.0)
    cov = grf.covariance()
    torch.testing.assert_close(cov, cov.T)
    assert abs(math.sqrt(float(cov.diagonal().mean())) - grf.std()) < 1e-9
    exact = gaussian(torch.zeros(64, dtype=F64), cov + 1e-12 * torch.eye(64, dtype=F64))
    x = 2 * torch.randn(5, 1, 8, 8, generator=gen(), dtype=F64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0, 10.0], dtype=F64)
    torch.testing.assert_close(grf(x, sigma), exact.denoise(x, sigma), rtol=1e-6, atol=1e-6)
    samples = grf.sample(4000, gen(), dtype=F64).reshape(4000, -1)
    assert abs(samples.std().item() / grf.std() - 1) < 0.03


def test_prior_trains_saves_and_loads(tmp_path):
    problem = NavierStokesProblem(size=16, dt=5e-2, spinup=0.5)
    fields = problem.sample_fields(64, gen())
    prior = train_prior(
        fields,
        tmp_path,
        PriorConfig(base_channels=8, channel_mults=(1, 2), steps=20, batch_size=16),
        progress=False,
    )
    assert abs(prior.scale - float(fields.std()) / 0.5) < 1e-6
    loaded = load_prior(tmp_path)  # the run folder; its bundle is tmp_path / "model"
    x = torch.randn(3, 1, 16, 16, generator=gen()) * 5
    torch.testing.assert_close(loaded(x, 2.0), prior(x, 2.0))
    torch.testing.assert_close(load_prior(tmp_path / "model")(x, 2.0), prior(x, 2.0))
    assert loaded.field_shape == (1, 16, 16) and loaded.info["training"]["train_steps"] == 20
    with pytest.raises(BundleError, match="does not exist"):
        load_prior(tmp_path / "nothing")
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        train_prior(fields[:, 0], tmp_path / "bad", progress=False)


# ------------------------------------------------------------------------------------------- forward models


def test_forward_model_counts_guards_blowups_and_checks_shapes():
    problem = NavierStokesProblem(size=16, dt=5e-2, horizon=0.5)
    fwd = problem.forward
    ok = problem.grf.sample(2, gen())
    bad = ok.clone()
    bad[1] *= 1e6  # an off-manifold input: the explicit advection step blows up
    assert fwd(ok).shape == (2, 1, 8, 8) and (fwd.calls, fwd.evals) == (1, 2)
    with pytest.raises(ForwardModelBlowup, match=r"1 of 2 inputs \(rows \[1\].*on_blowup='penalty'"):
        fwd(torch.cat([ok[:1], bad[1:]]))
    assert fwd.blowups == 1
    penal = NavierStokesProblem(size=16, dt=5e-2, horizon=0.5, on_blowup="penalty", penalty=1e3).forward
    out = penal(torch.cat([ok[:1], bad[1:]]))
    assert torch.isfinite(out).all() and (out[1] == 1e3).all() and penal.blowups == 1
    torch.testing.assert_close(out[0], fwd(ok[:1])[0])
    x = torch.cat([ok[:1], bad[1:]]).requires_grad_(True)  # a penalised row gets a zero gradient, not NaN
    penal(x).pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all() and x.grad[0].abs().sum() > 0
    with pytest.raises(ValueError, match=r"batch of shape \(B, 1, 16, 16\).*x\[None\]"):
        fwd(ok[0])
    with pytest.raises(ValueError, match=r"measurement must have shape \(2, 1, 8, 8\)"):
        fwd.check_measurement(torch.zeros(2, 1, 16, 16), batch=2)
    with pytest.raises(ValueError, match="on_blowup must be one of"):
        NavierStokesProblem(size=16, on_blowup="ignore")
    calls = fwd.calls
    y = fwd.measure(ok, gen())
    assert fwd.calls == calls and y.shape == (2, 1, 8, 8)


def test_black_box_forward_model_refuses_gradients():
    a = torch.randn(16, 64, generator=gen(), dtype=F64)

    def numpy_model(x):  # no autograd possible
        assert not torch.is_grad_enabled()
        return torch.from_numpy(x.reshape(x.shape[0], -1).numpy() @ a.numpy().T)

    fwd = FunctionForwardModel(numpy_model, (1, 8, 8), (16,), name="numpy_box")
    x = torch.randn(2, 1, 8, 8, dtype=F64, requires_grad=True)
    with pytest.raises(TypeError, match="black box.*derivative-free"):
        fwd(x)
    assert fwd(x.detach()).shape == (2, 16)


# ------------------------------------------------------------------------------------------- methods


def _linear(size=16, noise=0.1, seed=0):
    problem = LinearProblem(size=size, stride=2, noise_std=noise, alpha=4.0, tau=3.0)
    truth = problem.grf.sample(1, gen(seed), dtype=F64)
    y = problem.forward.measure(truth, gen(seed + 1))
    return problem, truth, y


def test_enkg_lands_near_the_analytic_posterior_mean_without_gradients():
    problem, truth, y = _linear()
    mean, _ = problem.posterior(y)
    cfg = MethodConfig(
        num_particles=256, num_steps=30, sigma_max=20.0, sigma_min=0.01, num_updates=2, scale=1.0
    )
    sol = solve("enkg", problem.grf, problem, y, cfg, generator=gen(1))
    err = relative_l2(sol.estimate, mean).item()
    assert err < 0.2, err  # the prior mean (zero) is at relative distance 1
    assert sol.costs["gradient_evals"] == 0
    # the default window (0.05, 0.95) guides steps floor(1.5) = 1 <= i < floor(28.5) = 28 of 30, 2 updates
    # each: one batched call per update
    assert sol.costs["forward_calls"] == 2 * 27 and sol.costs["forward_evals"] == 256 * 2 * 27
    assert sol.ensemble.shape == (1, 256, 1, 16, 16)


def test_enkg_window_sets_the_guided_steps():
    problem, _, y = _linear(size=8)
    for window, guided in (((0.0, 1.0), 10), ((0.0, 0.5), 5), ((0.2, 0.9), 7)):
        cfg = MethodConfig(num_particles=4, num_steps=10, sigma_max=20.0, window=window)
        assert guided_steps(cfg) == guided
        sol = solve("enkg", problem.grf, problem, y, cfg, generator=gen(0))
        assert sol.costs["forward_calls"] == guided, window


def test_enkg_runs_on_a_black_box_that_refuses_autograd_and_dps_refuses_it():
    problem, truth, y = _linear(size=8)
    a = problem.matrix()

    def numpy_model(x):
        assert not torch.is_grad_enabled() and not x.requires_grad
        return torch.from_numpy(x.reshape(x.shape[0], -1).double().numpy() @ a.numpy().T).reshape(-1, 1, 4, 4)

    problem.forward = FunctionForwardModel(numpy_model, (1, 8, 8), (1, 4, 4), name="numpy_box", noise_std=0.1)
    cfg = MethodConfig(num_particles=16, num_steps=10, sigma_max=20.0, sigma_min=0.01)
    sol = solve("enkg", problem.grf, problem, y, cfg, generator=gen())
    assert torch.isfinite(sol.estimate).all() and sol.costs["forward_calls"] > 0
    with pytest.raises(TypeError, match="DPS needs gradients.*enkg"):
        solve("dps", problem.grf, problem, y, cfg)


@pytest.mark.parametrize("method", ["eki", "dps", "scg", "smc"])
def test_every_baseline_reduces_the_misfit_and_reports_costs(method):
    problem, truth, y = _linear(size=8)
    cfg = MethodConfig(
        num_particles=16,
        num_steps=20,
        sigma_max=20.0,
        sigma_min=0.01,
        iterations=50,
        likelihood_std=0.1,
        num_candidates=4,
    )
    sol = solve(method, problem.grf, problem, y, cfg, generator=gen(2))
    res = evaluate(sol, problem, truth, y)
    prior_misfit = problem.forward.misfit(torch.zeros_like(y), y).item()
    assert res["misfit"] < 0.8 * prior_misfit, res
    assert res["forward_calls"] > 0 and res["wall_time"] > 0
    assert (res["gradient_evals"] > 0) == (method == "dps")
    assert (res["network_evals"] > 0) == (method != "eki")


def test_wrong_measurements_and_settings_get_clear_errors():
    problem, truth, y = _linear(size=8)
    cfg = MethodConfig(num_particles=4, num_steps=5, sigma_max=20.0)
    with pytest.raises(ValueError, match=r"measurement must have shape \(B, 1, 4, 4\).*got \(1, 16\)"):
        solve("enkg", problem.grf, problem, y.reshape(1, 16), cfg)
    with pytest.raises(ValueError, match="NaN or inf"):
        solve("enkg", problem.grf, problem, y * float("nan"), cfg)
    with pytest.raises(ValueError, match="unknown method 'adam'"):
        solve("adam", problem.grf, problem, y, cfg)
    with pytest.raises(ValueError, match="num_particles must be >= 2"):
        solve("enkg", problem.grf, problem, y, MethodConfig(num_particles=1))
    with pytest.raises(ValueError, match="step_size must be one of"):
        solve("eki", problem.grf, problem, y, MethodConfig(num_particles=4, step_size="newton"))
    with pytest.raises(ValueError, match="guides none of the 5 steps"):
        solve("enkg", problem.grf, problem, y, MethodConfig(num_particles=4, num_steps=5, window=(0.5, 0.55)))
    with pytest.raises(ValueError, match="unknown problem"):
        make_problem("darcy")
    with pytest.raises(ValueError, match="stride 3"):
        LinearProblem(size=8, stride=3)


def test_saturated_problem_is_nonlinear_and_solvable():
    problem = SaturatedProblem(size=16, stride=2, noise_std=0.02, level=0.5)
    fwd = problem.forward
    x = problem.grf.sample(2, gen())
    assert not torch.allclose(fwd(2 * x), 2 * fwd(x))  # nonlinear
    assert fwd(10 * x).abs().max() <= 1.0  # saturates
    y = fwd.measure(x[:1], gen(1))
    cfg = MethodConfig(num_particles=32, num_steps=20, sigma_max=20.0, sigma_min=0.01)
    sol = solve("enkg", problem.grf, problem, y, cfg, generator=gen(2))
    res = evaluate(sol, problem, x[:1], y)
    assert res["misfit"] < 0.5 * fwd.misfit(torch.zeros_like(y), y).item()


def test_field_prior_works_in_physical_units():
    grf = GaussianRandomField(8)
    prior = FieldPrior(lambda x, s: x * 0 + s.reshape(-1, 1, 1, 1), scale=4.0)
    out = prior(torch.zeros(2, 1, 8, 8), 8.0)
    torch.testing.assert_close(out, torch.full((2, 1, 8, 8), 8.0))  # scale * (sigma / scale)
    assert prior.sigma_max == 320.0 and grf.shape == (8, 8)


# ------------------------------------------------------------------------------------------- CLI


def test_cli_runs_data_prior_solve_end_to_end(tmp_path, capsys):
    import json

    from steerdiff.inverse.cli import main

    common = ["--device", "cpu", "--seed", "0", "--quiet"]
    assert (
        main(
            [
                "make-data",
                "--problem",
                "linear",
                "--size",
                "8",
                "--noise",
                "0.1",
                "--num-train",
                "32",
                "--num-test",
                "1",
                "--out",
                str(tmp_path),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train-prior",
                "--data",
                str(tmp_path),
                "--out",
                str(tmp_path / "prior"),
                "--train-steps",
                "3",
                "--channels",
                "8",
                "--batch-size",
                "8",
                *common,
            ]
        )
        == 0
    )
    assert (tmp_path / "prior" / "model" / "config.json").exists()
    assert (
        main(
            [
                "solve",
                "--data",
                str(tmp_path),
                "--prior",
                str(tmp_path / "prior"),
                "--method",
                "enkg",
                "--num-samples",
                "4",
                "--steps",
                "4",
                "--out",
                str(tmp_path / "enkg"),
                *common,
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "enkg" / "metrics.json").read_text())
    assert metrics["method"] == "enkg" and metrics["forward_calls"] > 0 and metrics["gradient_evals"] == 0
    assert (tmp_path / "enkg" / "fields.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "enkg" / "summary.json").read_text())
    assert summary["rel_l2"] == metrics["rel_l2"]
    capsys.readouterr()
    assert (
        main(
            [
                "solve",
                "--data",
                str(tmp_path / "missing"),
                "--method",
                "eki",
                "--out",
                str(tmp_path / "x"),
                *common,
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert main(["solve", "--data", str(tmp_path), "--method", "enkg", "--out", str(tmp_path / "x")]) == 2
    assert "--prior is required" in capsys.readouterr().err


@pytest.mark.parametrize("step_size", ["frobenius", "trace"])
def test_eki_reduces_the_misfit_with_either_step_size(step_size):
    problem, truth, y = _linear(size=8)
    cfg = MethodConfig(
        num_particles=16, iterations=50, step_size=step_size, scale=0.5 if step_size == "trace" else 1.0
    )
    sol = solve("eki", None, problem, y, cfg, generator=gen(4))
    prior_misfit = problem.forward.misfit(torch.zeros_like(y), y).item()
    assert evaluate(sol, problem, truth, y)["misfit"] < 0.8 * prior_misfit


def test_eki_never_accepts_a_step_that_raises_the_misfit():
    # a step scale far too large for the explicit solver: unguarded EKI blows up to NaN or huge fields
    problem = NavierStokesProblem(size=16, dt=0.05, horizon=0.5, on_blowup="penalty", penalty=1e3)
    truth = problem.sample_fields(1, gen(7))
    y = problem.forward.measure(truth, gen(8))
    cfg = MethodConfig(num_particles=8, iterations=6, scale=50.0)
    sol = solve("eki", None, problem, y, cfg, generator=gen(9))
    start = problem.ensemble_prior.sample(8, gen(9))  # the same initial ensemble

    def misfit(x):
        return (problem.forward.simulate(x) - y).pow(2).flatten(1).sum(1).mean()

    assert torch.isfinite(sol.ensemble).all()
    assert misfit(sol.ensemble[0]) <= misfit(start) + 1e-4
    assert sol.costs["forward_calls"] == cfg.iterations + 1  # the guard reuses the forward outputs


def test_navier_stokes_eki_ensemble_has_the_stated_std():
    problem = NavierStokesProblem(size=16, ensemble_std=3.0)
    assert problem.ensemble_prior.std() == pytest.approx(3.0)
    assert problem.ensemble_prior.alpha == 4.0 and problem.ensemble_prior.tau == 3.0


def test_benchmark_cache_key_and_method_budgets():
    import dataclasses

    from steerdiff.inverse.benchmark import FULL, QUICK, method_config

    # the cached prior depends on data and prior config only, never on the solver budget or horizon
    assert dataclasses.replace(FULL, num_particles=7, horizon=0.5).key() == FULL.key() != QUICK.key()
    assert dataclasses.replace(FULL, dt=FULL.dt / 2).key() != FULL.key()
    assert method_config(FULL, "enkg", 0.0, 3.0).scale == 3.0
    assert method_config(FULL, "dps", 0.0).dps_scale == FULL.defaults["dps"]
    assert method_config(FULL, "smc", 2.0, 1.0).likelihood_std == 2.0  # never below the measurement noise
    assert method_config(FULL, "scg", 0.0).num_candidates == FULL.num_candidates


def test_the_same_seed_trains_the_same_prior():
    fields = GaussianRandomField(8).sample(16, gen())
    cfg = PriorConfig(base_channels=8, channel_mults=(1,), steps=2, batch_size=8, seed=3)
    torch.manual_seed(1)
    a = train_prior(fields, None, cfg, progress=False)
    torch.manual_seed(2)  # the global random state does not matter
    b = train_prior(fields, None, cfg, progress=False)
    x = torch.randn(2, 1, 8, 8, generator=gen())
    assert torch.equal(a(x, 1.0), b(x, 1.0))
