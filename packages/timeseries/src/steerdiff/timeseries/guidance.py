"""TSDiff self-guidance: a loss on the observed entries of the model's own clean estimate x0-hat.

The loss E(x0_hat) is a sum over the observed entries (every channel, lags included), as in the TSDiff code:

* mean-square (TSDiff-MS): E = sum (y - x0_hat)^2;
* quantile (TSDiff-Q): E = sum of the pinball loss rho_k(y - x0_hat), where sample i of n is guided at its
  own level k_i = i / (n + 1), so the ensemble spreads over the quantiles instead of collapsing on the median.

Its gradient is taken through the network, w.r.t. the noisy sample, and ``scale`` is the paper's s exactly:

* with any solver, the guided score is  grad log p(x_t) - s grad_{x_t} E, i.e. in TSDiff's VP notation the
  guided noise is  eps_hat + s sqrt(1 - alpha_bar_t) grad_{x_t} E  (the TSDiff code's DDIM guidance);
* with the ``ddpm`` solver the reverse step is the paper's eq. 2: the mean of p(x_{t-1} | x_t) moves by
  s beta_tilde_t grad_{x_t} log p(y | x_t), beta_tilde_t = the step's posterior variance. A score shift alone
  would move it by s beta_t / sqrt(alpha_t) instead (5 % more at t = T, 12x more at t = 2, and a shift at the
  last step where the paper has none), so on DDPM steps the score shift is weighted by
  beta_tilde_t sqrt(alpha_t) / beta_t = (sigma'^2 / sigma^2) sqrt((1 + sigma^2) / (1 + sigma'^2)).

The correction lives on x0-hat (the core's :class:`~steerdiff.core.guidance.ReconstructionGuidance`, forward
mode), so it composes with every core solver and with every other guidance.

Memory: the gradient keeps every activation of the network call it differentiates. ``chunk_rows`` bounds the
rows of one call (and its backward pass); every row's loss depends on that row only, so the result does not
depend on the chunking, and the sampler's random draws (made for the whole batch) do not either.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from steerdiff.core.guidance import ReconstructionGuidance
from steerdiff.core.guidance.base import match_batch
from steerdiff.core.solvers import DDIM

__all__ = [
    "GUIDANCES",
    "ObservationLoss",
    "SelfGuidance",
    "ddpm_step_weight",
    "quantile_levels",
    "self_guidance",
]

GUIDANCES = ("none", "mse", "quantile")


def quantile_levels(n: int) -> torch.Tensor:
    """k_i = i / (n + 1), i = 1..n: the levels TSDiff-Q assigns to its n sample paths."""
    if n < 1:
        raise ValueError(f"need at least one sample, got {n}")
    return torch.arange(1, n + 1, dtype=torch.float32) / (n + 1)


@dataclass
class ObservationLoss:
    """loss(x0_hat) -> (rows,): squared or pinball error on the finite entries of ``observed``.

    ``observed`` (N, C, L) holds NaN where nothing is observed; rows are sample-major (window n owns rows
    n*S ... n*S + S - 1). ``quantiles`` (S,) selects the pinball loss, level quantiles[i] for sample i.
    """

    observed: torch.Tensor
    quantiles: torch.Tensor | None = None

    def __post_init__(self):
        if self.observed.ndim != 3:
            raise ValueError(
                f"observed must have shape (N, channels, length), got {tuple(self.observed.shape)}"
            )
        if self.quantiles is not None:
            q = torch.as_tensor(self.quantiles, dtype=torch.float32)
            if q.ndim != 1 or not ((q > 0) & (q < 1)).all():
                raise ValueError(f"quantiles must be a 1-D tensor of levels in (0, 1), got {q}")
            self.quantiles = q

    def rows(self, start: int, stop: int, total: int) -> ObservationLoss:
        """The loss of rows ``start:stop`` of a batch of ``total`` sample-major rows, as its own loss."""
        n = self.observed.shape[0]
        if total % n or not 0 <= start < stop <= total:
            raise ValueError(f"rows {start}:{stop} of {total} do not split over {n} observed windows")
        index = torch.arange(start, stop)
        observed = self.observed[(index // (total // n)).to(self.observed.device)]
        if self.quantiles is None:
            return ObservationLoss(observed)
        s = self.quantiles.numel()
        if total % s:
            raise ValueError(
                f"{total} rows cannot carry {s} quantile levels; sample num_samples = {s} per window"
            )
        return ObservationLoss(observed, self.quantiles[index % s])

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        rows = x0.shape[0]
        obs = match_batch(self.observed.to(x0.device, x0.dtype), rows, "observed window")
        mask = torch.isfinite(obs)
        err = torch.where(mask, obs - x0, torch.zeros_like(x0))
        if self.quantiles is None:
            return err.pow(2).flatten(1).sum(1)
        s = self.quantiles.numel()
        if rows % s:
            raise ValueError(
                f"{rows} rows cannot carry {s} quantile levels; sample num_samples = {s} per window"
            )
        k = self.quantiles.to(x0.device, x0.dtype).repeat(rows // s).reshape(-1, 1, 1)
        return torch.maximum(k * err, (k - 1) * err).flatten(1).sum(1)


def ddpm_step_weight(sigma: float, sigma_next: float) -> float:
    """beta_tilde_t sqrt(alpha_t) / beta_t for the DDPM step sigma -> sigma_next (0 for the last step).

    With x0-hat moved by -s w sigma^2 grad E, a DDPM step moves its VP mean by s w beta_t / sqrt(alpha_t)
    grad log p; this w makes that the paper's s beta_tilde_t grad log p. In sigma space,
    alpha_bar = 1 / (1 + sigma^2).
    """
    if not 0 <= sigma_next < sigma:
        raise ValueError(f"need 0 <= sigma_next < sigma, got {sigma_next}, {sigma}")
    return (sigma_next / sigma) ** 2 * math.sqrt((1 + sigma**2) / (1 + sigma_next**2))


@dataclass
class SelfGuidance(ReconstructionGuidance):
    """TSDiff self-guidance: ReconstructionGuidance whose ``scale`` is the paper's s on every solver.

    On DDPM steps (DDIM with eta = 1) the score shift is weighted by :func:`ddpm_step_weight`, so the step is
    the paper's eq. 2; on every other solver it is the plain score shift (the TSDiff code's DDIM guidance).
    ``chunk_rows`` (with an :class:`ObservationLoss`) differentiates at most that many rows at once.
    """

    chunk_rows: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.chunk_rows is not None:
            if int(self.chunk_rows) < 1:
                raise ValueError(f"chunk_rows must be a positive number of rows, got {self.chunk_rows}")
            if not isinstance(self.loss, ObservationLoss):
                raise ValueError("chunk_rows needs an ObservationLoss (it splits the observed rows)")
            self.chunk_rows = int(self.chunk_rows)

    def denoise(self, fn, ctx, x, sigma, **kw):
        n, rows = x.shape[0], self.chunk_rows
        if rows is None or n <= rows:
            return super().denoise(fn, ctx, x, sigma, **kw)
        parts = []
        for a in range(0, n, rows):
            b = min(a + rows, n)
            part = dataclasses.replace(self, loss=self.loss.rows(a, b, n), chunk_rows=None)
            sig = sigma[a:b] if isinstance(sigma, torch.Tensor) and sigma.ndim == 1 else sigma
            parts.append(part.denoise(fn, ctx, x[a:b], sig, **{k: _rows(v, a, b, n) for k, v in kw.items()}))
        return torch.cat(parts)

    def wrap_denoise(self, fn, ctx, sigma):
        weight, i = 1.0, ctx.step_index
        if isinstance(ctx.solver, DDIM) and ctx.solver.eta == 1.0 and ctx.sigmas[i] == sigma:
            weight = ddpm_step_weight(sigma, ctx.sigmas[i + 1])
        # the paper's last DDPM step (beta_tilde_1 = 0) is unguided; the loop decides the rest
        if weight == 0:
            return fn
        step = dataclasses.replace(self, scale=self.scale * weight)
        return lambda x, s, **kw: step.denoise(fn, ctx, x, s, **kw)


def _rows(value, start: int, stop: int, total: int):
    """Rows start:stop of a per-row keyword argument (a tensor with ``total`` rows); anything else as is."""
    if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == total:
        return value[start:stop]
    return value


def self_guidance(
    observed: torch.Tensor, scale: float, kind: str = "quantile", num_samples: int | None = None, **options
) -> SelfGuidance:
    """TSDiff self-guidance towards the finite entries of ``observed`` (N, C, L), mean-scaled.

    ``kind``: "mse" or "quantile" (then ``num_samples`` sets the levels i/(n+1)). ``options`` go to
    :class:`SelfGuidance` (e.g. ``interval``, ``chunk_rows``).
    """
    if kind not in ("mse", "quantile"):
        raise ValueError(f"unknown self-guidance {kind!r}; choose 'mse' (TSDiff-MS) or 'quantile' (TSDiff-Q)")
    if not scale >= 0:
        raise ValueError(f"guidance scale must be >= 0, got {scale}")
    if kind == "quantile" and num_samples is None:
        raise ValueError("quantile guidance needs num_samples (each sample gets its own level i/(n+1))")
    q = quantile_levels(num_samples) if kind == "quantile" else None
    return SelfGuidance(loss=ObservationLoss(observed, q), scale=float(scale), **options)
