"""The CLI: collect writes the D4RL layout and a summary; train-agent takes each agent's own settings."""

import json

import numpy as np
import pytest

from steerdiff.policy import load_agent, load_d4rl
from steerdiff.policy.cli import main


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as err:  # argparse's own usage errors
        return err.code


def test_collect_and_evaluate_real_data(tmp_path, capsys):
    out = tmp_path / "collect"
    assert (
        main(
            [
                "collect",
                "--env",
                "Pendulum-v1",
                "--transitions",
                "120",
                "--out",
                str(out),
                "--seed",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    ds = load_d4rl(out / "data.hdf5")
    assert len(ds) == 120 and ds.env_id == "Pendulum-v1"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["transitions"] == 120 and summary["dataset"] == str(out / "data.hdf5")
    # real data checked as if it were synthetic: zero dynamics error, with a state plot
    assert (
        main(
            [
                "evaluate",
                "--synthetic",
                str(out / "data.hdf5"),
                "--data",
                str(out / "data.hdf5"),
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    ev = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert ev["synthetic"]["dynamics_mse_mean"] < 1e-10
    assert (tmp_path / "ev" / "states.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["collect", "--transitions", "50", "--out", str(tmp_path / "j"), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["transitions"] == 50  # --json: the whole summary, parseable


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_agent_takes_the_agents_own_settings(tmp_path, capsys):
    data = tmp_path / "collected" / "data.hdf5"
    assert (
        main(
            [
                "collect",
                "--env",
                "Pendulum-v1",
                "--transitions",
                "200",
                "--out",
                str(data.parent),
                "--seed",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    run = [
        "train-agent",
        "--data",
        str(data),
        "--train-steps",
        "20",
        "--batch-size",
        "32",
        "--hidden",
        "16",
        "--eval-every",
        "20",
        "--eval-episodes",
        "1",
        "--quiet",
    ]
    iql = ["--agent", "iql", "--beta", "0.1", "--expectile", "0.9"]
    assert main([*run, *iql, "--out", str(tmp_path / "a")]) == 0
    config = json.loads((tmp_path / "a" / "agent" / "config.json").read_text())["domain"]["hyperparameters"]
    assert (config["beta"], config["expectile"], config["alpha"]) == (0.1, 0.9, 2.5)
    # --resume continues the saved agent from its update step
    longer = [v if v != "20" else "30" for v in run[:5]] + run[5:]  # --train-steps 30
    assert main([*longer, *iql, "--out", str(tmp_path / "a"), "--resume"]) == 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["resumed_from"] == 20
    assert load_agent(tmp_path / "a" / "agent").updates == 30
    capsys.readouterr()
    # a flag of the other agent, and a value out of range, are refused before any training
    assert main([*run, "--agent", "td3bc", "--beta", "1", "--out", str(tmp_path / "b")]) == 2
    assert "--beta is not a td3bc setting; td3bc takes --alpha" in capsys.readouterr().err
    assert _exit_code([*run, "--agent", "iql", "--expectile", "1.5", "--out", str(tmp_path / "c")]) == 2
    assert "'1.5' is not a number in [0, 1]" in capsys.readouterr().err
    assert main([*run, "--agent", "iql", "--expectile", "1", "--out", str(tmp_path / "c")]) == 2
    assert "expectile must lie in (0, 1), got 1.0" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_short_episodes_without_an_environment_attribute(tmp_path, capsys):
    """A plain D4RL file of short, terminating episodes (Hopper, random actions): --env names the
    environment, every transition is used at the default horizon, and every count is the one checked."""
    import h5py

    from steerdiff.policy import collect

    real = collect("Hopper-v5", "random", 300, seed=0)
    lengths = np.diff(np.asarray(real.episode_bounds()), axis=1)[:, 0]
    assert np.median(lengths) < 32 and real.terminals.sum() > 5
    plain = tmp_path / "hopper-random.hdf5"
    with h5py.File(plain, "w") as f:  # the six keys only, as D4RL publishes them
        for k, v in real.as_dict().items():
            f[k] = v
    tiny = ["--train-steps", "2", "--base-channels", "8", "--batch-size", "16", "--quiet"]
    assert (
        main(["train", "--data", str(plain), "--env", "Hopper-v5", *tiny, "--out", str(tmp_path / "t")]) == 0
    )
    s = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert (s["env"], s["transitions"], s["episodes"], s["horizon"]) == ("Hopper-v5", 300, len(lengths), 32)
    assert s["transitions_used"] == 300 and s["transitions_used_fraction"] == 1.0
    assert s["terminals"] == int(real.terminals.sum())
    assert s["terminal_fraction"] == pytest.approx(real.terminals.mean())
    assert s["median_episode_length"] == float(np.median(lengths))
    model = tmp_path / "t" / "model"
    assert main(["synthesize", "--model", str(model), "--num-samples", "6", "--steps", "2",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0  # fmt: skip
    syn = json.loads((tmp_path / "s" / "summary.json").read_text())
    back = load_d4rl(tmp_path / "s" / "synthetic.hdf5")
    assert syn["transitions"] == len(back) and syn["terminals"] == int(back.terminals.sum())
    assert back.env_id == "Hopper-v5"
    argv = ["evaluate", "--synthetic", str(plain), "--env", "Hopper-v5", "--data", str(plain)]
    assert main([*argv, "--max-transitions", "40", "--out", str(tmp_path / "e")]) == 0
    ev = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert ev["synthetic"]["transitions"] == 300 and ev["synthetic"]["transitions_checked"] == 40
    assert 0 < ev["synthetic"]["transitions_identifiable"] <= 40
    assert ev["data"]["terminal_fraction"] == pytest.approx(real.terminals.mean())
    # without padding, long windows would hold a small part of these episodes: refused
    capsys.readouterr()
    assert main(["train", "--data", str(plain), "--env", "Hopper-v5", "--padding", "none", "--horizon", "48", *tiny,
                 "--out", str(tmp_path / "n")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "hold only 39.3% of the 300 transitions" in err and "use a horizon of at most 40" in err


def test_a_model_or_agent_of_another_environment_with_the_same_dimensions(tmp_path, capsys):
    """Walker2d and HalfCheetah share their dimensions (17, 6): the environment names are compared too."""
    from steerdiff.policy import collect, make_agent, save_d4rl

    data = save_d4rl(collect("HalfCheetah-v5", "random", 30, seed=0), tmp_path / "cheetah.hdf5")
    make_agent("td3bc", 17, 6, 1.0, hidden=8, env_id="Walker2d-v5").save_pretrained(tmp_path / "w" / "agent")
    run = ["train-agent", "--data", str(data), "--train-steps", "1", "--hidden", "8", "--quiet"]
    assert main([*run, "--resume", "--out", str(tmp_path / "w")]) == 2
    assert "holds an agent of Walker2d-v5 but the dataset is HalfCheetah-v5" in capsys.readouterr().err
