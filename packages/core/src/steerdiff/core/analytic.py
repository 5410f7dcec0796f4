"""Analytic references: Gaussian-mixture data whose exact denoiser is known at every noise level.

For x0 ~ sum_k w_k N(mu_k, S_k) and x = x0 + sigma n, the noisy marginal is sum_k w_k N(mu_k, S_k + sigma^2 I)
and Tweedie's mean is exact:

    D(x; sigma) = sum_k r_k(x) [mu_k + S_k (S_k + sigma^2 I)^-1 (x - mu_k)],   r_k = posterior responsibilities.

Under a linear measurement y = A x0 + noise, noise ~ N(0, s_y^2 I), the posterior is again a Gaussian mixture
(:meth:`GaussianMixture.posterior`), so guided samplers can be checked against the exact answer without
training anything. Covariances are handled through their eigen-decomposition, so a call costs O(B K D^2)
whatever the noise level of each batch item. A ``GaussianMixture`` is itself a denoiser: pass it to
``sample`` like a trained model. Inputs of any shape (B, ...) are flattened to (B, D).
"""

from __future__ import annotations

import math

import torch

__all__ = ["GaussianMixture", "gaussian", "linear_gaussian_posterior"]


def _as_float(values) -> torch.Tensor:
    """Tensors keep a floating dtype; Python numbers and integer tensors become float64."""
    if isinstance(values, torch.Tensor) and values.is_floating_point():
        return values
    return torch.as_tensor(values, dtype=torch.float64)


