"""Parity with the official TSDiff code (amazon-science/unconditional-time-series-diffusion): the self-guidance
losses and their gradients, a whole self-guided DDIM run, and the S4D kernel.

The fixture was produced by ``tests/parity/generate/gen_timeseries.py`` run inside a checkout of the official
repository, with an eps-network stand-in on the official linear schedule (10 steps); its ``meta`` names the
commit, the functions and the command. Official tensors are (rows, length, channels); steerdiff's are
(rows, channels, length), so the tests transpose.
"""

import numpy as np
import pytest
import torch

from steerdiff.core import sample
from steerdiff.core.nets import S4DLayer
from steerdiff.timeseries.guidance import ObservationLoss, quantile_levels, self_guidance

from ._fixtures import load_npz

FX, META = load_npz("timeseries_tsdiff.npz")
SZ = META["sizes"]
S, T_GUIDE = SZ["samples"], SZ["t"]
AB = torch.tensor(FX["alphas_cumprod"])
W = torch.tensor(FX["W"])
KIND = {"mse": "MSE", "quantile": "quantile"}


def backbone(x_vp, t):
    """The fixture's eps-network stand-in on steerdiff's layout (rows, C, L); t (rows,) integer steps."""
    z = torch.einsum("lk,rck->rcl", W, x_vp) * (1 + 0.05 * t.to(x_vp.dtype))[:, None, None]
    return 0.8 * torch.tanh(z)


def fast_denoise(x_vp, t):
    """TSDiffBase.fast_denoise: x0-hat from the VP sample at step t."""
    ab = AB[t][:, None, None]
    return (x_vp - (1 - ab).sqrt() * backbone(x_vp, t)) / ab.sqrt()


def observed() -> torch.Tensor:
    """(windows, C, L) with NaN where the official mask is 0."""
    obs = torch.tensor(FX["observation"]).transpose(1, 2)
    return torch.where(torch.tensor(FX["mask"]).transpose(1, 2) == 1, obs, torch.full_like(obs, float("nan")))


def _loss(kind):
    return ObservationLoss(observed(), quantile_levels(S).double() if kind == "quantile" else None)


def test_fixture_names_its_source():
    assert META["source"].startswith("amazon-science/unconditional-time-series-diffusion@3eafeffd")
    assert META["command"]


def test_quantile_levels_match_official():
    # official: q = (arange(num_samples).repeat(batch) + 1) / (num_samples + 1), sample-major rows
    y = torch.tensor(FX["y"]).transpose(1, 2)
    t = torch.full((y.shape[0],), T_GUIDE)
    err = torch.tensor(FX["observation"]).transpose(1, 2).repeat_interleave(S, 0) - fast_denoise(y, t)
    q = quantile_levels(S).double().repeat(y.shape[0] // S)[:, None, None]
    ours = torch.maximum(q * err, (q - 1) * err)
    np.testing.assert_allclose(
        ours.transpose(1, 2).numpy(), FX["quantile_loss_elementwise"], rtol=1e-6, atol=1e-12
    )


@pytest.mark.parametrize("kind", ["mse", "quantile"])
def test_self_guidance_energy_and_gradient_match_official(kind):
    # official Guidance.energy_func: the loss summed over the observed entries; score_func: -grad_y of it
    y = torch.tensor(FX["y"]).transpose(1, 2).requires_grad_(True)
    t = torch.full((y.shape[0],), T_GUIDE)
    energy = _loss(kind)(fast_denoise(y, t)).sum()
    (grad,) = torch.autograd.grad(energy, y)
    np.testing.assert_allclose(energy.item(), FX[f"energy_{KIND[kind]}"], rtol=1e-10)
    np.testing.assert_allclose(
        -grad.transpose(1, 2).numpy(), FX[f"score_{KIND[kind]}"], rtol=1e-8, atol=1e-12
    )


@pytest.mark.parametrize("kind", ["mse", "quantile"])
def test_self_guided_ddim_run_matches_official(kind):
    # official DDIMGuidance._reverse_ddim (eta = 0, 10 steps, base_scale 4): eps <- eps - sqrt(1 - abar) s score.
    # steerdiff: SelfGuidance (x0-hat <- x0-hat - s sigma^2 grad E, the same step in sigma space) with DDIM
    # on sigma_t = sqrt((1 - abar_t) / abar_t), t = 9 .. 0, then 0.
    sig_table = ((1 - AB) / AB).sqrt()

    def denoiser(x, sigma):
        t = (sig_table[None] - sigma.reshape(-1, 1)).abs().argmin(1)
        return fast_denoise(x * AB[t][:, None, None].sqrt(), t)

    start = torch.tensor(FX[f"ddim_start_{KIND[kind]}"]).transpose(1, 2)
    x = start / AB[-1].sqrt()  # the VP sample at t = 9 in sigma space
    guidance = self_guidance(observed(), scale=SZ["scale"], kind=kind, num_samples=S)
    sigmas = sig_table.flip(0).tolist() + [0.0]
    out = sample(denoiser, x, sigmas, solver="ddim", guidance=guidance).x
    ref = FX[f"ddim_final_{KIND[kind]}"]
    np.testing.assert_allclose(out.transpose(1, 2).numpy(), ref, rtol=1e-7, atol=1e-9)


def test_s4d_kernel_matches_official_zoh():
    # official SSKernelDiag(A, B = 1, C, log_dt, disc="zoh") (its S4D kernel; A_real = -exp(log(-A_real)))
    h, n = FX["s4_A_real"].shape
    layer = S4DLayer(d_model=h, d_state=2 * n, bidirectional=True).double()
    with torch.no_grad():
        layer.log_dt.copy_(torch.tensor(FX["s4_log_dt"]))
        layer.log_A_real.copy_(torch.tensor(-FX["s4_A_real"]).log())
        layer.A_imag.copy_(torch.tensor(FX["s4_A_imag"]))
        # SSKernelDiag stores conj(C) of the C it is given (_resolve_conj): that stored parameter is steerdiff's C
        layer.C.copy_(torch.stack([torch.tensor(FX["s4_C_real"]), -torch.tensor(FX["s4_C_imag"])], -1))
    k = layer.kernel(FX["s4_kernel"].shape[-1]).detach().numpy()
    np.testing.assert_allclose(k, FX["s4_kernel"], rtol=1e-10, atol=1e-12)
