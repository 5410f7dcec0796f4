"""Tree search guidance: its greedy end is SCG, costs are exact, beams come back sorted, bad inputs fail."""

import pytest
import torch

from steerdiff.core import EDM, StochasticControlGuidance, gaussian, sample, sigma_grid
from steerdiff.core.guidance.search import TreeSearchGuidance

PRIOR = gaussian([0.0, 0.0], 1.0)
SIGMAS = sigma_grid(EDM(), 12)


def reward(x0):
    return -((x0 - torch.tensor([1.5, -0.5])) ** 2).sum(1)


def _run(guidance, rows, seed=0, solver="ddpm"):
    gen = torch.Generator().manual_seed(seed)
    x = SIGMAS[0] * torch.randn(rows, 2, generator=gen)
    return sample(PRIOR, x, SIGMAS, solver, guidance=[guidance], generator=gen)


def test_one_beam_is_stochastic_control_guidance():
    tree = _run(TreeSearchGuidance(reward, num_beams=1, branch=5), rows=16)
    scg = _run(StochasticControlGuidance(reward, num_candidates=5), rows=16)
    assert torch.equal(tree.x, scg.x)
    assert tree.costs.network_evals == scg.costs.network_evals


def test_costs_are_counted_exactly_and_beams_come_back_sorted():
    b, k, steps = 6, 3, len(SIGMAS) - 1
    branch = lambda s: 1 if s > 1 else 4  # noqa: E731  (branch out only at low noise)
    out = _run(TreeSearchGuidance(reward, num_beams=k, branch=branch), rows=b * k)
    n = [branch(float(s)) for s in SIGMAS[:-2]] + [1]  # the last step, to sigma = 0, does not branch
    assert len(n) == steps
    # x0-hat of the beams once at the start, then one per child at the new level (reused by the next step);
    # the last step's child is clean already
    assert out.costs.network_evals == b * k * (1 + sum(n[:-1]))
    assert out.costs.reward_evals == b * k * sum(n) + b * k  # children, then the final sort
    r = out.info["beam_rewards"]
    assert r.shape == (b, k) and (r[:, :-1] >= r[:, 1:]).all()
    torch.testing.assert_close(reward(out.x).view(b, k), r)


def test_search_moves_samples_toward_high_reward_and_more_beams_help():
    base = reward(_run(TreeSearchGuidance(reward, num_beams=1, branch=1), rows=64).x).mean()
    greedy = reward(_run(TreeSearchGuidance(reward, num_beams=1, branch=4), rows=64).x).mean()
    beams = _run(TreeSearchGuidance(reward, num_beams=4, branch=4), rows=256)
    best = beams.info["beam_rewards"][:, 0].mean()
    assert base < greedy < best


def test_sampled_selection_is_reproducible_and_temperature_steers():
    def run(temperature, seed=0):
        g = TreeSearchGuidance(reward, num_beams=2, branch=4, selection="sample", temperature=temperature)
        return _run(g, rows=128, seed=seed)

    assert torch.equal(run(0.5).x, run(0.5).x)
    cold, hot = reward(run(1e-6).x).mean(), reward(run(1e6).x).mean()
    unguided = reward(_run(TreeSearchGuidance(reward, num_beams=1, branch=1), rows=128).x).mean()
    assert cold > hot + 1.0 and abs(hot - unguided) < 1.0  # hot: close to picking children at random


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_beams": 0}, "num_beams"),
        ({"branch": 0}, "branch"),
        ({"selection": "best"}, "selection"),
        ({"temperature": float("nan")}, "temperature"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TreeSearchGuidance(reward, **kwargs)


def test_bad_runs_are_refused():
    with pytest.raises(ValueError, match="deterministic"):
        _run(TreeSearchGuidance(reward, num_beams=2), rows=4, solver="ddim")
    with pytest.raises(ValueError, match="multiple of num_beams"):
        _run(TreeSearchGuidance(reward, num_beams=3), rows=4)
    with pytest.raises(ValueError, match="positive integer"):
        _run(TreeSearchGuidance(reward, num_beams=1, branch=lambda s: 0), rows=2)
