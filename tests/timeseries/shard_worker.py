"""Sharded forecast / impute / refine / synthesize on a tiny model; run alone or under torchrun."""

import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from steerdiff.timeseries import DataSplit, TSDiff, TSDiffConfig, TSDiffPipeline, synthetic_series


def tiny():
    torch.manual_seed(0)  # the same untrained weights in every process
    series = synthetic_series(2, 120, "H", seed=0)
    config = TSDiffConfig(24, 6, lags=(), freq="H", hidden_channels=4, num_blocks=1, d_state=4, emb_dim=8)
    pipe = TSDiffPipeline(TSDiff(config, split=DataSplit.of(series, 6, 3)))
    _, test = pipe.split(series)
    return pipe, test


def run(out: Path) -> dict:
    pipe, test = tiny()
    opts = {"num_samples": 3, "num_steps": 3, "seed": 5, "chunk_size": 2}
    gappy = torch.cat([test.history, test.future], 1)
    gappy[:, 10:14] = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model's forecasts leave their range
        return {
            "forecast": pipe.forecast(test.history, shards=out / "forecast", **opts),
            "impute": pipe.impute(gappy, shards=out / "impute", **opts),
            "refine": pipe.refine(
                test.history,
                "seasonal_naive",
                steps=2,
                shards=out / "refine",
                num_samples=3,
                seed=5,
                chunk_size=2,
            ),
            "synthesize": pipe.synthesize(5, num_steps=3, shards=out / "synthesize", seed=5, chunk_size=2),
        }


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    result = run(folder)
    if all(v is not None for v in result.values()):  # rank 0
        save_file({k: v.contiguous() for k, v in result.items()}, str(folder / "merged.safetensors"))
