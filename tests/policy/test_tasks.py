"""Policy-guided synthesis as a guidance-matrix task: targets, scores, target policies, the whole matrix."""

import math

import numpy as np
import pytest
import torch

from steerdiff.core.matrix import FAMILIES, Target, run_matrix
from steerdiff.core.sampling import sample
from steerdiff.core.schedules import sigma_grid
from steerdiff.policy import (
    PolicyGuidedPipeline,
    PolicySynthesisTask,
    TargetPolicies,
    guided_tasks,
    make_agent,
)
from steerdiff.policy.data import DatasetError
from steerdiff.policy.trajectories import windows

TINY = dict(num_samples=2, validation=1, test=2, tune_budget=2)


@pytest.fixture(scope="module")
def policies(pendulum):
    return TargetPolicies(pendulum, stages=(20, 40), hidden=32)


@pytest.fixture(scope="module")
def task(model, policies):
    return PolicySynthesisTask(PolicyGuidedPipeline(model), policies, steps=4, settings=TINY)


def _on_policy(task, agent, x):
    """``x`` with every action replaced by ``agent``'s own (mean) action at that row's state."""
    n = task.pipeline.normalizer
    raw = n.unnormalize(x, dim=1)
    obs = raw[:, n.obs].transpose(1, 2).reshape(-1, n.obs_dim)
    mu = agent.mean_action(obs) * agent.config.action_bound
    raw[:, n.act] = n.action_to_channel(mu).reshape(x.shape[0], x.shape[2], n.act_dim).transpose(1, 2)
    return n.normalize(raw, dim=1)


def test_every_family_runs_on_a_tiny_task_and_the_ones_without_targets_say_why(task):
    cells = run_matrix([task], [16], num_samples=99)  # the task's own settings win
    assert {c.family for c in cells} == set(FAMILIES) and task.paper_family in FAMILIES
    by = {c.family: c for c in cells}
    assert "no observed trajectory entries" in by["inpainting"].not_applicable
    assert "no forward model" in by["enkg"].not_applicable
    for family in ("unguided", "best_of_n", "dps", "scg", "tree", "smc", "paper"):
        c = by[family]
        assert c.not_applicable is None, (family, c.not_applicable)
        assert math.isfinite(c.mean) and c.mean >= 0 and c.se >= 0
        assert set(c.extras) == {"NLL (nats/transition)", "dynamics MSE"}
        assert (
            c.extras["NLL (nats/transition)"] >= 0.5 * math.log(2 * math.pi) - 1e-6
        )  # TD3+BC: unit Gaussian
        assert c.nfe <= 16
    assert by["unguided"].relative == 1.0 and "scale" in by["dps"].params
    assert by["dps"].gradient_evals > 0 and by["best_of_n"].reward_evals > 0
    # the paper's own method: 8 Heun steps in a budget of 16 (2 evaluations a step, one on the last),
    # a policy gradient at both evaluations of every step but the last, its coeff tuned in its range
    assert by["paper"].nfe == 15 and by["paper"].gradient_evals == 2 * 7
    assert 0.1 <= by["paper"].params["scale"] <= 10.0


def test_the_paper_column_is_the_pipelines_own_guided_heun_and_plain_heun_at_coeff_zero(task):
    target, agent = task.instances("test", 1)[0]
    assert target.loss.policy is agent
    denoiser, shape = task.prior()
    x, costs = task.paper(target, 16, {"scale": 0.0}, 3, torch.Generator().manual_seed(5))
    # coeff 0: the core's Heun sampler on the model's Karras grid (8 steps), from the same initial noise
    grid = sigma_grid(task.pipeline.model.schedule, 8, "karras", sigma_min=0.002, sigma_max=80.0)
    noise = 80.0 * torch.randn(3, *shape, generator=torch.Generator().manual_seed(5))
    plain = sample(denoiser, noise, grid, "heun")
    assert torch.allclose(x, plain.x, atol=1e-6)
    assert costs.network_evals == 3 * 15 == plain.costs.network_evals and costs.gradient_evals == 0
    # guided: exactly what the pipeline draws with the same coefficient, steps and seed
    guided, gcosts = task.paper(target, 16, {"scale": 1.0}, 3, torch.Generator().manual_seed(5))
    own = task.pipeline.sample(3, agent, coeff=1.0, steps=8, solver="heun", seed=5)
    assert torch.equal(guided, own.x) and gcosts.network_evals == 3 * 15
    assert not torch.allclose(guided, x, atol=1e-3)  # the policy moved the samples
    assert task.paper_steps(64) == 32 and task.paper_steps(256) == 128 and task.paper_steps(3) == 2


