import pytest
import torch

from steerdiff.music.data import synthetic_pieces, windows
from steerdiff.music.roll import RollConfig


@pytest.fixture(scope="session")
def cfg():
    return RollConfig(steps_per_beat=2, pitch_low=36, num_pitches=48)


@pytest.fixture(scope="session")
def train_windows(cfg):
    return windows(synthetic_pieces(cfg, 16, 8, seed=0), 32, transpose=range(-2, 3))


def hand_roll(cfg, notes, steps):
    """Model-space roll (1, C, P, steps) from (pitch, start, end) triples."""
    x = -torch.ones(1, cfg.num_channels, cfg.num_pitches, steps)
    for p, s, e in notes:
        x[0, 0, p - cfg.pitch_low, s] = 1
        x[0, 1, p - cfg.pitch_low, s:e] = 1
    return x
