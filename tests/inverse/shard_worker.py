"""Sharded solves (EnKG, SMC, EKI) of a tiny linear problem; run alone or under torchrun."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from steerdiff.core import Denoiser
from steerdiff.inverse import FieldPrior, InversePipeline, LinearProblem, PriorConfig
from steerdiff.inverse.prior import build_prior_network


def run(out: Path) -> dict:
    torch.manual_seed(0)  # the same untrained weights in every process
    net = build_prior_network(PriorConfig(base_channels=8, channel_mults=(1,)))
    prior = FieldPrior(Denoiser(net, "edm"), scale=2.0, info={"field_shape": [1, 8, 8]})
    problem = LinearProblem(size=8, stride=2, noise_std=0.1)
    truth = problem.sample_fields(5, torch.Generator().manual_seed(1))
    y = problem.forward(truth)
    pipe = InversePipeline(prior, problem, device="cpu")
    result = {}
    for method in ("enkg", "smc", "eki"):
        opts = {"particles": 4, "steps": 4, "iterations": 3, "seed": 5, "chunk_size": 2}
        sol = pipe.solve(y, method=method, shards=out / method, **opts)
        if sol is not None:  # rank 0
            result[f"{method}_estimate"] = sol.estimate
            result[f"{method}_ensemble"] = sol.ensemble
            result[f"{method}_forward_evals"] = torch.tensor([sol.costs["forward_evals"]])
    return result


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    merged = run(folder)
    if merged:
        save_file({k: v.contiguous() for k, v in merged.items()}, str(folder / "merged.safetensors"))
