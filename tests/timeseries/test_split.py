"""The split stored in the bundle is enforced; the guidance scale is chosen on the validation windows and used by
default; forecasts that leave their context's range are flagged."""

import json
import warnings

import numpy as np
import pytest
import torch

from steerdiff.timeseries import (
    DataSplit,
    ForecastRangeWarning,
    Series,
    TSDiff,
    TSDiffConfig,
    TSDiffPipeline,
    out_of_range,
    synthetic_series,
)
from steerdiff.timeseries.cli import main

from .cli_cases import TINY, write_csv


def _pipe(series, test_windows=2, validation_windows=0):
    torch.manual_seed(0)
    config = TSDiffConfig(24, 6, lags=(), freq="H", **TINY)
    split = DataSplit.of(series, 6, test_windows, validation_windows)
    return TSDiffPipeline(TSDiff(config, split=split))


def test_forecasting_with_a_different_split_than_training_is_refused():
    series = synthetic_series(2, 120, "H", seed=0)
    pipe = _pipe(series)
    _, test = pipe.split(series)
    assert test.starts == [108, 114, 108, 114]  # the model's own: the last two windows of each series
    _, fewer = pipe.split(series, 1)  # a subset of the held-out windows is fine
    assert fewer.starts == [114, 114]
    with pytest.raises(ValueError, match="trained on.*test windows start at point 108"):
        pipe.split(series, 3)
    changed = [Series(s.target * 1.01, s.freq, s.start, s.item_id) for s in series]
    with pytest.raises(ValueError, match="not the data the model was trained on"):
        pipe.split(changed)
    longer = [Series(np.r_[s.target, s.target[:6]], s.freq, s.start, s.item_id) for s in series]
    _, later = pipe.split(longer)  # new points after the training part: forecast them
    assert later.starts == [114, 120, 114, 120]
    new = synthetic_series(1, 60, "H", seed=3)
    new[0].item_id = "a_new_series"
    assert pipe.split(new)[1].item_ids == ["a_new_series"] * 2  # never seen: nothing trained on


def test_validation_windows_are_not_test_windows():
    series = synthetic_series(1, 120, "H", seed=0)
    pipe = _pipe(series, test_windows=2, validation_windows=1)
    val = pipe.validation(series)
    assert val.starts == [102]
    np.testing.assert_array_equal(val.future[0].numpy(), series[0].target[102:108])
    with pytest.raises(ValueError, match="validated"):
        pipe.split(series, 3)
    with pytest.raises(ValueError, match="without validation windows"):
        _pipe(series).validation(series)


def test_the_cli_refuses_a_different_split(tmp_path, capsys):
    series = synthetic_series(2, 120, "H", seed=0)
    csv = write_csv(tmp_path / "y.csv", series)
    _pipe(series).save_pretrained(tmp_path / "model")
    argv = ["forecast", "--model", str(tmp_path / "model"), "--data", str(csv), "--out", str(tmp_path / "f")]
    assert main([*argv, "--test-windows", "3"]) == 2
    assert "trained on" in capsys.readouterr().err


def test_scale_chosen_on_validation_is_saved_and_used_by_default(tmp_path):
    series = synthetic_series(1, 120, "H", seed=0)
    pipe = _pipe(series, test_windows=1, validation_windows=1)
    result = pipe.tune_scale(series, "quantile", budget=3, num_samples=2, num_steps=2)
    assert len(result.trials) == 3 and result.best["scale"] in [t["params"]["scale"] for t in result.trials]
    assert pipe.scale_for("quantile") == result.best["scale"] and pipe.scale_for("mse") == 4.0
    assert pipe.scale_for("quantile", 0.5) == 0.5  # a pinned scale wins
    pipe.save_pretrained(tmp_path / "m")
    tuned = json.loads((tmp_path / "m" / "config.json").read_text())["domain"]["tuned"]
    assert tuned["quantile"]["scale"] == result.best["scale"] and len(tuned["quantile"]["curve"]) == 3
    loaded = TSDiffPipeline.from_pretrained(tmp_path / "m", device="cpu")
    assert loaded.scale_for("quantile") == result.best["scale"]


def test_out_of_range_forecasts_are_found_value_by_value():
    history = torch.tensor([[1.0, 2.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    inside = torch.tensor([[[3.9, 0.1]] * 3, [[5.0, 5.2]] * 3])
    assert out_of_range(history, inside, 4) == {"windows": [], "fraction": 0.0, "worst": None}
    samples = torch.tensor([[[3.0, 5.5]] * 3, [[5.0, 5.0]] * 3])  # range of window 0: [1 - 1, 3 + 1]
    report = out_of_range(history, samples, 4)
    assert report["windows"] == [0] and report["fraction"] == 0.5
    assert report["worst"] == {"window": 0, "value": 5.5, "low": 0.0, "high": 4.0}
    flat = out_of_range(history[1:], torch.full((1, 3, 2), 6.0), 4)  # a flat context: 10 % of its level
    assert flat["windows"] == [0] and flat["worst"]["high"] == pytest.approx(5.25)


def test_a_runaway_forecast_warns_with_the_fix():
    series = synthetic_series(1, 120, "H", seed=0)
    pipe = _pipe(series)

    class Runaway:  # a denoiser whose clean estimate is far above any data
        def __call__(self, x, sigma):
            return x * 0 + 50.0  # differentiable, as a network is

    pipe.model.denoiser = Runaway()
    _, test = pipe.split(series)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.forecast(test.history, num_samples=2, num_steps=2, guidance="mse", scale=0.01, seed=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, ForecastRangeWarning)]
    assert len(messages) == 1 and "leaves the plausible range" in messages[0]
    assert "choose the scale on validation windows" in messages[0] and "quantile" in messages[0]


def test_choosing_reads_at_most_max_windows_evenly_spread():
    series = synthetic_series(3, 120, "H", seed=0)
    pipe = _pipe(series, test_windows=1, validation_windows=2)
    every = pipe.validation(series)
    assert every.starts == [102, 108] * 3 and every.item_ids[0] == "synthetic_0"
    few = pipe.validation(series, max_windows=3)
    assert few.item_ids == ["synthetic_0", "synthetic_1", "synthetic_2"] and few.starts == [102, 102, 108]
    assert torch.equal(few.future[2], every.future[5])
