"""Worker for test_sharding.py: ``torchrun --standalone --nproc_per_node=2 shard_worker.py OUT``.

Draws 10 samples of an exact 2-D Gaussian prior with DDPM, in chunks of 3, sharded over the ranks; rank 0
writes the merged samples to OUT/merged.safetensors. ``job`` is the same job a single process runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from steerdiff.core import EDM, gaussian, sample, sigma_grid
from steerdiff.core.sharding import sample_in_shards

PRIOR = gaussian([1.0, -1.0], 0.5)
SIGMAS = sigma_grid(EDM(), 8)


def job(start, stop, generator):
    x = SIGMAS[0] * torch.randn(stop - start, 2, generator=generator)
    out = sample(PRIOR, x, SIGMAS, "ddpm", generator=generator)
    return {"samples": out.x, "index": torch.arange(start, stop)}


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    merged = sample_in_shards(job, 10, out, chunk_size=3, seed=4)
    if merged is not None:
        save_file(merged, str(out / "merged.safetensors"))
