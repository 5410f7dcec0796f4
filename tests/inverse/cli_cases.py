"""User errors of ``steerdiff-inverse``: argv (without the program name) and a fragment of the one-line error.

Every file is built directly through the library in ``tmp_path`` (no training), so each case takes well under
a second.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np

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


def program(path: Path, body: str) -> str:
    """A forward program (a Python script run with this interpreter) that reads INPUT.npy, runs ``body``."""
    path.write_text(f"import sys\nimport numpy as np\nx = np.load(sys.argv[1])\n{body}\n")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(path))}"


def own_problem_errors(tmp_path: Path, prior: Path, out: str) -> list[tuple[list[str], str]]:
    """Your own fields, measurements, operators and forward models, malformed."""
    rng = np.random.default_rng(0)
    files = {
        "y.npy": rng.standard_normal((2, 4, 4)),
        "y1d.npy": rng.standard_normal(16),
        "fields.npy": rng.standard_normal((4, 8, 8)),
        "channels_last.npy": rng.standard_normal((4, 8, 8, 1)),
        "wide.npy": rng.standard_normal((4, 8, 6)),
        "truth3.npy": rng.standard_normal((3, 8, 8)),
        "A.npy": rng.standard_normal((16, 100)),
    }
    nan_fields = rng.standard_normal((4, 8, 8))
    nan_fields[2, 0, 0] = np.nan
    files["nan_fields.npy"] = nan_fields
    for name, array in files.items():
        np.save(tmp_path / name, array)
    (tmp_path / "fields.txt").write_text("1 2 3\n")
    works = program(tmp_path / "works.py", "np.save(sys.argv[2], x[:, 0, ::2, ::2])")
    fails = program(tmp_path / "fails.py", "sys.stderr.write('solver diverged\\n'); sys.exit(4)")
    nan = program(tmp_path / "nan.py", "y = x[:, 0, ::2, ::2].copy(); y[0] = np.nan; np.save(sys.argv[2], y)")
    wrong = program(tmp_path / "wrong.py", "np.save(sys.argv[2], x[:, 0])")
    y, f = str(tmp_path / "y.npy"), str(tmp_path / "fields.npy")
    solve = ["solve", "--out", out, "--device", "cpu", "--quiet", "--num-samples", "2", "--steps", "2"]
    own = [*solve, "--prior", str(prior), "--measurements", y]
    train = ["train-prior", "--out", out, "--train-steps", "1", "--quiet", "--fields"]
    return [
        # training fields
        ([*train, str(tmp_path / "channels_last.npy")], "numpy.moveaxis(a, -1, 1)"),
        ([*train, str(tmp_path / "wide.npy")], "8x6 grids; give square grids"),
        ([*train, str(tmp_path / "nan_fields.npy")], "contain nan or inf (index [2])"),
        ([*train, str(tmp_path / "fields.txt")], "not a .npy file"),
        (["train-prior", "--out", out, "--data", str(tmp_path), "--fields", f], "not allowed with argument"),
        # measurements and operators
        ([*solve, "--prior", str(prior), "--measurements", str(tmp_path / "y1d.npy"), "--operator",
          str(tmp_path / "A.npy")], "saved as y[none], shape (1, m)"),
        ([*own, "--operator", str(tmp_path / "A.npy")], "has 100 columns, but a field has 64 values"),
        ([*own, "--forward-program", works, "--truth", str(tmp_path / "truth3.npy")], "3 true field(s) for 2"),
        ([*own, "--forward-program", works, "--field-size", "16"], "the field grids disagree"),
        ([*own], "give your forward model"),
        ([*solve, "--method", "eki", "--measurements", y, "--forward-program", works], "--field-size"),
        ([*solve, "--data", str(tmp_path), "--measurements", y], "not allowed with argument"),
        # forward models
        ([*own, "--forward-program", fails], "exited with status 4: solver diverged"),
        ([*own, "--forward-program", nan], "nan or inf for row(s) [0]"),
        ([*own, "--forward-program", wrong], "rows of shape (8, 8), but the measurements are rows of shape (4, 4)"),
        ([*own, "--forward-program", "no-such-simulator --fast"], "was not found"),
        ([*own, "--forward", "no_such_module_xyz:run"], "no module 'no_such_module_xyz'"),
        ([*own, "--forward", "json"], "not of the form module:function"),
        ([*own, "--forward", "json:no_such_function"], "has no 'no_such_function'"),
        ([*own, "--forward-program", works, "--method", "dps"], "is a black box"),
    ]  # fmt: skip


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
        (
            [*solve, "--data", str(data), "--method", "eki", "--operator", str(tmp_path / "x.npy")],
            "does not exist",
        ),
        (
            [*solve, "--data", str(data), "--method", "eki", "--noise", "0.1"],
            "--noise goes with --measurements",
        ),
        *own_problem_errors(tmp_path, prior, out),
    ]
