"""The timeseries guided tasks: their targets, their metric, and a tiny version through the guidance matrix."""

import math

import pytest
import torch

from steerdiff.core.matrix import FAMILIES, run_cell, run_matrix
from steerdiff.timeseries import (
    TimeSeriesTask,
    TSDiff,
    TSDiffConfig,
    guided_tasks,
    split_last,
    synthetic_series,
)
from steerdiff.timeseries.data import lagged, scale_by_context


@pytest.fixture(scope="module")
def parts():
    """An untrained tiny TSDiff and held-out windows of synthetic hourly series (validation before test)."""
    torch.manual_seed(0)
    config = TSDiffConfig(12, 4, lags=(4,), freq="H", hidden_channels=8, num_blocks=1, d_state=8, emb_dim=16)
    model = TSDiff(config)
    model.denoiser.requires_grad_(False).eval()
    series = synthetic_series(n_series=2, length=80, freq="H", seed=1)
    before, test = split_last(series, config.spec, 2)
    _, validation = split_last(before, config.spec, 2)
    return model, validation, test


def task(parts, kind="forecast", **options):
    model, validation, test = parts
    return TimeSeriesTask(model, validation, test, kind, steps=4, **options)


def truth_window(model, history, future, observed_y):
    """The true window (C, L) in the scaling the observed context gives."""
    y = torch.cat([history, future]).double()
    _, loc, scale = scale_by_context(observed_y[None], model.spec)
    return lagged((y[None] - loc) / scale, model.spec)[0].float()


@pytest.mark.parametrize("kind", ["forecast", "impute"])
def test_targets_are_the_observed_entries_and_vanish_at_the_truth(parts, kind):
    model, _, test = parts
    spec = model.spec
    t = task(parts, kind)
    for i, (target, context) in zip((0, 3), t.instances("test", 2), strict=True):
        history, future = test.history[i], test.future[i]
        observed_y = torch.cat([history, future]).double()
        observed_y[spec.max_lag :][context["scored"]] = float("nan")
        x = truth_window(model, history, future, observed_y)[None]
        mask, values = target.known
        assert torch.equal(values[mask], target.observation)  # known entries are the observation
        assert torch.allclose(x[0][mask], values[mask], atol=1e-5)  # ... and the truth's values there
        assert float(target.loss(x)) == pytest.approx(0.0, abs=1e-8)
        assert torch.allclose(target.forward(x)[0], target.observation, atol=1e-5)  # noise-free forward
        noisy = x + 0.1
        assert float(target.reward(noisy)) == pytest.approx(-float(target.loss(noisy)))
        assert float(target.loss(noisy)) == pytest.approx(0.01 * int(mask.sum()), rel=1e-4)
        # a sample at the truth scores zero; a sample off it does not
        assert t.score(context, x.repeat(3, 1, 1))["crps"] == pytest.approx(0.0, abs=1e-6)
        assert t.score(context, noisy.repeat(3, 1, 1))["crps"] > 0
        scored = context["scored"]
        if kind == "forecast":  # the horizon is scored; the context is observed in every channel
            assert scored.tolist() == [False] * spec.context_length + [True] * spec.prediction_length
            assert mask[0].tolist() == (~scored).tolist()
            assert mask[1].all()  # a lag as long as the horizon is observed throughout
        else:  # half the context is missing at random; the horizon is observed
            assert int(scored.sum()) == spec.context_length // 2
            assert not scored[spec.context_length :].any()
            assert mask[0].tolist() == (~scored).tolist()
            lag = spec.lags[0]
            assert mask[1, lag:].tolist() == (~scored[:-lag]).tolist()  # the gaps travel with their lag


def test_the_same_instances_every_call_and_distinct_splits(parts):
    t = task(parts, "impute", scenario="blackout_end")
    a, b = t.instances("validation", 2), t.instances("validation", 2)
    assert torch.equal(a[0][1]["truth"], b[0][1]["truth"])
    assert not torch.equal(a[0][1]["truth"], t.instances("test", 2)[0][1]["truth"])
    scored = a[0][1]["scored"]  # the last half of the context, right before the horizon
    assert scored.tolist() == [False] * 6 + [True] * 6 + [False] * 4


