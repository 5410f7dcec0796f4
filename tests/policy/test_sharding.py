"""Sharded synthesis: two torchrun processes give the same synthetic transitions as one; shards resume."""

import numpy as np
import pytest

from steerdiff.policy import ModelConfig, PolicyGuidedPipeline, collect, load_d4rl, make_agent
from steerdiff.policy.cli import main
from steerdiff.policy.data import KEYS
from tests.torchrun import torchrun

TINY = ModelConfig(horizon=6, stride=3, base_channels=8, channel_mults=(1, 2), emb_dim=16, steps=3)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    data = collect("Pendulum-v1", "replay", 120, max_episode_steps=30, seed=0)
    PolicyGuidedPipeline.train(data, TINY, device="cpu").save_pretrained(root / "model")
    make_agent("td3bc", 3, 1, 2.0, hidden=8, env_id="Pendulum-v1").save_pretrained(root / "agent")
    return root


def _same(a, b):
    assert len(a) == len(b) > 0
    for k in KEYS:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)


def test_two_processes_under_torchrun_equal_one(bundles, tmp_path):
    pipe = PolicyGuidedPipeline.from_pretrained(bundles / "model", device="cpu")
    opts = dict(agent=bundles / "agent", coeff=1.0, num_samples=7, steps=3, seed=2)
    single = pipe.synthesize(**opts, shards=tmp_path / "single", chunk_size=3)
    assert len(list((tmp_path / "single" / "shards").glob("chunk-*.safetensors"))) == 3
    _same(single, pipe.synthesize(**opts, shards=tmp_path / "single", chunk_size=3))  # resumed: the same
    argv = ["synthesize", "--model", str(bundles / "model"), "--agent", str(bundles / "agent"), "--coeff", "1",
            "--num-samples", "7", "--steps", "3", "--seed", "2", "--chunk-size", "3", "--device", "cpu",
            "--quiet"]  # fmt: skip
    torchrun("-m", "steerdiff.policy.cli", *argv, "--out", str(tmp_path / "ranks"))
    _same(load_d4rl(tmp_path / "ranks" / "synthetic.hdf5"), single)
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0  # one process through the CLI: the same
    _same(load_d4rl(tmp_path / "one" / "synthetic.hdf5"), single)


def test_shards_of_another_setting_are_not_reused(bundles, tmp_path, capsys):
    argv = ["synthesize", "--model", str(bundles / "model"), "--num-samples", "4", "--steps", "2",
            "--chunk-size", "2", "--device", "cpu", "--quiet", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    assert main([*argv, "--steps", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds shards of another job" in err[0]
