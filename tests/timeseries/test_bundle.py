"""Model bundles: train through the public API, save, load in a fresh process, same samples; bad bundles."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from steerdiff.core import BundleError, TrainConfig
from steerdiff.timeseries import TSDiffConfig, TSDiffPipeline, synthetic_series
from steerdiff.timeseries.cli import main

TINY = {"hidden_channels": 8, "num_blocks": 1, "d_state": 8, "emb_dim": 16}

LOAD_AND_FORECAST = """
import sys
import numpy as np
from steerdiff.timeseries import TSDiffPipeline, synthetic_series

pipe = TSDiffPipeline.from_pretrained(sys.argv[1], device="cpu")
_, test = pipe.split(synthetic_series(2, 150, "H", seed=0))
np.save(sys.argv[2], pipe.forecast(test.history, num_samples=4, num_steps=5, seed=3).numpy())
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    series = synthetic_series(2, 150, "H", seed=0)
    config = TSDiffConfig(24, 6, lags=(12,), freq="H", scaling="standard", **TINY)
    pipe = TSDiffPipeline.train(
        series,
        config,
        TrainConfig(steps=20, batch_size=16, checkpoint_every=0),
        test_windows=2,
        seed=0,
        device="cpu",
        source="synthetic",
    )
    path = pipe.save_pretrained(tmp_path_factory.mktemp("bundle") / "model")
    return pipe, series, path


def test_round_trip_in_a_fresh_process_gives_the_same_samples(trained, tmp_path):
    pipe, series, path = trained
    _, test = pipe.split(series)
    here = pipe.forecast(test.history, num_samples=4, num_steps=5, seed=3).numpy()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", LOAD_AND_FORECAST, str(path), str(tmp_path / "there.npy")],
        check=True,
        env=env,
        timeout=120,
    )
    there = np.load(tmp_path / "there.npy")
    assert here.shape == there.shape == (4, 4, 6)
    assert np.abs(here - there).max() <= 1e-6


def test_the_bundle_keeps_window_backbone_and_split(trained):
    pipe, series, path = trained
    loaded = TSDiffPipeline.from_pretrained(path, device="cpu")
    assert loaded.config == pipe.config
    split = loaded.data_split
    assert split.source == "synthetic" and split.test_windows == 2 and split.freq == "h"
    assert [s["test_start"] for s in split.series] == [138, 138]
    train, test = loaded.split(series)
    assert len(test.history) == 4 and all(len(s) == 138 for s in train)


def test_a_truncated_or_incomplete_bundle_is_a_clear_error(trained, tmp_path, capsys):
    _, _, path = trained
    cut = TSDiffPipeline.from_pretrained(path, device="cpu").save_pretrained(tmp_path / "cut")
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(BundleError, match="model.safetensors"):
        TSDiffPipeline.from_pretrained(cut)
    assert main(["forecast", "--model", str(cut), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "model.safetensors" in err and "Traceback" not in err
    headless = TSDiffPipeline.from_pretrained(path, device="cpu").save_pretrained(tmp_path / "headless")
    (headless / "config.json").unlink()
    with pytest.raises(BundleError, match="no config.json"):
        TSDiffPipeline.from_pretrained(headless)


def test_an_interrupted_save_leaves_the_previous_bundle(trained, tmp_path, monkeypatch):
    pipe, series, path = trained
    target = pipe.save_pretrained(tmp_path / "model")
    before = (target / "model.safetensors").read_bytes()
    other = TSDiffPipeline.from_pretrained(path, device="cpu")
    with torch.no_grad():
        for p in other.model.denoiser.parameters():
            p.add_(1.0)

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # the process is stopped mid-write

    monkeypatch.setattr("steerdiff.core.bundle._write_json", die)
    with pytest.raises(KeyboardInterrupt):
        other.save_pretrained(target)
    monkeypatch.undo()
    assert (target / "model.safetensors").read_bytes() == before
    assert TSDiffPipeline.from_pretrained(target, device="cpu").config == pipe.config


def test_pipeline_jobs_on_the_trained_model(trained):
    pipe, series, _ = trained
    train, test = pipe.split(series)
    g = dict(num_samples=4, num_steps=4, seed=0)
    assert pipe.forecast(test.history, **g).shape == (4, 4, 6)
    y = torch.cat([test.history, test.future], 1)
    y[:, 15:18] = float("nan")
    filled = pipe.impute(y, **g)
    assert filled.shape == (4, 4, 30) and torch.isfinite(filled).all()
    assert pipe.refine(test.history, "linear", train=train, steps=2, num_samples=4, seed=0).shape == (4, 4, 6)
    assert pipe.synthesize(5, num_steps=4, seed=0).shape == (5, 2, 30)
    result = pipe.evaluate(train, test, num_samples=4, num_steps=4, refine_steps=2, num_synthetic=8, seed=0)
    assert (
        set(result) == {"forecast", "missing", "lps", "best", "scales", "samples"}
        and len(result["forecast"]) == 8
    )
    with pytest.raises(ValueError, match="frequency"):
        pipe.split(synthetic_series(1, 150, "D"))
