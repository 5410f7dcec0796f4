"""steerdiff's rules against independent libraries (music21, muspy) on the same pieces, through a real MIDI round trip.

Each piece is a roll; steerdiff writes it to a MIDI file with its own writer (``roll_to_midi`` + ``save_midi``);
music21 (``converter.parse``) and muspy (``read_midi``) read that file back with their own parsers; the
quantities are computed by each side's own code. Where the definitions differ, the conversion is written out
beside the assertion. Grid: 4 steps per beat, 16 per bar (one window of the density and chord rules).
"""

from __future__ import annotations

import music21
import muspy
import numpy as np
import pytest
import torch

from steerdiff.music import RollConfig, notes_to_roll, to_model
from steerdiff.music.roll import Notes, note_masks, roll_to_midi, save_midi
from steerdiff.music.rules import (
    _DEGREE_OF_INTERVAL,
    ChordProgression,
    NoteDensity,
    PitchHistogram,
    chord_root,
    estimate_key,
)

CFG = RollConfig(steps_per_beat=4, pitch_low=21, num_pitches=88)
T, BAR = 128, 16
LETTERS = "CDEFGAB"


def _random_piece(rng, n):
    """n notes, pitches 40..90, 1..8 steps long; two notes of one pitch never touch (they would merge)."""
    notes = []
    while len(notes) < n:
        p, s = int(rng.integers(40, 91)), int(rng.integers(0, T))
        e = min(T, s + int(rng.integers(1, 9)))
        if all(q != p or e < s2 or e2 < s for q, s2, e2 in notes):
            notes.append((p, s, e))
    return notes


def _progression(tonic, roots_and_thirds):
    """One triad per bar (root position, 14 steps) plus a bass note an octave below the root."""
    notes = []
    for bar, (root, third) in enumerate(roots_and_thirds):
        r = 48 + (tonic + root) % 12
        for p in (r, r + third, r + 7):
            notes.append((p + 12, bar * BAR, bar * BAR + 14))
        notes.append((r, bar * BAR, bar * BAR + 14))
    return notes


_MAJ, _MIN = 4, 3
# I IV V I vi ii V I, in C and in G
_PROG = [(0, _MAJ), (5, _MAJ), (7, _MAJ), (0, _MAJ), (9, _MIN), (2, _MIN), (7, _MAJ), (0, _MAJ)]
_RNG = np.random.default_rng(0)
PIECES = {
    "progression_C": _progression(0, _PROG),
    "progression_G": _progression(7, _PROG),
    "random_30": _random_piece(_RNG, 30),
    "random_60": _random_piece(_RNG, 60),
    "random_120": _random_piece(_RNG, 120),
}
RANDOM = [k for k in PIECES if k.startswith("random")]


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    """name -> (model-space roll (1, C, P, T), music21 score, muspy Music at 4 steps per beat)."""
    folder = tmp_path_factory.mktemp("crosscheck")
    out = {}
    for name, notes in PIECES.items():
        p, s, e = map(np.array, zip(*notes, strict=True))
        roll = notes_to_roll(Notes(p, s, e, np.full(len(p), 80)), CFG, num_steps=T)
        path = save_midi(roll_to_midi(roll, CFG), folder / f"{name}.mid")
        music = muspy.read_midi(path)
        music.adjust_resolution(CFG.steps_per_beat)
        # music21's default post-quantisation moves some note ends by a grid step (1 of the 60 notes of
        # random_60); the notes are on the grid already, so read them as written
        score = music21.converter.parse(path, quantizePost=False)
        out[name] = (to_model(torch.tensor(roll))[None], score, music)
    return out


def _m21_notes(score):
    """(pitch class, offset in steps, length in steps, starts a note) of every note piece of a parsed score:
    music21 splits notes at bar lines into tied pieces, and only a piece that is not a tie's continuation
    starts a note."""
    rows = []
    for n in score.flatten().notes:
        onset = n.tie is None or n.tie.type == "start"
        for p in n.pitches:
            rows.append((p.pitchClass, round(float(n.offset) * 4), round(float(n.quarterLength) * 4), onset))
    return rows


@pytest.mark.parametrize("name", list(PIECES))
def test_muspy_reads_the_same_sounding_cells(pieces, name):
    # muspy's piano roll of the MIDI file steerdiff wrote is steerdiff's decoded sounding mask, cell for cell
    x, _, music = pieces[name]
    _, sounding = note_masks(x, CFG)
    roll = muspy.to_pianoroll_representation(music, encode_velocity=False)  # (time, 128), up to the last end
    ours = np.zeros((T, 128), bool)
    ours[:, CFG.pitch_low : CFG.pitch_high + 1] = sounding[0].numpy().T
    last = int(np.nonzero(ours.any(1))[0].max()) + 1
    np.testing.assert_array_equal(roll[:last].astype(bool), ours[:last])
    assert not roll[last:].any()  # muspy's roll runs one empty step past the last note end


