#!/usr/bin/env python
"""Guidance against exact posteriors: every steering method measured on one exact yardstick.

    python benchmarks/guidance_posterior.py [--quick] [--json out.json] [--seed N] [--threads T]

Problems (fixed seeds). Gaussian priors N(mu, Sigma) in d = 2, 16 and 256 (Sigma = Q diag(lambda) Q^T with a
random rotation Q and eigenvalues log-spaced in [0.1, 2], condition number 20; mu ~ N(0, I)), a linear
measurement y = A x_true + N(0, s_y^2 I) with m = 1, 4, 32 rows (A ~ N(0, 1/d) entries, s_y = 0.3, x_true
drawn from the prior), and one Gaussian-mixture prior in d = 2 (3 components, m = 1, y chosen so that the
exact posterior is a two-mode mixture, weights 0.58 / 0.42). ``steerdiff.core.analytic`` gives the prior's
exact denoiser at every noise level (nothing is trained) and the exact posterior, so every error is the
method's own, plus its sampling noise and the N-step sampler's discretisation.

Matched budget on a problem: K particles per estimate, R independent repeats batched into one call (R groups
of K for SMC, R ensembles of J = K for EnKG, R * K independent samples for the others), one sigma grid (EDM,
sigma in [0.002, 80], Karras rho = 7, N steps), one initial noise and one sampler seed for every method.

Methods (stochastic ones on DDPM ancestral steps, EnKG on Euler steps as in the reference code):
* prior: the unguided sampler, ddpm and euler (how far the prior is, and a check of the grid);
* DPS: ReconstructionGuidance, loss = ||A x0_hat - y||^2 / (2 s_y^2) through the network (scale 1 = the DPS
  likelihood score); scale chosen on DPS_SCALES;
* SCG: best of n candidates per step by the reward r(x0_hat) = log-likelihood;
* DPS, tuned automatically: the same guidance with its scale chosen by ``steerdiff.core.tune`` (8 validation
  runs over [1e-3, 10]) instead of the hand-made grid;
* tree search: TreeSearchGuidance with 2 beams per particle, each branching into n/2 children per step (the
  SCG row's budget), survivors drawn by softmax(log-likelihood / temperature); the temperature chosen by
  ``steerdiff.core.tune`` (8 validation runs over [0.1, 100]); the best beam of each particle is scored;
* SMC/FK: FeynmanKacSteering(r, K), lambda = 1 (exact posterior as K grows), difference potential, systematic
  resampling below ESS = K/2; once from sigma_max, once steering only for sigma <= SMC_SIGMA_START, once with
  a noise-aware twist (the likelihood of x0_hat with its variance inflated by Cov[x0 | x_sigma]; exact for the
  Gaussian priors, a Gaussian approximation for the mixture) for the intermediate weights;
* EnKG: EnsembleKalmanGuidance, J = K, one update per step, the reference's inner-ODE rule
  min(1 + (N - i) // 4, 20) and gating (no correction in the first and last 5% of the steps); step size
  "frobenius" (scale / ||A||_F, reference code) and "trace" (scale / (tr C_yy + m s_y^2), the paper's
  Gamma-weighted step); scales from
  ENKG_SCALES (the two step sizes mean different things, so each has its own log-spaced grid).

Reference rows: the floor (the same estimators applied to K exact posterior samples, many repeats: the error
K particles allow) and IS (K exact *prior* samples weighted by the likelihood: the best that reweighting
unguided proposals can start from, which is what SMC/FK does).

Tuning is honest: scales are chosen on a *validation instance* (same prior and A, another x_true and noise,
another sampler seed) by the smallest posterior-mean error there; the tables report the *test instance*, and
the grids with every validation score are printed and written to JSON.

Metrics per repeat, averaged over the R repeats (SMC: weighted particles): mean error |mean_hat - m| (+- its
standard error), bias |average of the R mean_hat - m|, K_eq (the number of exact samples with the same mean
square error), covariance error |C_hat - C|_F / |C|_F, Gaussian W2 between (mean_hat, C_hat) and (m, C) in
closed form, misfit |A mean_hat - y|, spread tr C_hat / tr C (near 0 = collapsed), and for the mixture the
total variation between estimated and exact mode weights (soft responsibilities; for the mixture m, C are its
moments). Costs per particle: NFE, forward-model evaluations (one counting wrapper around A for every
method), gradient evaluations (backward passes through the network); wall time of the run (one thread).

Goal: SMC/FK and EnKG within 10% of the floor in mean error (PASS: mean err <= 1.1 x floor). A verdict closer
to the threshold than about two standard errors is not decided by one run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import torch

from steerdiff.core import LogRange, TreeSearchGuidance
from steerdiff.core import tune as auto_tune
from steerdiff.core.analytic import GaussianMixture, gaussian
from steerdiff.core.benchmarking import Stopwatch, environment, print_table, write_json
from steerdiff.core.guidance import (
    EnsembleKalmanGuidance,
    FeynmanKacSteering,
    ReconstructionGuidance,
    StochasticControlGuidance,
)
from steerdiff.core.sampling import sample
from steerdiff.core.schedules import EDM, sigma_grid

F64 = torch.float64
NOISE_STD = 0.3
EIG_RANGE = (0.1, 2.0)
DPS_SCALES = (0.03, 0.1, 0.3, 1.0)
# the two step sizes mean different things: "frobenius" moves ~scale ensemble spreads per update (reference
# default 2.0); "trace" is a Gauss-Newton step with gain ~scale (scale 1 fits the data in one update)
ENKG_SCALES = {"frobenius": (0.1, 0.3, 1.0, 3.0), "trace": (0.03, 0.1, 0.3, 1.0)}
SMC_SIGMA_START = 1.0
TREE_BEAMS = 2  # tree search: 2 beams per sample, each branching into scg_candidates / 2 children
AUTO_BUDGET = 8  # validation runs the automatic search may spend (the hand-tuned grids spend 4)
AUTO_RANGES = {"dps_auto": LogRange(1e-3, 10.0), "tree": LogRange(0.1, 100.0)}
ENKG_GATE = 0.05  # reference: no correction in the first and last 5% of the steps
GOAL = 1.1

# Problems: (name, kind, d, m). K particles, R repeats for the test runs (R_tune for the validation runs),
# N sampling steps, floor_repeats exact K-sample repeats for the floor.
CONFIGS = {
    "quick": {
        "problems": [
            {
                "name": "gaussian d=2",
                "kind": "gaussian",
                "d": 2,
                "m": 1,
                "K": 64,
                "R": 48,
                "R_tune": 16,
                "N": 40,
            },
            {
                "name": "gaussian d=16",
                "kind": "gaussian",
                "d": 16,
                "m": 4,
                "K": 64,
                "R": 16,
                "R_tune": 8,
                "N": 40,
            },
            {
                "name": "gaussian d=256",
                "kind": "gaussian",
                "d": 256,
                "m": 32,
                "K": 64,
                "R": 2,
                "R_tune": 1,
                "N": 25,
            },
            {
                "name": "mixture d=2",
                "kind": "mixture",
                "d": 2,
                "m": 1,
                "K": 64,
                "R": 32,
                "R_tune": 16,
                "N": 40,
            },
        ],
        "scg_candidates": 4,
        "floor_repeats": 400,
    },
    "full": {
        "problems": [
            {
                "name": "gaussian d=2",
                "kind": "gaussian",
                "d": 2,
                "m": 1,
                "K": 128,
                "R": 128,
                "R_tune": 32,
                "N": 100,
            },
            {
                "name": "gaussian d=16",
                "kind": "gaussian",
                "d": 16,
                "m": 4,
                "K": 128,
                "R": 32,
                "R_tune": 8,
                "N": 100,
            },
            {
                "name": "gaussian d=256",
                "kind": "gaussian",
                "d": 256,
                "m": 32,
                "K": 128,
                "R": 4,
                "R_tune": 1,
                "N": 60,
            },
            {
                "name": "mixture d=2",
                "kind": "mixture",
                "d": 2,
                "m": 1,
                "K": 128,
                "R": 64,
                "R_tune": 16,
                "N": 100,
            },
        ],
        "scg_candidates": 8,
        "floor_repeats": 2000,
    },
}


def run_seed(seed: int, *parts: int) -> torch.Generator:
    h = seed
    for p in parts:
        h = (h * 1_000_003 + p) % (2**63 - 1)
    return torch.Generator().manual_seed(h)


# --------------------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------------------


@dataclass
class Problem:
    name: str
    kind: str
    prior: GaussianMixture
    A: torch.Tensor
    y: torch.Tensor
    noise: float
    post: GaussianMixture
    mean: torch.Tensor  # exact posterior mean
    cov: torch.Tensor  # exact posterior covariance
    cov_sqrt: torch.Tensor

    @property
    def d(self) -> int:
        return self.A.shape[1]

    @property
    def m(self) -> int:
        return self.A.shape[0]


def _finish(name, kind, prior, A, y, noise) -> Problem:
    post = prior.posterior(A, y, noise)
    mean, cov = post.mean(), post.cov()
    cov = 0.5 * (cov + cov.T)
    ev, vec = torch.linalg.eigh(cov)
    return Problem(name, kind, prior, A, y, noise, post, mean, cov, (vec * ev.clamp_min(0).sqrt()) @ vec.T)


def make_problem(spec: dict, seed: int, instance: int) -> Problem:
    """The prior and A depend on (seed, d) only; x_true and the noise also on ``instance`` (0 = test,
    1 = validation for tuning)."""
    d, m = spec["d"], spec["m"]
    g = run_seed(seed, 11, d, m)
    if spec["kind"] == "mixture":
        weights = torch.tensor([0.3, 0.45, 0.25], dtype=F64)
        means = torch.tensor([[-2.0, -0.5], [2.0, 0.3], [0.0, 3.0]], dtype=F64)
        covs = torch.tensor(
            [[[0.4, 0.15], [0.15, 0.3]], [[0.3, -0.1], [-0.1, 0.5]], [[0.6, 0.0], [0.0, 0.2]]], dtype=F64
        )
        prior = GaussianMixture(weights, means, covs)
        A = torch.tensor([[0.3, 1.0]], dtype=F64)
        # designed to be bimodal: y is the measurement of a point between the two lower modes (test),
        # or of a slightly different one (validation); the exact posterior weights are printed
        y = torch.tensor([-0.3 if instance == 0 else 0.0], dtype=F64)
        return _finish(spec["name"], "mixture", prior, A, y, NOISE_STD)
    q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))[0]
    lam = torch.exp(torch.linspace(math.log(EIG_RANGE[0]), math.log(EIG_RANGE[1]), d, dtype=F64))
    prior = gaussian(torch.randn(d, generator=g, dtype=F64), (q * lam) @ q.T)
    A = torch.randn(m, d, generator=g, dtype=F64) / math.sqrt(d)
    gi = run_seed(seed, 12, d, m, instance)
    x_true = prior.sample(1, gi)[0]
    y = A @ x_true + NOISE_STD * torch.randn(m, generator=gi, dtype=F64)
    return _finish(spec["name"], "gaussian", prior, A, y, NOISE_STD)


class Forward:
    """The forward model x0 -> A x0, counting evaluations (rows) and calls the same way for every method."""

    def __init__(self, A: torch.Tensor):
        self.A = A
        self.evals = 0
        self.calls = 0

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        self.evals += x0.shape[0]
        self.calls += 1
        return x0.reshape(x0.shape[0], -1) @ self.A.T


# --------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------


def gaussian_w2(mean_hat, cov_hat, mean, cov, cov_sqrt) -> torch.Tensor:
    """W2 between N(mean_hat, cov_hat) (batched, PSD, possibly singular) and N(mean, cov), closed form."""
    mid = cov_sqrt @ cov_hat @ cov_sqrt
    ev = torch.linalg.eigvalsh(0.5 * (mid + mid.transpose(-1, -2))).clamp_min(0)
    w2sq = (
        ((mean_hat - mean) ** 2).sum(-1)
        + torch.diagonal(cov_hat, dim1=-2, dim2=-1).sum(-1)
        + cov.trace()
        - 2 * ev.sqrt().sum(-1)
    )
    return w2sq.clamp_min(0).sqrt()


def mode_weights(post: GaussianMixture, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted average of the posterior responsibilities of each component: (R, n_components)."""
    logp = torch.stack(
        [
            torch.distributions.MultivariateNormal(post.means[c], post.covs[c]).log_prob(x)
            for c in range(post.num_components)
        ],
        -1,
    ) + torch.log(post.weights)
    return torch.einsum("rk,rkc->rc", w, torch.softmax(logp, -1))