GUIDED = tuple(f for f in FAMILIES if f != "paper")


def test_a_tiny_version_passes_through_the_whole_matrix(parts):
    tasks = [task(parts, "forecast"), task(parts, "impute")]
    cells = run_matrix(tasks, [8, 32], num_samples=4, validation=1, test=2, tune_budget=2)
    assert {(c.task, c.family, c.budget) for c in cells} == {
        (t.name, f, b) for t in tasks for f in FAMILIES for b in (8, 32)
    }
    by = {(c.task, c.family, c.budget): c for c in cells}
    for t in tasks:
        for f in GUIDED:  # every family applies at the larger budget
            c = by[t.name, f, 32]
            assert c.not_applicable is None, (f, c.not_applicable)
            assert math.isfinite(c.mean) and c.se >= 0 and c.mean >= 0
            assert set(c.extras) == {"nd_mean", "mse_scaled"}
            if f in ("dps", "smc", "tree", "enkg"):
                assert "scale" in c.params and len(c.tuning) == 2  # chosen on validation
        assert by[t.name, "unguided", 32].relative == 1.0
        assert by[t.name, "inpainting", 32].nfe <= 32
        assert "below four samples" in by[t.name, "tree", 8].not_applicable


def test_families_apply_by_the_targets(parts):
    t = task(parts)
    target, _ = t.instances("test", 1)[0]
    assert all(t.not_applicable(f, target) is None for f in GUIDED)
    assert (
        t.paper_family == "dps" and t.lower_is_better
    )  # self-guidance is the dps column, not a paper of its own
    assert t.not_applicable("paper", target).startswith("no seed paper's method of its own")
    assert "below two samples" in run_cell(t, "smc", 4, num_samples=2, validation=1, test=1).not_applicable


def test_a_diverged_sample_scores_infinite(parts):
    t = task(parts)
    _, context = t.instances("test", 1)[0]
    x = torch.zeros(2, 2, 16)
    x[0, 0, 0] = float("nan")
    assert t.score(context, x)["crps"] == math.inf


def test_bad_arguments(parts):
    model, validation, test = parts
    with pytest.raises(ValueError, match="unknown task kind"):
        TimeSeriesTask(model, validation, test, "refine")
    with pytest.raises(ValueError, match="scenario"):
        TimeSeriesTask(model, validation, test, "impute", "none")
    with pytest.raises(ValueError, match="steps must be"):
        TimeSeriesTask(model, validation, test, steps=0)
    with pytest.raises(ValueError, match="noise_std"):
        TimeSeriesTask(model, validation, test, noise_std=0.0)
    short = type(test)(test.history[:, 1:], test.future)
    with pytest.raises(ValueError, match="history"):
        TimeSeriesTask(model, validation, short)
    t = task(parts)
    with pytest.raises(ValueError, match="ask for 1 to 4 test windows"):
        t.instances("test", 5)
    with pytest.raises(ValueError, match="unknown split"):
        t.instances("train", 1)
    with pytest.raises(ValueError, match="samples must have shape"):
        t.score(t.instances("test", 1)[0][1], torch.zeros(2, 16))


def test_guided_tasks_gives_forecast_and_imputation_on_the_cached_prior(parts, monkeypatch):
    from steerdiff.timeseries import tasks as module

    monkeypatch.setattr(module, "task_prior", lambda quick, device="auto": parts)  # no training in a test
    for quick, steps in ((True, 8), (False, 16)):
        forecast, impute = guided_tasks(quick)
        assert (forecast.kind, impute.kind, impute.scenario) == ("forecast", "impute", "random")
        assert len(forecast.sigmas()) == steps + 1 and forecast.settings == module.SETTINGS[quick]
        assert forecast.name != impute.name and "CRPS" in forecast.metric
