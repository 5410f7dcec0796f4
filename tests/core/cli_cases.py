"""User errors of the ``steerdiff`` command line, for tests/test_cli_convention.py."""

import numpy as np

from steerdiff.core import Denoiser, build_network, save_pretrained


def user_errors(tmp_path):
    np.save(tmp_path / "ok.npy", np.zeros((16, 2), dtype=np.float32))
    np.save(tmp_path / "5d.npy", np.zeros((2, 1, 1, 1, 1), dtype=np.float32))
    (tmp_path / "text.npy").write_text("not numbers")
    save_pretrained(
        tmp_path / "model",
        domain="core",
        config={"sample_shape": [2]},
        denoiser=Denoiser(build_network("mlp", dim=2, hidden=8, depth=1), "edm"),
    )
    corrupt = tmp_path / "corrupt"
    save_pretrained(
        corrupt,
        domain="core",
        config={"sample_shape": [2]},
        denoiser=Denoiser(build_network("mlp", dim=2, hidden=8, depth=1), "edm"),
    )
    (corrupt / "model.safetensors").write_bytes(b"\0" * 10)
    save_pretrained(tmp_path / "music", domain="music")
    out = str(tmp_path / "out")
    return [
        (["train", "--data", str(tmp_path / "missing.npy"), "--out", out], "does not exist"),
        (["train", "--data", str(tmp_path / "text.npy"), "--out", out], "cannot read"),
        (["train", "--data", str(tmp_path / "5d.npy"), "--out", out], "expected (n, d)"),
        (
            ["train", "--data", str(tmp_path / "ok.npy"), "--train-steps", "ten", "--out", out],
            "positive integer",
        ),
        (["train", "--data", str(tmp_path / "ok.npy"), "--ema-decay", "1.5", "--out", out], "[0, 1]"),
        (["sample", "--model", str(tmp_path / "nowhere"), "--out", out], "does not exist"),
        (["sample", "--model", str(corrupt), "--out", out], "corrupt or truncated"),
        (["sample", "--model", str(tmp_path / "music"), "--out", out], "steerdiff-music"),
        (["sample", "--model", str(tmp_path / "model"), "--out", out], "no denoiser and schedule"),
        (["sample", "--model", str(tmp_path / "model"), "--solver", "rk45", "--out", out], "invalid choice"),
        (["sample", "--model", str(tmp_path / "model"), "--device", "tpu", "--out", out], "unknown device"),
    ]
