"""No host-device synchronisation per step inside guidance when checks are deferred (the accelerator default).

A Python ``if`` on a tensor, ``.item()``, ``float(t)`` or ``int(t)`` makes the host wait for the device. With
``defer_checks`` (on by default when the samples live on an accelerator) the finite checks of rewards, losses
and forward outputs are made once at the end of the run, and SMC resamples without asking whether any group
needs it, so the number of such reads does not grow with the number of steps.
"""

import collections

import pytest
import torch

from steerdiff.core import (
    EDM,
    EnsembleKalmanGuidance,
    FeynmanKacSteering,
    ReconstructionGuidance,
    StochasticControlGuidance,
    gaussian,
    sample,
    sigma_grid,
)
from steerdiff.core.guidance.search import TreeSearchGuidance

READS = ("item", "__bool__", "__float__", "__int__")
A = torch.tensor([[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
Y = torch.tensor([0.3, -0.2])
PRIOR = gaussian(torch.zeros(4), torch.eye(4))


def loss(x0):
    return ((x0 @ A.T - Y) ** 2).sum(1)


def reward(x0):
    return -loss(x0)


FAMILIES = {
    "dps": (lambda: ReconstructionGuidance(loss, scale=0.1), "ddpm"),
    "scg": (lambda: StochasticControlGuidance(reward, num_candidates=4), "ddpm"),
    "smc": (lambda: FeynmanKacSteering(reward, 4, lam=2.0), "ddpm"),
    "tree": (lambda: TreeSearchGuidance(reward, num_beams=2, branch=2), "ddpm"),
    "enkg": (lambda: EnsembleKalmanGuidance(lambda x: x @ A.T, Y, 4, noise_std=0.3), "euler"),
}


def count_reads(monkeypatch, fn):
    counts = collections.Counter()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *a, _f=original, _n=name, **k):
            counts[_n] += 1
            return _f(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    try:
        result = fn()
    finally:
        monkeypatch.undo()
    return sum(counts.values()), result


def run(family, steps, defer, reward_fn=None):
    make, solver = FAMILIES[family]
    g = make()
    if reward_fn is not None:
        g.reward = reward_fn
    x = 80 * torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    grid = sigma_grid(EDM(), steps)
    return sample(
        PRIOR, x, grid, solver, guidance=[g], generator=torch.Generator().manual_seed(0), defer_checks=defer
    )


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_deferred_checks_read_nothing_back_per_step(monkeypatch, family):
    few, _ = count_reads(monkeypatch, lambda: run(family, 6, True))
    many, out = count_reads(monkeypatch, lambda: run(family, 18, True))
    assert many == few, (family, few, many)  # constant in the number of steps
    assert torch.isfinite(out.x).all()
    immediate, _ = count_reads(monkeypatch, lambda: run(family, 18, False))
    assert immediate > many  # the immediate checks read back every step (what deferring saves)


@pytest.mark.parametrize("family", ["scg", "smc", "tree"])
def test_a_deferred_check_still_refuses_a_bad_reward_and_names_its_step(family):
    calls = []

    def flaky(x0):
        calls.append(1)
        r = reward(x0)
        return r if len(calls) < 4 else r * float("nan")

    with pytest.raises(
        ValueError, match=r"returned NaN or inf for \d+ of \d+ samples .*\(at step \d+ of 10\)"
    ):
        run(family, 10, True, flaky)
    calls.clear()
    with pytest.raises(ValueError, match=r"returned NaN or inf") as err:
        run(family, 10, False, flaky)
    assert "at step" not in str(err.value)  # immediate: raised where it happened


def test_smc_without_the_per_step_question_still_returns_normalised_weights():
    out = run("smc", 12, True)
    w = out.info["weights"]
    assert torch.allclose(w.sum(1), torch.ones(w.shape[0], dtype=w.dtype)) and (w >= 0).all()
    assert out.info["resampled"].sum() >= 1