@pytest.mark.parametrize("name", list(PIECES))
def test_pitch_histogram_matches_music21_key_finder_input(pieces, name):
    # music21's key finders weigh each pitch class by its duration in quarter notes
    # (KeyWeightKeyAnalysis._getPitchClassDistribution); steerdiff's PitchHistogram counts sounding grid cells
    # (4 per quarter note) and normalises to sum 1. Normalised, the two are the same.
    x, score, _ = pieces[name]
    dist = np.array(
        music21.analysis.discrete.AardenEssen()._getPitchClassDistribution(score.flatten()), float
    )
    ours = PitchHistogram(CFG).attribute(x)[0].double().numpy()
    np.testing.assert_allclose(ours, dist / dist.sum(), atol=1e-6)


@pytest.mark.parametrize("name", list(PIECES))
def test_note_density_matches_music21_notes(pieces, name):
    # steerdiff, per bar: vertical = sounding cells / 16 steps, horizontal = steps at which a note starts.
    # From music21's parsed notes: vertical = sum of each note's overlap with the bar (in steps) / 16,
    # horizontal = number of distinct note offsets in the bar.
    x, score, _ = pieces[name]
    rows = _m21_notes(score)
    n = T // BAR
    vertical, horizontal = np.zeros(n), np.zeros(n)
    for b in range(n):
        lo, hi = b * BAR, (b + 1) * BAR
        vertical[b] = sum(max(0, min(o + d, hi) - max(o, lo)) for _, o, d, _ in rows) / BAR
        horizontal[b] = len({o for _, o, _, onset in rows if onset and lo <= o < hi})
    ours = NoteDensity(CFG, window=BAR).attribute(x)[0].double().numpy()
    np.testing.assert_allclose(ours, np.concatenate([vertical, horizontal]), atol=1e-6)


