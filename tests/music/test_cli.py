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
