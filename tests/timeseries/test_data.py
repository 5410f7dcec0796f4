import numpy as np
import pandas as pd
import pytest
import torch

from steerdiff.timeseries.data import (
    Series,
    WindowSpec,
    context_scaling,
    from_csv,
    from_entries,
    from_pandas,
    lagged,
    load_dataset,
    mean_scale,
    parse_freq,
    split_last,
    synthetic_series,
    to_entries,
    training_windows,
)


@pytest.mark.parametrize(
    "alias, text, season",
    [
        ("H", "h", 24),
        ("1h", "h", 24),
        ("30min", "30min", 48),
        ("30T", "30min", 48),
        ("D", "D", 7),
        ("B", "B", 5),
        ("W-SUN", "W", 52),
        ("M", "M", 12),
        ("MS", "M", 12),
        ("Q", "Q", 4),
        ("A", "Y", 1),
    ],
)
def test_parse_freq(alias, text, season):
    f = parse_freq(alias)
    assert str(f) == text and f.season_length == season


@pytest.mark.parametrize("bad", ["fortnightly", "", "0H", "H2"])
def test_unknown_frequency_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="unknown frequency"):
        parse_freq(bad)
    with pytest.raises(ValueError, match="unknown frequency"):
        Series(np.ones(5), bad)


