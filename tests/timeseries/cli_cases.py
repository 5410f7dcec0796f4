"""User errors of ``steerdiff-timeseries``: argv (without the program name) and a lowercase fragment of the
one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from steerdiff.timeseries import DataSplit, TSDiff, TSDiffConfig, synthetic_series

TINY = {"hidden_channels": 4, "num_blocks": 1, "d_state": 4, "emb_dim": 8}


def tiny_bundle(folder: Path, series) -> Path:
    """An untrained bundle of a tiny model on ``series`` (24 + 6 points, no lags, 2 test windows)."""
    torch.manual_seed(0)
    config = TSDiffConfig(24, 6, lags=(), freq=str(series[0].freq), **TINY)
    TSDiff(config, split=DataSplit.of(series, 6, 2, source=None)).save_pretrained(folder)
    return folder


def write_csv(path: Path, series) -> Path:
    pd.DataFrame({s.item_id: s.target for s in series}, index=series[0].index()).rename_axis(
        "ts"
    ).reset_index().to_csv(path, index=False)
    return path


def user_errors(tmp_path) -> list[tuple[list[str], str]]:
    tmp_path = Path(tmp_path)
    series = synthetic_series(2, 120, "H", seed=0)
    csv = write_csv(tmp_path / "y.csv", series)
    model = tiny_bundle(tmp_path / "model", series)
    corrupt = tiny_bundle(tmp_path / "corrupt", series)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # cut mid-write
    no_config = tiny_bundle(tmp_path / "no_config", series)
    (no_config / "config.json").unlink()
    write_csv(tmp_path / "short.csv", synthetic_series(2, 20, "H", seed=0))
    write_csv(tmp_path / "daily.csv", synthetic_series(2, 120, "D", seed=0))
    np.save(tmp_path / "base.npy", np.ones((3, 2, 6)))  # 3 windows, but the model's split gives 4
    (tmp_path / "bad.jsonl").write_text('{"start": "2020-01-01", "target": [1, 2, 3]\n')
    old = tmp_path / "old_model"  # the 0.1 format: tsdiff.json beside checkpoint/
    old.mkdir()
    (old / "tsdiff.json").write_text(json.dumps({"context_length": 24, "prediction_length": 6}))
    bare = tmp_path / "bare.csv"  # the layout of published benchmark files: numbers only
    bare.write_text(
        "\n".join(",".join(f"{v:.6f}" for v in row) for row in np.stack([s.target for s in series], 1))
    )
    other = synthetic_series(2, 120, "H", seed=1)  # same ids and shape, other values
    write_csv(tmp_path / "other.csv", other)
    hole = tmp_path / "hole.csv"
    hole.write_text("a,b\n1,2\n,3\n4,5\n")
    out = ["--out", str(tmp_path / "out")]
    m = ["--model", str(model)]
    return [
        # your own files: every malformed layout names its fix
        (["data", "--data", str(bare), *out], "give --freq"),
        (["data", "--data", str(bare), "--freq", "H", "--header", "yes", *out], "looks like data"),
        (["data", "--data", str(csv), "--header", "no", *out], "looks like column names"),
        (["data", "--data", str(hole), "--freq", "D", *out], "inside the series"),
        (["data", "--data", str(csv), "--start", "2020-01-01", *out], "drop --start"),
        (["data", "--data", str(tmp_path / "bare.txt.gz"), "--freq", "H", *out], "does not exist"),
        (["train", "--data", str(csv), "--freq", "D", *out], "do not step by one"),
        # the bundle's split is enforced: no window the model was trained on is scored
        (["forecast", *m, "--data", str(csv), "--test-windows", "3", *out], "trained on"),
        (["evaluate", *m, "--data", str(csv), "--test-windows", "5", *out], "trained on"),
        (
            ["forecast", *m, "--data", str(tmp_path / "other.csv"), *out],
            "not the data the model was trained on",
        ),
        (["evaluate", *m, "--data", str(csv), "--methods", "tsdiff_q,arima", *out], "--methods"),
        (["train", "--data", str(csv), "--validation-windows", "0", *out], "--scaling auto"),
        # missing paths
        (["forecast", "--model", str(tmp_path / "nowhere"), *out], "does not exist"),
        (["train", "--data", str(tmp_path / "missing.csv"), *out], "does not exist"),
        (["refine", *m, "--data", str(csv), "--base", str(tmp_path / "missing.npy"), *out], "no such file"),
        (["forecast", "--model", str(tmp_path / "y.csv"), *out], "is a file"),
        # wrong types
        (["forecast", *m, "--num-samples", "many", *out], "not a positive integer"),
        (["train", "--data", str(csv), "--lr", "fast", *out], "not a positive number"),
        (["train", "--data", str(csv), "--lags", "a,b", *out], "--lags"),
        # out-of-range values
        (["forecast", *m, "--steps", "0", *out], "not a positive integer"),
        (["forecast", *m, "--scale", "-1", *out], "not a number >= 0"),
        (["forecast", *m, "--solver", "rk45", *out], "invalid choice"),
        (["impute", *m, "--data", str(csv), "--k", "24", *out], "below the context length"),
        (["forecast", *m, "--device", "tpu", *out], "unknown device"),
        # corrupt or foreign bundles
        (["forecast", "--model", str(corrupt), "--data", str(csv), *out], "model.safetensors"),
        (["forecast", "--model", str(no_config), "--data", str(csv), *out], "no config.json"),
        (["forecast", "--model", str(old), "--data", str(csv), *out], "train the model again"),
        # data or files whose shapes do not fit
        (["forecast", *m, "--data", str(tmp_path / "short.csv"), *out], "shorter than"),
        (["forecast", *m, "--data", str(tmp_path / "daily.csv"), *out], "frequency"),
        (
            ["refine", *m, "--data", str(csv), "--base", str(tmp_path / "base.npy"), *out],
            "has shape (3, 2, 6)",
        ),
        (["train", "--data", str(tmp_path / "bad.jsonl"), *out], "not json"),
        (["train", "--data", str(csv), "--context", "200", *out], "shorter than"),
    ]
