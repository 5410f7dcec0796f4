"""Collect offline datasets locally: roll out behaviour policies in gymnasium and store the D4RL layout.

Behaviour policies (``make_behaviour``):

* ``random`` — uniform actions;
* ``scripted`` — a hand-written controller plus Gaussian noise (``noise`` is the std as a fraction of the
  action bound): Pendulum's energy-pumping swing-up with a PD catch at the top; for locomotion a
  phase-shifted sinusoidal gait (period 10 steps) on top of a PD hold of the joints, which keeps Hopper and
  Walker2d upright and moves HalfCheetah forward — a "medium-ish" behaviour, far below expert;
* ``replay`` — a "medium-replay"-like mixture: episode k uses the scripted controller with noise decaying
  from 1 (nearly random) to ``noise``, as a learning agent's replay buffer would hold;
* any callable ``obs -> action`` (e.g. a trained agent's actor, ``agent.act``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .data import OfflineDataset
from .envs import action_bounds, make_env

__all__ = ["BEHAVIOURS", "ScriptedPolicy", "collect", "make_behaviour"]

BEHAVIOURS = ("random", "scripted", "replay")


class ScriptedPolicy:
    """A noisy hand-written controller; ``noise`` is the Gaussian std as a fraction of the action bound."""

    def __init__(self, env_id: str, noise: float = 0.1, seed: int = 0):
        self.env_id, self.noise = env_id, float(noise)
        self.bound = action_bounds(env_id)
        env = make_env(env_id)
        self.obs_dim, self.act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        self.rng = np.random.default_rng(seed)
        self.phase_offsets = np.linspace(0, math.pi, self.act_dim, endpoint=False)
        self.t = 0

    def reset(self):
        self.t = 0

    def _clean(self, obs: np.ndarray) -> np.ndarray:
        if self.env_id == "Pendulum-v1":
            cos, sin, thdot = obs
            theta = math.atan2(sin, cos)
            if cos > 0.85:  # near the top: PD catch
                return np.array([-10.0 * theta - 2.0 * thdot])
            energy = 0.5 * thdot**2 + 10.0 * (cos - 1.0)  # zero at the top, at rest
            return np.array([2.0 * np.sign(thdot * -energy) if abs(thdot) > 1e-3 else 1.0])
        nq, nj = self.obs_dim - self.act_dim - 3, self.act_dim  # obs = qpos[1:] (nq-1) + qvel (nv)
        q, qd = obs[nq - 1 - nj : nq - 1], obs[-nj:]
        return 0.6 * np.sin(2 * math.pi * self.t / 10.0 + self.phase_offsets) - 1.0 * q - 0.05 * qd

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        a = self._clean(obs) + self.noise * self.bound * self.rng.standard_normal(self.act_dim)
        self.t += 1
        return np.clip(a, -self.bound, self.bound)


class _Random:
    def __init__(self, env_id: str, seed: int = 0):
        self.space = make_env(env_id).action_space
        self.space.seed(seed)

    def reset(self):
        pass

    def __call__(self, obs):
        return self.space.sample()


def make_behaviour(kind: str, env_id: str, noise: float = 0.1, seed: int = 0):
    if kind == "random":
        return _Random(env_id, seed)
    if kind in ("scripted", "replay"):
        return ScriptedPolicy(env_id, noise, seed)
    raise ValueError(f"unknown behaviour {kind!r}; choose one of {list(BEHAVIOURS)} or pass a callable")


def collect(
    env_id: str,
    behaviour: str | Callable = "scripted",
    num_steps: int = 10_000,
    noise: float = 0.1,
    seed: int = 0,
    max_episode_steps: int | None = None,
    progress: bool = False,
) -> OfflineDataset:
    """Roll out ``behaviour`` for ``num_steps`` transitions (the last episode is cut there, as a timeout).

    ``max_episode_steps`` shortens episodes below the environment's own limit (useful for small data).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    env = make_env(env_id)
    limit = min(max_episode_steps or env.spec.max_episode_steps, env.spec.max_episode_steps)
    policy = make_behaviour(behaviour, env_id, noise, seed) if isinstance(behaviour, str) else behaviour
    replay = behaviour == "replay"
    obs_l, act_l, rew_l, term_l, tout_l, next_l = [], [], [], [], [], []
    episode = 0
    obs, _ = env.reset(seed=seed)
    steps_in_episode = 0
    expected_episodes = max(1, num_steps // limit)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc=f"collect {env_id}")
    for _ in range(num_steps):
        if replay and steps_in_episode == 0:
            frac = min(1.0, episode / max(1, expected_episodes - 1))
            policy.noise = 1.0 + frac * (noise - 1.0)
        a = np.asarray(policy(obs), dtype=np.float32).reshape(env.action_space.shape)
        nxt, r, terminated, truncated, _ = env.step(a)
        steps_in_episode += 1
        truncated = truncated or steps_in_episode >= limit
        obs_l.append(obs), act_l.append(a), rew_l.append(r), next_l.append(nxt)
        term_l.append(terminated), tout_l.append(truncated and not terminated)
        if bar is not None:
            bar.update(1)
        if terminated or truncated:
            episode += 1
            steps_in_episode = 0
            if hasattr(policy, "reset"):
                policy.reset()
            obs, _ = env.reset(seed=seed + episode)
        else:
            obs = nxt
    if bar is not None:
        bar.close()
    if not (term_l[-1] or tout_l[-1]):
        tout_l[-1] = True
    kind = behaviour if isinstance(behaviour, str) else "custom"
    return OfflineDataset(
        observations=np.array(obs_l),
        actions=np.array(act_l),
        rewards=np.array(rew_l),
        terminals=np.array(term_l),
        timeouts=np.array(tout_l),
        next_observations=np.array(next_l),
        env_id=env_id,
        metadata={"behaviour": kind, "noise": float(noise), "seed": int(seed)},
    )