def metrics(prob: Problem, x: torch.Tensor, k: int, weights: torch.Tensor | None = None) -> dict:
    """Per-repeat metrics of R estimates of K particles (rows sample-major: repeat r owns rows r*K..r*K+K-1),
    returned as mean and standard error over the repeats."""
    x = x.reshape(-1, k, prob.d).to(F64)
    r = x.shape[0]
    w = torch.full((r, k), 1.0 / k, dtype=F64) if weights is None else weights.to(F64)
    if not torch.isfinite(x).all():
        return {"finite": False}
    mean_hat = (w[..., None] * x).sum(1)
    dev = x - mean_hat[:, None]
    cov_hat = torch.einsum("rk,rki,rkj->rij", w, dev, dev)
    per = {
        "mean_err": (mean_hat - prob.mean).norm(dim=1),
        "mean_sq_err": ((mean_hat - prob.mean) ** 2).sum(1),
        "cov_err": torch.linalg.matrix_norm(cov_hat - prob.cov) / torch.linalg.matrix_norm(prob.cov),
        "w2": gaussian_w2(mean_hat, cov_hat, prob.mean, prob.cov, prob.cov_sqrt),
        "misfit": (mean_hat @ prob.A.T - prob.y).norm(dim=1),
        "spread": torch.diagonal(cov_hat, dim1=-2, dim2=-1).sum(-1) / prob.cov.trace(),
        "ess_frac": 1.0 / (w**2).sum(1) / k,
    }
    if prob.kind == "mixture":
        per["mode_tv"] = 0.5 * (mode_weights(prob.post, x, w) - prob.post.weights).abs().sum(1)
    out = {"finite": True, "repeats": r, "bias": float((mean_hat.mean(0) - prob.mean).norm())}
    for key, v in per.items():
        out[key] = float(v.mean())
        out[key + "_se"] = float(v.std() / math.sqrt(r)) if r > 1 else math.nan
    return out


