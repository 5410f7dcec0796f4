"""Produce tests/parity/fixtures/inverse_*.npz from the official EnKG code (devzhk/enkg-pytorch).

Needs a checkout of the official code (not part of steerdiff) at /tmp/official/devzhk+enkg-pytorch; run
    cd /tmp/official/devzhk+enkg-pytorch && OMP_NUM_THREADS=1 python /work/main/tests/parity/generate/gen_inverse.py /work/main/tests/parity/fixtures
"""

import json
import math
import sys
import types

import numpy as np
import torch

sys.modules["wandb"] = types.SimpleNamespace(run=None)  # the official module imports wandb for logging only
sys.path.insert(0, ".")
from algo.enkg import EnKG  # noqa: E402
from inverse_problems.navier_stokes import ForwardNavierStokes2d  # noqa: E402

out = sys.argv[1]
torch.set_default_dtype(torch.float64)
SOURCE = "devzhk/enkg-pytorch@2ee4a909f1ac024aa9b2385611b71b64fa4aca64"

# ---------------- Navier-Stokes ----------------
rng = np.random.default_rng(0)
# smooth initial vorticity: random Fourier modes with 0 < |k| <= 4, std 3, sampled on a 128 grid; the 64 grid
# takes every other point (the field is band-limited, so both grids hold the same continuous field)
m = 128
k = np.fft.fftfreq(m, 1.0 / m)
k1, k2 = np.meshgrid(k, k, indexing="ij")
mask = (k1**2 + k2**2 <= 16) & (k1**2 + k2**2 > 0)
coef = (rng.standard_normal((m, m)) + 1j * rng.standard_normal((m, m))) * mask
w0_128 = np.real(np.fft.ifft2(coef))
w0_128 = (
    (3.0 * w0_128 / w0_128.std()).astype(np.float32).astype(np.float64)
)  # exactly representable in float32
arrays = {}


def upsample(w, size):
    """Spectral (zero-padding) interpolation of a band-limited field to a size x size grid."""
    n = w.shape[0]
    c = np.fft.fft2(w)
    big = np.zeros((size, size), complex)
    h = n // 2
    big[:h, :h], big[:h, -h:], big[-h:, :h], big[-h:, -h:] = c[:h, :h], c[:h, -h:], c[-h:, :h], c[-h:, -h:]
    return np.real(np.fft.ifft2(big)) * (size / n) ** 2


def official(n, w0, horizon, **kw):
    op = ForwardNavierStokes2d(
        resolution=n, forward_time=horizon, Re=200.0, downsample_factor=1, dtype=torch.float64, device="cpu"
    )
    arrays.setdefault(f"force_{n}", op.force.numpy().astype(np.float32))
    return op.solver.solve(torch.tensor(w0)[None], op.force, horizon, 200.0, **kw)[0].numpy()


w0_64 = w0_128[::2, ::2].copy()
arrays["w0_128"] = w0_128.astype(np.float32)
# 64 x 64, T = 1, steerdiff's default dt = 1e-2; and the official default (adaptive CFL step)
arrays["final_fixed_dt_64"] = official(64, w0_64, 1.0, adaptive=False, delta_t=1e-2).astype(np.float32)
arrays["final_adaptive_64"] = official(64, w0_64, 1.0, adaptive=True).astype(np.float32)
# 128 x 128 (the paper's grid), T = 1, the official default (adaptive CFL step)
arrays["final_adaptive_128"] = official(128, w0_128, 1.0, adaptive=True).astype(np.float32)
# 256 x 256, T = 0.25, fixed dt = 2.5e-3 (resolved): stored on every 4th point (64 x 64)
arrays["final_fixed_dt_256_sub4"] = official(
    256, upsample(w0_128, 256), 0.25, adaptive=False, delta_t=2.5e-3
)[::4, ::4].astype(np.float32)
np.savez_compressed(
    f"{out}/inverse_navier_stokes.npz",
    **arrays,
    meta=json.dumps(
        {
            "source": SOURCE,
            "file": "inverse_problems/navier_stokes.py",
            "function": "NavierStokes2d.solve(w0, force, T=1.0, Re=200.0, ...) of ForwardNavierStokes2d(resolution=n, Re=200, forward_time=1.0, dtype=float64).solver, forcing ForwardNavierStokes2d.force",
            "settings": {
                "reynolds": 200.0,
                "computed_in": "float64",
                "stored_as": "float32",
                "w0_128": "initial vorticity on the 128 grid; w0_64 = w0_128[::2, ::2]; the 256 run starts from its zero-padded spectral interpolation",
                "final_fixed_dt_64": "n=64, T=1.0, adaptive=False, delta_t=1e-2",
                "final_adaptive_64": "n=64, T=1.0, adaptive=True (the official default: CFL step min(0.5 h/max|u|, 0.5 h^2/mu), h = 1/n)",
                "final_adaptive_128": "n=128, T=1.0, adaptive=True",
                "final_fixed_dt_256_sub4": "n=256, T=0.25, adaptive=False, delta_t=2.5e-3, stored [::4, ::4]",
            },
            "command": "cd /tmp/official/devzhk+enkg-pytorch && OMP_NUM_THREADS=1 python /work/main/tests/parity/generate/gen_inverse.py /work/main/tests/parity/fixtures",
            "layout": "official arrays are (x1, x2) with the forcing -4 cos(4 x2) along the LAST axis; steerdiff's forcing varies along the FIRST axis, so official fields are steerdiff fields transposed",
        }
    ),
)

