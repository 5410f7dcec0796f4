"""The user's own targets: reference MIDI files (--like), a JSON file (--targets) and flags, each read value by
value, recorded per sample (targets.json) with the loss each sample got."""

import json

import numpy as np
import pytest
import torch

from steerdiff.music import (
    Objective,
    RollConfig,
    get_rule,
    load_samples,
    read_targets,
    targets_from_midi,
)
from steerdiff.music.cli import main

from .cli_cases import chord_midi, tiny_bundle

CFG = RollConfig(steps_per_beat=2)
# I IV V I in C (chord_midi's default): bass an octave below each root, then the triad, whole notes
C_MAJOR_HISTOGRAM = np.array([5, 0, 1, 0, 2, 2, 0, 4, 0, 1, 0, 1]) / 16
# ii V I vi in C: D F A / G B D / C E G / A C E, with bass notes D, G, C, A
II_V_I_VI = ((62, 65, 69), (67, 71, 74), (60, 64, 67), (69, 72, 76))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("model") / "model", CFG)


def _generate(model, out, *args, samples=2):
    argv = ["generate", "--model", str(model), "--steps", "3", "--num-samples", str(samples)]
    assert main([*argv, "--candidates", "2", "--out", str(out), "--quiet", *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    return summary, json.loads((out / "targets.json").read_text())


def test_reference_midi_gives_its_histogram_density_and_chords(model, tmp_path, capsys):
    ref = chord_midi(tmp_path / "ref.mid")
    summary, records = _generate(model, tmp_path / "out", "--like", str(ref))
    assert summary["rules"] == ["chord_progression", "note_density", "pitch_histogram"]
    assert set(summary["targets_from"].values()) == {"reference MIDI (--like)"}
    assert [r["midi"] for r in records] == ["sample_00.mid", "sample_01.mid"]
    for r in records:  # one reference for every sample
        np.testing.assert_allclose(r["target"]["pitch_histogram"], C_MAJOR_HISTOGRAM, atol=1e-6)
        assert r["target"]["note_density"] == [4, 4, 4, 4, 1, 1, 1, 1]  # 4 voices, one onset step per bar
        assert r["target"]["chord_progression"] == [1, 4, 5, 1]  # I IV V I, key-relative degrees
    # each sample's loss, saved and printed, is the loss of the written rolls against its target
    x, _ = load_samples(tmp_path / "out" / "samples.npz")
    roll = targets_from_midi(ref, CFG, 32)
    names = ("chord_progression", "note_density", "pitch_histogram")
    obj = Objective.from_reference([get_rule(n, CFG) for n in names], roll.expand(2, -1, -1, -1))
    for name, loss in obj.losses(x).items():
        assert [r["loss"][name] for r in records] == pytest.approx(loss.tolist(), abs=1e-6)
        assert summary["rule_loss_per_sample"][name] == pytest.approx(loss.tolist(), abs=1e-5)
    printed = capsys.readouterr().out
    assert "sample_00.mid: rule loss chord_progression" in printed and "sample_01.mid" in printed


def test_one_reference_midi_per_sample(model, tmp_path):
    refs = [chord_midi(tmp_path / "a.mid"), chord_midi(tmp_path / "b.mid", II_V_I_VI)]
    _, records = _generate(model, tmp_path / "out", "--like", *map(str, refs), "--rules", "chord_progression")
    assert [r["target"] for r in records] == [
        {"chord_progression": [1, 4, 5, 1]},
        {"chord_progression": [2, 5, 1, 6]},
    ]


def test_reference_midi_is_cut_to_the_bars_asked_for(tmp_path):
    ref = chord_midi(tmp_path / "ref.mid", II_V_I_VI + II_V_I_VI[:1] * 4)  # 8 bars, the last 4 all ii
    roll = targets_from_midi(ref, CFG, 32)
    assert roll.shape == (1, 2, 48, 32)
    assert get_rule("chord_progression", CFG).attribute(roll).tolist() == [[2, 5, 1, 6]]


def test_json_targets_one_per_sample(model, tmp_path):
    entries = [
        {
            "pitch_histogram": [2, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0],
            "note_density": [4, 4, 3, 3, 2, 2, 1, 1],
            "chord_progression": "I,V,vi,IV",
        },
        {
            "pitch_histogram": [0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0],
            "note_density": [1, 2, 3, 4, 4, 3, 2, 1],
            "chord_progression": [1, 4, 5, 0],
        },
    ]
    (tmp_path / "t.json").write_text(json.dumps(entries))
    summary, records = _generate(
        model, tmp_path / "out", "--targets", str(tmp_path / "t.json"), "--method", "smc"
    )
    assert summary["method"] == "smc" and summary["lam"] > 0
    assert records[0]["target"] == {
        "chord_progression": [1, 5, 6, 4],
        "note_density": [4, 4, 3, 3, 2, 2, 1, 1],
        "pitch_histogram": [0.5, 0, 0, 0, 0.25, 0, 0, 0.25, 0, 0, 0, 0],  # weights normalised to sum 1
    }
    assert records[1]["target"] == {
        "chord_progression": [1, 4, 5, 0],
        "note_density": [1, 2, 3, 4, 4, 3, 2, 1],
        "pitch_histogram": [0, 0, 0.5, 0, 0, 0, 0, 0, 0, 0.5, 0, 0],
    }


def test_json_targets_read_as_given_and_one_object_serves_every_sample(tmp_path):
    t = read_targets({"chord_progression": ["C", "G", "Am", "F"]}, CFG, 32, 3)
    assert t["chord_progression"].mode == "absolute"
    assert t["chord_progression"].values.tolist() == [[0, 7, 21, 5]] * 3
    t = read_targets([{"note_density": [1, 2, 3, 4, 5, 6, 7, 8]}], CFG, 32, 1)
    assert torch.equal(t["note_density"], torch.arange(1.0, 9.0)[None])


def test_flag_targets(model, tmp_path):
    summary, records = _generate(
        model,
        tmp_path / "out",
        "--pitch-histogram",
        "1,0,1,0,1,0,0,1,0,0,0,0",
        "--density",
        "3,2",
        "--chords",
        "C,G,Am,F",
        "--method",
        "tree_search",
        "--beams",
        "2",
    )
    assert summary["method"] == "tree_search" and summary["beams"] == 2
    assert records[0]["target"] == {
        "chord_progression": [0, 7, 21, 5],  # absolute triads: C, G, A minor, F
        "note_density": [3, 3, 3, 3, 2, 2, 2, 2],  # one pair for every bar
        "pitch_histogram": [0.25, 0, 0.25, 0, 0.25, 0, 0, 0.25, 0, 0, 0, 0],
    }
    assert records[1]["target"] == records[0]["target"]


def test_unguided_with_rules_reports_the_baseline_loss(model, tmp_path):
    summary, records = _generate(model, tmp_path / "out", "--method", "unguided", "--chords", "I,IV,V,I")
    assert summary["method"] == "unguided" and summary["costs"]["nfe"] == 3
    assert all(0 <= r["loss"]["chord_progression"] <= 1 for r in records)


def test_guidance_settings_are_flags_and_recorded(model, tmp_path):
    summary, _ = _generate(
        model, tmp_path / "out", "--chords", "I,V,vi,IV", "--method", "scg", "--window", "0.5,1"
    )
    assert summary["window"] == [0.5, 1.0]
    summary, _ = _generate(
        model,
        tmp_path / "o2",
        "--pitch-histogram",
        "1,1,1,1,1,1,1,1,1,1,1,1",
        "--method",
        "dps",
        "--dps-scale",
        "3",
    )
    assert summary["dps_scale"] == 3.0 and summary["window"] == [0.0, 1.0]