def exact_samples(prob: Problem, n: int, gen: torch.Generator) -> torch.Tensor:
    """n exact posterior samples (Gaussian: m + C^1/2 z, without GaussianMixture.sample's (n, D, D) buffer)."""
    if prob.kind == "gaussian":
        return prob.mean + torch.randn(n, prob.d, generator=gen, dtype=F64) @ prob.cov_sqrt
    return prob.post.sample(n, gen)


def floor_metrics(prob: Problem, k: int, repeats: int, gen: torch.Generator) -> dict:
    """The same metrics for K exact posterior samples, over many repeats (drawn in chunks)."""
    chunks, left = [], repeats
    while left > 0:
        n = min(left, max(1, 2**18 // (k * prob.d)))
        chunks.append(metrics(prob, exact_samples(prob, n * k, gen), k))
        left -= n
    total = sum(c["repeats"] for c in chunks)
    out = {"finite": True, "repeats": total, "bias": None}
    for key in chunks[0]:
        if key in ("finite", "repeats", "bias") or key.endswith("_se"):
            continue
        out[key] = sum(c[key] * c["repeats"] for c in chunks) / total
        # pooled standard error (chunks are independent)
        var = sum((c[key + "_se"] ** 2) * c["repeats"] ** 2 for c in chunks if math.isfinite(c[key + "_se"]))
        out[key + "_se"] = math.sqrt(var) / total
    return out


# --------------------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------------------


def enkg_interval(sig: list[float]) -> tuple[float, float]:
    """The reference's gating: correct at step i only for gate*N < i < N - int(gate*N)."""
    n = len(sig) - 1
    first = math.floor(ENKG_GATE * n) + 1
    last = n - int(ENKG_GATE * n) - 1
    return (sig[last + 1], sig[first])


def run_method(
    prob: Problem,
    method: str,
    k: int,
    r: int,
    sig: torch.Tensor,
    seed: int,
    scale: float | None = None,
    scg_n: int = 8,
) -> dict:
    """One sampling run of R estimates of K particles; returns metrics, costs and diagnostics."""
    fwd = Forward(prob.A)
    y, s2 = prob.y, prob.noise**2

    def log_lik(x0):
        return -((fwd(x0) - y) ** 2).sum(1) / (2 * s2)

    def loss(x0):
        return ((fwd(x0) - y) ** 2).sum(1) / (2 * s2)

    solver, guidance = "ddpm", []
    sig_list = sig.tolist()
    if method == "prior":
        pass
    elif method == "prior_euler":
        solver = "euler"
    elif method == "dps":
        guidance = [ReconstructionGuidance(loss, scale=scale)]
    elif method == "scg":
        guidance = [StochasticControlGuidance(log_lik, num_candidates=scg_n)]
    elif method == "dps_auto":
        guidance = [ReconstructionGuidance(loss, scale=scale)]
    elif method == "tree":  # selection by softmax(log-likelihood / temperature) among beams x children
        guidance = [
            TreeSearchGuidance(
                log_lik,
                num_beams=TREE_BEAMS,
                branch=max(scg_n // TREE_BEAMS, 1),
                selection="sample",
                temperature=scale,
            )
        ]
    elif method == "smc":
        guidance = [FeynmanKacSteering(log_lik, k)]
    elif method == "smc_late":
        guidance = [FeynmanKacSteering(log_lik, k, interval=(0.0, SMC_SIGMA_START))]
    elif method == "smc_twist":
        guidance = [FeynmanKacSteering(log_lik, k, twist=noise_aware_twist(prob, fwd))]
    elif method in ("enkg_frobenius", "enkg_trace"):
        solver = "euler"
        step = method.split("_")[1]  # the trace step includes the measurement noise, tr(C_yy) + m s_y^2
        guidance = [
            EnsembleKalmanGuidance(
                fwd,
                y,
                k,
                scale=scale,
                step_size=step,
                noise_std=prob.noise if step == "trace" else 0.0,
                interval=enkg_interval(sig_list),
            )
        ]
    else:
        raise ValueError(f"unknown method {method!r}")
    # common random numbers: every method of a problem starts from the same noise with the same seed
    x_init = sig_list[0] * torch.randn(r * k, prob.d, generator=run_seed(seed, 21, prob.d), dtype=F64)
    beams = TREE_BEAMS if method == "tree" else 1
    with Stopwatch() as sw:
        out = sample(
            prob.prior,
            x_init.repeat_interleave(beams, 0),
            sig,
            solver,
            guidance=guidance,
            generator=run_seed(seed, 22, prob.d),
        )
    weights = out.info.get("weights")
    res = metrics(prob, out.x[::beams], k, weights)  # tree search: the best beam of each particle
    n = r * k
    res.update(
        {
            "method": method,
            "scale": scale,
            "solver": solver,
            "seconds": sw.seconds,
            "nfe": out.costs.nfe * beams,
            "forward_per_particle": fwd.evals / n,
            "forward_calls": fwd.calls,
            "gradient_per_particle": out.costs.gradient_evals / n,
            "costs": out.costs.as_dict(),
        }
    )
    if method.startswith("prior"):  # sampler check: the unguided samples against the exact prior
        flat = out.x.reshape(n, -1).to(F64)
        pm, pc = prob.prior.mean(), prob.prior.cov()
        res["prior_check"] = {
            "spread": float(torch.cov(flat.T).trace() / pc.trace())
            if prob.d > 1
            else float(flat.var() / pc.trace()),
            "mean_z": float((flat.mean(0) - pm).norm() / (pc.trace() / n).sqrt()),
        }
    if "resampled" in out.info:
        res["resamplings"] = float(out.info["resampled"].double().mean())
        res["min_ess_frac"] = float(out.info["ess"].min(0).values.double().mean() / k)
    return res


def noise_aware_twist(prob: Problem, fwd: Forward):
    """log N(y; A x0_hat, s_y^2 I + A V(sigma) A^T) with V(sigma) = (C^-1 + I / sigma^2)^-1, the covariance of x0
    given x_sigma for a Gaussian prior of covariance C (exact for the Gaussian problems; for the mixture, C is
    its total covariance, a Gaussian approximation). A user-supplied twist, as FeynmanKacSteering allows."""
    c_inv = torch.linalg.inv(prob.prior.cov())
    eye_d, eye_m = torch.eye(prob.d, dtype=F64), torch.eye(prob.m, dtype=F64)

    def twist(x0, sigma):
        v = torch.linalg.inv(c_inv + eye_d / sigma**2)
        s = prob.noise**2 * eye_m + prob.A @ v @ prob.A.T
        resid = fwd(x0) - prob.y
        return -0.5 * (resid * torch.linalg.solve(s, resid.T).T).sum(1)

    return twist


def importance_reference(prob: Problem, k: int, r: int, seed: int) -> dict:
    """K exact *prior* samples weighted by the likelihood: what any reweighting of unguided proposals
    (SMC/FK's transitions are the unguided sampler's) starts from, with an exact prior sampler."""
    gen = run_seed(seed, 41, prob.d)
    fwd = Forward(prob.A)
    with Stopwatch() as sw:
        if prob.kind == "gaussian":
            pc = prob.prior.cov()
            ev, vec = torch.linalg.eigh(pc)
            x = prob.prior.mean() + torch.randn(r * k, prob.d, generator=gen, dtype=F64) @ (
                (vec * ev.sqrt()) @ vec.T
            )
        else:
            x = prob.prior.sample(r * k, gen)
        log_lik = -((fwd(x) - prob.y) ** 2).sum(1) / (2 * prob.noise**2)
        weights = torch.softmax(log_lik.reshape(r, k), dim=1)
    res = metrics(prob, x, k, weights)
    res.update(
        {
            "method": "is_prior",
            "scale": None,
            "solver": None,
            "seconds": sw.seconds,
            "nfe": 0.0,
            "forward_per_particle": fwd.evals / (r * k),
            "gradient_per_particle": 0.0,
        }
    )
    return res


def tune(prob_val: Problem, method: str, grid, k: int, r: int, sig, seed: int) -> tuple[float, list[dict]]:
    """Pick the scale with the smallest posterior-mean error on the validation instance."""
    scores = []
    for s in grid:
        res = run_method(prob_val, method, k, r, sig, seed, scale=s)
        scores.append(
            {
                "scale": s,
                "mean_err": res.get("mean_err", math.inf),
                "w2": res.get("w2", math.inf),
                "seconds": res["seconds"],
            }
        )
    best = min(scores, key=lambda t: t["mean_err"] if math.isfinite(t["mean_err"]) else math.inf)
    return best["scale"], scores


LABELS = {
    "floor": "exact posterior, K samples (floor)",
    "is_prior": "IS: K exact prior samples x likelihood",
    "prior": "prior (unguided, ddpm)",
    "prior_euler": "prior (unguided, euler)",
    "dps": "DPS (ddpm)",
    "scg": "SCG best-of-n (ddpm)",
    "tree": "tree search, 2 beams, tuned automatically (ddpm)",
    "dps_auto": "DPS, tuned automatically (ddpm)",
    "smc": "SMC/FK from sigma_max (ddpm)",
    "smc_late": f"SMC/FK from sigma={SMC_SIGMA_START:g} (ddpm)",
    "smc_twist": "SMC/FK, noise-aware twist (ddpm)",
    "enkg_frobenius": "EnKG frobenius (euler)",
    "enkg_trace": "EnKG trace (euler)",
}
GOAL_METHODS = ("smc", "smc_late", "smc_twist", "enkg_frobenius", "enkg_trace")


def run_problem(spec: dict, cfg: dict, seed: int) -> dict:
    k, r, n_steps = spec["K"], spec["R"], spec["N"]
    prob = make_problem(spec, seed, 0)
    val = make_problem(spec, seed, 1)
    sig = sigma_grid(EDM(), n_steps, "karras")  # sigma in [0.002, 80], rho = 7, then 0
    t0 = time.perf_counter()
    floor = floor_metrics(
        prob,
        k,
        cfg["floor_repeats"] if spec["d"] <= 16 else cfg["floor_repeats"] // 8,
        run_seed(seed, 31, spec["d"]),
    )
    floor.update(
        {
            "method": "floor",
            "scale": None,
            "seconds": None,
            "nfe": None,
            "forward_per_particle": None,
            "gradient_per_particle": None,
        }
    )
    tuning = {}
    rows = [floor, importance_reference(prob, k, r, seed)]
    for method in (
        "prior",
        "prior_euler",
        "dps",
        "dps_auto",
        "scg",
        "tree",
        "smc",
        "smc_late",
        "smc_twist",
        "enkg_frobenius",
        "enkg_trace",
    ):
        scale = None
        if method == "dps" or method.startswith("enkg"):
            grid = DPS_SCALES if method == "dps" else ENKG_SCALES[method.split("_")[1]]
            scale, scores = tune(val, method, grid, k, spec["R_tune"], sig, seed + 1000)
            tuning[method] = {"grid": list(grid), "chosen": scale, "validation": scores}
        elif method in AUTO_RANGES:  # the core's automatic search on the same validation instance

            def objective(p, method=method):
                res = run_method(
                    val,
                    method,
                    k,
                    spec["R_tune"],
                    sig,
                    seed + 1000,
                    scale=p["scale"],
                    scg_n=cfg["scg_candidates"],
                )
                return res.get("mean_err", math.inf)

            found = auto_tune(objective, {"scale": AUTO_RANGES[method]}, budget=AUTO_BUDGET)
            scale = found.best["scale"]
            tuning[method] = {
                "grid": f"automatic, {AUTO_BUDGET} runs in {AUTO_RANGES[method]}",
                "chosen": scale,
                "validation": [{"scale": t["params"]["scale"], "mean_err": t["score"]} for t in found.trials],
                "at_edge": found.at_edge,
            }
        rows.append(run_method(prob, method, k, r, sig, seed, scale=scale, scg_n=cfg["scg_candidates"]))
    for row in rows:
        if row.get("finite"):
            row["k_equiv"] = k * floor["mean_sq_err"] / row["mean_sq_err"]
        if row["method"] in GOAL_METHODS:
            row["goal_pass"] = bool(row.get("finite") and row["mean_err"] <= GOAL * floor["mean_err"])
    return {
        "spec": spec,
        "rows": rows,
        "tuning": tuning,
        "seconds": time.perf_counter() - t0,
        "problem": {
            "d": prob.d,
            "m": prob.m,
            "noise_std": prob.noise,
            "y": prob.y.tolist(),
            "posterior_mean_norm": float(prob.mean.norm()),
            "posterior_cov_trace": float(prob.cov.trace()),
            "prior_cov_trace": float(prob.prior.cov().trace()),
            "prior_to_posterior_mean": float((prob.prior.mean() - prob.mean).norm()),
            "exact_misfit": float((prob.A @ prob.mean - prob.y).norm()),
            "posterior_weights": prob.post.weights.tolist(),
            "validation_y": val.y.tolist(),
        },
    }


# --------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------


def _pm(v, se):
    if v is None:
        return "-"
    if se is None or not math.isfinite(se):
        return f"{v:.3g}"
    return f"{v:.3g}+-{se:.2g}"


def print_problem(res: dict, cfg: dict) -> None:
    spec, rows, p = res["spec"], res["rows"], res["problem"]
    floor = rows[0]
    mixture = spec["kind"] == "mixture"
    headers = ["method", "scale", "mean err", "/floor", "bias", "K_eq", "cov err", "W2", "misfit", "spread"]
    headers += ["mode TV"] if mixture else []
    headers += ["NFE", "fwd/p", "grad/p", "wall s", "goal"]
    table = []
    for row in rows:
        label = LABELS[row["method"]]
        if row["method"] == "scg":
            label = f"SCG best-of-{cfg['scg_candidates']} (ddpm)"
        if not row.get("finite", True):
            table.append([label, row["scale"], "non-finite"] + [None] * (len(headers) - 3))
            continue
        line = [
            label,
            row["scale"],
            _pm(row["mean_err"], row["mean_err_se"]),
            row["mean_err"] / floor["mean_err"],
            row["bias"],
            row["k_equiv"],
            _pm(row["cov_err"], row["cov_err_se"]),
            row["w2"],
            row["misfit"],
            row["spread"],
        ]
        if mixture:
            line.append(_pm(row["mode_tv"], row["mode_tv_se"]))
        goal = None if "goal_pass" not in row else ("PASS" if row["goal_pass"] else "FAIL")
        line += [row["nfe"], row["forward_per_particle"], row["gradient_per_particle"], row["seconds"], goal]
        table.append(line)
    tuned = "; ".join(
        f"{LABELS[m].split(' (')[0]}: {t['chosen']:g} from {t['grid']} (validation mean err "
        + ", ".join(f"{v['mean_err']:.3g}" for v in t["validation"])
        + ")"
        for m, t in res["tuning"].items()
    )
    checks = [r for r in rows if "prior_check" in r]
    smc = [r for r in rows if r["method"].startswith("smc") and r.get("finite")]
    notes = [
        (
            f"d={p['d']}, m={p['m']}, s_y={p['noise_std']}; K={spec['K']} particles per estimate, R={spec['R']} "
            f"repeats (floor: {floor['repeats']}), N={spec['N']} Karras steps in [0.002, 80]. Exact posterior: "
            f"tr C={p['posterior_cov_trace']:.3g} (prior {p['prior_cov_trace']:.3g}), |m - prior mean|="
            f"{p['prior_to_posterior_mean']:.3g}, misfit |A m - y| of m itself {p['exact_misfit']:.3g}."
        ),
        f"Scales tuned on a validation instance (other y, other seed, R={spec['R_tune']}): {tuned}.",
        (
            "mean err = |mean_hat - m| (+- s.e. over repeats); /floor = ratio to the floor row; bias = |average of "
            "the R mean_hat - m| (unbiased methods: about mean err / sqrt(R)); K_eq = exact samples that give the "
            "same mean-square error; cov err = |C_hat - C|_F/|C|_F; W2 = Gaussian W2 of the moments; misfit = "
            "|A mean_hat - y|; spread = tr C_hat / tr C; NFE, fwd/p, grad/p per particle; "
            f"goal: mean err <= {GOAL} x floor."
        ),
    ]
    if mixture:
        notes.insert(
            1,
            "Exact posterior mode weights: "
            + ", ".join(f"{w:.3f}" for w in p["posterior_weights"])
            + "; mode TV = total variation between estimated and exact mode weights (moments, W2: "
            "of the whole mixture).",
        )
    if checks:
        notes.append(
            "Sampler check, unguided samples pooled against the exact prior: "
            + "; ".join(
                f"{r['solver']}: spread {r['prior_check']['spread']:.3f}, mean z-score {r['prior_check']['mean_z']:.2f}"
                for r in checks
            )
            + " (spread < 1 = the N-step sampler's own under-dispersion)."
        )
    if smc:
        notes.append(
            "SMC: "
            + "; ".join(
                f"{LABELS[r['method']].split(' (')[0]}: {r['resamplings']:.1f} resamplings, min ESS/K "
                f"{r['min_ess_frac']:.2f}, final ESS/K {r['ess_frac']:.2f}"
                for r in smc
            )
            + "."
        )
    print_table(
        f"{spec['name']}: posterior accuracy and cost ({res['seconds']:.1f} s)", headers, table, notes=notes
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute on 2 CPU cores")
    parser.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the problems and of the samplers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable timings)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = CONFIGS[mode]
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    print(f"# steerdiff guidance against exact posteriors ({mode}, seed {args.seed})")
    results = []
    for spec in cfg["problems"]:
        res = run_problem(spec, cfg, args.seed)
        print_problem(res, cfg)
        results.append(res)
    total = time.perf_counter() - t_start
    print("\nGoal (SMC/FK and EnKG mean error within 10% of the K-sample floor):")
    for res in results:
        verdicts = ", ".join(
            f"{LABELS[r['method']].split(' (')[0]} {'PASS' if r['goal_pass'] else 'FAIL'} "
            f"({r['mean_err'] / res['rows'][0]['mean_err']:.2f}x)"
            for r in res["rows"]
            if "goal_pass" in r
        )
        print(f"  {res['spec']['name']}: {verdicts}")
    print(f"Total time: {total:.1f} s")
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "guidance_posterior",
                "mode": mode,
                "seed": args.seed,
                "config": {
                    **cfg,
                    "noise_std": NOISE_STD,
                    "eig_range": EIG_RANGE,
                    "dps_scales": DPS_SCALES,
                    "enkg_scales": ENKG_SCALES,
                    "smc_sigma_start": SMC_SIGMA_START,
                    "enkg_gate": ENKG_GATE,
                    "goal": GOAL,
                },
                "environment": environment(),
                "seconds": total,
                "problems": results,
            },
        )
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
