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


def test_train_agent_takes_the_agents_own_settings(tmp_path, capsys):
    data = tmp_path / "d.hdf5"
    assert main(["collect", "--env", "Pendulum-v1", "--steps", "200", "--out", str(data), "--seed", "1"]) == 0
    run = ["train-agent", "--data", str(data), "--steps", "20", "--batch-size", "32", "--hidden", "16",
           "--eval-every", "20", "--eval-episodes", "1"]
    iql = ["--agent", "iql", "--beta", "0.1", "--expectile", "0.9"]
    assert main([*run, *iql, "--out", str(tmp_path / "a")]) == 0
    config = json.loads((tmp_path / "a" / "agent.json").read_text())["config"]
    assert (config["beta"], config["expectile"], config["alpha"]) == (0.1, 0.9, 2.5)
    capsys.readouterr()
    # a flag of the other agent, and a value out of range, are refused before any training
    assert main([*run, "--agent", "td3bc", "--beta", "1", "--out", str(tmp_path / "b")]) == 2
    assert "--beta is not a td3bc setting; td3bc takes --alpha" in capsys.readouterr().err
    assert main([*run, "--agent", "iql", "--expectile", "1.5", "--out", str(tmp_path / "c")]) == 2
    assert "expectile must lie in (0, 1), got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
