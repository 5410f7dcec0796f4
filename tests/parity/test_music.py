"""Parity with the official SCG code (yjhuangcd/rule-guided-music): the rules and SCG's candidate selection.

The fixture was produced by ``tests/parity/generate/gen_music.py`` run inside a checkout of the official
repository; its ``meta`` names the commit, the functions and the command. Official rolls are (128 MIDI pitches,
time) with no onset channel; steerdiff rolls here use ``RollConfig(pitch_low=21, num_pitches=88)``, the
official code's piano range, and one grid step per official column.
"""

import numpy as np
import pytest
import torch

from steerdiff.music.roll import Notes, RollConfig, notes_to_roll, to_model
from steerdiff.music.rules import ChordProgression, NoteDensity, Objective, PitchHistogram

from ._fixtures import load_json

FX = load_json("music_rules.json")
CFG = RollConfig(steps_per_beat=4, pitch_low=21, num_pitches=88)
T = FX["num_steps"]
PROGRESSIONS = [k for k in FX["pieces"] if k.startswith("prog_")]
RANDOM = [k for k in FX["pieces"] if k.startswith("random_")]


def roll(name: str) -> torch.Tensor:
    a = np.array(FX["pieces"][name])
    notes = Notes(a[:, 0], a[:, 1], a[:, 2], a[:, 3])
    return to_model(torch.tensor(notes_to_roll(notes, CFG, num_steps=T)))[None]


def official_values(name: str) -> torch.Tensor:
    """The soft roll the official rules read, in steerdiff's layout: velocity / 127 * 2 - 1 on sounding cells."""
    x = -torch.ones(1, 2, CFG.num_pitches, T)
    for p, s, e, v in FX["pieces"][name]:
        x[0, 1, p - CFG.pitch_low, s:e] = v / 127 * 2 - 1
    return x


def test_fixture_names_its_source():
    assert FX["meta"]["source"].startswith("yjhuangcd/rule-guided-music@8ab4fa72")
    assert FX["meta"]["command"]


@pytest.mark.parametrize("name", list(FX["pieces"]))
def test_pitch_histogram_matches_official(name):
    got = PitchHistogram(CFG).attribute(roll(name))[0].numpy()
    np.testing.assert_allclose(got, FX["rules"][name]["pitch_hist"], atol=1e-6)


@pytest.mark.parametrize("name", list(FX["pieces"]))
def test_pitch_histogram_on_soft_values_matches_official_velocity_weighting(name):
    # The official histogram sums (x + 1) / 2, so louder notes weigh more. steerdiff's rule on a finished piece
    # counts note duration only (it reads decoded notes), but during guidance (soft_guidance) it reads the soft
    # estimate (x + 1) / 2 like the official code: on the same values the two agree.
    x = official_values(name)
    got = PitchHistogram(CFG).attribute(x, relaxed=True)[0].numpy()
    np.testing.assert_allclose(got, FX["rules"][name]["pitch_hist_velocity"], atol=1e-6)
    hard = PitchHistogram(CFG).attribute(roll(name))[0].numpy()
    if len({n[3] for n in FX["pieces"][name]}) > 1:  # pinned difference where velocities vary
        assert np.abs(hard - np.array(FX["rules"][name]["pitch_hist_velocity"])).max() > 1e-3


@pytest.mark.parametrize("name", list(FX["pieces"]))
def test_note_density_matches_official(name):
    # official note_density(roll, interval=16, horizontal_scale=1) == NoteDensity(window=16): [vertical, horizontal]
    got = NoteDensity(CFG, window=16).attribute(roll(name))[0].numpy()
    np.testing.assert_allclose(got, FX["rules"][name]["note_density_interval16_hr1"], atol=1e-5)
    # the official default (FUNC_DICT "note_density") divides the horizontal density by 5 to bring it to the
    # vertical density's scale; steerdiff reports the plain count (weight the rule instead)
    ref = np.array(FX["rules"][name]["note_density_interval16"])
    n = len(ref) // 2
    np.testing.assert_allclose(got[:n], ref[:n], atol=1e-5)
    np.testing.assert_allclose(got[n:], 5 * ref[n:], atol=1e-4)


def _chords(name):
    return ChordProgression(CFG, window=16).attribute(roll(name))[0].numpy().astype(int).tolist()


@pytest.mark.parametrize("name", [p for p in PROGRESSIONS if "Eb" not in p])
def test_chord_progression_matches_official_on_progressions(name):
    # official get_chords(roll, fs=8, window_size=2.0): 16 columns per window at 120 bpm; music21 key, chordify,
    # Roman numerals reduced to scale degrees 1..7 (0 = no chord)
    assert _chords(name) == FX["rules"][name]["chords_fs8_window2"]


