"""Metrics of an estimate: relative L2 error, measurement misfit, and the cost columns of a solution."""

from __future__ import annotations

import torch

__all__ = ["evaluate", "relative_l2"]


def relative_l2(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-sample ||estimate - truth|| / ||truth|| (InverseBench's Navier-Stokes metric)."""
    if estimate.shape != truth.shape:
        raise ValueError(
            f"estimate {tuple(estimate.shape)} and truth {tuple(truth.shape)} must have one shape"
        )
    return (estimate - truth).flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1).clamp_min(1e-12)


def evaluate(solution, problem, truth: torch.Tensor | None, y: torch.Tensor) -> dict:
    """Relative L2 (mean and per sample; only when ``truth`` is given), relative misfit of the estimate's
    noise-free measurement to y, the ensemble spread, and the solution's costs. The misfit's own forward
    call is not counted."""
    forward = problem.forward
    counts = forward.calls, forward.evals, forward.blowups
    y_hat = forward(solution.estimate)
    forward.calls, forward.evals, forward.blowups = counts
    misfit = forward.misfit(y_hat, forward.check_measurement(y))
    spread = solution.ensemble.std(1).flatten(1).mean(1)
    scores = {}
    if truth is not None:
        err = relative_l2(solution.estimate, truth)
        scores = {"rel_l2": float(err.mean()), "rel_l2_per_sample": err.tolist()}
    return {
        **scores,
        "misfit": float(misfit.mean()),
        "spread": float(spread.mean()),
        **solution.costs,
    }
