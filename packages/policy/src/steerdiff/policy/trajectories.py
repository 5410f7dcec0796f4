"""Trajectory tensors: episodes as (B, C, L) windows of [observation, action, reward, done, valid] per step.

Channels (C = obs_dim + act_dim + 3; without padding, obs_dim + act_dim + 2), as in policy-guided
diffusion (Jackson et al. 2024) plus a mask:

    [ obs (obs_dim) | arctanh(action / bound) (act_dim) | reward | done | valid ]

each z-scored with dataset statistics (:class:`Normalizer`). Row t of an episode holds s_t, a_t, r_t and
d_t = "the episode terminated at transition t"; one more row holds the final next state (action 0 in
pre-tanh space, reward 0, done 0), so an episode of T transitions gives T + 1 rows.

Padding (``Normalizer(mask=True)``, the default of :meth:`Normalizer.fit`): windows also start before an
episode and run past its end; the rows outside the episode repeat its first or last state with action and
reward 0 and ``valid = 0``. Done is absorbing there: once an episode terminates, d stays 1 on its final row
and on the padding after it (0 after a time-out), a step that a model learns far more easily than a single
spike, so generated windows mark their terminations clearly. Every episode is used, however short, and with ``stride=1`` every
transition lies in exactly L - 1 windows, the terminal ones included, so terminals are as frequent in the
windows as in the data and a model of the windows ends its episodes at the data's rate. Without padding
(``mask=False``) windows lie inside episodes and episodes shorter than the window are not used
(:func:`window_coverage` says which fraction of the transitions the windows hold).

:func:`to_transitions` turns windows back into transitions (s_t, a_t, r_t, d_t, s_{t+1}): those whose two
rows are valid, up to the first done.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .data import DatasetError, OfflineDataset

__all__ = ["ACTION_CLIP", "Normalizer", "episode_rows", "to_transitions", "window_coverage", "windows"]

ACTION_CLIP = 0.999


@dataclass
class Normalizer:
    """Maps environment units to the model's channels and back; invertible for |action| < 0.999 bound."""

    obs_dim: int
    act_dim: int
    action_bound: float
    mean: list[float]
    std: list[float]
    mask: bool = False  # a last "valid" channel: 1 on episode rows, 0 on padding

    def __post_init__(self):
        c = self.channels
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(
                f"mean/std must have {c} entries (obs_dim + act_dim + {3 if self.mask else 2}), got "
                f"{len(self.mean)} and {len(self.std)}"
            )
        if self.action_bound <= 0:
            raise ValueError(f"action_bound must be positive, got {self.action_bound}")

    # layout ------------------------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return self.obs_dim + self.act_dim + 2 + int(self.mask)

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

    @property
    def valid(self) -> int | None:
        """The index of the mask channel (None without padding)."""
        return self.obs_dim + self.act_dim + 2 if self.mask else None

    # maps ---------------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls, dataset: OfflineDataset, action_bound: float, min_std: float = 1e-3, mask: bool = True
    ) -> Normalizer:
        """Statistics of the episodes' rows; with ``mask`` the valid channel maps {0, 1} to {-1, 1}."""
        rows = episode_rows(dataset, action_bound, absorbing=mask)
        cat = np.concatenate(rows)
        mean, std = cat.mean(0).tolist(), np.maximum(cat.std(0), min_std).tolist()
        if mask:
            mean, std = [*mean, 0.5], [*std, 0.5]
        return cls(dataset.obs_dim, dataset.act_dim, float(action_bound), mean, std, mask=mask)

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
        """(..., obs_dim), (..., act_dim), (...), (...) in env units -> (..., C) normalised rows (episode
        rows: valid = 1 where there is a mask channel)."""
        obs, rew, done = (torch.as_tensor(v, dtype=torch.float32) for v in (obs, rew, done))
        parts = [
            obs,
            self.action_to_channel(torch.as_tensor(act, dtype=torch.float32)),
            rew[..., None],
            done[..., None],
        ]
        if self.mask:
            parts.append(torch.ones_like(rew[..., None]))
        return self.normalize(torch.cat(parts, dim=-1), dim=-1)

    def decode(self, z: torch.Tensor, dim: int = 1) -> dict[str, torch.Tensor]:
        """Normalised trajectories -> env units: obs, action (tanh, scaled), reward, done and, with a mask,
        valid (both continuous: > 0.5 means yes)."""
        raw = self.unnormalize(z, dim).movedim(dim, -1)
        out = {
            "obs": raw[..., self.obs],
            "action": self.channel_to_action(raw[..., self.act]),
            "reward": raw[..., self.reward],
            "done": raw[..., self.done],
        }
        if self.mask:
            out["valid"] = raw[..., self.valid]
        return out

    # persistence --------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Normalizer:
        return cls(**json.loads(text))


