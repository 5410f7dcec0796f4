"""Gymnasium environments: dimensions, D4RL reference scores, and resetting the simulator to an observation.

Supported: Pendulum-v1 and the MuJoCo v5 locomotion tasks HalfCheetah, Hopper and Walker2d. Their
observations determine the simulator state (MuJoCo drops only the x position, to which the dynamics are
invariant), so :func:`set_state` puts the simulator exactly where a (real or generated) observation says;
that is what the dynamics error of synthetic transitions needs.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "REF_SCORES",
    "SUPPORTED",
    "action_bounds",
    "env_dims",
    "identifiable",
    "make_env",
    "normalized_score",
    "observe",
    "set_state",
]

SUPPORTED = ("Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")

# D4RL's published reference returns (d4rl/infos.py, the v2 locomotion datasets): (random, expert).
# The v5 tasks are the same robots; scores are comparable in spirit, not to the decimal.
REF_SCORES = {
    "HalfCheetah": (-280.178953, 12135.0),
    "Hopper": (-20.272305, 3234.3),
    "Walker2d": (1.629008, 4592.3),
}


def _check(env_id: str) -> None:
    if env_id not in SUPPORTED:
        raise ValueError(f"unsupported environment {env_id!r}; choose one of {list(SUPPORTED)}")


def make_env(env_id: str, seed: int | None = None):
    import gymnasium as gym

    _check(env_id)
    env = gym.make(env_id)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def env_dims(env_id: str) -> tuple[int, int]:
    env = make_env(env_id)
    return env.observation_space.shape[0], env.action_space.shape[0]


def action_bounds(env_id: str) -> float:
    """The symmetric action bound (Pendulum: 2, MuJoCo locomotion: 1)."""
    env = make_env(env_id)
    high = np.asarray(env.action_space.high)
    if not np.allclose(env.action_space.low, -high) or not np.allclose(high, high.flat[0]):
        raise ValueError(f"{env_id} has asymmetric or non-uniform action bounds; not supported")
    return float(high.flat[0])


def set_state(env, env_id: str, obs: np.ndarray) -> None:
    """Put ``env`` (a made, reset environment) in the state that ``obs`` describes."""
    u = env.unwrapped
    obs = np.asarray(obs, dtype=np.float64)
    if env_id == "Pendulum-v1":
        u.state = np.array([math.atan2(obs[1], obs[0]), obs[2]])
        return
    _check(env_id)
    nq, nv = u.model.nq, u.model.nv
    qpos = np.concatenate([[0.0], obs[: nq - 1]])
    u.set_state(qpos, obs[nq - 1 : nq - 1 + nv])


VELOCITY_CLIP = {"Hopper-v5": 10.0, "Walker2d-v5": 10.0}  # their observations clip qvel to [-10, 10]


def identifiable(env_id: str, obs: np.ndarray) -> np.ndarray:
    """(N,) bool: whether each observation determines the simulator state (no velocity at the clip)."""
    obs = np.atleast_2d(obs)
    clip = VELOCITY_CLIP.get(env_id)
    if clip is None:
        return np.ones(len(obs), dtype=bool)
    n_vel = make_env(env_id).unwrapped.model.nv
    return np.abs(obs[:, -n_vel:]).max(1) < clip - 1e-4


def observe(env) -> np.ndarray:
    u = env.unwrapped
    return np.asarray(u._get_obs(), dtype=np.float32)


def normalized_score(env_id: str | None, returns):
    """100 * (return - random) / (expert - random) with D4RL's reference returns; None where none exist."""
    if env_id is None:
        return None
    ref = REF_SCORES.get(env_id.split("-")[0])
    if ref is None:
        return None
    lo, hi = ref
    return 100.0 * (np.asarray(returns, dtype=np.float64) - lo) / (hi - lo)
