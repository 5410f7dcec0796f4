import numpy as np
import pretty_midi
import pytest
import torch

from steerdiff.music.data import (
    bach_chorales,
    load_midi_folder,
    load_pieces,
    save_pieces,
    split,
    synthetic_pieces,
    windows,
)
from steerdiff.music.roll import (
    MidiError,
    RollConfig,
    midi_to_roll,
    note_masks,
    roll_to_midi,
    roll_to_notes,
    save_midi,
    to_model,
)

NOTES = [(60, 0, 4, 100), (64, 0, 2, 90), (64, 2, 4, 70), (67, 4, 12, 60), (48, 8, 9, 127)]


def _midi(tempo=90.0, ts=(3, 4), notes=NOTES, spb=4):
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(*ts, 0))
    inst = pretty_midi.Instrument(0)
    step = 60 / tempo / spb
    for p, s, e, v in notes:
        inst.notes.append(pretty_midi.Note(v, p, s * step, e * step))
    pm.instruments.append(inst)
    return pm


def test_midi_round_trip_keeps_notes_tempo_and_time_signature(tmp_path):
    cfg = RollConfig(velocity=True)
    save_midi(_midi(), tmp_path / "in.mid")
    roll, info = midi_to_roll(tmp_path / "in.mid", cfg)
    assert (
        roll.shape == (3, 48, 12)
        and info.time_signature == (3, 4)
        and info.tempo == pytest.approx(90, rel=1e-4)
    )
    save_midi(roll_to_midi(roll, cfg, info), tmp_path / "out.mid")
    back, info2 = midi_to_roll(tmp_path / "out.mid", cfg)
    np.testing.assert_array_equal(back, roll)
    assert info2.time_signature == (3, 4) and info2.tempo == pytest.approx(90, rel=1e-4)
    n = roll_to_notes(back, cfg)
    got = sorted(zip(n.pitch.tolist(), n.start.tolist(), n.end.tolist(), n.velocity.tolist(), strict=False))
    assert got == sorted(NOTES)  # repeated E4 stays two notes; velocities kept


def test_tempo_changes_are_undone_on_the_beat_grid():
    pm = _midi(tempo=120, ts=(4, 4), notes=[(60, 0, 4, 80)])
    # a second note one beat after a tempo change to 60 BPM at t=1 s (beat 2)
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    pm._tick_scales = [(0, 60 / (120 * pm.resolution)), (2 * pm.resolution, 60 / (60 * pm.resolution))]
    pm._update_tick_to_time(10 * pm.resolution)
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(80, 60, 0.0, 0.5), pretty_midi.Note(80, 62, 2.0, 3.0)]  # beats 0-1, 3-4
    pm.instruments.append(inst)
    n = roll_to_notes(midi_to_roll(pm, RollConfig(steps_per_beat=1))[0], RollConfig(steps_per_beat=1))
    assert n.start.tolist() == [0, 3] and n.end.tolist() == [1, 4]


def test_model_space_decoding_matches_unit_interval():
    cfg = RollConfig()
    roll, _ = midi_to_roll(_midi(), cfg)
    a, b = roll_to_notes(roll, cfg), roll_to_notes(to_model(roll), cfg, model_space=True)
    assert a.pitch.tolist() == b.pitch.tolist() and a.end.tolist() == b.end.tolist()


def test_sustain_without_onset_starts_a_note():
    cfg = RollConfig()
    x = -torch.ones(1, 2, 48, 8)
    x[0, 1, 10, 2:5] = 1  # sounding, no onset flag
    starts, sounding = note_masks(x, cfg)
    assert starts[0, 10].nonzero().flatten().tolist() == [2] and sounding.sum() == 3


def test_bad_midi_gets_clear_errors(tmp_path):
    cfg = RollConfig()
    (tmp_path / "junk.mid").write_bytes(b"this is not midi")
    with pytest.raises(MidiError, match="not a readable MIDI file"):
        midi_to_roll(tmp_path / "junk.mid", cfg)
    with pytest.raises(MidiError, match="does not exist"):
        midi_to_roll(tmp_path / "missing.mid", cfg)
    empty = pretty_midi.PrettyMIDI()
    empty.instruments.append(pretty_midi.Instrument(0))
    save_midi(empty, tmp_path / "empty.mid")
    with pytest.raises(MidiError, match="holds no"):
        midi_to_roll(tmp_path / "empty.mid", cfg)
    with pytest.raises(MidiError, match="outside the pitch range"):
        midi_to_roll(_midi(notes=[(100, 0, 4, 80)]), cfg)
    folded, _ = midi_to_roll(_midi(notes=[(100, 0, 4, 80)]), cfg, out_of_range="fold")
    assert roll_to_notes(folded, cfg).pitch.tolist() == [76]
    with pytest.raises(MidiError, match="empty.mid"):
        load_midi_folder(tmp_path, cfg)
    with pytest.warns(UserWarning, match="skipped"):
        with pytest.raises(MidiError, match="none of the"):
            load_midi_folder(tmp_path, cfg, skip_bad=True)


def test_roll_of_the_wrong_shape_is_named():
    cfg = RollConfig()
    with pytest.raises(ValueError, match="add the batch dimension"):
        note_masks(torch.zeros(2, 48, 8), cfg)
    with pytest.raises(ValueError, match="48 pitches"):
        note_masks(torch.zeros(1, 2, 40, 8), cfg)
    with pytest.raises(ValueError, match="for one piece"):
        roll_to_notes(torch.zeros(1, 2, 48, 8), cfg)


def test_folder_windows_transposition_and_split(tmp_path, cfg):
    for i in range(3):
        save_midi(_midi(notes=[(60 + i, 0, 16, 80), (40, 8, 24, 80)], spb=2), tmp_path / f"p{i}.mid")
    pieces = load_midi_folder(tmp_path, cfg)
    assert pieces.names == ["p0.mid", "p1.mid", "p2.mid"]
    w = windows(pieces, 16, hop=8, transpose=[0, 5, 7])
    base = windows(pieces, 16, hop=8)
    assert w.shape[0] == 3 * base.shape[0] and w.shape[1:] == (2, 48, 16)
    assert ((w + 1) / 2).sum() == pytest.approx(3 * ((base + 1) / 2).sum())  # nothing clipped
    assert windows(pieces, 16, hop=8, transpose=[-5]).shape[0] == 0  # E2 would leave the range: left out
    train, val = split(synthetic_pieces(cfg, 10, 2), 0.2, seed=1)
    assert len(train) == 8 and len(val) == 2 and not set(train.names) & set(val.names)
    save_pieces(tmp_path / "p.npz", pieces)
    again = load_pieces(tmp_path / "p.npz")
    assert again.names == pieces.names and all(
        np.array_equal(a, b) for a, b in zip(again.rolls, pieces.rolls, strict=False)
    )


def test_bach_chorales_convert_once_and_cache(tmp_path, cfg):
    pieces = bach_chorales(cfg, num_pieces=2, cache_dir=tmp_path, progress=False)
    assert len(pieces) == 2 and len(list(tmp_path.glob("*.npz"))) == 1
    x = torch.from_numpy(np.concatenate(pieces.rolls, -1))
    assert 3 <= x[1].sum(0).max() <= 4  # four voices (unisons merge)
    assert x[0].sum() > 50
    again = bach_chorales(cfg, num_pieces=2, cache_dir=tmp_path)
    assert again.names == pieces.names and all(
        np.array_equal(a, b) for a, b in zip(again.rolls, pieces.rolls, strict=False)
    )
