"""Automatic tuning: finds known optima within budget, flags a choice at a range's edge, tunes real guidance."""

import math

import pytest
import torch

from steerdiff.core import (
    EDM,
    ReconstructionGuidance,
    gaussian,
    linear_gaussian_posterior,
    sample,
    sigma_grid,
)
from steerdiff.core.tuning import Choice, LinearRange, LogRange, space_for, tune


def test_finds_a_log_scale_optimum_within_budget():
    calls = []

    def objective(p):
        calls.append(p["scale"])
        return (math.log10(p["scale"]) - math.log10(3.7)) ** 2

    result = tune(objective, {"scale": LogRange(1e-2, 1e2)}, budget=16)
    assert len(calls) == len(result.trials) <= 16 and len(set(calls)) == len(calls)  # nothing evaluated twice
    assert abs(math.log10(result.best["scale"] / 3.7)) < 0.05
    assert result.at_edge == []
    curve = result.curve("scale")
    assert [v for v, _ in curve] == sorted(v for v, _ in curve) and len(curve) == len(calls)


def test_two_settings_maximized_and_choices():
    def objective(p):
        bonus = {"trace": 0.5, "frobenius": 0.0}[p["rule"]]
        return bonus - (math.log(p["scale"]) - math.log(0.2)) ** 2 - (p["eta"] - 0.7) ** 2

    space = {"scale": LogRange(1e-3, 10), "eta": LinearRange(0, 1), "rule": Choice(["frobenius", "trace"])}
    result = tune(objective, space, budget=40, minimize=False)
    assert result.best["rule"] == "trace"
    assert abs(math.log(result.best["scale"] / 0.2)) < 0.25 and abs(result.best["eta"] - 0.7) < 0.08


def test_a_best_value_on_the_edge_is_flagged_and_bad_scores_count_as_worst():
    result = tune(lambda p: -p["scale"], {"scale": LogRange(0.1, 100)}, budget=10)
    assert result.best["scale"] == 100 and result.at_edge == ["scale"]
    result = tune(
        lambda p: math.nan if p["x"] > 0.5 else abs(p["x"] - 0.3), {"x": LinearRange(0, 1)}, budget=12
    )
    assert abs(result.best["x"] - 0.3) < 0.05
    assert any(t["score"] == math.inf for t in result.trials)


def test_a_small_budget_still_reaches_both_ends_of_the_range():
    for budget in (2, 3, 4):
        result = tune(lambda p: -p["scale"], {"scale": LogRange(0.01, 2.0)}, budget=budget)
        assert len(result.trials) == budget
        assert result.best["scale"] == 2.0 and result.at_edge == ["scale"]  # the top end was tried
    seen = [
        t["params"]["scale"]
        for t in tune(lambda p: p["scale"], {"scale": LogRange(0.01, 1.0)}, budget=3).trials
    ]
    assert seen == [0.01, 0.1, 1.0]  # log-spaced over the whole range


def test_tunes_reconstruction_guidance_as_well_as_a_dense_grid():
    """DPS's scale on an exact linear-Gaussian posterior: the tuned choice scores within 10% of the best of a
    32-point grid, with fewer evaluations."""
    torch.manual_seed(0)
    mean, cov = torch.zeros(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64)
    prior = gaussian(mean, cov)
    A = torch.randn(2, 4, dtype=torch.float64) / 2
    y = torch.tensor([0.8, -0.6], dtype=torch.float64)
    exact = linear_gaussian_posterior(mean, cov, A, y, 0.3)[0]
    sigmas = sigma_grid(EDM(), 20)

    def error(p):
        guidance = ReconstructionGuidance(
            lambda x0: ((x0 @ A.T - y) ** 2).sum(1) / (2 * 0.3**2), scale=p["scale"]
        )
        gen = torch.Generator().manual_seed(1)
        x = sigmas[0] * torch.randn(256, 4, generator=gen, dtype=torch.float64)
        out = sample(prior, x, sigmas, "ddpm", guidance=[guidance], generator=gen)
        return float((out.x.mean(0) - exact).norm())

    space = space_for(ReconstructionGuidance)
    result = tune(error, space, budget=14)
    dim = space["scale"]
    grid = min(error({"scale": dim.from_unit(i / 31)}) for i in range(32))
    assert len(result.trials) <= 14
    assert result.score <= 1.1 * grid, (result.score, grid)


def test_bad_spaces_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        tune(lambda p: 0.0, {})
    with pytest.raises(ValueError, match="LogRange, LinearRange or Choice"):
        tune(lambda p: 0.0, {"scale": (0.1, 1)})
    with pytest.raises(ValueError, match="0 < low < high"):
        LogRange(0, 1)
    with pytest.raises(ValueError, match="finite low < high"):
        LinearRange(1, 1)
    with pytest.raises(ValueError, match="declares no tunable"):
        space_for(object)
    assert space_for(ReconstructionGuidance(lambda x: x.sum(1)))["scale"] == LogRange(1e-3, 1e2)
