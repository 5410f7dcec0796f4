"""The D4RL layout: HDF5 and Minari round trips, episode splitting, collection, and bad inputs."""

import h5py
import numpy as np
import pytest

from steerdiff.policy.collect import collect
from steerdiff.policy.data import (
    KEYS,
    DatasetError,
    OfflineDataset,
    load_d4rl,
    load_dataset,
    load_minari,
    save_d4rl,
    save_minari,
    terminal_fraction,
)


def _toy(n=7, obs_dim=3, act_dim=1, terminals=(), timeouts=()):
    rng = np.random.default_rng(0)
    term = np.zeros(n, bool)
    term[list(terminals)] = True
    tout = np.zeros(n, bool)
    tout[list(timeouts)] = True
    return OfflineDataset(
        observations=rng.normal(size=(n, obs_dim)),
        actions=rng.uniform(-1, 1, (n, act_dim)),
        rewards=rng.normal(size=n),
        terminals=term,
        timeouts=tout,
        next_observations=rng.normal(size=(n, obs_dim)),
        env_id="Pendulum-v1",
    )


def test_d4rl_round_trip(tmp_path):
    ds = _toy(terminals=[2], timeouts=[6])
    path = save_d4rl(ds, tmp_path / "d.hdf5")
    back = load_d4rl(path)
    for k in KEYS:
        np.testing.assert_array_equal(getattr(back, k), getattr(ds, k))
    assert back.env_id == "Pendulum-v1"
    assert not list(tmp_path.glob(".*"))  # the temp file was renamed away


