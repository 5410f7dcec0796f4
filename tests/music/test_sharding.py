"""Generation sharded over two torchrun processes equals one process, and a finished run is read back."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steerdiff.music import MusicPipeline, RollConfig
from tests.music.shard_worker import run
from tests.torchrun import torchrun

HERE = Path(__file__).parent


def test_two_processes_under_torchrun_equal_one(tmp_path):
    single = run(tmp_path / "single")
    assert single["scg"].shape == (5, *single["unguided"].shape[1:])
    assert int(single["unguided_nfe"]) == 5 * 3 and int(single["smc_nfe"]) == 5 * 3 * 3  # costs add up
    torchrun(str(HERE / "shard_worker.py"), str(tmp_path / "ranks"))
    merged = load_file(str(tmp_path / "ranks" / "merged.safetensors"))
    for name, value in single.items():
        assert torch.equal(merged[name], value), name
    assert len(list((tmp_path / "ranks" / "scg" / "shards").glob("chunk-*.safetensors"))) == 3


def test_chunks_follow_their_own_targets_and_a_finished_run_is_read_back(tmp_path):
    first = run(tmp_path)
    shard = tmp_path / "scg" / "shards" / "chunk-000001.safetensors"
    stamp = shard.stat().st_mtime_ns
    assert all(torch.equal(v, first[k]) for k, v in run(tmp_path).items())
    assert shard.stat().st_mtime_ns == stamp
    pipe = MusicPipeline.untrained(RollConfig(steps_per_beat=2), bars=1, channels=8, seed=0)
    other = torch.full((5, 2), 2.0)  # another target: the shards of the first run are not reused
    with pytest.raises(ValueError, match="holds shards of another job"):
        pipe.generate(
            targets={"note_density": other},
            method="scg",
            n=3,
            steps=3,
            num_samples=5,
            seed=5,
            chunk_size=2,
            shards=tmp_path / "scg",
        )
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        pipe.generate(num_samples=2, steps=2, chunk_size=0, shards=tmp_path / "bad")


def test_the_cli_generates_in_resumable_chunks(tmp_path):
    import numpy as np

    from steerdiff.music.cli import main

    from .cli_cases import tiny_bundle

    model = tiny_bundle(tmp_path / "model")
    argv = ["generate", "--model", str(model), "--num-samples", "3", "--steps", "2", "--chunk-size", "2"]
    argv += [
        "--density",
        "1.5,2",
        "--method",
        "scg",
        "--candidates",
        "2",
        "--quiet",
        "--out",
        str(tmp_path / "g"),
    ]
    assert main(argv) == 0
    assert len(list((tmp_path / "g" / "generate" / "shards").glob("chunk-*.safetensors"))) == 2
    with np.load(tmp_path / "g" / "samples.npz") as z:
        first = {k: z[k] for k in z.files}
    assert main(argv) == 0  # the finished chunks are read back
    with np.load(tmp_path / "g" / "samples.npz") as z:
        for k in z.files:
            np.testing.assert_array_equal(z[k], first[k])