@pytest.mark.parametrize("name", list(PIECES))
def test_muspy_metrics_from_steerdiff_rules(pieces, name):
    x, _, music = pieces[name]
    starts, sounding = note_masks(x, CFG)
    # polyphony: muspy averages the number of sounding pitches over the steps where something sounds;
    # steerdiff's vertical density averages over all steps of a bar, so polyphony = mean vertical * T / voiced
    vertical = NoteDensity(CFG, window=BAR).attribute(x)[0, : T // BAR].double()
    voiced = int((sounding[0].sum(0) > 0).sum())
    assert float(vertical.mean()) * T / voiced == pytest.approx(muspy.polyphony(music), rel=1e-9)
    # pitch classes used and pitch-class entropy: muspy counts notes (not durations) per pitch class; the
    # same counts are steerdiff's note starts per pitch class
    hist = PitchHistogram(CFG).attribute(x)[0]
    assert int((hist > 0).sum()) == muspy.n_pitch_classes_used(music)
    pc = (torch.arange(CFG.num_pitches) + CFG.pitch_low) % 12
    counts = torch.zeros(12, dtype=torch.float64).index_add_(0, pc, starts[0].sum(-1).double())
    prob = counts[counts > 0] / counts.sum()
    assert float(-(prob * prob.log2()).sum()) == pytest.approx(muspy.pitch_class_entropy(music), rel=1e-9)
    rows = torch.nonzero(sounding[0].any(-1))[:, 0]
    assert int(rows.max() - rows.min()) == muspy.pitch_range(music)


def _key_index(key) -> int:
    return key.tonic.pitchClass + (12 if key.mode == "minor" else 0)


@pytest.mark.parametrize("name", list(PIECES))
def test_key_matches_music21(pieces, name):
    # both correlate the duration-weighted pitch-class profile with the 24 rotated Aarden-Essen profiles
    x, score, _ = pieces[name]
    ours = int(estimate_key(PitchHistogram(CFG).attribute(x))[0])
    assert ours == _key_index(score.analyze("key"))


def _tag(figure: str) -> int:
    """The SCG paper's chord tag: the first Roman numeral found in music21's figure (VII, VI, IV, V, III, II,
    I, either case), 0 if none."""
    for numeral, degree in (("VII", 7), ("VI", 6), ("IV", 4), ("V", 5), ("III", 3), ("II", 2), ("I", 1)):
        if numeral in figure or numeral.lower() in figure:
            return degree
    return 0


def _music21_windows(score):
    """Per bar, the SCG paper's music21 analysis: the chordify chord overlapping the bar longest (first of
    equals), its Roman numeral in the piece's key (``romanNumeralFromChord``) tagged as a degree."""
    key = score.analyze("key")
    chords = list(score.chordify().flatten().getElementsByClass(music21.chord.Chord))
    out = []
    for b in range(T // BAR):
        lo, hi = b, b + 1.0  # in bars; 4 quarter notes per bar
        overlap = [
            max(0.0, min(float(c.offset + c.quarterLength) / 4, hi) - max(float(c.offset) / 4, lo))
            for c in chords
        ]
        best = int(np.argmax(overlap))
        if overlap[best] == 0:
            out.append(None)
            continue
        c = chords[best]
        rn = music21.roman.romanNumeralFromChord(c, music21.key.Key(key.tonic.name, key.mode))
        out.append({"chord": c, "degree": _tag(rn.figure), "key": key})
    return out


def test_music21_degree_is_the_spelled_letter_distance(pieces):
    # What music21 computes: the degree of a chord is the distance in LETTER names from the key's tonic to the
    # chord's root (music21's Chord.root(), spelled as music21 spells MIDI pitches: C#, E-, F#, G#, B-), plus
    # one. So G# in F# major is "ii" and A-flat would be "bii" -- a spelling, not a pitch-class, relation.
    for name in PIECES:
        for w in _music21_windows(pieces[name][1]):
            if w is None:
                continue
            root, tonic = w["chord"].root(), w["key"].tonic
            letters = (LETTERS.index(root.step) - LETTERS.index(tonic.step)) % 7 + 1
            assert w["degree"] == letters, (name, w["chord"], w["key"])


def test_chord_degrees_agree_on_triads_and_the_random_gap_is_explained(pieces):
    # On triad progressions steerdiff's ChordProgression and music21's analysis agree window for window.
    # On random note clusters they differ, for exactly two reasons, checked window by window on music21's own
    # choice of chord (the keys agree: test_key_matches_music21):
    #   root     -- steerdiff's chord_root (a pitch-class heuristic) picks another root than Chord.root();
    #   spelling -- the same root pitch class, but music21's letter-name degree (C# in C major is #I, degree 1)
    #               differs from steerdiff's pitch-class degree _DEGREE_OF_INTERVAL (1 semitone = degree 2).
    # Whenever music21's chord is steerdiff's chord, the same root and an unambiguous spelling, the degrees
    # are equal; every differing window has one of the causes. The counts are pinned for these pieces.
    rule = ChordProgression(CFG, window=BAR)
    causes = {"agree": 0, "root": 0, "spelling": 0, "slice": 0}
    for name in PIECES:
        x, score, _ = pieces[name]
        ours = rule.attribute(x)[0].long().tolist()
        tonic = int(estimate_key(PitchHistogram(CFG).attribute(x))[0]) % 12
        for b, w in enumerate(_music21_windows(score)):
            assert w is not None, "no silent bars in these pieces"
            pcs = torch.zeros(12)
            for p in w["chord"].pitches:
                pcs[p.pitchClass] = 1
            bass = torch.tensor([w["chord"].bass().pitchClass])
            root = int(chord_root(pcs[None], bass)[0])
            # steerdiff's degree on music21's chosen chord
            on_same_chord = _DEGREE_OF_INTERVAL[(root - tonic) % 12]
            if name.startswith("progression"):
                assert ours[b] == w["degree"] == on_same_chord
                continue
            if ours[b] != on_same_chord:  # steerdiff chose another slice of the bar than chordify's chord
                causes["slice"] += 1
            elif root != w["chord"].root().pitchClass:
                causes["root"] += 1
            elif on_same_chord != w["degree"]:
                causes["spelling"] += 1
            else:
                assert ours[b] == w["degree"]
                causes["agree"] += 1
    assert sum(causes.values()) == len(RANDOM) * (T // BAR)
    assert causes == PINNED_CAUSES


# measured on the three random pieces above (music21 10.5): see docs/music/peers.md
PINNED_CAUSES = {"agree": 17, "root": 3, "spelling": 4, "slice": 0}


def test_roundtrip_keeps_the_notes(pieces):
    # music21 reads back every note steerdiff wrote, on the 16th-note grid, and no other
    for name, (_, score, _) in pieces.items():
        rows = _m21_notes(score)
        assert all(d >= 1 and 0 <= o < T for _, o, d, _ in rows)
        assert sum(onset for *_, onset in rows) == len(PIECES[name])
        assert max(o + d for _, o, d, _ in rows) == max(e for _, _, e in PIECES[name])
        assert sum(d for _, _, d, _ in rows) == sum(e - s for _, s, e in PIECES[name])
