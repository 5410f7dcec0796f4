"""Offline datasets in the D4RL layout: flat arrays of transitions, episodes split on terminals or timeouts.

An :class:`OfflineDataset` holds six aligned arrays (N rows, one per transition):

    observations (N, obs_dim)   actions (N, act_dim)   rewards (N,)
    terminals (N,) bool         timeouts (N,) bool     next_observations (N, obs_dim)

An episode ends at a row whose ``terminals`` or ``timeouts`` flag is set (the last rows, if no flag closes
them, form a final truncated episode). The same arrays are read and written as a D4RL HDF5 file
(:func:`load_d4rl`, :func:`save_d4rl`) or as a local Minari dataset (:func:`load_minari`,
:func:`save_minari`, optional extra ``minari``). Every constructor validates: shapes that disagree, NaN or
inf, flags other than 0/1, empty data and empty episodes raise a ``DatasetError`` that names the problem
and the fix.

D4RL files as published carry no environment name: pass ``env_id`` (the CLI's ``--env``). When the
environment is known, the observation and action dimensions, and the action bounds, are checked against it
as the file is read.
Rewards stored as (N, 1) columns and flags stored as floats are read as (N,) vectors and booleans; a file
without ``timeouts`` gets its episode ends from the rows where ``next_observations`` does not continue
into the next row's ``observations`` (the dataset's ``metadata["inferred_timeouts"]`` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steerdiff.core.io import atomic_path

__all__ = [
    "KEYS",
    "DatasetError",
    "OfflineDataset",
    "load_d4rl",
    "load_dataset",
    "load_minari",
    "save_d4rl",
    "save_minari",
    "terminal_fraction",
]

KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


class DatasetError(ValueError):
    """A dataset that cannot be used as it is; the message says what is wrong and how to fix it."""


def _column(a: np.ndarray, name: str) -> np.ndarray:
    """(N,) or (N, 1) -> (N,); any other shape is refused (flattening it would misalign the rows)."""
    if a.ndim == 2 and a.shape[1] == 1:
        return a[:, 0]
    if a.ndim != 1:
        raise DatasetError(
            f"{name} must have shape (N,) or (N, 1), got {a.shape}; give one value per transition"
        )
    return a


def _flags(a, name: str) -> np.ndarray:
    a = _column(np.asarray(a), name)
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            bad = a[~np.isin(a, (0, 1))]
            raise DatasetError(
                f"{name} holds values other than 0 and 1 (e.g. {bad[0].item()!r}, {len(bad)} in all); a flag is "
                "0/1 or True/False per transition"
            )
        a = a.astype(bool)
    return a


def terminal_fraction(dataset: OfflineDataset) -> float:
    """The fraction of the transitions that end an episode with a termination (not a time limit)."""
    return float(dataset.terminals.mean())


@dataclass
class OfflineDataset:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    next_observations: np.ndarray
    env_id: str | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = _column(np.asarray(self.rewards, dtype=np.float32), "rewards")
        self.terminals = _flags(self.terminals, "terminals")
        self.timeouts = _flags(self.timeouts, "timeouts")
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.validate()

    # ------------------------------------------------------------------------------------------ checks
    def validate(self) -> None:
        n = len(self.observations)
        if n == 0:
            raise DatasetError("the dataset is empty (0 transitions); collect or load some data first")
        for name in ("observations", "actions", "next_observations"):
            a = getattr(self, name)
            if a.ndim != 2:
                raise DatasetError(
                    f"{name} must be 2-D (N, dim), got shape {a.shape}; reshape it to (num_transitions, dim)"
                )
        for name in KEYS:
            a = getattr(self, name)
            if len(a) != n:
                raise DatasetError(
                    f"{name} has {len(a)} rows but observations has {n}; every key of the "
                    "D4RL layout needs one row per transition"
                )
        if self.next_observations.shape != self.observations.shape:
            raise DatasetError(
                f"next_observations has shape {self.next_observations.shape} but observations "
                f"{self.observations.shape}; they must match"
            )
        for name in ("observations", "actions", "rewards", "next_observations"):
            a = getattr(self, name)
            bad = ~np.isfinite(a)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise DatasetError(
                    f"{name} contains {int(bad.sum())} NaN/inf value(s); the first is in row "
                    f"{row}. Drop or repair those transitions (e.g. dataset.select(mask)) "
                    "before training"
                )

    def check_env(self, obs_dim: int, act_dim: int, env_id: str | None = None) -> None:
        """Raise if the dataset's dimensions differ from an environment's."""
        what = f"environment {env_id}" if env_id else "the environment"
        if self.obs_dim != obs_dim:
            raise DatasetError(
                f"the dataset has observation dimension {self.obs_dim} but {what} has "
                f"{obs_dim}; use the dataset that was collected in {what}"
            )
        if self.act_dim != act_dim:
            raise DatasetError(
                f"the dataset has action dimension {self.act_dim} but {what} has {act_dim}; "
                f"use the dataset that was collected in {what}"
            )

    # ------------------------------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    def episode_bounds(self) -> list[tuple[int, int]]:
        """(start, stop) row ranges of the episodes, split after every terminal or timeout."""
        ends = np.flatnonzero(self.terminals | self.timeouts) + 1
        if len(ends) == 0 or ends[-1] != len(self):
            ends = np.append(ends, len(self))
        starts = np.concatenate([[0], ends[:-1]])
        return list(zip(starts.tolist(), ends.tolist(), strict=True))

    def episode_returns(self) -> np.ndarray:
        csum = np.concatenate([[0.0], np.cumsum(self.rewards, dtype=np.float64)])
        b = np.asarray(self.episode_bounds())
        return csum[b[:, 1]] - csum[b[:, 0]]

    def select(self, rows) -> OfflineDataset:
        """The transitions at ``rows`` (an index array or bool mask)."""
        return OfflineDataset(
            **{k: getattr(self, k)[rows] for k in KEYS}, env_id=self.env_id, metadata=dict(self.metadata)
        )

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in KEYS}

    @classmethod
    def concatenate(cls, parts: list[OfflineDataset]) -> OfflineDataset:
        if not parts:
            raise DatasetError("nothing to concatenate: pass at least one dataset")
        dims = {(p.obs_dim, p.act_dim) for p in parts}
        if len(dims) > 1:
            raise DatasetError(
                f"cannot concatenate datasets with different (obs_dim, act_dim): {sorted(dims)}"
            )
        return cls(
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in KEYS},
            env_id=parts[0].env_id,
            metadata=dict(parts[0].metadata),
        )

    @classmethod
    def from_episodes(cls, episodes: list[dict], env_id: str | None = None) -> OfflineDataset:
        """From per-episode dicts with ``observations`` (T+1, obs_dim) — the states including the last —,
        ``actions`` (T, act_dim), ``rewards`` (T,), and bools ``terminated`` / ``truncated`` for the end."""
        if not episodes:
            raise DatasetError("no episodes given; collect at least one episode")
        parts = []
        for i, ep in enumerate(episodes):
            obs = np.asarray(ep["observations"], dtype=np.float32)
            t = len(ep["actions"])
            if t == 0:
                raise DatasetError(f"episode {i} is empty (0 steps); drop it before building the dataset")
            if len(obs) != t + 1:
                raise DatasetError(
                    f"episode {i} has {len(obs)} observations for {t} actions; give T+1 "
                    "observations (the last state included) for T actions"
                )
            term = np.zeros(t, bool)
            tout = np.zeros(t, bool)
            term[-1] = bool(ep.get("terminated", False))
            tout[-1] = not term[-1]  # an episode that did not terminate was cut: a timeout
            parts.append(
                dict(
                    observations=obs[:-1],
                    actions=ep["actions"],
                    rewards=ep["rewards"],
                    terminals=term,
                    timeouts=tout,
                    next_observations=obs[1:],
                )
            )
        return cls(**{k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in KEYS}, env_id=env_id)


# ----------------------------------------------------------------------------------------------- HDF5


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is a hard dependency
        raise ImportError("reading D4RL HDF5 files needs h5py: pip install h5py") from e
    return h5py


def save_d4rl(dataset: OfflineDataset, path) -> Path:
    """Write the D4RL HDF5 layout atomically (temp file in the same folder, then rename)."""
    h5py = _h5py()
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for k in KEYS:
            f.create_dataset(k, data=getattr(dataset, k), compression="gzip", compression_opts=4)
        if dataset.env_id:
            f.attrs["env_id"] = dataset.env_id
        for k, v in dataset.metadata.items():
            f.attrs[f"meta_{k}"] = v if isinstance(v, (int, float, str)) else str(v)
    return path


def _attr_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode()
    return str(value)


def _inferred_timeouts(arrays: dict) -> np.ndarray:
    """Episode ends of a file without ``timeouts``: rows whose next observation is not the next row's
    observation (and that did not terminate), plus the last row."""
    obs, nxt = arrays["observations"], arrays["next_observations"]
    ends = np.zeros(len(obs), bool)
    if len(obs):
        ends[:-1] = np.any(nxt[:-1] != obs[1:], axis=tuple(range(1, obs.ndim)))
        ends[-1] = True
    terminals = np.asarray(arrays["terminals"]).reshape(len(obs), -1)[:, 0].astype(bool)
    return ends & ~terminals


def load_d4rl(path, env_id: str | None = None, check: bool = True) -> OfflineDataset:
    """Read a D4RL HDF5 file (the keys at the root; extra keys such as ``infos/`` are ignored).

    ``env_id`` names the environment (it overrides an ``env_id`` attribute of the file); with ``check`` the
    observation and action dimensions are checked against it (a supported environment) as the file is read.
    """
    h5py = _h5py()
    path = Path(path)
    if not path.exists():
        raise DatasetError(
            f"{path} does not exist; collect a dataset first (steerdiff-policy collect) or "
            "pass the path of a D4RL .hdf5 file"
        )
    if path.is_dir():
        raise DatasetError(f"{path} is a folder; pass the path of a D4RL .hdf5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path} is not a readable HDF5 file ({e})") from None
    with f:
        missing = [k for k in KEYS if k not in f and k != "timeouts"]
        if missing:
            raise DatasetError(
                f"{path} lacks the D4RL key(s) {missing}; a D4RL file needs {list(KEYS)} at "
                "its root (for a file without next_observations, rebuild it with "
                "OfflineDataset.from_episodes)"
            )
        arrays = {k: f[k][()] for k in KEYS if k in f}
        stored = _attr_text(f.attrs.get("env_id"))
        meta = {
            k[5:]: (v.item() if hasattr(v, "item") else v)
            for k, v in f.attrs.items()
            if k.startswith("meta_")
        }
    if "timeouts" not in arrays:
        if len(arrays["next_observations"]) != len(arrays["observations"]):
            raise DatasetError(
                f"{path}: next_observations has {len(arrays['next_observations'])} rows but observations "
                f"{len(arrays['observations'])}; every key needs one row per transition"
            )
        arrays["timeouts"] = _inferred_timeouts(arrays)
        meta["inferred_timeouts"] = int(arrays["timeouts"].sum())
    try:
        ds = OfflineDataset(**arrays, env_id=env_id or stored, metadata=meta)
    except DatasetError as err:
        raise DatasetError(f"{path}: {err}") from None
    if check:
        check_dataset_env(ds, path)
    return ds


def check_dataset_env(dataset: OfflineDataset, source=None) -> None:
    """Check the dimensions, and that the actions lie within the action bounds, against ``dataset.env_id``
    when it is a supported environment."""
    from .envs import SUPPORTED, action_bounds, env_dims

    if dataset.env_id not in SUPPORTED:
        return
    try:
        dataset.check_env(*env_dims(dataset.env_id), dataset.env_id)
        bound = action_bounds(dataset.env_id)
        outside = np.abs(dataset.actions).max(1) > bound * (1 + 1e-4)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise DatasetError(
                f"{int(outside.sum())} action(s) lie outside {dataset.env_id}'s bounds [-{bound:g}, {bound:g}] "
                f"(the first in row {row}: {dataset.actions[row].tolist()}); rescale the actions to the "
                "environment's range, or name the environment the data was collected in"
            )
    except DatasetError as err:
        raise DatasetError(f"{source}: {err}" if source is not None else str(err)) from None


# --------------------------------------------------------------------------------------------- Minari


def _minari():
    try:
        import minari
        from minari.data_collector.episode_buffer import EpisodeBuffer
    except ImportError as e:
        raise ImportError(
            "Minari datasets need the minari extra: pip install 'steerdiff-policy[minari]'"
        ) from e
    return minari, EpisodeBuffer


def save_minari(
    dataset: OfflineDataset,
    dataset_id: str,
    env_id: str | None = None,
    algorithm_name: str = "steerdiff-policy",
):
    """Write a local Minari dataset (under ``MINARI_DATASETS_PATH``) without jax, episode by episode."""
    minari, EpisodeBuffer = _minari()
    import gymnasium as gym

    env_id = env_id or dataset.env_id
    if env_id is None:
        raise DatasetError("save_minari needs the environment id (env_id=...), the dataset carries none")
    env = gym.make(env_id)
    buffers = []
    for i, (a, b) in enumerate(dataset.episode_bounds()):
        obs = np.concatenate([dataset.observations[a:b], dataset.next_observations[b - 1 : b]])
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=obs,
                actions=dataset.actions[a:b],
                rewards=dataset.rewards[a:b],
                terminations=dataset.terminals[a:b],
                truncations=dataset.timeouts[a:b] | (np.arange(a, b) == b - 1) & ~dataset.terminals[a:b],
            )
        )
    return minari.create_dataset_from_buffers(
        dataset_id=dataset_id,
        buffer=buffers,
        env=env,
        algorithm_name=algorithm_name,
        author="steerdiff",
        author_email="none@example.com",
        code_permalink="none",
        description=f"{env_id} data written by steerdiff-policy",
    )


def load_minari(dataset_id: str) -> OfflineDataset:
    """Read a local Minari dataset into the D4RL layout (no download: it must already be on disk)."""
    minari, _ = _minari()
    if dataset_id not in minari.list_local_datasets():
        raise DatasetError(
            f"no local Minari dataset {dataset_id!r} under MINARI_DATASETS_PATH; local ones: "
            f"{sorted(minari.list_local_datasets())}. Create it with save_minari"
        )
    ds = minari.load_dataset(dataset_id)
    episodes = []
    for ep in ds.iterate_episodes():
        if len(ep.actions) == 0:
            raise DatasetError(
                f"Minari dataset {dataset_id!r} holds an empty episode (id {ep.id}); remove it"
            )
        episodes.append(
            dict(
                observations=ep.observations,
                actions=ep.actions,
                rewards=ep.rewards,
                terminated=bool(ep.terminations[-1]),
            )
        )
    env_spec = ds.spec.env_spec
    return OfflineDataset.from_episodes(episodes, env_id=env_spec.id if env_spec is not None else None)


def load_dataset(source: str, env_id: str | None = None, check: bool = True) -> OfflineDataset:
    """A path to a D4RL HDF5 file, or ``minari:<dataset_id>`` for a local Minari dataset. ``env_id``
    overrides the environment the source names; with ``check`` the dimensions are checked against it."""
    source = str(source)
    if source.startswith("minari:"):
        ds = load_minari(source[len("minari:") :])
        if env_id:
            ds.env_id = env_id
        if check:
            check_dataset_env(ds, source)
        return ds
    return load_d4rl(source, env_id=env_id, check=check)
