"""Shared small fixtures: a Pendulum dataset, a trajectory model and a TD3+BC agent trained briefly."""

import pytest

from steerdiff.core import set_threads
from steerdiff.policy.agents import make_agent
from steerdiff.policy.collect import collect
from steerdiff.policy.diffusion import ModelConfig, TrajectoryDiffusion
from steerdiff.policy.training import train_agent

SMALL_MODEL = ModelConfig(
    horizon=8,
    stride=2,
    base_channels=16,
    channel_mults=(1, 2),
    emb_dim=32,
    steps=150,
    batch_size=64,
    lr=2e-3,
    warmup_steps=20,
    ema_decay=0.99,
)


@pytest.fixture(scope="session", autouse=True)
def _threads():
    set_threads(1)


@pytest.fixture(scope="session")
def pendulum():
    return collect("Pendulum-v1", "replay", 2000, noise=0.1, seed=0)


@pytest.fixture(scope="session")
def model(pendulum):
    return TrajectoryDiffusion.fit(pendulum, SMALL_MODEL, progress=False, device="cpu")


@pytest.fixture(scope="session")
def td3bc(pendulum):
    agent = make_agent(
        "td3bc", 3, 1, 2.0, pendulum.observations.mean(0), pendulum.observations.std(0), hidden=64
    )
    train_agent(agent, pendulum, 300, batch_size=128, seed=0)
    return agent
