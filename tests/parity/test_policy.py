"""Parity with the official policy-guided diffusion code (EmptyJackson/policy-guided-diffusion, JAX): whole
guided sampling runs of ``diffusion/edm.py: sample_trajectory`` on a fixed start.

The fixture was produced by ``tests/parity/generate/gen_policy.py`` (jax on CPU, float64) with a network
stand-in under the official EDM preconditioning, a Gaussian stand-in policy, 8 Heun steps and no churn; its
``meta`` names the commit, the call and the command. Official trajectories are (length, channels); steerdiff's
are (batch, channels, length).
"""

import math

import numpy as np
import pytest
import torch

from steerdiff.core import sample
from steerdiff.core.schedules import karras_sigmas
from steerdiff.policy.guidance import PolicyGuidance
from steerdiff.policy.trajectories import Normalizer

from ._fixtures import load_npz

FX, META = load_npz("policy_pgd.npz")
SZ = META["sizes"]
OBS, ACT = SZ["obs_dim"], SZ["act_dim"]
M, P, LOG_STD = (torch.tensor(FX[k]) for k in ("M", "P", "log_std"))
NORM = Normalizer(
    OBS,
    ACT,
    1.0,
    mean=[*FX["obs_mean"], *FX["action_mean"], 0.0, 0.0],
    std=[*FX["obs_std"], *FX["action_std"], 1.0, 1.0],
)


def denoiser(x, sigma):
    """The official EDM preconditioning (sigma_data = 1) around the fixture's network stand-in."""
    s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1)
    c_skip, c_out, c_in = 1 / (s**2 + 1), s / (s**2 + 1).sqrt(), 1 / (s**2 + 1).sqrt()
    f = torch.tanh(torch.einsum("bcl,cd->bdl", c_in * x, M) + 0.1 * 0.25 * s.log())
    return c_skip * x + c_out * f


class GaussianPolicy:
    """pi(a | s) = N(tanh(s P), exp(log_std)^2), as the fixture's stand-in (env units)."""

    def log_prob(self, obs, action):
        mean, std = torch.tanh(obs @ P), LOG_STD.exp()
        return (-0.5 * ((action - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def _run(guidance):
    x = torch.tensor(FX["init_noise"]).T[None] * SZ["sigma_max"]
    sigmas = karras_sigmas(SZ["sigma_max"], SZ["sigma_min"], SZ["steps"]).tolist() + [0.0]
    out = sample(denoiser, x, sigmas, solver="heun", guidance=guidance).x
    return out[0].T.numpy()


def test_fixture_names_its_source():
    assert META["source"].startswith("EmptyJackson/policy-guided-diffusion@9da606ca")
    assert META["command"]


def test_unguided_heun_run_matches_official():
    # the official EDM sampler (Heun, Karras grid rho = 7, no churn) against steerdiff's "heun"
    # (the official corrector divides by sigma' + 1e-9: 1.3e-8 here)
    np.testing.assert_allclose(_run([]), FX["final_unguided"], rtol=1e-7, atol=1e-7)


def _guidance(at="noisy", normalize=True, coeff=0.5, **kw):
    return PolicyGuidance(
        policy=GaussianPolicy(),
        normalizer=NORM,
        coeff=coeff,
        cosine=0.3,
        normalize=normalize,
        at=at,
        apply="sample",
        **kw,
    )


@pytest.mark.parametrize(
    ("case", "options"),
    [
        (
            "noisy_delay1",
            {"interval": (0.0, 50.0)},
        ),  # policy_guidance_delay_steps=1: step 0 (sigma = 80) unguided
        ("denoised", {"at": "denoised"}),
        ("noisy_unnormalized", {"normalize": False, "coeff": 0.05}),
    ],
)
def test_policy_guided_run_matches_official(case, options):
    # official: before each step k < N - 1 the noisy sample's actions move by lambda_k grad_a sum log pi(tanh(a)|s),
    # the gradient taken at the noisy sample (default) or at its denoised estimate (denoised_guidance=True),
    # lambda_k = coeff [(1 - k/N) + 0.3 sin(pi (k+1)/N)]; steerdiff: PolicyGuidance(apply="sample", at=...).
    # The official normalisation is g / ||g|| + 1e-8 (the 1e-8 added to every action entry, not to the norm):
    # a difference of about 1e-8 per step, inside the tolerance.
    got = _run(_guidance(**options))
    np.testing.assert_allclose(got, FX[f"final_{case}"], rtol=1e-6, atol=1e-6)
    assert np.abs(FX[f"final_{case}"] - FX["final_unguided"]).max() > 0.05  # the guidance did something


@pytest.mark.xfail(
    strict=True,
    reason="normalised guidance at the noisy sample: at sigma = 80 the gradient through tanh of the noisy actions "
    "is ||g|| = 4.7e-14; the official code scales it to a unit vector (a full lambda_0 = 0.56 step), "
    "PolicyGuidance(normalize=True) divides by max(||g||, 1e-12) (a step 21x smaller), so the final trajectory "
    "differs by up to 9.4e-3 (8.2e-4 relative). With the official unit step the gap is 2.5e-4: the direction of "
    "a 1e-14 gradient is round-off.",
)
def test_policy_guided_run_noisy_normalized_matches_official():
    np.testing.assert_allclose(_run(_guidance()), FX["final_noisy"], rtol=1e-6, atol=1e-6)


def test_policy_guided_run_noisy_normalized_gap_is_pinned():
    d = np.abs(_run(_guidance()) - FX["final_noisy"]).max()
    assert 1e-3 < d < 2e-2  # measured 9.4e-3; see the xfail above and docs/parity.md
