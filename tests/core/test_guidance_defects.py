"""Issue 18, defects 1-5 of the core guidance library: one failing-first test (or group) per defect.

1. Safe default for ``shifts_proposal``: a guidance that overrides a hook that moves the particles counts as
   moving the proposal unless its class says otherwise, and Feynman-Kac steering refuses to weight it.
2. One rule for every hook: the step's starting noise level (and step index) decides whether a guidance is on,
   also for Heun's second evaluation and for churn's raised level.
3. Bad inputs get one clear ValueError each.
4. The default EnKG step never raises the ensemble misfit on a linear-Gaussian problem and moves the ensemble
   mean toward the exact posterior mean.
5. A step window beside the noise interval, and the EnKG step rule as a public function.

Every guidance class is checked by the rule of defect 1. The classes are collected from
``Guidance.__subclasses__()`` (recursively) after importing the modules in ``GUIDANCE_MODULES``; only classes
defined in those modules are kept, so the list does not depend on which other tests ran first. A domain
package covers its own classes by adding its module to ``GUIDANCE_MODULES`` (e.g. ``"steerdiff.policy"``,
``"steerdiff.timeseries"``), or, from its own test folder, by calling :func:`expected_shifts_proposal` on its
classes and comparing with ``cls.shifts_proposal``.
"""

import importlib
import math

import pytest
import torch

from steerdiff.core.analytic import gaussian, linear_gaussian_posterior
from steerdiff.core.guidance import (
    ClassifierFreeGuidance,
    EnsembleKalmanGuidance,
    FeynmanKacSteering,
    Guidance,
    Inpainting,
    ReconstructionGuidance,
    StochasticControlGuidance,
    enkg_direction,
)
from steerdiff.core.sampling import Costs, SamplingContext, _CountingDenoiser, sample
from steerdiff.core.schedules import EDM, sigma_grid
from steerdiff.core.solvers import Euler

F64 = torch.float64
SIG = sigma_grid(EDM(sigma_max=20), 30)
GUIDANCE_MODULES = ["steerdiff.core"]  # a domain adds its package here to have its classes checked too
PROPOSAL_HOOKS = ("denoise", "wrap_denoise", "before_step", "after_step")