class GaussianMixture:
    """Mixture of K Gaussians in dimension D: ``weights`` (K,), ``means`` (K, D), ``covs`` (K, D, D).

    ``covs`` may also be a (K,) or (K, D) tensor of variances (isotropic or diagonal components).
    The dtype of ``means`` (float64 recommended for tests) is used throughout.
    """

    def __init__(self, weights, means, covs):
        means = _as_float(means)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        k, d = means.shape
        weights = torch.as_tensor(weights, dtype=means.dtype, device=means.device)
        covs = torch.as_tensor(covs, dtype=means.dtype, device=means.device)
        if weights.shape != (k,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be {k} non-negative numbers with a positive sum, got {weights}")
        if covs.shape == (k,):
            covs = covs[:, None, None] * torch.eye(d, dtype=means.dtype, device=means.device)
        elif covs.shape == (k, d):
            covs = torch.diag_embed(covs)
        if covs.shape != (k, d, d):
            raise ValueError(
                f"covs must have shape ({k},), ({k}, {d}) or ({k}, {d}, {d}), got {tuple(covs.shape)}"
            )
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        evals, evecs = torch.linalg.eigh(covs)
        if (evals < -1e-10 * evals.abs().max().clamp_min(1)).any():
            raise ValueError("every covariance must be positive semi-definite")
        self.weights = weights / weights.sum()
        self.means, self.covs = means, covs
        self._evals, self._evecs = evals.clamp_min(0), evecs

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def mean(self) -> torch.Tensor:
        return self.weights @ self.means

    def cov(self) -> torch.Tensor:
        m = self.mean()
        dev = self.means - m
        return torch.einsum("k,kij->ij", self.weights, self.covs) + torch.einsum(
            "k,ki,kj->ij", self.weights, dev, dev
        )

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype, device=self.means.device)
        out = torch.empty_like(z)
        for k in range(
            self.num_components
        ):  # a loop over components, never over samples: O(n D^2) flops, O(n D) memory
            rows = comp == k
            out[rows] = self.means[k] + (z[rows] * self._evals[k].sqrt()) @ self._evecs[k].T
        return out

    def _components(self, x: torch.Tensor, sigma: torch.Tensor):
        """Per component: log w_k N(x; mu_k, S_k + s^2 I) and the conditional mean E[x0 | x, k]."""
        var = self._evals[None] + sigma[:, None, None] ** 2  # (B, K, D)
        z = torch.einsum("kji,bkj->bki", self._evecs, x[:, None, :] - self.means[None])  # rotated residual
        logp = (
            torch.log(self.weights)[None]
            - 0.5 * (z**2 / var).sum(-1)
            - 0.5 * torch.log(var).sum(-1)
            - 0.5 * self.dim * math.log(2 * math.pi)
        )
        shrink = torch.einsum("kij,bkj->bki", self._evecs, self._evals[None] / var * z)
        return logp, self.means[None] + shrink

    def _flat(self, x: torch.Tensor, sigma):
        flat = x.reshape(x.shape[0], -1).to(self.means.dtype)
        if flat.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim} values per sample, got shape {tuple(x.shape)}")
        sigma = torch.as_tensor(sigma, dtype=self.means.dtype, device=x.device)
        return flat, sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Exact E[x0 | x] at noise level sigma (scalar or (B,)); output has x's shape and dtype."""
        flat, sigma = self._flat(x, sigma)
        logp, cond_mean = self._components(flat, sigma)
        r = torch.softmax(logp, dim=1)
        return torch.einsum("bk,bkd->bd", r, cond_mean).reshape(x.shape).to(x.dtype)

    __call__ = denoise

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """log p_sigma(x) of the noisy marginal (sigma = 0: the data density, if covariances are full rank)."""
        flat, sigma = self._flat(x, sigma)
        logp, _ = self._components(flat, sigma)
        return torch.logsumexp(logp, dim=1)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """grad log p_sigma(x) = (D(x; sigma) - x) / sigma^2."""
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))
        return (self.denoise(x, sigma) - x) / s**2

    def noised(self, sigma: float) -> GaussianMixture:
        """The marginal at noise level sigma as a mixture (exact)."""
        eye = torch.eye(self.dim, dtype=self.means.dtype, device=self.means.device)
        return GaussianMixture(self.weights, self.means, self.covs + sigma**2 * eye)

    def posterior(self, A: torch.Tensor, y: torch.Tensor, noise_std: float) -> GaussianMixture:
        """Exact posterior of x0 given y = A x0 + N(0, noise_std^2 I): a Gaussian mixture again."""
        A = torch.as_tensor(A, dtype=self.means.dtype, device=self.means.device)
        y = torch.as_tensor(y, dtype=self.means.dtype, device=self.means.device).reshape(-1)
        if A.ndim != 2 or A.shape[1] != self.dim:
            raise ValueError(f"A must have shape (M, {self.dim}), got {tuple(A.shape)}")
        if y.shape != (A.shape[0],):
            raise ValueError(f"y must have {A.shape[0]} entries to match A, got {y.numel()}")
        if not noise_std > 0:
            raise ValueError(f"noise_std must be positive for a proper posterior, got {noise_std}")
        m = A.shape[0]
        eye_m = torch.eye(m, dtype=A.dtype, device=A.device)
        s_y = self.covs @ A.T  # (K, D, M)
        innov = A @ self.covs @ A.T + noise_std**2 * eye_m  # (K, M, M)
        gain = torch.linalg.solve(innov, s_y.transpose(-1, -2)).transpose(-1, -2)  # (K, D, M)
        resid = y[None] - self.means @ A.T  # (K, M)
        means = self.means + torch.einsum("kdm,km->kd", gain, resid)
        covs = self.covs - gain @ s_y.transpose(-1, -2)
        chol = torch.linalg.cholesky(innov)
        sol = torch.cholesky_solve(resid[..., None], chol)[..., 0]
        log_lik = (
            -0.5 * (resid * sol).sum(-1)
            - torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            - 0.5 * m * math.log(2 * math.pi)
        )
        logw = torch.log(self.weights) + log_lik
        return GaussianMixture(torch.softmax(logw, 0), means, covs)


def gaussian(mean, cov) -> GaussianMixture:
    """A single Gaussian N(mean, cov); ``cov`` may be a scalar variance, a (D,) diagonal or a (D, D) matrix."""
    mean = _as_float(mean)
    cov = torch.as_tensor(cov, dtype=mean.dtype)
    covs = cov.reshape(1) if cov.ndim == 0 else cov[None]
    return GaussianMixture(torch.ones(1, dtype=mean.dtype), mean.reshape(1, -1), covs)


def linear_gaussian_posterior(mean, cov, A, y, noise_std):
    """(posterior mean, posterior covariance) for prior N(mean, cov) and y = A x + N(0, noise_std^2 I)."""
    post = gaussian(mean, cov).posterior(A, y, noise_std)
    return post.means[0], post.covs[0]
