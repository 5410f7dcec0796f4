"""Forecast, impute, refine and synthesize sharded over two torchrun processes equal one process."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.timeseries.shard_worker import run
from tests.torchrun import torchrun

HERE = Path(__file__).parent


def test_two_processes_under_torchrun_equal_one(tmp_path):
    single = run(tmp_path / "single")
    assert single["forecast"].shape == (6, 3, 6) and single["impute"].shape == (6, 3, 30)
    assert single["refine"].shape == (6, 3, 6) and single["synthesize"].shape == (5, 1, 30)
    torchrun(str(HERE / "shard_worker.py"), str(tmp_path / "ranks"))
    merged = load_file(str(tmp_path / "ranks" / "merged.safetensors"))
    for name, value in single.items():
        assert torch.equal(merged[name], value), name
    assert len(list((tmp_path / "ranks" / "forecast" / "shards").glob("chunk-*.safetensors"))) == 3


def test_a_finished_sharded_run_is_read_back_not_sampled_again(tmp_path):
    first = run(tmp_path)
    shard = tmp_path / "forecast" / "shards" / "chunk-000000.safetensors"
    stamp = shard.stat().st_mtime_ns
    again = run(tmp_path)
    assert shard.stat().st_mtime_ns == stamp
    for name, value in first.items():
        assert torch.equal(again[name], value), name


def test_the_cli_samples_in_resumable_chunks(tmp_path):
    import numpy as np

    from steerdiff.timeseries import synthetic_series
    from steerdiff.timeseries.cli import main

    from .cli_cases import tiny_bundle, write_csv

    series = synthetic_series(2, 120, "H", seed=0)
    csv = write_csv(tmp_path / "y.csv", series)
    model = tiny_bundle(tmp_path / "model", series)
    argv = ["forecast", "--model", str(model), "--data", str(csv), "--num-samples", "2", "--steps", "2"]
    argv += ["--chunk-size", "3", "--quiet", "--out", str(tmp_path / "f")]
    assert main(argv) == 0
    assert len(list((tmp_path / "f" / "forecast" / "shards").glob("chunk-*.safetensors"))) == 2
    with np.load(tmp_path / "f" / "forecast.npz") as z:
        first = z["samples"]
    assert main(argv) == 0  # the finished chunks are read back
    with np.load(tmp_path / "f" / "forecast.npz") as z:
        np.testing.assert_array_equal(z["samples"], first)
    assert first.shape == (4, 2, 6)
