"""Solves sharded over two torchrun processes equal one process, and a finished run is read back."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.inverse.shard_worker import run
from tests.torchrun import torchrun

HERE = Path(__file__).parent


def test_two_processes_under_torchrun_equal_one(tmp_path):
    single = run(tmp_path / "single")
    assert single["enkg_ensemble"].shape == (5, 4, 1, 8, 8) and single["eki_estimate"].shape == (5, 1, 8, 8)
    assert int(single["eki_forward_evals"]) == 5 * 4 * (
        3 + 1
    )  # 3 iterations + the initial ensemble, all chunks
    torchrun(str(HERE / "shard_worker.py"), str(tmp_path / "ranks"))
    merged = load_file(str(tmp_path / "ranks" / "merged.safetensors"))
    for name, value in single.items():
        assert torch.equal(merged[name], value), name
    assert len(list((tmp_path / "ranks" / "enkg" / "shards").glob("chunk-*.safetensors"))) == 3


def test_a_finished_sharded_solve_is_read_back_not_solved_again(tmp_path):
    first = run(tmp_path)
    shard = tmp_path / "smc" / "shards" / "chunk-000002.safetensors"
    stamp = shard.stat().st_mtime_ns
    again = run(tmp_path)
    assert shard.stat().st_mtime_ns == stamp
    for name, value in first.items():
        assert torch.equal(again[name], value), name


def test_the_cli_solves_in_resumable_chunks(tmp_path):
    import numpy as np

    from steerdiff.inverse.cli import main

    from .cli_cases import tiny_dataset, tiny_prior

    prior, data = tiny_prior(tmp_path / "prior"), tiny_dataset(tmp_path / "data")
    argv = ["solve", "--data", str(data), "--prior", str(prior), "--method", "enkg", "--num-samples", "4"]
    argv += [
        "--steps",
        "3",
        "--num-fields",
        "2",
        "--chunk-size",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "s"),
    ]
    assert main(argv) == 0
    assert len(list((tmp_path / "s" / "solve" / "shards").glob("chunk-*.safetensors"))) == 2
    first = np.load(tmp_path / "s" / "ensemble.npy")
    assert first.shape == (2, 4, 1, 8, 8)
    assert main(argv) == 0  # the finished chunks are read back
    np.testing.assert_array_equal(np.load(tmp_path / "s" / "ensemble.npy"), first)
