"""Offline agents learn a tiny task; mixed real/synthetic training regenerates synthetic data; save/load."""

import numpy as np
import pytest
import torch

from steerdiff.core import BundleError
from steerdiff.policy.agents import load_agent, make_agent
from steerdiff.policy.data import OfflineDataset
from steerdiff.policy.evaluation import dynamics_error
from steerdiff.policy.training import train_agent
from steerdiff.policy.world_model import WorldModel, WorldModelConfig


def _bandit(n=2000, seed=0):
    """One-step task: s ~ U(-1, 1)^2, behaviour actions uniform, reward -(a - 0.6 s_0)^2, best a = 0.6 s_0."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    a = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    r = -((a[:, 0] - 0.6 * s[:, 0]) ** 2)
    return OfflineDataset(
        observations=s,
        actions=a,
        rewards=r,
        terminals=np.ones(n, bool),
        timeouts=np.zeros(n, bool),
        next_observations=s,
    )


@pytest.mark.parametrize("name", ["td3bc", "iql"])
def test_agent_learns_a_tiny_task(name):
    torch.manual_seed(0)
    data = _bandit()
    agent = make_agent(name, 2, 1, hidden=64, lr=1e-3)
    s = np.linspace(-0.9, 0.9, 50, dtype=np.float32)
    grid = np.stack([s, np.zeros_like(s)], 1)
    before = np.abs(agent.act(grid)[:, 0] - 0.6 * s).mean()
    train_agent(agent, data, 400, batch_size=128, seed=0)
    after = np.abs(agent.act(grid)[:, 0] - 0.6 * s).mean()
    # behaviour cloning alone would give the uniform behaviour's mean action 0 (error 0.27)
    assert after < 0.12 < before, (before, after)


def test_log_prob_matches_the_gaussian_and_checks_dimensions(td3bc):
    obs = torch.zeros(4, 3)
    mu = td3bc.mean_action(obs) * 2.0
    lp = td3bc.log_prob(obs, mu)
    torch.testing.assert_close(lp, torch.full((4,), -0.5 * np.log(2 * np.pi)))  # unit Gaussian at its mean
    assert torch.all(td3bc.log_prob(obs, mu + 1.0) < lp)
    with pytest.raises(ValueError, match="dimension 5 but the agent was built for 3"):
        td3bc.log_prob(torch.zeros(4, 5), mu)


@pytest.mark.parametrize("name", ["td3bc", "iql"])
def test_agent_bundle_round_trip_and_resume(name, tmp_path):
    """An agent bundle holds the networks, target networks, optimizers and the update step: a loaded agent
    acts the same and trains on from the saved update step."""
    data = _bandit(300)

    def fresh():
        torch.manual_seed(0)
        return make_agent(name, 2, 1, hidden=16, env_id="Bandit", expectile=0.8)

    full = fresh()
    train_agent(full, data, 20, batch_size=32, seed=3)
    half = fresh()
    train_agent(
        half,
        data,
        10,
        batch_size=32,
        seed=3,
        save=lambda step, ag: ag.save_pretrained(tmp_path / "a"),
        save_every=5,
    )
    back = load_agent(tmp_path / "a", device="cpu")
    assert back.updates == 10 and back.name == name and back.env_id == "Bandit" and back.config == half.config
    obs = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_allclose(back.act(obs), half.act(obs), rtol=1e-6)
    for k, v in half.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v)
    for k, opt in half.optimizers().items():  # Adam's moments came back too
        saved, loaded = opt.state_dict()["state"], back.optimizers()[k].state_dict()["state"]
        torch.testing.assert_close(loaded[0]["exp_avg"], saved[0]["exp_avg"])
    hist = train_agent(back, data, 20, batch_size=32, seed=3, resume=True)
    assert hist["start"] == 10 and back.updates == 20
    with pytest.raises(ValueError, match="already made 20 updates"):
        train_agent(back, data, 15, resume=True)
    with pytest.raises(BundleError, match="no config.json"):
        load_agent(tmp_path)


def test_mixed_training_regenerates_from_the_current_policy():
    data = _bandit(500)
    calls = []

    def synthesizer(policy):
        calls.append(policy)
        return _bandit(300, seed=len(calls))

    agent = make_agent("td3bc", 2, 1, hidden=32)
    hist = train_agent(
        agent, data, 25, batch_size=32, synthesizer=synthesizer, synth_ratio=0.75, regenerate_every=10
    )
    assert hist["regenerations"] == 3 and calls[0] is None and calls[1] is agent and calls[2] is agent
    only_synth = train_agent(
        make_agent("iql", 2, 1, hidden=32), None, 5, batch_size=16, synthesizer=synthesizer, synth_ratio=1.0
    )
    assert only_synth["regenerations"] == 1
    with pytest.raises(ValueError, match="synth_ratio must lie in"):
        train_agent(agent, data, 5, synth_ratio=1.5, synthesizer=synthesizer)
    with pytest.raises(ValueError, match="needs a synthesizer"):
        train_agent(agent, data, 5, synth_ratio=0.5)
    with pytest.raises(Exception, match="observation dimension 2 but"):
        train_agent(make_agent("td3bc", 3, 1, hidden=32), data, 5)


def test_world_model_rollouts(pendulum, td3bc):
    wm = WorldModel.fit(pendulum, 2.0, WorldModelConfig(ensemble=3, hidden=64, layers=2, steps=200))
    starts = pendulum.observations[:20]
    synth = wm.rollout(
        td3bc, starts, horizon=5, generator=torch.Generator().manual_seed(0), env_id="Pendulum-v1"
    )
    assert len(synth) == 100 and synth.obs_dim == 3
    np.testing.assert_array_equal(synth.observations[::5], starts)
    err = dynamics_error(synth)
    assert np.isfinite(err).all() and 0 < err.mean() < 5.0


def test_probabilistic_world_model_learns_and_samples_the_noise():
    """s' = s + 0.5 a + N(0, diag(0.05, 0.2)^2): the Gaussian head recovers both noise levels, sampled steps
    reproduce the spread, mean steps have none, and a mean-only model refuses to sample."""
    rng = np.random.default_rng(0)
    n, noise = 4000, np.array([0.05, 0.2], np.float32)
    s = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    a = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    s2 = s + 0.5 * a + noise * rng.standard_normal((n, 2)).astype(np.float32)
    data = OfflineDataset(
        observations=s,
        actions=a,
        rewards=np.zeros(n, np.float32),
        terminals=np.zeros(n, bool),
        timeouts=np.zeros(n, bool),
        next_observations=s2,
    )
    wm = WorldModel.fit(data, 1.0, WorldModelConfig(ensemble=2, hidden=32, layers=2, steps=600, lr=3e-3))
    obs, act = torch.zeros(3000, 2), torch.full((3000, 1), 0.4)
    gen = torch.Generator().manual_seed(0)
    sampled, _, _ = wm.step(obs, act, gen)
    np.testing.assert_allclose(sampled.std(0).numpy(), noise, rtol=0.25)
    np.testing.assert_allclose(sampled.mean(0).numpy(), [0.2, 0.2], atol=0.03)
    mean, _, _ = wm.step(obs, act, gen, sample=False)
    assert mean.std(0).max() < 0.3 * noise.min()  # only the members' disagreement is left
    mse = WorldModel.fit(
        data, 1.0, WorldModelConfig(ensemble=2, hidden=32, layers=2, steps=50, probabilistic=False)
    )
    with pytest.raises(ValueError, match="needs a probabilistic world model"):
        mse.rollout(None, s[:4], 3, sample=True)
