"""Sharded sampling: two torchrun processes equal one, a killed run resumes, bad jobs are refused."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steerdiff.core.sharding import sample_in_shards
from tests.core.shard_worker import job
from tests.torchrun import torchrun

HERE = Path(__file__).parent


def test_two_processes_under_torchrun_equal_one(tmp_path):
    single = sample_in_shards(job, 10, tmp_path / "single", chunk_size=3, seed=4)
    torchrun(str(HERE / "shard_worker.py"), str(tmp_path / "ranks"))
    merged = load_file(str(tmp_path / "ranks" / "merged.safetensors"))
    assert torch.equal(merged["index"], torch.arange(10))
    assert torch.equal(merged["samples"], single["samples"])
    assert len(list((tmp_path / "ranks" / "shards").glob("chunk-*.safetensors"))) == 4


def test_a_killed_run_resumes_from_the_finished_chunks(tmp_path):
    calls = []

    def dying(start, stop, generator):
        if start >= 6:
            raise KeyboardInterrupt  # the run is stopped during the third chunk
        calls.append(start)
        return job(start, stop, generator)

    with pytest.raises(KeyboardInterrupt):
        sample_in_shards(dying, 10, tmp_path, chunk_size=3, seed=4)
    assert calls == [0, 3]

    def counting(start, stop, generator):
        calls.append(start)
        return job(start, stop, generator)

    resumed = sample_in_shards(counting, 10, tmp_path, chunk_size=3, seed=4)
    assert calls == [0, 3, 6, 9]  # only the unfinished chunks ran again
    fresh = sample_in_shards(job, 10, tmp_path / "fresh", chunk_size=3, seed=4)
    assert torch.equal(resumed["samples"], fresh["samples"])
    (tmp_path / "shards" / "chunk-000001.safetensors").write_bytes(b"cut")  # a damaged shard is redone
    again = sample_in_shards(counting, 10, tmp_path, chunk_size=3, seed=4)
    assert calls[-1] == 3 and torch.equal(again["samples"], fresh["samples"])


def test_another_job_in_the_same_folder_and_bad_outputs_are_refused(tmp_path):
    sample_in_shards(job, 10, tmp_path, chunk_size=3, seed=4)
    with pytest.raises(ValueError, match="shards of another job"):
        sample_in_shards(job, 10, tmp_path, chunk_size=3, seed=5)
    with pytest.raises(ValueError, match="one row per item"):
        sample_in_shards(lambda a, b, g: torch.zeros(1, 2), 4, tmp_path / "bad", chunk_size=2)
    with pytest.raises(ValueError, match="positive"):
        sample_in_shards(job, 0, tmp_path / "none")
    tensor = sample_in_shards(lambda a, b, g: torch.arange(a, b), 5, tmp_path / "plain", chunk_size=2)
    assert torch.equal(tensor, torch.arange(5))
