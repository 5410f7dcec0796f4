"""Windows (padded with a mask, or inside episodes), normalisation, transitions, and the dynamics error of real
data."""

import numpy as np
import pytest
import torch

from steerdiff.policy.collect import collect
from steerdiff.policy.data import DatasetError, OfflineDataset
from steerdiff.policy.diffusion import ModelConfig, TrajectoryDiffusion
from steerdiff.policy.envs import identifiable, normalized_score
from steerdiff.policy.evaluation import dynamics_error
from steerdiff.policy.trajectories import Normalizer, to_transitions, window_coverage, windows


def test_normalisation_is_invertible(pendulum):
    norm = Normalizer.fit(pendulum, 2.0)
    assert norm.channels == 3 + 1 + 3 and norm.valid == 6  # obs, action, reward, done, valid
    assert Normalizer.fit(pendulum, 2.0, mask=False).channels == 3 + 1 + 2
    z = norm.encode(
        pendulum.observations, pendulum.actions, pendulum.rewards, pendulum.terminals.astype(float)
    )
    assert abs(float(z.mean())) < 0.2  # roughly z-scored
    back = norm.decode(z, dim=-1)
    np.testing.assert_allclose(back["obs"], pendulum.observations, atol=1e-4)
    inside = np.abs(pendulum.actions[:, 0]) < 0.999 * 2.0
    np.testing.assert_allclose(back["action"][inside], pendulum.actions[inside], atol=1e-3)
    np.testing.assert_allclose(back["reward"], pendulum.rewards, atol=1e-3)
    np.testing.assert_allclose(back["valid"], 1.0, atol=1e-6)
    assert Normalizer.from_json(norm.to_json()) == norm


def test_real_windows_round_trip_to_transitions(pendulum):
    norm = Normalizer.fit(pendulum, 2.0, mask=False)
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
    norm = Normalizer.fit(pendulum, 2.0, mask=False)
    with pytest.raises(DatasetError, match="shorter than the window length 500"):
        windows(pendulum, norm, 500)
    padded = windows(pendulum, Normalizer.fit(pendulum, 2.0), 500, stride=100)  # padding: every episode
    assert padded.shape[1:] == (7, 500)
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


def _short_episodes(lengths=(1, 3, 5), terminated=(True, True, False)):
    """Episodes of the given lengths; states count up (episode i, step t -> 10 i + t), rewards = -state."""
    eps = []
    for i, (t, term) in enumerate(zip(lengths, terminated, strict=True)):
        s = 10.0 * i + np.arange(t + 1.0)
        eps.append(
            dict(observations=s[:, None], actions=np.full((t, 1), 0.5), rewards=-s[:t], terminated=term)
        )
    return OfflineDataset.from_episodes(eps)


def test_padded_windows_value_by_value():
    ds = _short_episodes()
    norm = Normalizer(obs_dim=1, act_dim=1, action_bound=1.0, mean=[0.0] * 5, std=[1.0] * 5, mask=True)
    w = windows(ds, norm, length=4, stride=1)  # identity statistics: the raw rows
    assert w.shape == (3 + 5 + 7, 5, 4)  # T + L - 2 windows per episode: starts -(L - 2) .. T - 1
    obs, act, rew, done, valid = (w[:, c] for c in range(5))
    u = float(np.arctanh(0.5))
    # episode 0: one transition 0 -> 1, terminal; windows start at rows -2, -1, 0
    np.testing.assert_array_equal(obs[0], [0, 0, 0, 1])
    np.testing.assert_array_equal(valid[0], [0, 0, 1, 1])
    np.testing.assert_allclose(act[0], [0, 0, u, 0], atol=1e-6)
    np.testing.assert_array_equal(done[0], [0, 0, 1, 1])  # done is absorbing after a termination
    np.testing.assert_array_equal(obs[2], [0, 1, 1, 1])  # after the final state: padding repeats it
    np.testing.assert_array_equal(valid[2], [1, 1, 0, 0])
    np.testing.assert_array_equal(rew[2], [0, 0, 0, 0])  # reward -state: 0 at state 0, then padding
    np.testing.assert_array_equal(done[2], [1, 1, 1, 1])
    # episode 1 (states 10..13, terminal at its third transition): the window from row 1
    np.testing.assert_array_equal(obs[3 + 3], [11, 12, 13, 13])
    np.testing.assert_array_equal(rew[3 + 3], [-11, -12, 0, 0])
    np.testing.assert_array_equal(done[3 + 3], [0, 1, 1, 1])
    np.testing.assert_array_equal(valid[3 + 3], [1, 1, 1, 0])
    # episode 2 (a time-out, states 20..25): no done anywhere, padding included
    assert float(done[8:].abs().sum()) == 0
    np.testing.assert_array_equal(obs[14], [24, 25, 25, 25])
    np.testing.assert_array_equal(valid[14], [1, 1, 0, 0])
    cov = window_coverage(ds, 4, 1)
    assert cov["windows"] == 15 and cov["transitions_used"] == 9 and cov["fraction"] == 1.0
    assert cov["padding_fraction"] == pytest.approx(float((valid == 0).sum()) / valid.numel())


