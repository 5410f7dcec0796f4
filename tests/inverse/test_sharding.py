"""Solves sharded over two torchrun processes equal one process, and a finished run is read back."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from shard_worker import run  # noqa: E402


def test_two_processes_under_torchrun_equal_one(tmp_path):
    single = run(tmp_path / "single")
    assert single["enkg_ensemble"].shape == (5, 4, 1, 8, 8) and single["eki_estimate"].shape == (5, 1, 8, 8)
    assert int(single["eki_forward_evals"]) == 5 * 4 * (
        3 + 1
    )  # 3 iterations + the initial ensemble, all chunks
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(HERE / "shard_worker.py"), str(tmp_path / "ranks")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
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
