"""Worker for test_training.py's DDP test: ``torchrun --standalone --nproc_per_node=2 ddp_worker.py OUT``.

Trains a small MLP denoiser for 30 steps on a 2-D Gaussian mixture (gloo on CPU) and writes this rank's
final weights and EMA weights to OUT/rank{RANK}.safetensors and its loss history to OUT/rank{RANK}.json.
``run(out)`` without torchrun is the single-process reference of the same run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from steerdiff.core.analytic import GaussianMixture
from steerdiff.core.denoiser import Denoiser
from steerdiff.core.nets import build_network
from steerdiff.core.training import TrainConfig, train

MEANS = [[2.0, 2.0], [2.0, -2.0], [-2.0, 2.0], [-2.0, -2.0]]


def run(out: Path) -> None:
    torch.set_num_threads(1)
    data = (
        GaussianMixture(torch.ones(4), MEANS, torch.full((4,), 0.01))
        .sample(1024, torch.Generator().manual_seed(0))
        .float()
    )
    torch.manual_seed(int(os.environ.get("RANK", "0")))  # another init per rank: DDP must broadcast rank 0's
    net = build_network("mlp", dim=2, hidden=64, depth=2, emb_dim=32)
    denoiser = Denoiser(net, "edm", sigma_data=2.0)
    config = TrainConfig(steps=30, batch_size=128, lr=3e-3, ema_decay=0.9, checkpoint_every=10, seed=3)
    result = train(denoiser, "edm", data, config, out_dir=out / "run", progress=False)
    rank = int(os.environ.get("RANK", "0"))
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in result.ema.net.state_dict().items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps({"losses": result.losses, "step": result.step}))


if __name__ == "__main__":
    run(Path(sys.argv[1]))