def test_nan_in_target_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'s1' has 1 NaN/inf values \(first at position 2.*interpolate"):
        Series(np.array([1.0, 2.0, np.nan, 4.0]), "H", item_id="s1")


def test_series_shorter_than_the_window_is_a_clear_error():
    spec = WindowSpec(24, 12, lags=(24,))
    s = [Series(np.ones(100), "H", item_id="long"), Series(np.ones(50), "H", item_id="short")]
    with pytest.raises(
        ValueError, match=r"1 series are shorter than one window \(60 points;.*'short' has 50"
    ):
        training_windows(s, spec)
    with pytest.raises(
        ValueError, match=r"shorter than one training window plus 4 rolling test windows of 12 \(108 points"
    ):
        split_last(s[:1], spec, num_windows=4)


def test_lagged_channels_hold_shifted_values_and_carry_nans():
    spec = WindowSpec(4, 2, lags=(1, 3))
    y = torch.arange(9.0)
    y[5] = float("nan")
    w = lagged(y, spec)
    assert w.shape == (3, 6)
    assert torch.equal(w[0, :2], torch.tensor([3.0, 4.0]))
    for c, lag in enumerate((0, 1, 3)):
        expected = y[3 - lag : 3 - lag + 6]
        assert torch.equal(torch.isnan(w[c]), torch.isnan(expected))
        assert torch.equal(w[c].nan_to_num(-1), expected.nan_to_num(-1))


def test_scaling_round_trip():
    spec = WindowSpec(6, 3, lags=(2,))
    series = synthetic_series(3, 40, "H", seed=1)
    w = training_windows(series, spec, stride=5)
    raw = torch.cat([torch.as_tensor(s.target).unfold(0, spec.span, 5) for s in series])
    scale = raw[:, spec.max_lag : spec.max_lag + spec.context_length].abs().mean(1)
    assert torch.allclose(w[:, 0, : spec.context_length].abs().mean(1), torch.ones(len(w)))
    assert torch.allclose(w.double() * scale[:, None, None], lagged(raw, spec), rtol=1e-6)


def test_standard_scaling_round_trip_and_unit_context():
    spec = WindowSpec(6, 3, lags=(2,), scaling="standard")
    series = synthetic_series(3, 40, "H", seed=1)
    w = training_windows(series, spec, stride=5).double()
    raw = torch.cat([torch.as_tensor(s.target).unfold(0, spec.span, 5) for s in series])
    ctx = raw[:, spec.max_lag : spec.history_length]
    ctx_w = w[:, 0, : spec.context_length]
    assert torch.allclose(ctx_w.mean(1), torch.zeros(len(w), dtype=w.dtype), atol=1e-6)
    assert torch.allclose(ctx_w.std(1, unbiased=False), torch.ones(len(w), dtype=w.dtype), atol=1e-5)
    loc, scale = ctx.mean(1), ctx.std(1, unbiased=False)
    assert torch.allclose(
        w * scale[:, None, None] + loc[:, None, None], lagged(raw, spec).double(), rtol=1e-5
    )


def test_standard_scaling_uses_observed_points_and_floors_a_flat_context():
    ctx = torch.tensor([[1.0, float("nan"), 3.0], [5.0, 5.0, 5.0], [0.0, 0.0, 0.0]])
    loc, scale = context_scaling(ctx, "standard")
    assert torch.allclose(loc, torch.tensor([2.0, 5.0, 0.0]))
    assert torch.allclose(scale, torch.tensor([1.0, 5e-3, 1e-3]))  # flat: 1e-3 of the level (1 if zero)
    loc, scale = context_scaling(ctx, "mean")
    assert torch.equal(loc, torch.zeros(3)) and torch.equal(scale, mean_scale(ctx))
    with pytest.raises(ValueError, match="unknown scaling 'robust'"):
        context_scaling(ctx, "robust")
    with pytest.raises(ValueError, match="unknown scaling 'max'"):
        WindowSpec(6, 3, scaling="max")


def test_mean_scale_uses_only_observed_points_and_rejects_empty_rows():
    ctx = torch.tensor([[2.0, float("nan"), -4.0], [0.0, 0.0, 0.0]])
    assert torch.equal(mean_scale(ctx), torch.tensor([3.0, 1.0]))
    with pytest.raises(ValueError, match="row 0 has no observed context"):
        mean_scale(torch.full((1, 3), float("nan")))


def test_split_last_rolling_windows():
    spec = WindowSpec(5, 2, lags=(3,))
    s = Series(np.arange(30.0) + 1, "D", "2021-01-01", "a")
    train, test = split_last([s], spec, num_windows=3)  # needs 10 + 3 * 2 <= 30
    assert len(train[0]) == 24
    assert test.history.shape == (3, 8) and test.future.shape == (3, 2)
    assert torch.equal(test.future[0], torch.tensor([25.0, 26.0]))
    assert torch.equal(test.history[2], torch.arange(21.0, 29.0))
    assert test.starts == [24, 26, 28]


def test_pandas_wide_long_csv_and_entries_agree(tmp_path):
    idx = pd.date_range("2020-01-01", periods=10, freq="h")
    wide = pd.DataFrame({"a": np.arange(10.0), "b": np.arange(10.0) * 2}, index=idx)
    from_wide = from_pandas(wide)
    long = wide.reset_index(names="ts").melt(id_vars="ts", var_name="id", value_name="y")
    from_long = from_pandas(long, target="y", item_id="id", timestamp="ts")
    wide.reset_index(names="ts").to_csv(tmp_path / "wide.csv", index=False)
    from_file = from_csv(tmp_path / "wide.csv")
    back = from_entries(to_entries(from_wide))
    for group in (from_long, from_file, back):
        assert [s.item_id for s in group] == ["a", "b"]
        assert all(str(s.freq) == "h" for s in group)
        assert all(np.array_equal(s.target, w.target) for s, w in zip(group, from_wide, strict=False))
    assert from_wide[0].index()[3] == pd.Timestamp("2020-01-01 03:00")


def test_pandas_errors_name_the_fix():
    with pytest.raises(ValueError, match="missing or not given"):
        from_pandas(pd.DataFrame({"a": [1.0]}), "H", item_id="id", timestamp="ts", target="y")
    with pytest.raises(ValueError, match="pass freq"):
        from_pandas(pd.Series([1.0, 2.0], index=pd.RangeIndex(2)))
    with pytest.raises(ValueError, match="no 'target'"):
        from_entries([{"start": "2020-01-01"}], "H")


def test_bundled_real_datasets():
    elec = load_dataset("elecdemand")
    assert len(elec) == 1 and len(elec[0]) == 8760 and str(elec[0].freq) == "h"
    emp = load_dataset("us_employment")
    assert len(emp) == 148 and min(len(s) for s in emp) >= 225 and str(emp[0].freq) == "M"
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_gluonts_style_entries_with_period_starts():
    entries = [
        {"start": pd.Period("2021-01-01 00:00", freq="h"), "target": np.arange(5.0), "item_id": "x"},
        {"start": pd.Period("2021-01-02 00:00", freq="h"), "target": np.ones(3)},
    ]
    series = from_entries(entries)
    assert [s.item_id for s in series] == ["x", "1"] and str(series[0].freq) == "h"
    assert series[1].index()[0] == pd.Timestamp("2021-01-02")
