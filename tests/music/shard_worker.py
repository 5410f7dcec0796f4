"""Sharded generation (unguided, SCG with one target per piece, SMC) on a tiny model; alone or under torchrun."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from steerdiff.music import MusicPipeline, RollConfig, get_rule


def run(out: Path) -> dict:
    pipe = MusicPipeline.untrained(RollConfig(steps_per_beat=2), bars=1, channels=8, seed=0)
    size = get_rule("note_density", pipe.roll).size(pipe.length)
    density = torch.linspace(0.5, 3.0, 5)[:, None].expand(5, size)  # one target per piece
    opts = {"num_samples": 5, "steps": 3, "seed": 5, "chunk_size": 2}
    result = {}
    for method in ("unguided", "scg", "smc"):
        rules = None if method == "unguided" else {"note_density": density}
        gen = pipe.generate(targets=rules, method=method, n=3, shards=out / method, **opts)
        if gen is not None:  # rank 0
            result[method] = gen.x
            result[f"{method}_nfe"] = torch.tensor([gen.costs.network_evals])
    return result


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    merged = run(folder)
    if merged:
        save_file({k: v.contiguous() for k, v in merged.items()}, str(folder / "merged.safetensors"))
