"""Gaussian random fields on the periodic square [0, 2 pi]^2, and their exact diffusion denoiser.

A field is ``x = F^-1(lam * F(z))`` with ``z`` white noise, ``F`` the unitary 2-D FFT and
``lam_k = amplitude * tau^(alpha - 1) * (|k|^2 + tau^2)^(-alpha / 2)`` (the Matern-like spectrum of
Li et al.'s Fourier-neural-operator data, on integer wavenumbers k), times ``sqrt(H W)`` so the pointwise
variance does not shrink as the grid is refined. The mean mode is zero. The covariance is diagonal in
Fourier space, C = F^-1 diag(lam^2) F, so the prior's exact denoiser at noise level sigma is the Wiener
filter D(x; sigma) = F^-1(lam^2 / (lam^2 + sigma^2) F x): a Gaussian prior with a closed-form posterior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["GaussianRandomField", "wavenumbers"]


def wavenumbers(h: int, w: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer wavenumbers (ky (H, 1), kx (1, W//2 + 1)) laid out like ``torch.fft.rfft2`` output."""
    ky = torch.fft.fftfreq(h, 1.0 / h, device=device, dtype=dtype)[:, None]
    kx = torch.fft.rfftfreq(w, 1.0 / w, device=device, dtype=dtype)[None, :]
    return ky, kx


def check_field(x: torch.Tensor, shape: tuple[int, int], what: str = "field") -> None:
    """Fields are (B, 1, H, W); name the problem and the fix otherwise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"the {what} must be a torch.Tensor of shape (B, 1, {shape[0]}, {shape[1]}), "
            f"got {type(x).__name__}"
        )
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, *shape):
        hint = " (add the channel dimension with x[:, None])" if x.ndim == 3 else ""
        raise ValueError(
            f"the {what} must have shape (B, 1, {shape[0]}, {shape[1]}), got {tuple(x.shape)}{hint}"
        )
    if not x.is_floating_point():
        raise ValueError(f"the {what} must be floating point, got {x.dtype}")


@dataclass
class GaussianRandomField:
    """A stationary Gaussian prior over (B, 1, H, W) fields on the torus; also an exact denoiser."""

    size: int = 32
    alpha: float = 2.5
    tau: float = 7.0
    amplitude: float = 1.0

    def __post_init__(self):
        if self.size < 4:
            raise ValueError(f"GaussianRandomField.size must be >= 4, got {self.size}")
        if self.alpha <= 1 or self.tau <= 0 or self.amplitude <= 0:
            raise ValueError(
                f"GaussianRandomField needs alpha > 1, tau > 0 and amplitude > 0, got alpha="
                f"{self.alpha}, tau={self.tau}, amplitude={self.amplitude}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    def spectrum(self, device=None, dtype=torch.float64) -> torch.Tensor:
        """sqrt of the covariance eigenvalues in the unitary rfft2 basis, shape (H, W//2 + 1)."""
        ky, kx = wavenumbers(self.size, self.size, device, dtype)
        lam = (
            self.amplitude
            * self.tau ** (self.alpha - 1)
            * self.size
            * (kx**2 + ky**2 + self.tau**2) ** (-self.alpha / 2)
        )
        lam[0, 0] = 0.0
        return lam

    def sample(
        self, n: int, generator: torch.Generator | None = None, device=None, dtype=torch.float32
    ) -> torch.Tensor:
        z = torch.randn(n, 1, self.size, self.size, generator=generator, device=device, dtype=dtype)
        return self.apply(z, self.spectrum(z.device, dtype))

    @staticmethod
    def apply(x: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
        """F^-1(filt * F(x)) with the unitary FFT."""
        return torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho") * filt, s=x.shape[-2:], norm="ortho")

    def covariance(self, dtype=torch.float64) -> torch.Tensor:
        """The dense (H W) x (H W) covariance matrix (small grids only: tests and analytic references)."""
        d = self.size**2
        if d > 4096:
            raise ValueError(
                f"a dense covariance of a {self.size}x{self.size} field has {d}^2 entries; "
                "use a grid of at most 64x64"
            )
        eye = torch.eye(d, dtype=dtype).reshape(d, 1, self.size, self.size)
        return self.apply(eye, self.spectrum(dtype=dtype) ** 2).reshape(d, d)

    def std(self) -> float:
        """Pointwise standard deviation (the same everywhere)."""
        lam = self.spectrum()
        weight = torch.ones_like(lam)
        weight[:, 1 : (self.size + 1) // 2] = 2.0  # rfft2 stores half the kx modes: count the mirror ones
        return math.sqrt(float((weight * lam**2).sum()) / self.size**2)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Exact E[x0 | x0 + sigma n] for this prior (the Wiener filter), sigma a scalar or (B,)."""
        check_field(x, self.shape, "noisy field")
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1, 1, 1, 1)
        lam2 = self.spectrum(x.device) ** 2
        filt = lam2 / (lam2 + sigma**2)
        return self.apply(x.double(), filt).to(x.dtype)
