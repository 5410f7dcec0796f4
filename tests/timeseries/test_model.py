import json

import pytest
import torch

from steerdiff.core.bundle import BundleError
from steerdiff.core.training import TrainConfig
from steerdiff.timeseries.baselines import LinearForecaster, seasonal_naive
from steerdiff.timeseries.data import Series, WindowSpec, split_last, synthetic_series, training_windows
from steerdiff.timeseries.forecast import forecast
from steerdiff.timeseries.model import SCHEDULE, DataSplit, TSDiff, TSDiffConfig, fingerprint
from steerdiff.timeseries.synthesis import generate, linear_predictive_score

TINY = {"hidden_channels": 8, "num_blocks": 1, "d_state": 8, "emb_dim": 16}


def test_schedule_is_tsdiffs_ddpm():
    # discrete betas linear 1e-4 .. 0.1 over 100 steps: alpha_bar_T = prod(1 - beta_t)
    betas = torch.linspace(1e-4, 0.1, 100, dtype=torch.float64)
    alpha_bar_T = torch.prod(1 - betas)
    sigma_T = float(torch.sqrt(1 / alpha_bar_T - 1))
    # the continuous limit drops the O(beta^2) terms of log(1 - beta): within 10 % at T
    assert SCHEDULE.sigma_max == pytest.approx(sigma_T, rel=0.1)
    model = TSDiff(TSDiffConfig(8, 4, **TINY))
    grid = model.sigmas()
    assert len(grid) == 101 and grid[0] == pytest.approx(SCHEDULE.sigma_max) and grid[-1] == 0


@pytest.mark.parametrize("scaling", ["mean", "standard"])
def test_train_save_load_round_trip(tmp_path, scaling):
    cfg = TSDiffConfig(12, 4, lags=(6,), freq="H", scaling=scaling, **TINY)
    series = synthetic_series(2, 200, "6h", seed=0)
    windows = training_windows(series, cfg.spec, stride=2)
    model = TSDiff(cfg, split=DataSplit.of(series, 4, 2, source="synthetic"))
    result = model.fit(
        windows,
        TrainConfig(steps=40, batch_size=32, lr=2e-3, checkpoint_every=0),
        out_dir=tmp_path / "run",
        progress=False,
    )
    assert len(result.losses) == 40 and result.losses[-1] < result.losses[0]
    assert (tmp_path / "run" / "checkpoint").is_dir()  # the training checkpoint, for resuming
    model.save_pretrained(tmp_path / "saved")
    loaded = TSDiff.from_pretrained(tmp_path / "saved")
    assert loaded.config == cfg and loaded.split == model.split
    domain = json.loads((tmp_path / "saved" / "config.json").read_text())["domain"]
    assert domain["name"] == "timeseries" and domain["window"]["lags"] == [6]
    assert domain["data"]["series"][0] == {
        "item_id": "synthetic_0",
        "length": 200,
        "train_end": 192,
        "test_start": 192,
        "fingerprint": fingerprint(series[0].target[:192]),
    }
    assert loaded.spec.scaling == scaling
    history = torch.as_tensor(series[0].target[-cfg.spec.history_length :])[None].float()

    def run(m):
        return forecast(m, history, num_samples=3, num_steps=5, generator=torch.Generator().manual_seed(0))

    assert torch.equal(run(model), run(loaded))


def test_model_errors(tmp_path):
    model = TSDiff(TSDiffConfig(8, 4, lags=(2,), **TINY))
    with pytest.raises(ValueError, match=r"windows must have shape \(N, 2, 12\)"):
        model.fit(torch.zeros(10, 1, 12))
    with pytest.raises(BundleError, match="not a steerdiff model bundle"):
        TSDiff.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="only a model with a network denoiser"):
        TSDiff(TSDiffConfig(8, 4), denoiser=lambda x, sigma: x).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="unknown frequency"):
        TSDiffConfig(8, 4, freq="weekly-ish")


def test_seasonal_naive_repeats_the_last_season():
    history = torch.arange(10.0)[None]
    assert torch.equal(seasonal_naive(history, 5, 3)[0, 0], torch.tensor([7.0, 8.0, 9.0, 7.0, 8.0]))
    with pytest.raises(ValueError, match="season length 24"):
        seasonal_naive(history, 5, 24)


def test_linear_forecaster_recovers_a_linear_process():
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(6, 2, generator=g, dtype=torch.float64) * 0.3
    ctx = 1 + torch.rand(200, 6, generator=g, dtype=torch.float64)
    ctx = ctx / ctx.mean(1, keepdim=True)
    windows = torch.cat([ctx, ctx @ w_true], 1)
    lin = LinearForecaster(6, 2, alpha=1e-9).fit(windows)
    history = 7.0 * ctx[:5]  # data units: predictions scale with the data
    assert torch.allclose(lin.predict(history)[:, 0].double(), 7.0 * ctx[:5] @ w_true, atol=1e-4)
    with pytest.raises(RuntimeError, match="fit the LinearForecaster"):
        LinearForecaster(6, 2).predict(history)
    with pytest.raises(ValueError, match="unknown scaling 'max'"):
        LinearForecaster(6, 2, scaling="max")


def test_standardised_linear_forecaster_continues_trends_at_any_level_and_slope():
    # next values y_t = 2 y_{t-1} - y_{t-2}: linear in the context, so exact in standardised units too
    spec = WindowSpec(6, 2, scaling="standard")
    g = torch.Generator().manual_seed(0)
    level, slope = 100 * torch.rand(50, 1, generator=g), torch.randn(50, 1, generator=g)
    t = torch.arange(8.0)
    series = [Series((lv + sl * t).numpy(), "H") for lv, sl in zip(level, slope, strict=False)]
    lin = LinearForecaster(6, 2, alpha=1e-9, scaling="standard").fit(training_windows(series, spec)[:, 0])
    history = 3.0 + 0.5 * t[None, :6]
    assert torch.allclose(lin.predict(history)[0, 0], 3.0 + 0.5 * t[6:], atol=1e-3)


def test_generate_and_linear_predictive_score():
    cfg = TSDiffConfig(12, 4, **TINY)
    model = TSDiff(cfg)
    x = generate(model, 5, num_steps=4, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 16) and torch.isfinite(x).all()
    series = synthetic_series(2, 300, "6h", seed=1, noise=0.0)
    train, test = split_last(series, cfg.spec, 3)
    real = training_windows(train, cfg.spec)
    lps_real = linear_predictive_score(real, test, 12)
    lps_noise = linear_predictive_score(torch.randn_like(real) + 1, test, 12)
    assert lps_real < 0.05 < lps_noise
