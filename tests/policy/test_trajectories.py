"""Windows, normalisation, transitions, and the dynamics error of real data."""

import numpy as np
import pytest
import torch

from steerdiff.policy.collect import collect
from steerdiff.policy.data import DatasetError
from steerdiff.policy.envs import identifiable, normalized_score
from steerdiff.policy.evaluation import dynamics_error
from steerdiff.policy.trajectories import Normalizer, to_transitions, windows


def test_normalisation_is_invertible(pendulum):
    norm = Normalizer.fit(pendulum, 2.0)
    assert norm.channels == 3 + 1 + 2
    z = norm.encode(
        pendulum.observations, pendulum.actions, pendulum.rewards, pendulum.terminals.astype(float)
    )
    assert abs(float(z.mean())) < 0.2  # roughly z-scored
    back = norm.decode(z, dim=-1)
    np.testing.assert_allclose(back["obs"], pendulum.observations, atol=1e-4)
    inside = np.abs(pendulum.actions[:, 0]) < 0.999 * 2.0
    np.testing.assert_allclose(back["action"][inside], pendulum.actions[inside], atol=1e-3)
    np.testing.assert_allclose(back["reward"], pendulum.rewards, atol=1e-3)
    assert Normalizer.from_json(norm.to_json()) == norm


def test_real_windows_round_trip_to_transitions(pendulum):
    norm = Normalizer.fit(pendulum, 2.0)
    w = windows(pendulum, norm, length=8, stride=8)
    assert w.shape[1:] == (6, 8)
    trans = to_transitions(w, norm, "Pendulum-v1")
    assert len(trans) == 7 * len(w)
    # every generated-from-real transition is a real one: zero dynamics error
    assert np.nanmax(dynamics_error(trans)) < 1e-6
    first = pendulum.episode_bounds()[0][0]
    np.testing.assert_allclose(trans.observations[:7], pendulum.observations[first : first + 7], atol=1e-4)


def test_a_generated_done_ends_the_window():
    norm = Normalizer(obs_dim=1, act_dim=1, action_bound=1.0, mean=[0.0] * 4, std=[1.0] * 4)
    traj = torch.zeros(1, 4, 5)
    traj[0, 3, 1] = 1.0  # done at transition 1
    ds = to_transitions(traj, norm)
    assert len(ds) == 2 and ds.terminals.tolist() == [False, True]
    with pytest.raises(ValueError, match=r"shape \(B, 4, L\)"):
        to_transitions(torch.zeros(1, 5, 5), norm)


def test_windows_longer_than_every_episode(pendulum):
    norm = Normalizer.fit(pendulum, 2.0)
    with pytest.raises(DatasetError, match="shorter than the window length 500"):
        windows(pendulum, norm, 500)
    bad = Normalizer(obs_dim=4, act_dim=1, action_bound=2.0, mean=[0.0] * 7, std=[1.0] * 7)
    with pytest.raises(DatasetError, match="observation dimension 3 but"):
        windows(pendulum, bad, 8)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"])
def test_real_transitions_have_zero_dynamics_error(env_id):
    ds = collect(env_id, "replay", 150, max_episode_steps=50, seed=3)
    err = dynamics_error(ds)
    ok = identifiable(env_id, ds.observations)
    assert ok.sum() > 30
    assert np.all(err[ok] < 1e-8) and np.all(np.isnan(err[~ok]))
    with pytest.raises(DatasetError, match="observation dimension"):
        dynamics_error(ds, "Pendulum-v1" if env_id != "Pendulum-v1" else "Hopper-v5")


def test_normalized_scores():
    assert normalized_score("Pendulum-v1", [1.0]) is None
    np.testing.assert_allclose(normalized_score("Hopper-v5", [-20.272305, 3234.3]), [0.0, 100.0])