def _problem(d=2, m=1, noise=0.3, seed=0):
    """Gaussian prior (random rotation, eigenvalues log-spaced in [0.1, 2]), y = A x_true + noise."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))[0]
    lam = torch.exp(torch.linspace(math.log(0.1), math.log(2.0), d, dtype=F64))
    mean, cov = torch.randn(d, generator=gen, dtype=F64), (q * lam) @ q.T
    prior = gaussian(mean, cov)
    A = torch.randn(m, d, generator=gen, dtype=F64) / math.sqrt(d)
    y = A @ prior.sample(1, gen)[0] + noise * torch.randn(m, generator=gen, dtype=F64)
    post_mean, post_cov = linear_gaussian_posterior(mean, cov, A, y, noise)
    return prior, A, y, noise, post_mean, post_cov


def _noise(n, d, seed, sigma_max=20.0):
    return sigma_max * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ---- 1. shifts_proposal: safe by default ---------------------------------------------------------------


def guidance_classes(modules=GUIDANCE_MODULES) -> list[type]:
    for name in modules:
        importlib.import_module(name)
    found, stack = [], list(Guidance.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls not in found:
            found.append(cls)
            stack.extend(cls.__subclasses__())
    keep = [c for c in found if any(c.__module__ == m or c.__module__.startswith(m + ".") for m in modules)]
    return sorted(keep, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def expected_shifts_proposal(cls: type) -> bool:
    """The rule: walking up from ``cls``, an explicit ``shifts_proposal`` wins; otherwise the first class that
    overrides ``denoise``, ``wrap_denoise``, ``before_step`` or ``after_step`` moves the proposal."""
    for k in cls.__mro__:
        if k is Guidance:
            return False
        if "shifts_proposal" in vars(k):
            return bool(vars(k)["shifts_proposal"])
        if any(h in vars(k) for h in PROPOSAL_HOOKS):
            return True
    return False


CLASSES = guidance_classes()


def test_every_core_guidance_class_is_collected():
    names = {c.__name__ for c in CLASSES}
    assert {"EnsembleKalmanGuidance", "ReconstructionGuidance", "FeynmanKacSteering", "Inpainting"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_guidance_that_moves_the_particles_counts_as_shifting_the_proposal(cls):
    assert cls.shifts_proposal is expected_shifts_proposal(cls), cls


def test_enkg_moves_the_proposal_and_smc_refuses_to_weight_it():
    prior, A, y, noise, *_ = _problem()
    loglik = lambda x: -((x @ A.T - y) ** 2).sum(1) / (2 * noise**2)  # noqa: E731
    assert EnsembleKalmanGuidance.shifts_proposal
    with pytest.raises(ValueError, match="EnsembleKalmanGuidance shifts them.*shifts_proposal = False"):
        sample(
            prior,
            _noise(8, 2, 0),
            SIG,
            "ddpm",
            guidance=[EnsembleKalmanGuidance(lambda z: z @ A.T, y, 4), FeynmanKacSteering(loglik, 4)],
        )


def test_a_users_own_guidance_is_safe_by_default_and_may_declare_otherwise():
    class Nudge(Guidance):
        def before_step(self, ctx, x, sigma, sigma_next):
            return x + 0.1

    class Relabel(Guidance):  # changes nothing the model proposes, and says so
        shifts_proposal = False

        def after_step(self, ctx, x, sigma, sigma_next):
            return x

    class MoreNudge(Relabel):  # overrides a hook again: safe again unless it declares otherwise
        def before_step(self, ctx, x, sigma, sigma_next):
            return x + 0.1

    assert Nudge.shifts_proposal and not Relabel.shifts_proposal and MoreNudge.shifts_proposal
    prior = gaussian([0.0, 0.0], 1.0)
    r = lambda x: -x.pow(2).sum(1)  # noqa: E731
    with pytest.raises(ValueError, match="Nudge shifts them"):
        sample(prior, _noise(4, 2, 0), SIG, "ddpm", guidance=[Nudge(), FeynmanKacSteering(r, 2)])
    out = sample(prior, _noise(4, 2, 0), SIG, "ddpm", guidance=[Relabel(), FeynmanKacSteering(r, 2)])
    assert out.info["weights"].shape == (2, 2)


def test_guidance_that_defines_the_model_combines_with_smc():
    """CFG and replacement define the (conditional) model being steered; SMC then tilts that model."""
    prior = gaussian([0.0, 0.0], 1.0)
    r = lambda x: -x.pow(2).sum(1)  # noqa: E731
    for g in (Inpainting(torch.zeros(2), torch.tensor([True, False])),):
        out = sample(prior, _noise(4, 2, 0), SIG, "ddpm", guidance=[g, FeynmanKacSteering(r, 2)])
        assert torch.isfinite(out.x).all()
    assert not ClassifierFreeGuidance.shifts_proposal


# ---- 2. one rule for every hook: the step's starting sigma decides ----------------------------------


def _per_step(prior, x, solver, guidance=(), **kw):
    """x after each step and the gradient evaluations each step spent."""
    xs, grads = [], []

    def cb(info):
        xs.append(info["x"].clone())
        grads.append(info["costs"].gradient_evals)

    sample(
        prior,
        x,
        SIG,
        solver,
        guidance=list(guidance),
        callback=cb,
        generator=torch.Generator().manual_seed(0),
        **kw,
    )
    return xs, [b - a for a, b in zip([0] + grads, grads)]


@pytest.mark.parametrize("kw", [{}, {"churn": 0.3}], ids=["heun", "heun-churn"])
@pytest.mark.parametrize("interval", [(0.0, 3.0), (0.5, 3.0)])
def test_the_steps_starting_sigma_decides_for_every_evaluation(kw, interval):
    prior, A, y, *_ = _problem()
    loss = lambda x0: ((x0 @ A.T - y) ** 2).sum(1)  # noqa: E731
    x = _noise(6, 2, 1)
    plain, _ = _per_step(prior, x, "heun", **kw)
    guided, grads = _per_step(prior, x, "heun", [ReconstructionGuidance(loss, interval=interval)], **kw)
    sig = SIG.tolist()
    lo, hi = interval
    for i in range(len(sig) - 1):
        on = lo < sig[i] <= hi
        evals = 2 if sig[i + 1] > 0 else 1
        assert grads[i] == (evals * 6 if on else 0), (i, sig[i], sig[i + 1], grads[i])
        if sig[i] > hi:  # every step before the interval: exactly the unguided run
            torch.testing.assert_close(guided[i], plain[i], rtol=0, atol=0)
    first = next(i for i in range(len(sig)) if sig[i] <= hi)
    assert not torch.equal(guided[first], plain[first])


# ---- 3. bad inputs: one clear error each -----------------------------------------------------------------


def test_an_empty_batch_is_refused():
    prior = gaussian([0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="empty batch"):
        sample(prior, torch.zeros(0, 2, dtype=F64), SIG, "ddim")


@pytest.mark.parametrize("lam", [math.nan, math.inf, -math.inf])
def test_smc_refuses_a_non_finite_lambda(lam):
    with pytest.raises(ValueError, match="lam must be a finite number"):
        FeynmanKacSteering(lambda x: -x.pow(2).sum(1), 4, lam=lam)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"scale": math.nan}, "scale must be a finite number"),
        ({"scale": math.inf}, "scale must be a finite number"),
        ({"scale": -1.0}, "scale must be a finite number"),
        ({"noise_std": math.nan}, "noise_std must be"),
        ({"lr_min_ratio": math.nan}, "lr_min_ratio"),
        ({"step_size": "adam"}, "step_size must be one of"),
    ],
)
def test_enkg_refuses_bad_settings_by_name(kw, match):
    with pytest.raises(ValueError, match=match):
        EnsembleKalmanGuidance(lambda z: z, torch.zeros(2), 4, **kw)


def test_a_plain_function_is_not_a_guidance():
    prior = gaussian([0.0, 0.0], 1.0)

    def loss(x0):
        return x0.pow(2).sum(1)

    with pytest.raises(ValueError, match=r"guidance\[0\] is a function.*ReconstructionGuidance\(loss\)"):
        sample(prior, _noise(4, 2, 0), SIG, "ddim", guidance=[loss])
    with pytest.raises(ValueError, match=r"guidance\[1\] is a str"):
        sample(prior, _noise(4, 2, 0), SIG, "ddim", guidance=[ReconstructionGuidance(loss), "dps"])
    # a single guidance object is accepted as it is
    out = sample(prior, _noise(4, 2, 0), SIG, "ddim", guidance=ReconstructionGuidance(loss))
    assert out.costs.gradient_evals > 0


def test_a_grid_that_does_not_end_at_zero_is_refused_unless_asked_for():
    prior = gaussian([0.0, 0.0], 1.0)
    x = _noise(4, 2, 0)
    with pytest.raises(ValueError, match="ends at sigma=0.5.*allow_nonzero_end=True"):
        sample(prior, x, [20.0, 1.0, 0.5], "ddim")
    part = sample(prior, x, [20.0, 1.0, 0.5], "ddim", allow_nonzero_end=True).x
    full = sample(prior, x, [20.0, 1.0, 0.5, 0.0], "ddim").x
    assert not torch.allclose(part, full)
    torch.testing.assert_close(sample(prior, part, [0.5, 0.0], "ddim").x, full)


# ---- 4. the default EnKG step is safe on linear-Gaussian problems --------------------------------------


def _ctx(prior, sigmas):
    costs = Costs()
    return SamplingContext(_CountingDenoiser(prior, costs), Euler(), sigmas, None, costs, {})


@pytest.mark.parametrize("m", [1, 3])
def test_default_enkg_update_never_raises_the_misfit_nor_overshoots(m):
    """With G o phi affine, one default update maps every residual r_j to (I - w C_yy) r_j with
    0 <= w C_yy <= scale = 1/2: no particle's misfit rises, and none is pushed past the measurement
    (r_j . r_j' >= 0), whatever the ratio of residual to spread. The reference step (scale 2 / ||A||_F)
    reflects the ensemble about the measurement once the residuals are small against the spread."""
    d, j, sigma = 4, 16, 2.0
    prior, A, y, *_ = _problem(d=d, m=m)
    ctx = _ctx(prior, [sigma, 0.0])
    g = EnsembleKalmanGuidance(lambda z: z @ A.T, y, j)  # every setting at its default
    phi = lambda z: g.clean_estimate(ctx, z, sigma)  # noqa: E731  # affine for a Gaussian prior
    eye = torch.eye(d, dtype=F64)
    jac = (phi(eye) - phi(torch.zeros(1, d, dtype=F64))).T  # d phi / d x
    gen = torch.Generator().manual_seed(3)
    for trial in range(40):
        spread = 10 ** (-2 + 4 * torch.rand((), generator=gen, dtype=F64))
        x = prior.mean() + spread * torch.randn(j, d, generator=gen, dtype=F64)
        # move the ensemble mean next to the measurement: residuals small against the spread
        gap = y - phi(x).mean(0) @ A.T
        x = x + torch.linalg.lstsq(A @ jac, gap[:, None]).solution[:, 0] * (1 + 0.01 * trial / 40)
        r0 = phi(x) @ A.T - y
        r1 = phi(g.before_step(ctx, x, sigma, 0.0)) @ A.T - y
        assert (r1.pow(2).sum(1) <= r0.pow(2).sum(1) * (1 + 1e-9) + 1e-20).all(), trial
        assert ((r1 * r0).sum(1) >= -1e-12 * r0.pow(2).sum(1)).all(), trial


@pytest.mark.parametrize("d, m, steps, reps", [(2, 1, 40, 16), (16, 4, 40, 8), (256, 32, 25, 2)])
@pytest.mark.parametrize("given_noise", [False, True], ids=["noise-unknown", "noise-given"])
def test_default_enkg_moves_the_ensemble_mean_toward_the_exact_posterior_mean(d, m, steps, reps, given_noise):
    prior, A, y, noise, post_mean, post_cov = _problem(d=d, m=m, seed=d)
    j = 64
    sig = sigma_grid(EDM(sigma_max=80), steps)
    x = _noise(reps * j, d, 7, 80.0)
    kw = {"noise_std": noise} if given_noise else {}
    guided = sample(
        prior, x, sig, "euler", guidance=[EnsembleKalmanGuidance(lambda z: z @ A.T, y, j, **kw)]
    ).x
    plain = sample(prior, x, sig, "euler").x

    def rms(z):
        return ((z.reshape(reps, j, d).mean(1) - post_mean) ** 2).sum(1).mean().sqrt().item()

    prior_dist = (prior.mean() - post_mean).norm().item()
    assert rms(guided) < 0.95 * min(rms(plain), prior_dist), (rms(guided), rms(plain), prior_dist)


def test_the_reference_step_is_kept_as_an_option():
    g = EnsembleKalmanGuidance(lambda z: z, torch.zeros(2), 4, step_size="frobenius")
    assert g.scale == 2.0  # the reference code's default scale goes with its step
    assert EnsembleKalmanGuidance(lambda z: z, torch.zeros(2), 4).step_size == "trace"


# ---- 5. a step window beside the noise interval; the EnKG step rule in public -----------------------------


def _window_steps(n, window):
    start, stop = window
    return [i for i in range(n) if math.floor(start * n + 1e-9) <= i < math.floor(stop * n + 1e-9)]


@pytest.mark.parametrize("window", [(0.0, 0.5), (0.25, 0.75), (0.5, 1.0), (0.3, 0.31)])
def test_a_step_window_switches_every_hook_by_the_steps_index(window):
    prior, A, y, *_ = _problem()
    loss = lambda x0: ((x0 @ A.T - y) ** 2).sum(1)  # noqa: E731
    n = len(SIG) - 1
    on = _window_steps(n, window)
    x = _noise(4, 2, 2)
    plain, _ = _per_step(prior, x, "heun")
    guided, grads = _per_step(prior, x, "heun", [ReconstructionGuidance(loss, window=window)])
    for i in range(n):
        assert grads[i] == ((2 if i < n - 1 else 1) * 4 if i in on else 0), (i, grads[i])
        if i < min(on, default=n):
            torch.testing.assert_close(guided[i], plain[i], rtol=0, atol=0)
    # before_step (EnKG), transition (SCG) and after_step (replacement) follow the same window
    r = lambda z: -((z @ A.T - y) ** 2).sum(1)  # noqa: E731
    enkg = sample(
        prior,
        _noise(8, 2, 0),
        SIG,
        "euler",
        guidance=[EnsembleKalmanGuidance(lambda z: z @ A.T, y, 4, window=window)],
    )
    assert enkg.costs.forward_calls == len(on)
    scg = sample(
        prior, _noise(4, 2, 0), SIG, "ddpm", guidance=[StochasticControlGuidance(r, 3, window=window)]
    )
    assert scg.costs.reward_calls == len(on)
    seen = []

    class Probe(Guidance):
        shifts_proposal = False

        def after_step(self, ctx, x, sigma, sigma_next):
            seen.append(ctx.step_index)
            return x

    sample(prior, _noise(4, 2, 0), SIG, "ddim", guidance=[Probe(window=window)])
    assert seen == on


def test_window_and_interval_combine_and_bad_windows_are_refused():
    prior, A, y, *_ = _problem()
    r = lambda z: -((z @ A.T - y) ** 2).sum(1)  # noqa: E731
    sig = SIG.tolist()
    g = StochasticControlGuidance(r, 3, window=(0.0, 0.5), interval=(0.0, 5.0))
    out = sample(prior, _noise(4, 2, 0), SIG, "ddpm", guidance=[g])
    assert out.costs.reward_calls == sum(1 for i in range(15) if sig[i] <= 5.0)
    for bad in [(0.5, 0.5), (0.6, 0.4), (-0.1, 0.5), (0.0, 1.5), (math.nan, 1.0)]:
        with pytest.raises(ValueError, match="window must be"):
            ReconstructionGuidance(lambda x0: x0.sum(1), window=bad)


def test_enkg_step_size_is_public_and_is_the_guidance_step():
    from steerdiff.core.guidance import enkg_step_size

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 5, generator=gen, dtype=F64)
    y_hat = torch.randn(3, 8, 2, generator=gen, dtype=F64)
    y = torch.randn(3, 2, generator=gen, dtype=F64)
    _, a = enkg_direction(x, y_hat, y)
    frob = enkg_step_size(a, y_hat, 2.0, "frobenius")
    torch.testing.assert_close(frob, 2.0 / a.flatten(1).norm(dim=1))
    trace = enkg_step_size(a, y_hat, 0.5, "trace", noise_std=0.3)
    tr = (y_hat - y_hat.mean(1, keepdim=True)).pow(2).sum((1, 2)) / 8
    torch.testing.assert_close(trace, 0.5 / (tr + 2 * 0.09))
    per_instance = enkg_step_size(a, y_hat, torch.tensor([1.0, 0.5, 0.25], dtype=F64), "trace")
    torch.testing.assert_close(per_instance, torch.tensor([1.0, 0.5, 0.25], dtype=F64) / tr)
    with pytest.raises(ValueError, match="step_size must be one of"):
        enkg_step_size(a, y_hat, 1.0, "adam")
