"""Base forecasters for comparison and refinement: seasonal naive and linear (ridge on the scaled context).

Both are point forecasters and return (N, 1, prediction_length) "sample paths", so every metric and the
refiners take them like any probabilistic forecast. The linear model is TSDiff's linear baseline and the
downstream model of the linear predictive score: ridge regression from the scaled context to the scaled
future (mean scaling, as in the paper, or the scaling of the windows it is fitted on), solved in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import SCALINGS, context_scaling

__all__ = ["LinearForecaster", "seasonal_naive"]


def seasonal_naive(history: torch.Tensor, prediction_length: int, season_length: int) -> torch.Tensor:
    """Repeat the last observed season: (N, T) -> (N, 1, prediction_length)."""
    history = torch.as_tensor(history, dtype=torch.float64)
    if history.ndim != 2 or history.shape[1] < season_length:
        raise ValueError(
            f"seasonal naive needs history (N, T) with T >= season length {season_length}, got "
            f"{tuple(history.shape)}"
        )
    if not torch.isfinite(history[:, -season_length:]).all():
        raise ValueError("seasonal naive needs the last season of the history observed (no NaN)")
    idx = torch.arange(prediction_length) % season_length
    return history[:, -season_length:][:, idx][:, None].float()


@dataclass
class LinearForecaster:
    """Ridge regression from the scaled last ``context_length`` points to the next ``prediction_length``."""

    context_length: int
    prediction_length: int
    alpha: float = 1.0
    scaling: str = "mean"  # how windows are scaled by their context (data.SCALINGS)
    weight: torch.Tensor | None = None  # (context + 1, prediction), last row the intercept

    def __post_init__(self):
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {self.scaling!r}; choose one of {list(SCALINGS)}")

    def fit(self, windows: torch.Tensor) -> LinearForecaster:
        """Fit on windows (N, context + prediction) of one channel, already scaled by their context as
        ``scaling`` says (e.g. channel 0 of :func:`data.training_windows` with that scaling)."""
        w = torch.as_tensor(windows, dtype=torch.float64)
        if w.ndim != 2 or w.shape[1] != self.context_length + self.prediction_length:
            raise ValueError(
                f"windows must be (N, {self.context_length + self.prediction_length}), got {tuple(w.shape)}"
            )
        if not torch.isfinite(w).all():
            raise ValueError("training windows contain NaN or inf")
        x = torch.cat([w[:, : self.context_length], torch.ones(w.shape[0], 1, dtype=w.dtype)], 1)
        y = w[:, self.context_length :]
        reg = self.alpha * torch.eye(x.shape[1], dtype=w.dtype)
        reg[-1, -1] = 0.0  # the intercept is not penalised
        self.weight = torch.linalg.solve(x.T @ x + reg, x.T @ y)
        return self

    def predict(self, history: torch.Tensor) -> torch.Tensor:
        """(N, T >= context) in data units -> (N, 1, prediction_length) in data units."""
        if self.weight is None:
            raise RuntimeError("fit the LinearForecaster before predict")
        ctx = torch.as_tensor(history, dtype=torch.float64)[:, -self.context_length :]
        if ctx.shape[1] != self.context_length or not torch.isfinite(ctx).all():
            raise ValueError(f"the linear forecaster needs the last {self.context_length} points observed")
        loc, scale = (v[:, None] for v in context_scaling(ctx, self.scaling))
        x = torch.cat([(ctx - loc) / scale, torch.ones(ctx.shape[0], 1, dtype=ctx.dtype)], 1)
        return ((x @ self.weight) * scale + loc)[:, None].float()
