import pytest
import torch

from steerdiff.timeseries.data import split_last, synthetic_series
from steerdiff.timeseries.evaluation import compare_forecasters
from steerdiff.timeseries.forecast import complete, forecast, impute, missing_mask, with_missing

from .conftest import CONTEXT, PRED


def test_random_missing_masks_exactly_k_distinct_points_per_row():
    m = missing_mask("random", 50, 20, k=7, generator=torch.Generator().manual_seed(0))
    assert m.shape == (50, 20) and torch.equal(m.sum(1), torch.full((50,), 7))
    assert len({tuple(r.tolist()) for r in m}) > 1  # rows differ


def test_blackouts_mask_exactly_the_start_or_the_end():
    start = missing_mask("blackout_start", 2, 10, k=4)
    end = missing_mask("blackout_end", 2, 10, k=4)
    assert torch.equal(start[0], torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0, 0]).bool())
    assert torch.equal(end[1], torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1]).bool())
    assert not missing_mask("none", 2, 10).any()
    assert missing_mask("blackout_end", 1, 10).sum() == 5  # default k: half the context


def test_with_missing_touches_only_masked_context_points():
    history = torch.arange(12.0)[None].repeat(2, 1)  # 4 lag-history points + context 8
    mask = missing_mask("blackout_end", 2, 8, k=3)
    out = with_missing(history, mask)
    assert torch.equal(torch.isnan(out[0]), torch.tensor([0] * 9 + [1] * 3).bool())
    assert torch.equal(out[:, :9], history[:, :9])


@pytest.mark.parametrize(
    "args, match",
    [
        (("sometimes", 2, 10), "unknown missing-value scenario 'sometimes'"),
        (("random", 2, 10, 10), r"k must be in \[0, 10\)"),
    ],
)
def test_missing_mask_errors(args, match):
    with pytest.raises(ValueError, match=match):
        missing_mask(*args)


def test_forecast_shapes_and_errors(gaussian_model):
    history = 1 + 0.1 * torch.randn(3, CONTEXT)
    s = forecast(
        gaussian_model, history, num_samples=4, num_steps=10, generator=torch.Generator().manual_seed(0)
    )
    assert s.shape == (3, 4, PRED) and torch.isfinite(s).all()
    with pytest.raises(ValueError, match=rf"history must have shape \(N, {CONTEXT}\)"):
        forecast(gaussian_model, torch.ones(3, CONTEXT + 1))
    with pytest.raises(ValueError, match="unknown guidance 'cfg'"):
        forecast(gaussian_model, history, guidance="cfg")
    with pytest.raises(ValueError, match="no observed context"):
        forecast(gaussian_model, torch.full((1, CONTEXT), float("nan")))


def test_every_missing_scenario_runs_with_the_same_model(gaussian_model):
    g = torch.Generator().manual_seed(0)
    history = 1 + 0.1 * torch.randn(2, CONTEXT, generator=g)
    for scenario in ("random", "blackout_start", "blackout_end"):
        h = with_missing(history, missing_mask(scenario, 2, CONTEXT, generator=g))
        s = forecast(gaussian_model, h, num_samples=3, num_steps=10, generator=g)
        assert s.shape == (2, 3, PRED) and torch.isfinite(s).all()


def test_impute_keeps_observed_values_and_fills_gaps_plausibly(gaussian_model):
    g = torch.Generator().manual_seed(0)
    truth = torch.ones(4, CONTEXT + PRED) + 0.3 * torch.sin(torch.arange(CONTEXT + PRED) / 3.0)
    y = truth.clone()
    y[:, 5:9] = float("nan")
    out = impute(gaussian_model, y, num_samples=32, guidance="mse", scale=3.0, num_steps=100, generator=g)
    keep = torch.isfinite(y)
    assert torch.equal(out[:, :, keep[0]], y[:, None, keep[0]].expand(-1, 32, -1))
    gap_err = (out[:, :, 5:9].median(1).values - truth[:, 5:9]).abs().mean()
    uncond = complete(gaussian_model, y, num_samples=32, guidance="none", num_steps=100, generator=g)
    assert gap_err < 0.75 * (uncond[:, :, 5:9].median(1).values - truth[:, 5:9]).abs().mean()


def test_compare_forecasters_takes_one_guidance_scale_per_method(gaussian_model):
    train, test = split_last(synthetic_series(2, 200, "H", seed=0), gaussian_model.spec, 2)
    test.history, test.future = test.history / 10, test.future / 10  # near the prior's level

    def ms_crps(scale):
        metrics, _ = compare_forecasters(
            gaussian_model,
            train,
            test,
            methods=("tsdiff_ms",),
            num_samples=4,
            num_steps=10,
            scale=scale,
            generator=torch.Generator().manual_seed(0),
        )
        return metrics["tsdiff_ms"]["crps"]

    assert ms_crps({"tsdiff_ms": 2.0, "tsdiff_q": 50.0}) == ms_crps(2.0)  # MS reads its own scale only
    assert ms_crps({"tsdiff_ms": 0.0, "tsdiff_q": 2.0}) != ms_crps(2.0)
    with pytest.raises(ValueError, match=r"one value per guided method \['tsdiff_ms', 'tsdiff_q'\]"):
        ms_crps({"tsdiff_q": 2.0})
