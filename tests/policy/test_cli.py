"""The CLI: collect writes the D4RL layout and a summary; errors are reported, not raised as tracebacks."""

import json

from steerdiff.policy.cli import main
from steerdiff.policy.data import load_d4rl


def test_collect_and_evaluate_real_data(tmp_path, capsys):
    out = tmp_path / "d.hdf5"
    assert main(["collect", "--env", "Pendulum-v1", "--steps", "120", "--out", str(out), "--seed", "1"]) == 0
    ds = load_d4rl(out)
    assert len(ds) == 120 and ds.env_id == "Pendulum-v1"
    summary = json.loads((tmp_path / "d.json").read_text())
    assert summary["transitions"] == 120
    # real data checked as if it were synthetic: zero dynamics error, with a state plot
    assert main(["evaluate", "--synthetic", str(out), "--data", str(out), "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert ev["synthetic"]["dynamics_mse_mean"] < 1e-10
    assert (tmp_path / "ev" / "states.png").stat().st_size > 1000


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err
