"""Synthesize: unconditional windows, and the linear predictive score (train on synthetic, test on real).

LPS (Kollovieh et al. 2023, sec. 4.3) = the test CRPS of the linear (ridge) forecaster fitted on synthetic
windows only. Synthetic windows live in the scaled space the model was trained in, like real training windows
built with the model's spec, so one ridge fit (with the model's scaling) serves both and the comparison
"synthetic vs real training data" is direct.
"""

from __future__ import annotations

import torch

from steerdiff.core.sampling import sample

from .baselines import LinearForecaster
from .data import TestWindows
from .metrics import crps
from .model import NUM_STEPS, TSDiff

__all__ = ["generate", "linear_predictive_score"]


def generate(
    model: TSDiff,
    n: int,
    solver: str = "ddpm",
    num_steps: int = NUM_STEPS,
    batch_size: int = 1024,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """``n`` unconditional windows (n, channels, L) in the model's scaled units."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    spec, sigmas, out = model.spec, model.sigmas(num_steps), []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        x = sigmas[0].item() * torch.randn(
            (m, spec.channels, spec.length), generator=generator, device=model.device
        )
        out.append(sample(model.denoiser, x, sigmas, solver, generator=generator, progress=progress).x.cpu())
    return torch.cat(out)


def linear_predictive_score(
    windows: torch.Tensor, test: TestWindows, context_length: int, alpha: float = 1.0, scaling: str = "mean"
) -> float:
    """CRPS on the real ``test`` windows of a ridge forecaster fitted on ``windows`` (N, C, L) or (N, L),
    scaled by their context as ``scaling`` says (the model's ``spec.scaling`` for its windows)."""
    w = windows[:, 0] if windows.ndim == 3 else windows
    model = LinearForecaster(context_length, w.shape[1] - context_length, alpha, scaling).fit(w)
    return crps(model.predict(test.history), test.future)
