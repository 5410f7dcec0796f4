"""The music tasks of the guidance matrix: targets, applicability, a tiny run through the matrix, bad input."""

import math

import pytest
import torch

from steerdiff.core.matrix import run_cell, run_matrix
from steerdiff.music import (
    EmpiricalDenoiser,
    RollConfig,
    RuleTask,
    guided_tasks,
    split,
    synthetic_pieces,
    windows,
)
from steerdiff.music.tasks import RULE_SETS, quick_prior

ROLL = RollConfig(steps_per_beat=2, pitch_low=48, num_pitches=24)
LENGTH = 8  # one bar


@pytest.fixture(scope="module")
def data():
    pieces = synthetic_pieces(ROLL, num_pieces=12, num_bars=4, seed=0)
    train, rest = split(pieces, 0.5, 0)
    val, test = split(rest, 0.5, 0)
    return EmpiricalDenoiser(windows(train, LENGTH), bandwidth=0.1), val, test


def task(data, key, **kw):
    den, val, test = data
    return RuleTask(den, ROLL, LENGTH, RULE_SETS[key], val, test, steps=4, **kw)


@pytest.mark.parametrize("key", list(RULE_SETS))
def test_targets_are_zero_at_the_reference_and_the_forward_model_reproduces_the_observation(data, key):
    t = task(data, key)
    (target, context), (other, _) = t.instances("test", 2)
    ref = context.reference[None]
    assert torch.allclose(target.forward(ref)[0], target.observation)  # noise-free forward model of the truth
    assert float(target.reward(ref)[0]) == 0.0
    assert t.score(context, ref)["loss"] == 0.0
    if key == "chord_progression":
        assert target.loss is None
    else:
        assert float(target.loss(ref)[0]) == pytest.approx(
            0.0, abs=1e-6
        )  # the relaxation agrees on clean rolls
        assert float(other.loss(ref)[0]) > 0 or not torch.equal(other.observation, target.observation)
    assert target.noise_std > 0 and all(s > 0 for s in t.spread.values())
    # the reward is minus the task's loss in units of the within-piece loss (the multi-rule loss is already so)
    x = t._windows["validation"][:2]
    scale = t.loss_scale[RULE_SETS[key][0]] if len(RULE_SETS[key]) == 1 else 1.0
    assert torch.allclose(-target.reward(x) * scale, t.task_loss(x, context.targets))
    assert t.paper_family == "scg" and t.lower_is_better


def test_the_multi_rule_loss_is_the_sum_of_normalised_rule_losses(data):
    t = task(data, "multi")
    (_, context), *_ = t.instances("validation", 1)
    x = t._windows["test"][:3]
    parts = t.rule_losses(x, context.targets)
    total = sum(parts[r] / t.loss_scale[r] for r in parts)
    assert torch.allclose(t.task_loss(x, context.targets), total)
    scored = t.score(context, x)
    assert list(scored) == ["loss", "pitch_histogram", "note_density"]
    # MSE rules: the within-piece loss is the within-piece spread per attribute entry, the observation noise 1
    assert t.loss_scale == pytest.approx(t.spread) and t.noise_std() == 1.0


def test_families_without_a_target_are_ruled_out_with_reasons(data):
    chords = task(data, "chord_progression")
    target, _ = chords.instances("test", 1)[0]
    assert "chord_progression" in chords.not_applicable("dps", target)
    assert "no entries of the roll are observed" in chords.not_applicable("inpainting", target)
    for family in ("best_of_n", "scg", "tree", "smc", "enkg"):
        assert chords.not_applicable(family, target) is None
    density = task(data, "note_density")
    assert density.not_applicable("dps", density.instances("test", 1)[0][0]) is None


def test_tiny_tasks_pass_through_the_matrix(data):
    tasks = [task(data, "chord_progression"), task(data, "multi")]
    cells = run_matrix(tasks, [16], num_samples=2, validation=1, test=2, tune_budget=2)
    by = {(c.task, c.family): c for c in cells}
    assert by[tasks[0].name, "dps"].not_applicable and by[tasks[1].name, "inpainting"].not_applicable
    for c in cells:
        if c.not_applicable:
            continue
        assert math.isfinite(c.mean) and c.mean >= 0 and c.se >= 0
        assert c.nfe <= c.budget or c.family == "unguided"
    multi = by[tasks[1].name, "scg"]
    assert set(multi.extras) == {"pitch_histogram", "note_density"}
    # the same instances for every family: two calls give the same targets
    a, b = tasks[1].instances("test", 2), tasks[1].instances("test", 2)
    assert all(torch.equal(x[0].observation, y[0].observation) for x, y in zip(a, b))
    # settings of the task override the run's
    tasks[0].settings = {"test": 3}
    assert run_cell(tasks[0], "unguided", 16, num_samples=2, validation=1, test=3).mean is not None


def test_bad_arguments_are_refused(data):
    den, val, test = data
    with pytest.raises(ValueError, match="unknown rule"):
        RuleTask(den, ROLL, LENGTH, ["melody"], val, test)
    with pytest.raises(ValueError, match="once"):
        RuleTask(den, ROLL, LENGTH, ["note_density", "note_density"], val, test)
    with pytest.raises(ValueError, match="whole number of bars"):
        RuleTask(den, ROLL, LENGTH + 3, ["note_density"], val, test)
    with pytest.raises(ValueError, match="steps must be"):
        RuleTask(den, ROLL, LENGTH, ["note_density"], val, test, steps=0)
    other = synthetic_pieces(RollConfig(steps_per_beat=2, pitch_low=36, num_pitches=48), num_pieces=2)
    with pytest.raises(ValueError, match="roll layout"):
        RuleTask(den, ROLL, LENGTH, ["note_density"], other, test)
    with pytest.raises(ValueError, match="two windows"):
        RuleTask(den, ROLL, 4 * LENGTH, ["note_density"], val, test)
    t = task(data, "note_density")
    with pytest.raises(ValueError, match="'validation' or 'test'"):
        t.instances("train", 1)
    with pytest.raises(ValueError, match="ask for fewer"):
        t.instances("test", 10_000)
    with pytest.raises(ValueError, match="positive integer"):
        t.instances("test", 0)


def test_the_quick_prior_is_cached_by_its_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("STEERDIFF_CACHE", str(tmp_path))
    pieces = synthetic_pieces(RollConfig(steps_per_beat=2, pitch_low=36, num_pitches=48), num_pieces=4)
    first = quick_prior(pieces, train_steps=2, batch_size=4)
    again = quick_prior(pieces, train_steps=2, batch_size=4)
    assert len(list(tmp_path.glob("music/matrix_quick_*/model"))) == 1
    x = torch.randn(2, 2, 48, 16)
    with torch.no_grad():
        assert torch.equal(first.denoiser(x, torch.ones(2)), again.denoiser(x, torch.ones(2)))
    quick_prior(pieces, train_steps=3, batch_size=4)  # other settings: another cached model
    assert len(list(tmp_path.glob("music/matrix_quick_*/model"))) == 2
    assert callable(guided_tasks)
