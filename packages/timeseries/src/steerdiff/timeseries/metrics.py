"""Probabilistic forecast metrics in GluonTS's definitions (``gluonts.evaluation.Evaluator``).

* CRPS = ``mean_wQuantileLoss``: for each quantile level q in 0.1 ... 0.9, the weighted quantile loss
  wQL_q = 2 sum |(y_hat_q - y) (1{y <= y_hat_q} - q)| / sum |y| over every series and time step, where
  y_hat_q is the empirical q-quantile of the sample paths, interpolated linearly between sorted paths (as
  numpy); then the mean over q. GluonTS 0.17 takes the sorted path at index round((S - 1) q) instead, without
  interpolation: with that rule the two agree to 1e-5, with this one they differ by 0.13 % at 100 paths and
  2 % at 9 (``tests/timeseries/test_crps_gluonts.py``, ``docs/timeseries/peers.md``).
* ND = sum |y - median| / sum |y|.
* NRMSE = sqrt(mean (y - mean forecast)^2) / mean |y|.
"""

from __future__ import annotations

import torch

__all__ = ["QUANTILES", "crps", "evaluate_forecast", "weighted_quantile_loss"]

QUANTILES = tuple(round(0.1 * i, 1) for i in range(1, 10))


def _check(samples: torch.Tensor, target: torch.Tensor):
    samples, target = (
        torch.as_tensor(samples, dtype=torch.float64),
        torch.as_tensor(target, dtype=torch.float64),
    )
    if (
        samples.ndim != 3
        or target.ndim != 2
        or samples.shape[0] != target.shape[0]
        or samples.shape[2] != target.shape[1]
    ):
        raise ValueError(
            f"samples must be (N, num_samples, horizon) and target (N, horizon); got "
            f"{tuple(samples.shape)} and {tuple(target.shape)}"
        )
    if not torch.isfinite(target).all() or not torch.isfinite(samples).all():
        raise ValueError("samples and target must be finite (NaN in a target: score only observed points)")
    if target.abs().sum() == 0:
        raise ValueError("the target is all zero, so the weighted losses (divided by sum |y|) are undefined")
    return samples, target


def weighted_quantile_loss(samples: torch.Tensor, target: torch.Tensor, quantiles=QUANTILES) -> torch.Tensor:
    """wQL_q for each level: (len(quantiles),) float64."""
    samples, target = _check(samples, target)
    q = torch.tensor(quantiles, dtype=torch.float64)
    pred = torch.quantile(samples, q, dim=1)  # (Q, N, H)
    indicator = (target <= pred).double()
    loss = 2 * ((pred - target) * (indicator - q[:, None, None])).abs().sum((1, 2))
    return loss / target.abs().sum()


def crps(samples: torch.Tensor, target: torch.Tensor, quantiles=QUANTILES) -> float:
    """GluonTS ``mean_wQuantileLoss`` (the CRPS that TSDiff and most papers on these datasets report)."""
    return float(weighted_quantile_loss(samples, target, quantiles).mean())


def evaluate_forecast(samples: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """{"crps", "nd", "nrmse"} of sample paths (N, S, H) against the truth (N, H)."""
    samples, target = _check(samples, target)
    median = torch.quantile(samples, 0.5, dim=1)
    mean = samples.mean(1)
    denom = target.abs().sum()
    return {
        "crps": crps(samples, target),
        "nd": float((target - median).abs().sum() / denom),
        "nrmse": float((target - mean).pow(2).mean().sqrt() / target.abs().mean()),
    }
