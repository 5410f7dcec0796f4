"""The `steerdiff` command line: quickstart, train -> sample, and bad input."""

import json

import numpy as np
import pytest
import torch

from steerdiff.core.cli import main
from steerdiff.core.toy import TOY_DATASETS, toy_dataset
from tests.torchrun import torchrun


def test_quickstart_writes_plot_and_summary(tmp_path, capsys):
    assert (
        main(
            [
                "quickstart",
                "--out",
                str(tmp_path),
                "--train-steps",
                "60",
                "--num-samples",
                "64",
                "--quiet",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (tmp_path / "quickstart.png").stat().st_size > 10_000
    assert summary["train_steps"] == 60
    costs = summary["costs"]
    assert costs["SCG, reward = [x>0 and y>0]"]["reward_evals"] == 64 * 32 * 8
    assert costs["reconstruction guidance (DPS)"]["gradient_evals"] > 0
    assert json.loads(capsys.readouterr().out)["plot"].endswith("quickstart.png")


def test_train_then_sample_round_trip(tmp_path, capsys):
    data = toy_dataset("moons", 512).numpy()
    np.save(tmp_path / "data.npy", data)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "data.npy"),
                "--out",
                str(run),
                "--train-steps",
                "30",
                "--batch-size",
                "64",
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((run / "summary.json").read_text())["sample_shape"] == [2]
    out = tmp_path / "samples"
    assert (
        main(
            [
                "sample",
                "--model",
                str(run),
                "--num-samples",
                "16",
                "--steps",
                "5",
                "--solver",
                "dpmpp_2m",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    samples = np.load(out / "samples.npy")
    assert samples.shape == (16, 2) and np.isfinite(samples).all()
    capsys.readouterr()


def test_bad_inputs_get_clear_errors(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing.npy"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "data.csv").write_text("1,2\n")
    assert main(["train", "--data", str(tmp_path / "data.csv"), "--out", str(tmp_path)]) == 2
    assert "not a .npy file" in capsys.readouterr().err
    bad = np.ones((64, 2), dtype=np.float32)
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "nan.npy"),
                "--out",
                str(tmp_path / "r"),
                "--train-steps",
                "2",
                "--batch-size",
                "8",
                "--quiet",
            ]
        )
        == 2
    )
    assert "NaN" in capsys.readouterr().err
    assert main(["sample", "--model", str(tmp_path / "nowhere"), "--shape", "2", "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown toy dataset"):
        toy_dataset("circles", 10)
    assert set(TOY_DATASETS) == {"ring8", "moons", "spiral"}


def test_sample_sharded_over_two_torchrun_processes_equals_one_process(tmp_path, capsys):

    from steerdiff.core import EDM, Denoiser, build_network, save_pretrained

    torch.manual_seed(0)
    save_pretrained(
        tmp_path / "model",
        domain="core",
        denoiser=Denoiser(build_network("mlp", dim=2, hidden=16), "edm"),
        schedule=EDM(),
        config={"sample_shape": [2]},
    )
    common = [
        "sample",
        "--model",
        str(tmp_path / "model"),
        "--num-samples",
        "10",
        "--chunk-size",
        "3",
        "--steps",
        "6",
        "--solver",
        "ddpm",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    torchrun("-m", "steerdiff.core.cli", *common, "--out", str(tmp_path / "two"))
    one, two = np.load(tmp_path / "one" / "samples.npy"), np.load(tmp_path / "two" / "samples.npy")
    assert one.shape == (10, 2) and np.array_equal(one, two)
    # the same folder with other sampler settings never reuses the shards
    other = [("euler" if a == "ddpm" else a) for a in common]
    assert main([*other, "--out", str(tmp_path / "one")]) == 2
    assert "shards of another job" in capsys.readouterr().err
