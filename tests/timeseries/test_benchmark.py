"""The benchmark protocol on a tiny setting: hold-out, selection, refit, caching, claims."""

import pytest

from steerdiff.timeseries import benchmark as B
from steerdiff.timeseries import synthetic_series

TINY = {
    "hidden": 4,
    "blocks": 1,
    "d_state": 4,
    "init_skip": True,
    "scalings": ("mean", "standard"),
    "checkpoints": (4, 8),
    "scales": (1.0, 4.0),
    "samples": 2,
    "test_samples": 2,
    "num_steps": 3,
    "refine_steps": 1,
    "synthetic": 4,
    "max_test": 2,
    "datasets": {},
}
DATA = {"context": 12, "prediction": 4, "lags": (6,), "test_windows": 2, "test_series": None}


@pytest.fixture
def tiny_dataset(monkeypatch):
    monkeypatch.setattr(B, "load_dataset", lambda name: synthetic_series(2, 80, "6h", seed=0))
    return DATA


def test_hold_out_thins_the_test_windows_and_carves_validation_before_them():
    series = synthetic_series(3, 80, "6h", seed=0)
    cfg = B.model_config("x", DATA, TINY, series)
    before, test = B.hold_out(series, cfg.spec, DATA, TINY)
    assert len(test.history) == 2 and all(len(s) == 72 for s in before)  # 3 series x 2 windows, thinned to 2
    train, val = B.hold_out(before, cfg.spec, DATA, TINY)
    assert all(len(s) == 64 for s in train) and val.starts[0] == 64


def test_select_prefers_the_lowest_validation_crps_then_earlier_and_smaller():
    def curve(a, b):
        return {"scales": [1.0, 4.0], "rows": [{"steps": 4, "tsdiff_q": {"1.0": a, "4.0": b}}]}

    assert B.select({"mean": curve(0.3, 0.2), "standard": curve(0.2, 0.5)}) == ("mean", 4, 4.0)
    assert B.select({"mean": curve(0.3, 0.3), "standard": curve(0.3, 0.3)}) == ("mean", 4, 1.0)


def test_setting_run_dir_and_claims(tmp_path):
    assert B.setting(B.FULL, "elecdemand")["checkpoints"] == (2000, 4000, 8000, 16000)
    assert B.setting(B.FULL, "taylor", "mean")["scalings"] == ("mean",)
    assert B.run_dir(None, "x", [1]) is None
    assert B.run_dir(tmp_path, "x", [1]) == B.run_dir(tmp_path, "x", [1]) != B.run_dir(tmp_path, "x", [2])
    forecast = {
        m: {"crps": v}
        for m, v in [
            ("seasonal_naive", 0.3),
            ("linear", 0.2),
            ("tsdiff_q", 0.1),
            ("seasonal_naive+ml", 0.4),
            ("seasonal_naive+langevin", None),
            ("linear+ml", 0.1),
            ("linear+langevin", 0.3),
            ("tsdiff_ms", None),
        ]
    }
    checked = dict(B.claims({"d": {"forecast": forecast}}))
    assert checked == {
        "TSDiff-Q beats seasonal naive and linear": {"d": True},
        "best refinement of seasonal_naive beats seasonal_naive": {"d": False},
        "best refinement of linear beats linear": {"d": True},
    }


def test_run_dataset_validates_refits_scores_and_caches(tiny_dataset, tmp_path, capsys):
    out = B.run_dataset("tiny", tiny_dataset, TINY, 0, "cpu", tmp_path)
    config = out["config"]
    assert config["selected_scaling"] in ("mean", "standard") and config["selected_steps"] in (4, 8)
    assert config["test_windows"] == 2 and config["refit_seconds"] is not None
    assert set(out["forecast"]) == set(B.METHODS) and set(out["missing"]) == {
        "none",
        "random",
        "blackout_start",
        "blackout_end",
    }
    assert set(out["lps"]) == {"real", "synthetic"}
    assert {r["steps"] for r in out["validation"]["mean"]["rows"]} == {4, 8}
    # a second run loads every model and score from the cache and gives the same numbers
    again = B.run_dataset("tiny", tiny_dataset, TINY, 0, "cpu", tmp_path)
    assert again["config"]["refit_seconds"] is None
    assert again["forecast"]["tsdiff_q"]["crps"] == out["forecast"]["tsdiff_q"]["crps"]
    B.print_results({"tiny": out})
    assert "Forecast CRPS" in capsys.readouterr().out
