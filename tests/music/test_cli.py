import json

import numpy as np
import pytest

from steerdiff.music.cli import main


def test_prepare_then_evaluate_writes_summaries(tmp_path):
    data = tmp_path / "data"
    main(["prepare", "--source", "synthetic", "--num-pieces", "8", "--out", str(data)])
    summary = json.loads((data / "summary.json").read_text())
    assert summary["train_pieces"] + summary["val_pieces"] == 8
    from steerdiff.music.cli import _save_tensor, _windows
    x, cfg = _windows(data, "val", 4)
    _save_tensor(tmp_path / "s.npz", x, cfg)
    main(["evaluate", "--samples", str(tmp_path / "s.npz"), "--data", str(data), "--rules", "note_density",
          "--out", str(tmp_path / "eval")])
    ev = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert ev["oa"]["mean"] > 0.9  # the validation windows against themselves
    assert np.isfinite(ev["rule_loss"]["note_density"])


def test_unknown_rule_is_named(tmp_path):
    main(["prepare", "--source", "synthetic", "--num-pieces", "4", "--out", str(tmp_path)])
    from steerdiff.music.cli import _save_tensor, _windows
    x, cfg = _windows(tmp_path, "val", 4)
    _save_tensor(tmp_path / "s.npz", x, cfg)
    with pytest.raises(SystemExit, match="unknown rule"):
        main(["evaluate", "--samples", str(tmp_path / "s.npz"), "--data", str(tmp_path), "--rules", "groove",
              "--out", str(tmp_path / "e")])


def test_train_resumes_from_its_checkpoint_and_marks_the_run_finished(tmp_path):
    from steerdiff.music.cli import model_is_trained

    data, model = tmp_path / "data", tmp_path / "model"
    main(["prepare", "--source", "synthetic", "--num-pieces", "6", "--out", str(data)])
    args = ["train", "--data", str(data), "--channels", "8", "--batch-size", "4", "--transpose", "0",
            "--out", str(model)]
    main(args + ["--steps", "5"])
    assert model_is_trained(model, 5) and not model_is_trained(model, 10)
    main(args + ["--steps", "10"])
    summary = json.loads((model / "train_summary.json").read_text())
    assert summary["resumed_from"] == 5 and summary["steps"] == 10
    assert model_is_trained(model, 10) and not model_is_trained(tmp_path / "nothing", 1)
