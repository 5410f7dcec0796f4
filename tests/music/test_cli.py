import json

import numpy as np

from steerdiff.music import load_split, save_samples, trained_steps, windows
from steerdiff.music.cli import main


def test_prepare_then_evaluate_writes_summaries(tmp_path):
    data = tmp_path / "data"
    assert main(["prepare", "--source", "synthetic", "--num-pieces", "8", "--out", str(data), "--quiet"]) == 0
    summary = json.loads((data / "summary.json").read_text())
    assert summary["train_pieces"] + summary["val_pieces"] == 8
    val = load_split(data, "val")
    save_samples(tmp_path / "s.npz", windows(val, 32), val.config)
    assert (
        main(
            [
                "evaluate",
                "--samples",
                str(tmp_path / "s.npz"),
                "--data",
                str(data),
                "--rules",
                "note_density",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    ev = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert ev["oa"]["mean"] > 0.9  # the validation windows against themselves
    assert ev["voices"]["generated"] == ev["voices"]["real"]
    assert np.isfinite(ev["rule_loss"]["note_density"])


def test_unknown_rule_is_named(tmp_path, capsys):
    main(["prepare", "--source", "synthetic", "--num-pieces", "4", "--out", str(tmp_path), "--quiet"])
    val = load_split(tmp_path, "val")
    save_samples(tmp_path / "s.npz", windows(val, 32), val.config)
    capsys.readouterr()
    code = main(
        [
            "evaluate",
            "--samples",
            str(tmp_path / "s.npz"),
            "--data",
            str(tmp_path),
            "--rules",
            "groove",
            "--out",
            str(tmp_path / "e"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "unknown rule" in err and len(err.strip().splitlines()) == 1


def test_train_resumes_from_its_checkpoint_and_marks_the_run_finished(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    main(["prepare", "--source", "synthetic", "--num-pieces", "6", "--out", str(data), "--quiet"])
    args = [
        "train",
        "--data",
        str(data),
        "--channels",
        "8",
        "--batch-size",
        "4",
        "--transpose",
        "0",
        "--out",
        str(run),
        "--quiet",
    ]
    assert main(args + ["--train-steps", "5"]) == 0
    assert trained_steps(run / "model") == 5
    assert main(args + ["--train-steps", "10"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == 5 and summary["train_steps"] == 10
    assert trained_steps(run / "model") == 10 and trained_steps(tmp_path / "nothing") == 0
    # the bundle records what it was trained on; generate takes its targets from that data by default
    config = json.loads((run / "model" / "config.json").read_text())["domain"]
    assert config["bars"] == 4 and config["data"]["val_pieces"] >= 1 and config["training"]["steps"] == 10
    assert (
        main(
            [
                "generate",
                "--model",
                str(run / "model"),
                "--rules",
                "note_density",
                "--num-samples",
                "2",
                "--steps",
                "4",
                "--candidates",
                "2",
                "--out",
                str(tmp_path / "gen"),
                "--quiet",
            ]
        )
        == 0
    )
    gen = json.loads((tmp_path / "gen" / "summary.json").read_text())
    assert gen["method"] == "scg" and np.isfinite(gen["rule_loss"]["note_density"])
    assert (tmp_path / "gen" / "sample_01.mid").is_file() and (tmp_path / "gen" / "pianoroll.png").is_file()
