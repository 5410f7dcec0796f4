"""User errors of ``steerdiff-music``: argv (without the program name) and a fragment of the one-line
message."""

from __future__ import annotations

import json

import pretty_midi

from steerdiff.music import MusicPipeline, RollConfig, save_split, split, synthetic_pieces


def chord_midi(path, chords=((60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)), tempo=120.0):
    """A MIDI file of one whole-note chord per 4/4 bar (default I IV V I in C major) plus a bass note an
    octave below each root, at ``tempo``; returns the path."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    piano = pretty_midi.Instrument(0)
    bar = 4 * 60.0 / tempo
    for i, chord in enumerate(chords):
        for p in (chord[0] - 12, *chord):
            piano.notes.append(pretty_midi.Note(80, p, i * bar, (i + 1) * bar))
    pm.instruments.append(piano)
    pm.write(str(path))
    return path


def write_json_file(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


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
    gen = gen + ["--model", str(model)]
    ref = str(chord_midi(tmp_path / "ref.mid"))
    short_ref = str(chord_midi(tmp_path / "short.mid", chords=((60, 64, 67),)))
    junk_midi = tmp_path / "junk.mid"
    junk_midi.write_bytes(b"MThd but not really a MIDI file")
    targets = {
        name: write_json_file(tmp_path / f"{name}.json", obj)
        for name, obj in {
            "short_histogram": {"pitch_histogram": [1, 0, 1]},
            "two_for_one": [{"note_density": [3, 3, 3, 3, 4, 4, 4, 4]}] * 2,
            "unknown": {"groove": [1]},
            "mixed": [{"pitch_histogram": [1] * 12}, {"note_density": [3] * 8}],
            "chords_short": {"chord_progression": ["I", "V"]},
            "chords_mixed": [{"chord_progression": "I,V,vi,IV"}, {"chord_progression": "C,G,Am,F"}],
            "negative": {"pitch_histogram": [-1] + [1] * 11},
            "nan": {"note_density": [float("nan")] * 8},
            "none": {},
            "list_of_numbers": [1, 2, 3],
        }.items()
    }
    (tmp_path / "not.json").write_text("{pitch_histogram: [1, 2]")
    return [
        # a guided method needs rules
        (gen + ["--method", "scg"], "none were given"),
        (gen + ["--method", "tree_search"], "none were given"),
        # targets from a JSON file of the wrong shape
        (gen + ["--targets", targets["short_histogram"]], "must have 12 entries"),
        (gen + ["--targets", targets["two_for_one"]], "one target per sample"),
        (gen + ["--targets", targets["unknown"]], "unknown rule"),
        (gen + ["--num-samples", "2", "--targets", targets["mixed"]], "same rules"),
        (gen + ["--targets", targets["chords_short"]], "must have 4 entries"),
        (gen + ["--num-samples", "2", "--targets", targets["chords_mixed"]], "mix roman numerals"),
        (gen + ["--targets", targets["negative"]], ">= 0"),
        (gen + ["--targets", targets["nan"]], "nan"),
        (gen + ["--targets", targets["none"]], "names no rule"),
        (gen + ["--targets", targets["list_of_numbers"]], "list of such objects"),
        (gen + ["--targets", str(tmp_path / "not.json")], "not valid json"),
        (gen + ["--targets", str(tmp_path / "missing.json")], "does not exist"),
        # targets from flags of the wrong shape
        (gen + ["--pitch-histogram", "1,0,1"], "must have 12 entries"),
        (gen + ["--density", "3,4,5"], "--density takes"),
        (gen + ["--targets", targets["two_for_one"], "--density", "3,4", "--num-samples", "2"], "both"),
        # reference MIDI files that do not fit
        (gen + ["--like", str(tmp_path / "missing.mid")], "does not exist"),
        (gen + ["--like", str(junk_midi)], "junk.mid"),
        (gen + ["--like", short_ref], "shorter than"),
        (gen + ["--num-samples", "3", "--like", ref, ref], "reference pieces"),
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
        (["generate", "--window", "0.5,0.2"], "start,stop"),
        (["generate", "--window", "0.5"], "start,stop"),
        (["generate", "--lam", "-1"], "not a positive number"),
        (["generate", "--dps-scale", "0"], "not a positive number"),
        (["generate", "--pitch-histogram", "a,b"], "list of numbers"),
        (["generate", "--method", "beam"], "invalid choice"),
        (["generate", "--solver", "rk45"], "invalid choice"),
        (gen + ["--rules", "groove"], "unknown rule"),
        (gen + ["--chords", "X,Y"], "cannot read the chords"),
        (gen + ["--method", "scg", "--chords", "I,V,vi,IV", "--solver", "heun"], "deterministic"),
        (["generate", "--model", str(model), "--device", "tpu9", "--out", out], "unknown device"),
        # corrupt bundles
        (gen + ["--model", str(truncated)], "model.safetensors"),
        (gen + ["--model", str(no_config)], "not a steerdiff model bundle"),
        (gen + ["--model", str(short)], "not a steerdiff model bundle"),
        # data that does not fit
        (gen + ["--data", str(other), "--rules", "note_density"], "roll layout"),
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