def test_missing_key_is_named(tmp_path):
    ds = _toy()
    path = tmp_path / "broken.hdf5"
    with h5py.File(path, "w") as f:
        for k in KEYS:
            if k != "actions":
                f[k] = getattr(ds, k)
    with pytest.raises(DatasetError, match=r"lacks the D4RL key\(s\) \['actions'\]"):
        load_d4rl(path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_d4rl(tmp_path / "nope.hdf5")


def test_episode_splitting_on_terminals_or_timeouts():
    ds = _toy(n=10, terminals=[2], timeouts=[5])
    assert ds.episode_bounds() == [(0, 3), (3, 6), (6, 10)]  # the unflagged tail is a last episode
    np.testing.assert_allclose(
        ds.episode_returns(), [ds.rewards[0:3].sum(), ds.rewards[3:6].sum(), ds.rewards[6:].sum()], rtol=1e-6
    )
    assert _toy(n=4, timeouts=[3]).episode_bounds() == [(0, 4)]


def test_nan_in_dataset_is_located():
    ds = _toy()
    obs = ds.observations.copy()
    obs[4, 1] = np.nan
    with pytest.raises(DatasetError, match=r"observations contains 1 NaN.*row 4"):
        OfflineDataset(**{**ds.as_dict(), "observations": obs})


def test_empty_data_and_episodes_and_shapes():
    ds = _toy()
    with pytest.raises(DatasetError, match="empty"):
        OfflineDataset(**{k: v[:0] for k, v in ds.as_dict().items()})
    with pytest.raises(DatasetError, match="episode 1 is empty"):
        OfflineDataset.from_episodes(
            [
                dict(observations=np.zeros((3, 2)), actions=np.zeros((2, 1)), rewards=np.zeros(2)),
                dict(observations=np.zeros((1, 2)), actions=np.zeros((0, 1)), rewards=np.zeros(0)),
            ]
        )
    with pytest.raises(DatasetError, match="rewards has 6 rows"):
        OfflineDataset(**{**ds.as_dict(), "rewards": ds.rewards[:6]})


def test_dimensions_that_do_not_match_the_environment():
    ds = _toy(obs_dim=4)
    with pytest.raises(DatasetError, match="observation dimension 4 but environment Pendulum-v1 has 3"):
        ds.check_env(3, 1, "Pendulum-v1")
    with pytest.raises(DatasetError, match="action dimension 1 but"):
        _toy().check_env(3, 2)


def test_from_episodes_marks_ends():
    ds = OfflineDataset.from_episodes(
        [
            dict(
                observations=np.arange(4.0)[:, None],
                actions=np.zeros((3, 1)),
                rewards=np.ones(3),
                terminated=True,
            ),
            dict(observations=np.arange(3.0)[:, None], actions=np.zeros((2, 1)), rewards=np.ones(2)),
        ]
    )
    assert ds.terminals.tolist() == [False, False, True, False, False]
    assert ds.timeouts.tolist() == [False, False, False, False, True]
    np.testing.assert_array_equal(ds.next_observations[:3, 0], [1, 2, 3])


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Hopper-v5"])
def test_collect_writes_the_d4rl_layout(env_id, tmp_path):
    ds = collect(env_id, "replay", 300, max_episode_steps=50, seed=1)
    assert len(ds) == 300 and ds.env_id == env_id
    assert (ds.terminals | ds.timeouts)[-1]
    for a, b in ds.episode_bounds():  # next_observations chain within an episode
        np.testing.assert_array_equal(ds.next_observations[a : b - 1], ds.observations[a + 1 : b])
    back = load_d4rl(save_d4rl(ds, tmp_path / "c.hdf5"))
    assert back.metadata["behaviour"] == "replay"
    with pytest.raises(ValueError, match="unsupported environment"):
        collect("CartPole-v1", "random", 10)
    with pytest.raises(ValueError, match="unknown behaviour"):
        collect("Pendulum-v1", "expert", 10)


def test_minari_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    ds = collect("Pendulum-v1", "scripted", 250, max_episode_steps=100, seed=2)
    save_minari(ds, "pendulum/scripted-v0")
    back = load_minari("pendulum/scripted-v0")
    for k in KEYS:
        np.testing.assert_allclose(getattr(back, k), getattr(ds, k), rtol=1e-6)
    with pytest.raises(DatasetError, match="no local Minari dataset"):
        load_minari("pendulum/missing-v0")


def _chained(lengths=(3, 2, 4), terminated=(True, False, False), obs_dim=3, seed=0):
    """Episodes whose next observations continue into the next row, as a simulator writes them."""
    rng = np.random.default_rng(seed)
    eps = [
        dict(
            observations=rng.normal(size=(t + 1, obs_dim)),
            actions=rng.uniform(-1, 1, (t, 1)),
            rewards=rng.normal(size=t),
            terminated=term,
        )
        for t, term in zip(lengths, terminated, strict=True)
    ]
    return OfflineDataset.from_episodes(eps)


def _write(path, arrays: dict, attrs: dict | None = None):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v
        f["infos/qpos"] = np.zeros((len(arrays["observations"]), 2))  # extra keys as D4RL has them
        f["metadata/algorithm"] = "SAC"
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path


def test_a_published_d4rl_layout_reads_value_by_value(tmp_path):
    """No environment attribute, rewards and flags as float (N, 1) columns, extra groups: read exactly."""
    ds = _chained()
    arrays = ds.as_dict()
    arrays["rewards"] = arrays["rewards"][:, None].astype(np.float64)
    arrays["terminals"] = arrays["terminals"][:, None].astype(np.float32)
    arrays["timeouts"] = arrays["timeouts"].astype(np.float32)
    path = _write(tmp_path / "published.hdf5", arrays)
    plain = load_d4rl(path)
    assert plain.env_id is None
    back = load_dataset(str(path), env_id="Pendulum-v1")
    assert back.env_id == "Pendulum-v1"
    for k in KEYS:
        np.testing.assert_array_equal(getattr(back, k), getattr(ds, k))
    assert back.rewards.shape == (9,) and back.terminals.dtype == bool
    assert back.terminals.tolist() == [False, False, True, False, False, False, False, False, False]
    assert back.timeouts.tolist() == [False, False, False, False, True, False, False, False, True]
    assert back.episode_bounds() == [(0, 3), (3, 5), (5, 9)]
    assert terminal_fraction(back) == pytest.approx(1 / 9)


def test_an_environment_attribute_as_bytes_or_overridden(tmp_path):
    path = _write(tmp_path / "named.hdf5", _chained().as_dict(), {"env_id": np.bytes_(b"Pendulum-v1")})
    assert load_d4rl(path).env_id == "Pendulum-v1"
    path = _write(tmp_path / "d4rl-name.hdf5", _chained().as_dict(), {"env_id": "pendulum-medium-v2"})
    assert load_d4rl(path).env_id == "pendulum-medium-v2"  # unknown names are kept, not checked
    assert load_d4rl(path, env_id="Pendulum-v1").env_id == "Pendulum-v1"


def test_episode_ends_of_a_file_without_timeouts(tmp_path):
    ds = _chained(lengths=(3, 2, 4, 1), terminated=(True, False, False, True))
    arrays = {k: v for k, v in ds.as_dict().items() if k != "timeouts"}
    back = load_d4rl(_write(tmp_path / "old.hdf5", arrays), env_id="Pendulum-v1")
    np.testing.assert_array_equal(back.timeouts, ds.timeouts)  # from where next_observations jump
    np.testing.assert_array_equal(back.terminals, ds.terminals)
    assert back.episode_bounds() == ds.episode_bounds() == [(0, 3), (3, 5), (5, 9), (9, 10)]
    assert back.metadata["inferred_timeouts"] == 2  # the second and third episodes


def test_dimensions_are_checked_as_the_file_is_read(tmp_path):
    path = save_d4rl(_chained(obs_dim=5), tmp_path / "five.hdf5")  # names no environment: read as is
    assert load_d4rl(path).obs_dim == 5
    with pytest.raises(
        DatasetError, match="five.hdf5: the dataset has observation dimension 5 but environment"
    ):
        load_d4rl(path, env_id="Pendulum-v1")
    with pytest.raises(DatasetError, match="action dimension 1 but environment Hopper-v5 has 3"):
        load_dataset(str(save_d4rl(_chained(obs_dim=11), tmp_path / "h.hdf5")), env_id="Hopper-v5")
    assert load_d4rl(path, env_id="Pendulum-v1", check=False).obs_dim == 5
    loud = _chained()
    loud.actions[4] = 2.5  # Pendulum's torque lies in [-2, 2]: these actions are on another scale
    path = save_d4rl(loud, tmp_path / "loud.hdf5")
    with pytest.raises(
        DatasetError, match=r"1 action\(s\) lie outside Pendulum-v1's bounds \[-2, 2\].*row 4"
    ):
        load_d4rl(path, env_id="Pendulum-v1")


def test_flags_and_rewards_that_cannot_be_read(tmp_path):
    arrays = _chained().as_dict()
    with pytest.raises(
        DatasetError, match=r"terminals holds values other than 0 and 1 \(e.g. 2.0, 1 in all\)"
    ):
        load_d4rl(_write(tmp_path / "t.hdf5", {**arrays, "terminals": np.r_[2.0, np.zeros(8)]}))
    with pytest.raises(DatasetError, match=r"rewards must have shape \(N,\) or \(N, 1\), got \(9, 2\)"):
        load_d4rl(_write(tmp_path / "r.hdf5", {**arrays, "rewards": np.zeros((9, 2))}))
    with pytest.raises(DatasetError, match="is a folder"):
        load_d4rl(tmp_path)
