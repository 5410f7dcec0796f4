"""User errors of ``steerdiff-music``: argv (without the program name) and a fragment of the one-line
message."""

from __future__ import annotations

from steerdiff.music import MusicPipeline, RollConfig, save_split, split, synthetic_pieces


def tiny_bundle(path, roll: RollConfig | None = None):
    """A small untrained model bundle (no training: it checks formats and errors, not music)."""
    return MusicPipeline.untrained(roll or RollConfig(steps_per_beat=2), bars=4, channels=8).save_pretrained(
        path
    )


def tiny_data(path, roll: RollConfig, num_bars: int = 8):
    train, val = split(synthetic_pieces(roll, 4, num_bars), 0.25)
    return save_split(path, train, val)


def user_errors(tmp_path) -> list[tuple[list[str], str]]:
    roll = RollConfig(steps_per_beat=2)
    model = tiny_bundle(tmp_path / "model", roll)
    truncated = tiny_bundle(tmp_path / "truncated", roll)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_config = tiny_bundle(tmp_path / "no_config", roll)
    (no_config / "config.json").unlink()
    other = tiny_data(tmp_path / "data_other", RollConfig(steps_per_beat=2, pitch_low=48, num_pitches=36))
    short = tiny_data(tmp_path / "data_short", roll, num_bars=2)
    junk = tmp_path / "data_junk"
    junk.mkdir()
    (junk / "train.npz").write_bytes(b"not an npz file")
    (junk / "val.npz").write_bytes(b"not an npz file")
    out = str(tmp_path / "out")
    gen = ["generate", "--steps", "2", "--num-samples", "1", "--out", out, "--quiet"]
    return [
        # missing paths
        (["generate", "--model", str(tmp_path / "missing"), "--out", out], "does not exist"),
        (["train", "--data", str(tmp_path / "missing"), "--out", out], "does not exist"),
        (
            ["evaluate", "--samples", str(tmp_path / "missing.npz"), "--data", str(short), "--out", out],
            "does not exist",
        ),
        (
            ["prepare", "--source", "folder", "--folder", str(tmp_path / "missing"), "--out", out],
            "not a folder",
        ),
        # wrong types
        (["generate", "--num-samples", "many"], "not a positive integer"),
        (["train", "--lr", "fast"], "not a positive number"),
        # out-of-range values and unknown names
        (["generate", "--steps", "0"], "not a positive integer"),
        (["prepare", "--val-fraction", "1.5"], "between 0 and 1"),
        (["generate", "--guide-fraction", "0"], "(0, 1]"),
        (["generate", "--method", "beam"], "invalid choice"),
        (["generate", "--solver", "rk45"], "invalid choice"),
        (gen + ["--model", str(model), "--rules", "groove"], "unknown rule"),
        (gen + ["--model", str(model), "--chords", "X,Y"], "cannot read the chords"),
        (
            gen + ["--model", str(model), "--method", "scg", "--chords", "I,V,vi,IV", "--solver", "heun"],
            "deterministic",
        ),
        (["generate", "--model", str(model), "--device", "tpu9", "--out", out], "unknown device"),
        # corrupt bundles
        (gen + ["--model", str(truncated)], "model.safetensors"),
        (gen + ["--model", str(no_config)], "not a steerdiff model bundle"),
        (gen + ["--model", str(short)], "not a steerdiff model bundle"),
        # data that does not fit
        (gen + ["--model", str(model), "--data", str(other), "--rules", "note_density"], "roll layout"),
        (
            ["train", "--data", str(short), "--bars", "4", "--train-steps", "1", "--out", out],
            "no piece is at least",
        ),
        (["train", "--data", str(junk), "--train-steps", "1", "--out", out], "not a pieces file"),
        (
            [
                "generate",
                "--model",
                str(model),
                "--bars",
                "3",
                "--rules",
                "note_density",
                "--data",
                str(short),
                "--out",
                out,
            ],
            "no piece is at least",
        ),
    ]