# ---------------- EnKG update ----------------
D, J, M = 16, 8, 6
g = np.random.default_rng(1)
mu = g.standard_normal(D) * 0.5
s2 = np.exp(g.standard_normal(D) * 0.3)  # prior variances
Wm = g.standard_normal((M, D)) / math.sqrt(D)
bias = g.standard_normal(M) * 0.1
x = g.standard_normal((J, 1, 4, 4)) * 2.5
y = g.standard_normal(M)
mu_t, s2_t, W_t, b_t = map(torch.tensor, (mu, s2, Wm, bias))


class Net:  # exact denoiser of N(mu, diag(s2)): D(x, sigma) = mu + s2 / (s2 + sigma^2) (x - mu)
    img_channels, img_resolution = 1, 4

    def round_sigma(self, s):
        return torch.as_tensor(s)

    def __call__(self, x, sigma):
        sig = torch.as_tensor(sigma, dtype=torch.float64)
        xf = x.reshape(x.shape[0], -1)
        return (mu_t + s2_t / (s2_t + sig**2) * (xf - mu_t)).reshape(x.shape)


class Op:  # black-box forward model y = tanh(W x0) + b + 0.1 (W x0)^2, unnormalised L2 misfit
    device = "cpu"
    from inverse_problems.base import BaseOperator as _B

    gradient_m = _B.gradient_m
    loss_m = _B.loss_m

    def forward(self, x0):
        z = x0.reshape(x0.shape[0], -1) @ W_t.T
        return torch.tanh(z) + b_t + 0.1 * z**2


def run(num_updates, ode_steps, sigma, sigma_next, scale):
    algo = EnKG(
        Net(),
        Op(),
        guidance_scale=scale,
        num_steps=80,
        num_updates=num_updates,
        sigma_max=80.0,
        sigma_min=0.002,
        num_samples=J,
        batch_size=4,
    )
    xt = torch.tensor(x)
    upd, t_hat = algo.update_particles(
        xt, torch.tensor(y), num_steps=ode_steps, sigma_start=sigma, guidance_scale=scale
    )
    # the rest of EnKG.inference's loop body: Euler step of the unguided ODE from t_hat to t_next
    den = algo.net(upd, t_hat)
    nxt = upd + (sigma_next - t_hat) * (upd - den) / t_hat
    return upd.numpy(), nxt.numpy()


u1, n1 = run(1, 1, 2.5, 1.8, 2.0)
u2, n2 = run(2, 3, 2.5, 1.8, 2.0)
np.savez_compressed(
    f"{out}/inverse_enkg_update.npz",
    mu=mu,
    s2=s2,
    W=Wm,
    bias=bias,
    x=x,
    y=y,
    single_updated=u1,
    single_next=n1,
    double_updated=u2,
    double_next=n2,
    meta=json.dumps(
        {
            "source": SOURCE,
            "file": "algo/enkg.py",
            "function": "EnKG.update_particles (+ ode_sampler) and the Euler step of EnKG.inference",
            "denoiser": "exact Gaussian denoiser mu + s2/(s2+sigma^2)(x-mu)",
            "forward": "tanh(W x0) + bias + 0.1 (W x0)^2",
            "single": {
                "num_updates": 1,
                "ode_steps": 1,
                "sigma": 2.5,
                "sigma_next": 1.8,
                "guidance_scale": 2.0,
            },
            "double": {
                "num_updates": 2,
                "ode_steps": 3,
                "sigma": 2.5,
                "sigma_next": 1.8,
                "guidance_scale": 2.0,
                "sigma_min": 0.002,
            },
            "command": "cd /tmp/official/devzhk+enkg-pytorch && OMP_NUM_THREADS=1 python /work/main/tests/parity/generate/gen_inverse.py /work/main/tests/parity/fixtures",
        }
    ),
)
print("done")
