"""Evaluation: returns in the real simulator, dynamics error of (synthetic) transitions, policy likelihood."""

from __future__ import annotations

import numpy as np
import torch

from .data import OfflineDataset
from .envs import env_dims, identifiable, make_env, normalized_score, observe, set_state

__all__ = ["dynamics_error", "evaluate_policy", "policy_log_likelihood"]


def evaluate_policy(
    policy, env_id: str, episodes: int = 5, seed: int = 0, max_episode_steps: int | None = None
) -> dict:
    """Run ``episodes`` episodes in lockstep (one batched ``policy.act`` call per step).

    Returns mean/std return, the per-episode returns and the D4RL-normalised score where one exists."""
    envs = [make_env(env_id) for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    limit = min(max_episode_steps or envs[0].spec.max_episode_steps, envs[0].spec.max_episode_steps)
    returns = np.zeros(episodes)
    alive = np.ones(episodes, dtype=bool)
    for _ in range(limit):
        actions = policy.act(obs.astype(np.float32))
        for i in np.flatnonzero(alive):  # the simulator steps one environment at a time
            o, r, term, trunc, _ = envs[i].step(actions[i])
            obs[i] = o
            returns[i] += r
            alive[i] = not (term or trunc)
        if not alive.any():
            break
    norm = normalized_score(env_id, returns)
    return {
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "returns": returns.tolist(),
        "normalized_mean": None if norm is None else float(norm.mean()),
        "normalized_std": None if norm is None else float(norm.std()),
    }


def dynamics_error(
    dataset: OfflineDataset, env_id: str | None = None, max_transitions: int | None = None, seed: int = 0
) -> np.ndarray:
    """Per-transition mean squared error between the dataset's next observation and the simulator's.

    The simulator is reset to each transition's observation, steps its action, and its next observation is
    compared with ``next_observations``. Real transitions give 0 (up to float32 round-off).

    Hopper and Walker2d clip joint velocities to [-10, 10] in their observations, so an observation with a
    velocity at the clip does not determine the state: those transitions get NaN (see
    :func:`steerdiff.policy.envs.identifiable`); summarise with ``np.nanmean``."""
    env_id = env_id or dataset.env_id
    if env_id is None:
        raise ValueError("dynamics_error needs the environment id: pass env_id=... or set dataset.env_id")
    dataset.check_env(*env_dims(env_id), env_id)
    rows = np.arange(len(dataset))
    if max_transitions is not None and len(rows) > max_transitions:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_transitions, replace=False))
    env = make_env(env_id, seed=seed)
    u = env.unwrapped
    sim_next = np.empty((len(rows), dataset.obs_dim), dtype=np.float64)
    for j, i in enumerate(rows):  # one simulator reset + step per transition
        set_state(env, env_id, dataset.observations[i])
        u.step(dataset.actions[i])
        sim_next[j] = observe(env)
    diff = sim_next - dataset.next_observations[rows].astype(np.float64)
    err = (diff**2).mean(1)
    err[~identifiable(env_id, dataset.observations[rows])] = np.nan
    return err


@torch.no_grad()
def policy_log_likelihood(policy, dataset: OfflineDataset) -> float:
    """Mean over transitions of log pi(a | s) (the target policy's likelihood of the dataset's actions)."""
    dev = policy.obs_mean.device if hasattr(policy, "obs_mean") else "cpu"
    obs = torch.from_numpy(dataset.observations).to(dev)
    act = torch.from_numpy(dataset.actions).to(dev)
    return float(policy.log_prob(obs, act).mean())