def episode_rows(dataset: OfflineDataset, action_bound: float, absorbing: bool = False) -> list[np.ndarray]:
    """Per episode, its T + 1 raw rows [obs, arctanh(a / bound), r, d] (unnormalised, float32). With
    ``absorbing``, the final row of a terminated episode keeps d = 1 (done stays 1 once it is reached)."""
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
        if absorbing:
            last[-1] = float(dataset.terminals[b - 1])
        out.append(np.concatenate([body, last[None]]).astype(np.float32))
    return out


def _starts(rows: int, length: int, stride: int, padded: bool) -> np.ndarray:
    """Window starts (row indices, negative before the episode) for an episode of ``rows`` rows."""
    if padded:  # from the window whose last transition is the first, to the one whose first is the last
        return np.arange(-(length - 2), rows - 1, stride)
    return np.arange(0, rows - length + 1, stride)


def window_coverage(dataset: OfflineDataset, length: int, stride: int = 1, padded: bool = True) -> dict:
    """What windows of ``length`` rows every ``stride`` rows hold of ``dataset``: ``windows``, the
    ``transitions_used`` (in at least one window) and their ``fraction``, ``episodes_used`` of ``episodes``,
    and ``padding_fraction`` (the share of window rows that are padding)."""
    bounds = np.asarray(dataset.episode_bounds())
    t = bounds[:, 1] - bounds[:, 0]  # transitions per episode; t + 1 rows
    if padded:
        first = np.full_like(t, -(length - 2))
        count = (t - 1 - first) // stride + 1
    else:
        first = np.zeros_like(t)
        count = np.maximum((t + 1 - length) // stride + 1, 0)
    last = first + (count - 1) * stride
    if stride <= length - 1:  # the windows of an episode overlap or touch: one covered stretch
        used = np.where(count > 0, np.minimum(last + length - 1, t) - np.maximum(first, 0), 0)
    else:  # disjoint windows; only padded ones can be clipped, at the episode's ends
        used = np.zeros_like(t)
        for i in np.flatnonzero(count):
            s = first[i] + stride * np.arange(count[i])
            used[i] = (np.minimum(s + length - 1, t[i]) - np.maximum(s, 0)).clip(0).sum()
    n_windows, padding = int(count.sum()), 0
    if padded:  # a window from s holds min(s + L, T + 1) - max(s, 0) rows of its episode
        for i in np.flatnonzero(count):
            s = first[i] + stride * np.arange(count[i])
            padding += int((length - (np.minimum(s + length, t[i] + 1) - np.maximum(s, 0))).sum())
    used, episodes_used = int(used.sum()), int((count > 0).sum())
    return {
        "windows": n_windows,
        "transitions": len(dataset),
        "transitions_used": used,
        "fraction": used / len(dataset),
        "episodes": len(bounds),
        "episodes_used": episodes_used,
        "padding_fraction": padding / max(n_windows * length, 1),
    }


def windows(dataset: OfflineDataset, normalizer: Normalizer, length: int, stride: int = 1) -> torch.Tensor:
    """Windows of ``length`` rows every ``stride`` rows: (N, C, length), normalised. With the normaliser's
    mask, windows run into padding before and after each episode (every episode is used); without it they
    lie inside episodes."""
    if length < 2:
        raise ValueError(f"a window needs at least 2 rows (one transition), got length={length}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    dataset.check_env(normalizer.obs_dim, normalizer.act_dim)
    out = []
    pad_rows = np.zeros((length - 1, normalizer.act_dim + 2), np.float32)
    for rows in episode_rows(dataset, normalizer.action_bound, absorbing=normalizer.mask):
        starts = _starts(len(rows), length, stride, normalizer.mask)
        if len(starts) == 0:
            continue
        if normalizer.mask:
            n = length - 1  # padding rows on each side: the first/last state, the rest 0, valid 0
            before = np.concatenate([np.repeat(rows[:1, normalizer.obs], n, 0), pad_rows[:n]], 1)
            after = np.concatenate([np.repeat(rows[-1:, normalizer.obs], n, 0), pad_rows[:n]], 1)
            after[:, -1] = rows[-1, normalizer.done]  # after a termination, done stays 1 (absorbing)
            body = np.concatenate([rows, np.ones((len(rows), 1), np.float32)], 1)
            zero = np.zeros((n, 1), np.float32)
            rows = np.concatenate([np.concatenate([before, zero], 1), body, np.concatenate([after, zero], 1)])
            starts = starts + n
        idx = starts[:, None] + np.arange(length)[None]
        out.append(rows[idx])
    if not out:
        longest = max(b - a for a, b in dataset.episode_bounds()) + 1
        raise DatasetError(
            f"every episode is shorter than the window length {length} rows (the longest has "
            f"{longest}); use a horizon of at most {longest}, or pad the windows (padding='mask')"
        )
    raw = torch.from_numpy(np.concatenate(out))  # (N, L, C)
    return normalizer.normalize(raw, dim=-1).transpose(1, 2).contiguous()


def to_transitions(traj: torch.Tensor, normalizer: Normalizer, env_id: str | None = None) -> OfflineDataset:
    """Generated windows (B, C, L), normalised -> a dataset of B * (L - 1) transitions at most.

    Each window is one episode. A generated done (> 0.5) ends it: later transitions in that window are
    dropped. With a mask channel, a transition is kept only where both its rows are valid (> 0.5): padding
    is never data. Where the valid rows stop inside the window, the episode terminated if done, which is
    absorbing in padded windows, is above 0.5 on average from its final row on; otherwise it ends in a
    timeout. Actions come back through tanh, so they always lie inside the action bounds.
    """
    if traj.ndim != 3 or traj.shape[1] != normalizer.channels:
        raise ValueError(
            f"trajectories must have shape (B, {normalizer.channels}, L), got {tuple(traj.shape)}"
        )
    d = {k: v.detach().cpu().numpy() for k, v in normalizer.decode(traj.float(), dim=1).items()}
    obs, nxt = d["obs"][:, :-1], d["obs"][:, 1:]
    act, rew = d["action"][:, :-1], d["reward"][:, :-1]
    real = np.ones(obs.shape[:2], bool)
    if normalizer.mask:
        valid = d["valid"] > 0.5
        real = valid[:, :-1] & valid[:, 1:]
    done = (d["done"][:, :-1] > 0.5) & real
    after_done = np.cumsum(done, axis=1) - done > 0  # rows after the first done
    keep = real & ~after_done
    last = keep & ~np.concatenate([keep[:, 1:], np.zeros_like(keep[:, :1])], axis=1)
    if normalizer.mask:
        # done is absorbing in padded windows: a run of valid rows that stops before the window does (its
        # final row followed by padding) terminated when done is high, on average, from that final row on
        tail = d["done"][:, ::-1].cumsum(1)[:, ::-1] / (d["done"].shape[1] - np.arange(d["done"].shape[1]))
        padding_next = np.concatenate([~valid[:, 2:], np.zeros_like(valid[:, :1])], axis=1)
        done = done | (last & padding_next & (tail[:, 1:] > 0.5))
    if not keep.any():
        raise DatasetError(
            f"none of the {len(traj)} generated windows holds a transition (every row is padding); "
            "sample more windows or longer ones (num_samples, length), or train the model longer"
        )
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
