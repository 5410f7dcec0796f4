"""2-D incompressible Navier-Stokes in vorticity form on the torus [0, 2 pi]^2, pseudo-spectral and batched.

    dw/dt + u . grad w = (1 / Re) lap w + f,     u = (d psi / dy, -d psi / dx),     -lap psi = w,

with Kolmogorov forcing f(x, y) = amplitude * cos(k_f y) (the EnKG / InverseBench setting: -4 cos(4y),
Re=200).
Time stepping as in Li et al.'s solver used by the EnKG paper: Heun predictor-corrector for the advection
term, Crank-Nicolson for diffusion, the nonlinear term dealiased by the 2/3 rule. The mean vorticity is a
conserved quantity (every term has zero mean on the torus): the mean mode of the advection and of the
forcing is dropped, so the mean is carried over exactly, free of round-off drift.

A fixed time step keeps every field of a batch on the same steps (batched and single runs agree) and makes
the solver differentiable by autograd (DPS backpropagates through it). The explicit advection step is only
stable while dt * max|u| / h stays small: off-manifold inputs with huge velocities blow up to NaN/inf, which
:class:`~steerdiff.inverse.forward.ForwardModel` catches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .fields import check_field, wavenumbers

__all__ = ["NavierStokes2D"]


@dataclass
class NavierStokes2D:
    size: int = 64
    reynolds: float = 200.0
    horizon: float = 1.0
    dt: float = 1e-2
    forcing_amplitude: float = -4.0
    forcing_wavenumber: int = 4

    def __post_init__(self):
        if self.size < 8:
            raise ValueError(f"NavierStokes2D.size must be >= 8, got {self.size}")
        if not (self.reynolds > 0 and self.horizon >= 0 and self.dt > 0):
            raise ValueError(
                f"NavierStokes2D needs reynolds > 0, horizon >= 0 and dt > 0, got reynolds="
                f"{self.reynolds}, horizon={self.horizon}, dt={self.dt}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def num_steps(self) -> int:
        return math.ceil(self.horizon / self.dt - 1e-9)

    def grid(self, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Physical coordinates (y (H, 1), x (1, W)) of the grid points."""
        pts = torch.arange(self.size, device=device, dtype=dtype) * (2 * math.pi / self.size)
        return pts[:, None], pts[None, :]

    def forcing(self, device=None, dtype=torch.float32) -> torch.Tensor:
        y, _ = self.grid(device, dtype)
        return (self.forcing_amplitude * torch.cos(self.forcing_wavenumber * y)).expand(self.size, self.size)

    def __call__(self, w0: torch.Tensor, horizon: float | None = None) -> torch.Tensor:
        """Vorticity at time ``horizon`` (default ``self.horizon``) from w0 (B, 1, H, W)."""
        check_field(w0, self.shape, "initial vorticity")
        horizon = self.horizon if horizon is None else horizon
        steps = math.ceil(horizon / self.dt - 1e-9)
        if steps == 0:
            return w0.clone()
        dt = horizon / steps
        n, dev, real = self.size, w0.device, w0.dtype
        ky, kx = wavenumbers(n, n, dev, real)
        lap = kx**2 + ky**2
        inv_lap = torch.where(lap > 0, 1.0 / lap.clamp_min(1), torch.zeros_like(lap))
        keep = ((kx.abs() <= n / 3) & (ky.abs() <= n / 3) & (lap > 0)).to(real)  # 2/3 rule; no mean mode
        nu = 1.0 / self.reynolds
        f_h = torch.fft.rfft2(self.forcing(dev, real)) * (lap > 0)
        implicit = 1.0 + 0.5 * dt * nu * lap
        # every per-step factor folded once into a complex multiplier (no division, no dtype promotion per step):
        # w_next = keep_w * w_h - step * advection + force, with the Crank-Nicolson factors inside
        cplx = f_h.dtype
        keep_w = ((1.0 - 0.5 * dt * nu * lap) / implicit).to(cplx)
        step = (dt * keep / implicit).to(cplx)
        half_step = 0.5 * step
        force = dt * f_h / implicit
        # spectral multipliers of u = d psi / dy, v = -d psi / dx (psi = inv_lap w) and of dw/dx, dw/dy
        mu, mv = (1j * ky * inv_lap).to(cplx), (-1j * kx * inv_lap).to(cplx)
        mx, my = (1j * kx).to(cplx), (1j * ky).to(cplx)
        irfft2, rfft2, s = torch.fft.irfft2, torch.fft.rfft2, (n, n)

        def advection(w_h):  # FFT of u . grad w (not yet dealiased: ``step`` carries the 2/3 mask)
            return rfft2(
                irfft2(mu * w_h, s=s) * irfft2(mx * w_h, s=s) + irfft2(mv * w_h, s=s) * irfft2(my * w_h, s=s)
            )

        w_h = rfft2(w0[:, 0])
        for _ in range(steps):
            adv = advection(w_h)
            base = keep_w * w_h + force
            w_h = base - half_step * (adv + advection(base - step * adv))
        return irfft2(w_h, s=s)[:, None]
