"""The inverse problems as guided tasks of the guidance matrix: targets, costs, reasons, bad arguments."""

import math

import pytest
import torch

from steerdiff.core.matrix import FAMILIES, run_cell, run_matrix
from steerdiff.inverse import LinearTask, NavierStokesTask, guided_tasks, tasks
from steerdiff.inverse.benchmark import Setting
from steerdiff.inverse.prior import PriorConfig

# a 16x16 grid, two solver steps, a prior trained three steps on eight fields: it checks the plumbing only
TINY = Setting(
    size=16,
    dt=0.02,
    horizon=0.04,
    num_train=8,
    prior=PriorConfig(base_channels=4, channel_mults=(1,), steps=3, batch_size=4),
    num_steps=4,
)


@pytest.fixture(scope="module")
def ns(tmp_path_factory):
    torch.set_num_threads(1)
    return NavierStokesTask(TINY, noise_std=0.5, cache=tmp_path_factory.mktemp("inverse_cache"))


def test_every_family_runs_on_navier_stokes_and_the_simulator_runs_match_the_core_costs(ns):
    cells = run_matrix([ns], [16], num_samples=2, validation=1, test=1, tune_budget=1)
    assert {c.family for c in cells} == set(FAMILIES)
    by = {c.family: c for c in cells}
    assert by["inpainting"].not_applicable == "the final vorticity is observed, no entry of the initial field"
    assert by["paper"].not_applicable.startswith("no seed paper's method of its own")  # EnKG is a column
    for c in cells:
        if c.family in ("inpainting", "paper"):
            continue
        assert c.not_applicable is None, c.family
        assert math.isfinite(c.mean) and c.mean > 0 and math.isfinite(c.extras["rel L2 of mean"])
        assert c.nfe <= 16 or c.family == "unguided"
    runs = {f: by[f].extras["fwd evals/sample"] for f in by if f not in ("inpainting", "paper")}
    # every simulator run is booked by the core: EnKG's as forward evaluations, the selection methods' as
    # reward evaluations, DPS's as gradient evaluations (one loss, through the solver, per network call)
    assert runs["unguided"] == 0
    assert runs["enkg"] == by["enkg"].forward_evals == 2 * 4  # J = 16 // (2 * 4) members, 4 steps
    for f in ("best_of_n", "scg", "tree", "smc"):
        assert runs[f] == by[f].reward_evals > 0, f
    assert runs["dps"] == by["dps"].gradient_evals == 16


def test_navier_stokes_targets_are_the_gaussian_misfit_of_the_solver(ns):
    (target, context), (target2, _) = ns.instances("test", 2)
    truth, y = context["truth"][None], context["y"]
    assert target.noise_std == 0.5 and target.observation.shape == (64,)  # 8x8 of 16x16 observed
    clean = ns.problem.forward.simulate(truth)
    assert torch.allclose(target.forward(truth), clean.flatten(1))
    noise = y - clean[0]
    assert 0.3 < float(noise.std()) < 0.7  # the observation is the solver's output plus the stated noise
    assert torch.allclose(target.loss(truth), noise.pow(2).sum()[None] / (2 * 0.25))
    assert torch.allclose(target.reward(truth), -target.loss(truth))
    assert target.known is None
    assert ns.not_applicable("enkg", target) is None and ns.not_applicable("dps", target) is None
    assert not torch.equal(target2.observation, target.observation)  # distinct instances
    again, _ = ns.instances("test", 1)[0]
    assert torch.equal(again.observation, target.observation)  # the same instances every call
    val, _ = ns.instances("validation", 1)[0]
    assert not torch.equal(val.observation, target.observation)  # validation and test fields differ
    x = truth.repeat(3, 1, 1, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(target.loss(x).sum(), x)  # DPS differentiates through the solver
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_linear_task_known_entries_and_exact_posterior():
    torch.set_num_threads(1)
    task = LinearTask(size=8, stride=2, noise_std=0.1, steps=4)
    target, context = task.instances("test", 1)[0]
    mask, values = target.known
    assert int(mask.sum()) == 16 and torch.equal(values[mask], context["y"].flatten())
    assert torch.equal(values[~mask], torch.zeros(48))
    # a field that takes the observed values at the observed pixels has zero misfit, whatever elsewhere
    field = torch.where(mask, values, context["truth"] + 1.0)[None]
    assert float(target.loss(field)) == pytest.approx(0.0, abs=1e-10)
    for family in FAMILIES:
        assert (task.not_applicable(family, target) is None) == (family != "paper"), family
    cell = run_cell(task, "inpainting", 16, num_samples=4, validation=1, test=2, tune_budget=1)
    assert cell.extras["misfit"] == pytest.approx(0.0, abs=1e-6)  # known entries are exact at sigma 0
    assert 0 < cell.extras["posterior mean rel L2"] < 1  # the exact posterior mean beats predicting zero
    enkg = run_cell(task, "enkg", 16, num_samples=4, validation=1, test=2, tune_budget=2)
    assert enkg.forward_evals == enkg.extras["fwd evals/sample"] == 8 and len(enkg.tuning) == 2


def test_guided_tasks_give_both_problems_with_their_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "QUICK_NS", TINY)
    ns, linear = guided_tasks(True, cache=tmp_path)
    assert isinstance(ns, NavierStokesTask) and isinstance(linear, LinearTask)
    for task in (ns, linear):
        assert task.paper_family == "enkg" and task.lower_is_better
        assert len(task.sigmas()) - 1 in (4, 8) and float(task.sigmas()[-1]) == 0.0
        assert set(task.settings) <= {"num_samples", "validation", "test", "tune_budget", "budgets"}
    assert (tmp_path / TINY.key() / "model" / "config.json").exists()  # the prior is cached by its settings


def test_bad_arguments_are_refused(ns):
    with pytest.raises(ValueError, match="positive measurement noise"):
        LinearTask(noise_std=0.0)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        LinearTask(steps=0)
    with pytest.raises(ValueError, match="unknown split"):
        ns.instances("train", 1)
    with pytest.raises(ValueError, match="count must be a positive integer"):
        ns.instances("test", 0)
    with pytest.raises(ValueError, match="observation stride"):
        LinearTask(size=8, stride=3)