def test_chord_progression_official_spelling_quirk():
    # MIDI carries no spelling: music21 names pitch class 8 G#, never Ab. In E-flat major the official pipeline so
    # reads the IV chord Ab-C-Eb as G#-C-Eb ("vi+64", degree 6) and V7 Bb-D-F-Ab as "#iii..." (degree 3).
    # steerdiff works on pitch classes (enharmonic spellings are the same chord) and gives IV and V.
    ours, official = (
        _chords("prog_Eb_major_root_position"),
        FX["rules"]["prog_Eb_major_root_position"]["chords_fs8_window2"],
    )
    assert ours == [1, 4, 5, 1, 6, 2, 5, 1]
    assert official == [1, 6, 3, 1, 6, 2, 5, 1]


@pytest.mark.xfail(
    strict=True,
    reason="ChordProgression(mode='degree') approximates music21 (key finder, Chord.root(), chordify); on "
    "random note clusters it agrees with the official get_chords on 8 of 24 windows (sparse 5/8, medium 3/8, "
    "dense 0/8; the dense piece's key: music21 C# major, steerdiff Bb major)",
)
def test_chord_progression_matches_official_on_random_clusters():
    for name in RANDOM:
        assert _chords(name) == FX["rules"][name]["chords_fs8_window2"], name


def test_chord_progression_agreement_on_random_clusters_is_pinned():
    agree = sum(
        a == b for name in RANDOM for a, b in zip(_chords(name), FX["rules"][name]["chords_fs8_window2"])
    )
    assert agree >= 8  # of 24 windows; measured 8


# ------------------------------------------------------------------------ SCG candidate selection
def _objective():
    scg = FX["scg"]
    rt = {k: torch.tensor(v) for k, v in scg["rule_targets"].items()}
    w = scg["weights"]
    terms = [
        (PitchHistogram(CFG), rt["pitch_hist"], w["pitch_hist"]),
        (NoteDensity(CFG, window=T), rt["note_density_hr_1"], w["note_density_hr_1"]),
        (ChordProgression(CFG, window=16), rt["chord_progression_pixel"], w["chord_progression_pixel"]),
    ]
    return Objective(terms, num_steps=T)


def _candidates():
    """(B * N, 2, P, T), sample-major (steerdiff's layout); the fixture lists cands[n][b] (the official one)."""
    cands = FX["scg"]["candidates"]
    n, b = len(cands), len(cands[0])
    return torch.cat([roll(cands[i][j]) for j in range(b) for i in range(n)]), n, b


def test_scg_rule_targets_match():
    scg = FX["scg"]
    ref = torch.cat([roll(t) for t in scg["targets"]])
    np.testing.assert_allclose(
        PitchHistogram(CFG).attribute(ref), scg["rule_targets"]["pitch_hist"], atol=1e-6
    )
    np.testing.assert_allclose(
        NoteDensity(CFG, window=T).attribute(ref), scg["rule_targets"]["note_density_hr_1"], atol=1e-5
    )
    # official chord_progression_pixel: fs = 12.5, window 1.28 s = 16 columns
    np.testing.assert_array_equal(
        ChordProgression(CFG, window=16).attribute(ref), scg["rule_targets"]["chord_progression_pixel"]
    )


def test_scg_candidate_losses_match():
    x, n, b = _candidates()
    losses = _objective().losses(x)
    off = FX["scg"]["losses"]
    for name, key in (("pitch_histogram", "pitch_hist"), ("note_density", "note_density_hr_1")):
        ours = losses[name].reshape(b, n).T.numpy()  # -> [n][b] like the fixture
        np.testing.assert_allclose(ours, off[key], rtol=1e-5, atol=1e-6)
    chords = losses["chord_progression"].reshape(b, n).T.numpy()
    prog = np.array([[c.startswith("prog_") for c in row] for row in FX["scg"]["candidates"]])
    np.testing.assert_allclose(chords[prog], np.array(off["chord_progression_pixel"])[prog], atol=1e-6)


def test_scg_selects_the_same_candidate():
    # official GaussianDiffusion.scg_sample: argmax over candidates of -sum_r w_r loss_r(x0-hat);
    # steerdiff's StochasticControlGuidance keeps argmax of Objective.guidance_reward(x0-hat)
    x, n, b = _candidates()
    reward = _objective().guidance_reward(x).reshape(b, n)
    assert reward.argmax(1).tolist() == FX["scg"]["selected"]
