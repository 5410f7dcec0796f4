"""Bundles through the public API: a trained model saved, loaded in a fresh process, samples the same; a cut
or corrupt bundle is refused with a clear message (and the CLI exits 2 with one line)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from steerdiff.core import BundleError
from steerdiff.policy import ModelConfig, PolicyGuidedPipeline, collect, load_agent, make_agent, train_agent
from steerdiff.policy.cli import main

TINY = ModelConfig(
    horizon=8, stride=4, base_channels=8, channel_mults=(1, 2), emb_dim=16, steps=10, batch_size=32
)

FRESH = """
import sys, numpy as np
from steerdiff.policy import PolicyGuidedPipeline, load_agent
pipe = PolicyGuidedPipeline.from_pretrained(sys.argv[1], device="cpu")
agent = load_agent(sys.argv[2], device="cpu")
ds = pipe.synthesize(agent=agent, coeff=1.0, num_samples=3, steps=4, seed=5)
np.save(sys.argv[3], np.concatenate([ds.observations, ds.actions, ds.next_observations], 1))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    data = collect("Pendulum-v1", "replay", 200, max_episode_steps=50, seed=0)
    pipe = PolicyGuidedPipeline.train(data, TINY, device="cpu")
    pipe.save_pretrained(root / "model")
    agent = make_agent(
        "td3bc",
        3,
        1,
        2.0,
        data.observations.mean(0),
        data.observations.std(0),
        hidden=16,
        env_id="Pendulum-v1",
    )
    train_agent(agent, data, 10, batch_size=32)
    agent.save_pretrained(root / "agent")
    return root, pipe, agent


def _rows(ds):
    return np.concatenate([ds.observations, ds.actions, ds.next_observations], 1)


def test_round_trip_in_a_fresh_process(trained, tmp_path):
    root, pipe, agent = trained
    here = _rows(pipe.synthesize(agent=agent, coeff=1.0, num_samples=3, steps=4, seed=5))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", FRESH, str(root / "model"), str(root / "agent"), str(tmp_path / "x.npy")],
        check=True,
        env=env,
        timeout=120,
    )
    there = np.load(tmp_path / "x.npy")
    assert there.shape == here.shape and np.abs(there - here).max() <= 1e-6
    # the same seed gives the same samples in this process too; the agent bundle loads back alike
    again = PolicyGuidedPipeline.from_pretrained(root / "model", device="cpu")
    np.testing.assert_array_equal(
        _rows(again.synthesize(agent=root / "agent", num_samples=3, steps=4, seed=5)), here
    )
    cfg = json.loads((root / "model" / "config.json").read_text())["domain"]
    assert cfg["name"] == "policy" and cfg["kind"] == "trajectory" and cfg["env_id"] == "Pendulum-v1"
    assert (cfg["obs_dim"], cfg["act_dim"], cfg["horizon"]) == (3, 1, 8) and len(
        cfg["normalizer"]["mean"]
    ) == 7
    assert cfg["normalizer"]["mask"] and cfg["training"]["padding"] == "mask"


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_cut_or_corrupt_bundle_is_refused(trained, tmp_path, capsys):
    root, _, _ = trained
    cut = _copy(root / "model", tmp_path / "cut")
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(BundleError, match="model.safetensors"):
        PolicyGuidedPipeline.from_pretrained(cut, device="cpu")
    no_config = _copy(root / "agent", tmp_path / "noconfig")
    (no_config / "config.json").unlink()
    with pytest.raises(BundleError, match="no config.json"):
        load_agent(no_config)
    for argv in (
        ["synthesize", "--model", str(cut), "--out", str(tmp_path / "s")],
        [
            "synthesize",
            "--model",
            str(root / "model"),
            "--agent",
            str(no_config),
            "--out",
            str(tmp_path / "s"),
        ],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "s" / "synthetic.hdf5").exists()


def test_an_agent_of_another_environment_is_refused(trained):
    root, pipe, _ = trained
    other = make_agent("iql", 11, 3, 1.0, hidden=8, env_id="Hopper-v5")
    with pytest.raises(ValueError, match=r"observation/action dimensions \(11, 3\)"):
        pipe.synthesize(agent=other, num_samples=2, steps=2)
    assert torch.equal(pipe.model.normalizer.action_to_channel(torch.zeros(1)), torch.zeros(1))


def test_a_bundle_without_a_mask_channel_still_loads_and_samples(tmp_path):
    """Models trained on windows inside episodes (no valid channel) load as such and sample transitions."""
    data = collect("Pendulum-v1", "replay", 120, max_episode_steps=40, seed=1)
    cfg = ModelConfig(**{**TINY.__dict__, "padding": "none", "steps": 2})
    PolicyGuidedPipeline.train(data, cfg, device="cpu").save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    assert config["domain"]["normalizer"].pop("mask") is False
    del config["domain"]["training"]["padding"]  # as bundles without padding settings are written
    path.write_text(json.dumps(config))
    pipe = PolicyGuidedPipeline.from_pretrained(tmp_path / "m", device="cpu")
    assert pipe.normalizer.channels == 3 + 1 + 2 and pipe.model.config.padding == "none"
    assert len(pipe.synthesize(num_samples=2, steps=2)) == 2 * 7
