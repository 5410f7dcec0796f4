"""User errors of ``steerdiff-inverse``: argv (without the program name) and a fragment of the one-line error.

Every file is built directly through the library in ``tmp_path`` (no training), so each case takes well under
a second.
"""

from __future__ import annotations

import json
from pathlib import Path

from steerdiff.core import Denoiser
from steerdiff.inverse import FieldPrior, LinearProblem, PriorConfig, make_dataset, save_dataset
from steerdiff.inverse.prior import build_prior_network


def tiny_prior(path: Path, size: int = 8) -> Path:
    """An untrained prior bundle for ``size`` x ``size`` fields."""
    net = build_prior_network(PriorConfig(base_channels=8, channel_mults=(1,)))
    prior = FieldPrior(Denoiser(net, "edm"), scale=2.0, info={"field_shape": [1, size, size]})
    return prior.save_pretrained(path)


def tiny_dataset(path: Path, size: int = 8) -> Path:
    return save_dataset(path, make_dataset(LinearProblem(size=size, stride=2, noise_std=0.1), 8, 2, seed=0))


def user_errors(tmp_path) -> list[tuple[list[str], str]]:
    tmp_path = Path(tmp_path)
    data = tiny_dataset(tmp_path / "data")
    data16 = tiny_dataset(tmp_path / "data16", size=16)
    prior = tiny_prior(tmp_path / "prior")
    truncated = tiny_prior(tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_config = tiny_prior(tmp_path / "no_config")
    (no_config / "config.json").unlink()
    bad_shape = tiny_dataset(
        tmp_path / "bad_shape"
    )  # problem.json claims 16 x 16 fields, the tensors are 8 x 8
    meta = json.loads((bad_shape / "problem.json").read_text())
    meta["options"]["size"] = 16
    (bad_shape / "problem.json").write_text(json.dumps(meta))
    not_data = tmp_path / "empty"
    not_data.mkdir()
    out = str(tmp_path / "out")
    solve = ["solve", "--out", out, "--device", "cpu", "--quiet"]
    return [
        # missing paths
        ([*solve, "--data", str(tmp_path / "missing"), "--method", "eki"], "does not exist"),
        ([*solve, "--data", str(data), "--prior", str(tmp_path / "no_prior")], "does not exist"),
        (["train-prior", "--data", str(not_data), "--out", out], "holds no data set"),
        ([*solve, "--data", str(data)], "--prior is required"),
        # wrong types
        (["make-data", "--size", "abc", "--out", out], "not a positive integer"),
        ([*solve, "--data", str(data), "--method", "eki", "--scale", "big"], "not a positive number"),
        ([*solve, "--data", str(data), "--method", "adam"], "invalid choice"),
        # out-of-range values
        (["make-data", "--num-train", "0", "--out", out], "not a positive integer"),
        (["make-data", "--noise", "-1", "--out", out], "not a number >= 0"),
        (["make-data", "--problem", "linear", "--size", "8", "--downsample", "3", "--out", out], "stride 3"),
        ([*solve, "--data", str(data), "--method", "eki", "--num-fields", "5"], "more than the 2 test field"),
        (["demo", "--train-steps", "-5", "--out", out], "not a positive integer"),
        # corrupt bundles
        ([*solve, "--data", str(data), "--prior", str(truncated)], "corrupt or truncated"),
        ([*solve, "--data", str(data), "--prior", str(no_config)], "no config.json"),
        # data sets and models whose shapes do not fit
        (["train-prior", "--data", str(bad_shape), "--out", out], "shape"),
        ([*solve, "--data", str(data16), "--prior", str(prior)], "trained on 8x8"),
    ]
