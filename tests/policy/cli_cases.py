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


def _raw_file(path: Path, obs_dim: int = 3, env_id=None, **replace) -> Path:
    """A D4RL file written key by key, as other tools write them (no environment attribute unless given)."""
    import h5py

    arrays = {**_dataset(obs_dim).as_dict(), **replace}
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v
        if env_id is not None:
            f.attrs["env_id"] = env_id
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
    plain = _raw_file(tmp_path / "plain.hdf5")  # no environment attribute
    d4rl_named = _raw_file(tmp_path / "hopper-medium.hdf5", env_id="hopper-medium-v2")
    bad_flags = _raw_file(tmp_path / "flags.hdf5", terminals=np.r_[0.5, np.zeros(39)])
    loud = _raw_file(tmp_path / "loud.hdf5", actions=np.full((40, 1), 3.0))  # Pendulum's torque: [-2, 2]
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
            ["train", "--data", str(good), "--horizon", "500", "--padding", "none", "--out", out],
            "hold only 0.0% of the 40 transitions",
        ),
        # files without an environment, or with one of another dimension, or flags that are not flags
        (
            ["train", "--data", str(plain), "--out", out],
            "names no environment (d4rl files carry none); pass --env",
        ),
        (["train-agent", "--data", str(plain), "--out", out], "pass --env"),
        (["evaluate", "--synthetic", str(plain), "--out", out], "pass --env"),
        (["train", "--data", str(d4rl_named), "--out", out], "'hopper-medium-v2', which is not supported"),
        (["train", "--data", str(plain), "--env", "Hopper-v5", "--out", out], "observation dimension 3 but"),
        (
            ["train-agent", "--data", str(good), "--env", "Hopper-v5", "--out", out],
            "observation dimension 3 but environment hopper-v5 has 11",
        ),
        (
            ["evaluate", "--synthetic", str(wrong_shape), "--out", out],
            "observation dimension 5 but environment pendulum-v1 has 3",
        ),
        (
            ["train", "--data", str(bad_flags), "--env", "Pendulum-v1", "--out", out],
            "values other than 0 and 1",
        ),
        (
            ["train-agent", "--data", str(loud), "--env", "Pendulum-v1", "--out", out],
            "outside pendulum-v1's bounds [-2, 2]",
        ),
        (["train", "--data", str(not_hdf5), "--out", out], "not a readable hdf5 file"),
        (["evaluate", "--agent", str(agent), "--env", "Hopper-v5", "--out", out], "pass the --env the agent"),
    ]