def test_padded_windows_keep_every_transition_and_the_terminal_rate():
    """Stride 1: every transition lies in exactly L - 1 windows, so the windows turned back into transitions
    hold each real transition L - 1 times and terminals at exactly the data's rate."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, 40)
    ds = _short_episodes(lengths, rng.random(40) < 0.7)
    norm = Normalizer.fit(ds, 1.0)
    for length in (4, 16, 32):
        back = to_transitions(windows(ds, norm, length), norm)
        assert len(back) == (length - 1) * len(ds)
        assert back.terminals.mean() == pytest.approx(ds.terminals.mean(), abs=1e-12)
        assert back.terminals.sum() == (length - 1) * ds.terminals.sum()
        assert np.nanmax(np.abs(back.next_observations - back.observations - 1)) < 1e-3  # chains intact
    # inside episodes only, long windows hold few of these transitions: the coverage says how few
    cov = window_coverage(ds, 32, 8, padded=False)
    assert cov["transitions_used"] == 0 and cov["fraction"] == 0
    cov = window_coverage(ds, 8, 1, padded=False)
    assert cov["transitions_used"] == sum(int(t) for t in lengths if t + 1 >= 8)


def test_generated_padding_is_never_data():
    norm = Normalizer(obs_dim=1, act_dim=1, action_bound=1.0, mean=[0.0] * 5, std=[1.0] * 5, mask=True)
    traj = torch.zeros(2, 5, 6)
    traj[:, 0] = torch.arange(6.0)
    traj[0, 4] = torch.tensor([0, 1, 1, 1, 0, 0.0])  # valid rows 1..3: transitions 1->2, 2->3, a timeout
    traj[1, 4] = 1.0
    traj[1, 3, 2] = 1.0  # a done at transition 2: 0->1, 1->2, 2->3 (terminal); the rest is dropped
    ds = to_transitions(traj, norm)
    np.testing.assert_array_equal(ds.observations[:, 0], [1, 2, 0, 1, 2])
    np.testing.assert_array_equal(ds.next_observations[:, 0], [2, 3, 1, 2, 3])
    assert ds.terminals.tolist() == [False, False, False, False, True]
    assert ds.timeouts.tolist() == [False, True, False, False, False]
    # done absorbing: high on the final row and the padding after it marks the last transition terminal
    absorbed = torch.zeros(2, 5, 6)
    absorbed[:, 0] = torch.arange(6.0)
    absorbed[:, 4, :4] = 1.0  # valid rows 0..3 then padding
    absorbed[0, 3, 3:] = torch.tensor([0.9, 0.8, 1.0])  # terminated after transition 2 -> 3
    absorbed[1, 3, 3:] = torch.tensor([0.1, 0.0, 0.2])  # a time-out
    ds = to_transitions(absorbed, norm)
    assert ds.terminals.tolist() == [False, False, True, False, False, False]
    assert ds.timeouts.tolist() == [False, False, False, False, False, True]
    absorbed[:, 4] = 1.0  # valid to the window's end: a high done on the last row only is not a termination
    absorbed[:, 3] = 0.0
    absorbed[:, 3, 5] = 1.0
    assert not to_transitions(absorbed, norm).terminals.any()
    traj[:, 4] = 0.0
    with pytest.raises(DatasetError, match="every row is padding"):
        to_transitions(traj, norm)


def test_unpadded_windows_that_leave_most_data_out_are_refused():
    ds = _short_episodes(np.full(30, 14), [True] * 30)
    ds.env_id = None
    cfg = ModelConfig(horizon=32, stride=8, padding="none", steps=1)
    with pytest.raises(
        DatasetError, match=r"hold only 0.0% of the 420 transitions.*at most 15, or lower min_coverage"
    ):
        TrajectoryDiffusion.fit(ds, cfg, action_bound=1.0, progress=False, device="cpu")
    ok = TrajectoryDiffusion.fit(
        ds, ModelConfig(**{**cfg.__dict__, "horizon": 15}), action_bound=1.0, device="cpu"
    )
    assert ok.coverage["fraction"] == 1.0 and ok.coverage["windows"] == 30
    low = ModelConfig(**{**cfg.__dict__, "horizon": 12, "min_coverage": 0.0})  # one window of 11 transitions
    assert TrajectoryDiffusion.fit(ds, low, action_bound=1.0, device="cpu").coverage["fraction"] == 11 / 14
    with pytest.raises(DatasetError, match="hold only 78.6%"):
        TrajectoryDiffusion.fit(ds, ModelConfig(**{**low.__dict__, "min_coverage": 0.9}), action_bound=1.0)
    with pytest.raises(ValueError, match="padding must be one of"):
        TrajectoryDiffusion.fit(ds, ModelConfig(padding="zeros"), action_bound=1.0, device="cpu")


def test_episode_windows_for_plots_take_the_longest_episodes():
    from steerdiff.policy import episode_windows

    ds = _short_episodes((1, 5, 3, 1), (True,) * 4)  # states: 10 i + t
    w = episode_windows(ds, max_windows=2)
    np.testing.assert_array_equal(w[..., 0], [[10, 11, 12], [20, 21, 22]])
