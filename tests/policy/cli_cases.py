"""User errors of ``steerdiff-policy``: argv (without the program name) and a fragment of the one-line error.

Each case builds what it needs in ``tmp_path`` directly through the library, in well under 2 seconds."""

from pathlib import Path

import numpy as np


def _dataset(obs_dim: int, env_id: str = "Pendulum-v1"):
    from steerdiff.policy import OfflineDataset

    rng = np.random.default_rng(0)
    n = 40
    term = np.zeros(n, bool)
    term[[19, 39]] = True
    return OfflineDataset(
        observations=rng.normal(size=(n, obs_dim)),
        actions=rng.uniform(-1, 1, (n, 1)),
        rewards=rng.normal(size=n),
        terminals=term,
        timeouts=np.zeros(n, bool),
        next_observations=rng.normal(size=(n, obs_dim)),
        env_id=env_id,
    )


def _agent_bundle(path: Path) -> Path:
    from steerdiff.policy import make_agent

    make_agent("td3bc", 3, 1, 2.0, hidden=8, env_id="Pendulum-v1").save_pretrained(path)
    return path


def user_errors(tmp_path) -> list[tuple[list[str], str]]:
    from steerdiff.policy import save_d4rl

    tmp_path = Path(tmp_path)
    out = str(tmp_path / "out")
    good = save_d4rl(_dataset(3), tmp_path / "good.hdf5")
    wrong_shape = save_d4rl(_dataset(5), tmp_path / "five-dims.hdf5")  # Pendulum observations have 3
    agent = _agent_bundle(tmp_path / "agent")
    cut = _agent_bundle(tmp_path / "cut-agent")
    (cut / "networks.safetensors").write_bytes(b"\0" * 16)
    not_a_bundle = tmp_path / "empty"
    not_a_bundle.mkdir()
    not_hdf5 = tmp_path / "notes.hdf5"
    not_hdf5.write_text("not an HDF5 file")
    return [
        # missing paths
        (["train", "--data", str(tmp_path / "missing.hdf5"), "--out", out], "does not exist"),
        (["synthesize", "--model", str(tmp_path / "no-model"), "--out", out], "does not exist"),
        (
            ["evaluate", "--agent", str(tmp_path / "no-agent"), "--env", "Pendulum-v1", "--out", out],
            "does not exist",
        ),
        # wrong types and out-of-range values
        (["train", "--data", str(good), "--train-steps", "many", "--out", out], "not a positive integer"),
        (["train", "--data", str(good), "--train-steps", "0", "--out", out], "not a positive integer"),
        (
            ["train-agent", "--data", str(good), "--synth-ratio", "1.5", "--out", out],
            "not a number in [0, 1]",
        ),
        (["synthesize", "--model", str(agent), "--coeff", "-1", "--out", out], "not a number >= 0"),
        (["synthesize", "--model", str(agent), "--solver", "rk45", "--out", out], "invalid choice"),
        (
            ["train-agent", "--data", str(good), "--agent", "td3bc", "--beta", "1", "--out", out],
            "--beta is not a td3bc setting",
        ),
        (["train-agent", "--data", str(good), "--synth-ratio", "0.5", "--out", out], "needs --model"),
        (["collect", "--env", "CartPole-v1", "--out", out], "invalid choice"),
        # bundles: not one, corrupt, or of the wrong kind
        (["synthesize", "--model", str(not_a_bundle), "--out", out], "no config.json"),
        (["evaluate", "--agent", str(cut), "--env", "Pendulum-v1", "--out", out], "networks.safetensors"),
        (["synthesize", "--model", str(agent), "--out", out], "not a trajectory model"),
        # datasets whose shapes do not fit, or that are not datasets
        (["train", "--data", str(wrong_shape), "--out", out], "observation dimension 5"),
        (["train-agent", "--data", str(wrong_shape), "--out", out], "observation dimension 5"),
        (
            ["train", "--data", str(good), "--horizon", "500", "--train-steps", "1", "--out", out],
            "shorter than the window length 500",
        ),
        (["train", "--data", str(not_hdf5), "--out", out], "not a readable hdf5 file"),
        (["evaluate", "--agent", str(agent), "--env", "Hopper-v5", "--out", out], "pass the --env the agent"),
    ]
