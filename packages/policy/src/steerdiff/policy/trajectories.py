"""Trajectory tensors: episodes as (B, C, L) windows of [observation, action, reward, done] per step.

Channels (C = obs_dim + act_dim + 2), as in policy-guided diffusion (Jackson et al. 2024):

    [ obs (obs_dim) | arctanh(action / bound) (act_dim) | reward | done ]

each z-scored with dataset statistics (:class:`Normalizer`). Row t of an episode holds s_t, a_t, r_t and
d_t = "the episode terminated at transition t"; one more row holds the final next state (action 0 in
pre-tanh space, reward 0, done 0), so an episode of T transitions gives T + 1 rows and a window of L rows
gives L - 1 transitions (s_t, a_t, r_t, d_t, s_{t+1}) (:func:`to_transitions`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .data import DatasetError, OfflineDataset

__all__ = ["ACTION_CLIP", "Normalizer", "episode_rows", "to_transitions", "windows"]

ACTION_CLIP = 0.999


@dataclass
class Normalizer:
    """Maps environment units to the model's channels and back; invertible for |action| < 0.999 bound."""

    obs_dim: int
    act_dim: int
    action_bound: float
    mean: list[float]
    std: list[float]

    def __post_init__(self):
        c = self.channels
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(
                f"mean/std must have {c} entries (obs_dim + act_dim + 2), got "
                f"{len(self.mean)} and {len(self.std)}"
            )
        if self.action_bound <= 0:
            raise ValueError(f"action_bound must be positive, got {self.action_bound}")

    # layout ------------------------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return self.obs_dim + self.act_dim + 2

    @property
    def obs(self) -> slice:
        return slice(0, self.obs_dim)

    @property
    def act(self) -> slice:
        return slice(self.obs_dim, self.obs_dim + self.act_dim)

    @property
    def reward(self) -> int:
        return self.obs_dim + self.act_dim

    @property
    def done(self) -> int:
        return self.obs_dim + self.act_dim + 1

    # maps ---------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, dataset: OfflineDataset, action_bound: float, min_std: float = 1e-3) -> Normalizer:
        rows = episode_rows(dataset, action_bound)
        cat = np.concatenate(rows)
        std = np.maximum(cat.std(0), min_std)
        return cls(dataset.obs_dim, dataset.act_dim, float(action_bound), cat.mean(0).tolist(), std.tolist())

    def _stats(self, x: torch.Tensor, dim: int):
        shape = [1] * x.ndim
        shape[dim] = self.channels
        m = torch.tensor(self.mean, dtype=x.dtype, device=x.device).reshape(shape)
        s = torch.tensor(self.std, dtype=x.dtype, device=x.device).reshape(shape)
        return m, s

    def normalize(self, raw: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Raw channels (actions already through arctanh) -> z-scores, along ``dim``."""
        m, s = self._stats(raw, dim)
        return (raw - m) / s

    def unnormalize(self, z: torch.Tensor, dim: int = 1) -> torch.Tensor:
        m, s = self._stats(z, dim)
        return z * s + m

    def action_to_channel(self, action):
        a = torch.as_tensor(action) / self.action_bound
        return torch.atanh(a.clamp(-ACTION_CLIP, ACTION_CLIP))

    def channel_to_action(self, u):
        return torch.tanh(u) * self.action_bound

    def encode(self, obs, act, rew, done) -> torch.Tensor:
        """(..., obs_dim), (..., act_dim), (...), (...) in env units -> (..., C) normalised rows."""
        obs, rew, done = (torch.as_tensor(v, dtype=torch.float32) for v in (obs, rew, done))
        raw = torch.cat(
            [
                obs,
                self.action_to_channel(torch.as_tensor(act, dtype=torch.float32)),
                rew[..., None],
                done[..., None],
            ],
            dim=-1,
        )
        return self.normalize(raw, dim=-1)

    def decode(self, z: torch.Tensor, dim: int = 1) -> dict[str, torch.Tensor]:
        """Normalised trajectories -> env units: obs, action (tanh, scaled), reward, done (continuous)."""
        raw = self.unnormalize(z, dim).movedim(dim, -1)
        return {
            "obs": raw[..., self.obs],
            "action": self.channel_to_action(raw[..., self.act]),
            "reward": raw[..., self.reward],
            "done": raw[..., self.done],
        }

    # persistence --------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Normalizer:
        return cls(**json.loads(text))


def episode_rows(dataset: OfflineDataset, action_bound: float) -> list[np.ndarray]:
    """Per episode, its T + 1 raw rows [obs, arctanh(a / bound), r, d] (unnormalised, float32)."""
    out = []
    u_all = np.arctanh(np.clip(dataset.actions / action_bound, -ACTION_CLIP, ACTION_CLIP))
    for a, b in dataset.episode_bounds():
        body = np.concatenate(
            [
                dataset.observations[a:b],
                u_all[a:b],
                dataset.rewards[a:b, None],
                dataset.terminals[a:b, None].astype(np.float32),
            ],
            axis=1,
        )
        last = np.concatenate([dataset.next_observations[b - 1], np.zeros(dataset.act_dim + 2, np.float32)])
        out.append(np.concatenate([body, last[None]]).astype(np.float32))
    return out


def windows(dataset: OfflineDataset, normalizer: Normalizer, length: int, stride: int = 1) -> torch.Tensor:
    """All windows of ``length`` rows inside episodes, every ``stride`` rows: (N, C, length), normalised."""
    if length < 2:
        raise ValueError(f"a window needs at least 2 rows (one transition), got length={length}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    dataset.check_env(normalizer.obs_dim, normalizer.act_dim)
    out = []
    for rows in episode_rows(dataset, normalizer.action_bound):
        if len(rows) < length:
            continue
        idx = np.arange(0, len(rows) - length + 1, stride)[:, None] + np.arange(length)[None]
        out.append(rows[idx])
    if not out:
        longest = max(b - a for a, b in dataset.episode_bounds()) + 1
        raise DatasetError(
            f"every episode is shorter than the window length {length} rows (the longest has "
            f"{longest}); use a horizon of at most {longest}"
        )
    raw = torch.from_numpy(np.concatenate(out))  # (N, L, C)
    return normalizer.normalize(raw, dim=-1).transpose(1, 2).contiguous()


def to_transitions(traj: torch.Tensor, normalizer: Normalizer, env_id: str | None = None) -> OfflineDataset:
    """Generated windows (B, C, L), normalised -> a dataset of B * (L - 1) transitions at most.

    Each window is one episode. A generated done (> 0.5) ends it: later transitions in that window are
    dropped. Actions come back through tanh, so they always lie inside the action bounds.
    """
    if traj.ndim != 3 or traj.shape[1] != normalizer.channels:
        raise ValueError(
            f"trajectories must have shape (B, {normalizer.channels}, L), got {tuple(traj.shape)}"
        )
    d = {k: v.detach().cpu().numpy() for k, v in normalizer.decode(traj.float(), dim=1).items()}
    obs, nxt = d["obs"][:, :-1], d["obs"][:, 1:]
    act, rew = d["action"][:, :-1], d["reward"][:, :-1]
    done = d["done"][:, :-1] > 0.5
    after_done = np.cumsum(done, axis=1) - done > 0  # rows after the first done
    keep = ~after_done
    last = keep & ~np.concatenate([keep[:, 1:], np.zeros_like(keep[:, :1])], axis=1)
    return OfflineDataset(
        observations=obs[keep],
        actions=act[keep],
        rewards=rew[keep],
        terminals=done[keep],
        timeouts=(last & ~done)[keep],
        next_observations=nxt[keep],
        env_id=env_id,
        metadata={"synthetic": 1},
    )
