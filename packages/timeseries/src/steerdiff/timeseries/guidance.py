"""TSDiff self-guidance: a loss on the observed entries of the model's own clean estimate x0-hat.

The guided score is  grad log p(x) - scale * grad_x loss(x0_hat(x)),  the gradient taken through the network
(the core's :class:`~steerdiff.core.guidance.ReconstructionGuidance`, forward mode, weight sigma^2). In TSDiff's
VP notation this is the paper's mean shift  s * var_t * grad log p(y_obs | x_t), so ``scale`` is the paper's s.

* mean-square (TSDiff-MS): loss = sum over observed entries of (y - x0_hat)^2;
* quantile (TSDiff-Q): loss = sum of the pinball loss rho_k(y - x0_hat), where sample i of n is guided at its
  own level k_i = i / (n + 1), so the ensemble spreads over the quantiles instead of collapsing on the median.

Being a Guidance, it composes with every core solver (DDPM, DDIM, ...) and with every other guidance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from steerdiff.core.guidance import ReconstructionGuidance
from steerdiff.core.guidance.base import match_batch

__all__ = ["GUIDANCES", "ObservationLoss", "quantile_levels", "self_guidance"]

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
            raise ValueError(f"observed must have shape (N, channels, length), got {tuple(self.observed.shape)}")
        if self.quantiles is not None:
            q = torch.as_tensor(self.quantiles, dtype=torch.float32)
            if q.ndim != 1 or not ((q > 0) & (q < 1)).all():
                raise ValueError(f"quantiles must be a 1-D tensor of levels in (0, 1), got {q}")
            self.quantiles = q

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        rows = x0.shape[0]
        obs = match_batch(self.observed.to(x0.device, x0.dtype), rows, "observed window")
        mask = torch.isfinite(obs)
        err = torch.where(mask, obs - x0, torch.zeros_like(x0))
        if self.quantiles is None:
            return err.pow(2).flatten(1).sum(1)
        s = self.quantiles.numel()
        if rows % s:
            raise ValueError(f"{rows} rows cannot carry {s} quantile levels; sample num_samples = {s} per window")
        k = self.quantiles.to(x0.device, x0.dtype).repeat(rows // s).reshape(-1, 1, 1)
        return torch.maximum(k * err, (k - 1) * err).flatten(1).sum(1)


def self_guidance(observed: torch.Tensor, scale: float, kind: str = "quantile", num_samples: int | None = None,
                  **options) -> ReconstructionGuidance:
    """TSDiff self-guidance towards the finite entries of ``observed`` (N, C, L), mean-scaled.

    ``kind``: "mse" or "quantile" (then ``num_samples`` sets the levels i/(n+1)). ``options`` go to
    ReconstructionGuidance (e.g. ``interval``).
    """
    if kind not in ("mse", "quantile"):
        raise ValueError(f"unknown self-guidance {kind!r}; choose 'mse' (TSDiff-MS) or 'quantile' (TSDiff-Q)")
    if not scale >= 0:
        raise ValueError(f"guidance scale must be >= 0, got {scale}")
    if kind == "quantile" and num_samples is None:
        raise ValueError("quantile guidance needs num_samples (each sample gets its own level i/(n+1))")
    q = quantile_levels(num_samples) if kind == "quantile" else None
    return ReconstructionGuidance(loss=ObservationLoss(observed, q), scale=float(scale), **options)