def test_the_loss_is_minus_the_policy_likelihood_and_its_minimum_scores_zero(task, pendulum, td3bc):
    n = task.pipeline.normalizer
    x = windows(pendulum, n, 8, 8)
    x = x[(n.unnormalize(x, dim=1)[:, n.valid] > 0.5).all(1)][:6]  # windows inside episodes: no padding
    truth = _on_policy(task, td3bc, x)  # the policy's own actions: its best trajectory given the states
    loss = task.loss(td3bc)
    const = 8 * 0.5 * math.log(2 * math.pi)  # TD3+BC's NLL at its mean action, 8 rows of one action
    assert torch.allclose(loss(truth), torch.full((6,), const), atol=1e-3)
    assert (loss(x) > loss(truth)).all()
    on, data = task.score(td3bc, truth), task.score(td3bc, x)
    assert on["NLL above minimum"] == pytest.approx(0.0, abs=1e-4)
    assert data["NLL above minimum"] > 1e-3
    assert on["NLL (nats/transition)"] == pytest.approx(const / 8, abs=1e-4)
    # real windows are real transitions: the simulator agrees with them (actions pass through atanh at 0.999)
    assert data["dynamics MSE"] < 1e-5
    g = torch.func.grad(lambda t: loss(t).sum())(x)
    assert g[:, n.act].abs().sum() > 0
    assert g[:, n.obs].abs().sum() == 0 and g[:, n.reward :].abs().sum() == 0  # only actions are steered


def test_target_policies_differ_between_splits_and_load_from_the_cache(pendulum, policies, tmp_path):
    assert policies.settings("validation", 0)["seed"] != policies.settings("test", 0)["seed"]
    assert [policies.settings("test", i)["updates"] for i in range(3)] == [20, 40, 20]
    obs = torch.from_numpy(pendulum.observations[:32])
    val, test = policies("validation", 0), policies("test", 0)
    assert not torch.allclose(val.mean_action(obs), test.mean_action(obs))
    cached = TargetPolicies(pendulum, stages=(20,), hidden=32, cache=tmp_path)
    first = cached("test", 1)
    assert (next(tmp_path.iterdir()) / "config.json").exists() and first.updates == 20
    again = TargetPolicies(pendulum, stages=(20,), hidden=32, cache=tmp_path)("test", 1)
    assert torch.equal(first.mean_action(obs), again.mean_action(obs))


def test_bad_arguments_get_one_clear_error(task, model, policies, pendulum, td3bc):
    with pytest.raises(ValueError, match="split must be one of"):
        task.instances("train", 1)
    with pytest.raises(ValueError, match="count must be a positive integer"):
        task.instances("test", 0)
    with pytest.raises(ValueError, match="split must be one of"):
        policies("train", 0)
    with pytest.raises(ValueError, match="stages must be positive"):
        TargetPolicies(pendulum, stages=())
    with pytest.raises(ValueError, match="steps must be an integer"):
        PolicySynthesisTask(PolicyGuidedPipeline(model), policies, steps=1)
    with pytest.raises(TypeError, match="PolicyGuidedPipeline"):
        PolicySynthesisTask(model, policies)
    with pytest.raises(TypeError, match="quick must be True or False"):
        guided_tasks("yes")
    other = make_agent("td3bc", 11, 3, 1.0)  # an agent of another environment
    mismatched = PolicySynthesisTask(PolicyGuidedPipeline(model), lambda split, i: other, steps=4)
    with pytest.raises(DatasetError, match="observation/action dimensions"):
        mismatched.instances("test", 1)
    target = task.instances("test", 1)[0][0]
    with pytest.raises(ValueError, match="budget of at least 3"):
        task.paper(target, 2, {"scale": 1.0}, 2, torch.Generator())
    with pytest.raises(ValueError, match="holds no policy"):
        task.paper(Target(loss=target.loss.__call__), 16, {"scale": 1.0}, 2, torch.Generator())
    x = torch.full((2, model.normalizer.channels, 8), np.nan)
    with pytest.raises(ValueError, match="NaN or inf"):
        task.score(td3bc, x)
