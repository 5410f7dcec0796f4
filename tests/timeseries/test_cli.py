import json

import numpy as np
import pandas as pd
from steerdiff.timeseries.cli import main
from steerdiff.timeseries.data import synthetic_series


def test_cli_end_to_end_on_a_csv(tmp_path):
    series = synthetic_series(2, 200, "H", seed=0)
    pd.DataFrame({s.item_id: s.target for s in series}, index=series[0].index()).rename_axis("ts") \
        .reset_index().to_csv(tmp_path / "y.csv", index=False)
    data = ["--data", str(tmp_path / "y.csv"), "--test-windows", "2"]
    fast = ["--samples", "4", "--num-steps", "4"]
    model = ["--model", str(tmp_path / "m")]
    assert main(["data", *data, "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "data.json").read_text())["num_series"] == 2
    assert main(["train", *data, "--context", "24", "--prediction", "6", "--lags", "none", "--hidden", "8",
                 "--blocks", "1", "--d-state", "8", "--steps", "10", "--scaling", "standard",
                 "--out", str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "tsdiff.json").read_text())["scaling"] == "standard"
    assert main(["forecast", *data, *model, *fast, "--scenario", "blackout_end", "--out", str(tmp_path / "f")]) == 0
    with np.load(tmp_path / "f" / "forecast.npz") as z:
        assert z["samples"].shape == (4, 4, 6) and np.isnan(z["history"][:, -12:]).all()
    assert (tmp_path / "f" / "forecast.png").stat().st_size > 1000
    assert main(["impute", *data, *model, *fast, "--k", "5", "--out", str(tmp_path / "i")]) == 0
    assert json.loads((tmp_path / "i" / "impute.json").read_text())["imputed_points_per_window"] == 5
    assert main(["refine", *data, *model, "--samples", "4", "--refine-steps", "2", "--method", "langevin",
                 "--out", str(tmp_path / "r")]) == 0
    np.save(tmp_path / "base.npy", np.full((4, 3, 6), 10.0))          # any forecaster's samples (N, S, H)
    assert main(["refine", *data, *model, "--samples", "6", "--refine-steps", "2", "--base",
                 str(tmp_path / "base.npy"), "--out", str(tmp_path / "r2")]) == 0
    with np.load(tmp_path / "r2" / "refine.npz") as z:
        assert z["samples"].shape == (4, 6, 6) and np.all(z["base"] == 10.0)
    assert main(["synthesize", *data, *model, "--n", "8", "--num-steps", "4", "--out", str(tmp_path / "s")]) == 0
    assert set(json.loads((tmp_path / "s" / "synthesize.json").read_text())) >= {"lps_real", "lps_synthetic"}
    assert main(["evaluate", *data, *model, *fast, "--synthetic", "8", "--refine-steps", "2",
                 "--out", str(tmp_path / "e")]) == 0
    ev = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert len(ev["forecast"]) == 8 and set(ev["missing"]) == {"none", "random", "blackout_start", "blackout_end"}


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["data", "--data", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["data", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
