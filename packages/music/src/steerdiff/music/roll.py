"""Piano rolls on a beat-quantised grid, and MIDI in and out through pretty_midi.

A roll is a float array of shape (C, P, T) with values in [0, 1] (a batch adds a leading B):

* channel 0, ``onset``: 1 where a note starts;
* channel 1, ``sustain``: 1 wherever a note sounds, its onset step included;
* channel 2, ``velocity`` (only with ``RollConfig(velocity=True)``): the note's velocity / 127 where it
  sounds.

Pitch row ``p`` is MIDI pitch ``pitch_low + p`` (low pitches first); time column ``t`` is step ``t`` of the
grid, ``steps_per_beat`` steps per quarter-note beat, so a roll follows the score's beats, not seconds: tempo
changes in the MIDI are undone on the way in, and one tempo is written on the way out.

Models work in *model space*, x = 2 * roll - 1 (background -1); :func:`to_model` / :func:`from_model` convert.
Decoding a roll (model space or not) into notes uses one rule everywhere (MIDI export, rules, metrics): a cell
sounds when its sustain value is above the threshold; a note starts where a cell sounds and either its onset
value is above the threshold or the cell before it was silent; it lasts while the cells keep sounding and no
new onset comes.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from steerdiff.core.io import atomic_open

__all__ = [
    "RollConfig",
    "MidiError",
    "MidiInfo",
    "Notes",
    "notes_to_roll",
    "roll_to_notes",
    "midi_to_roll",
    "roll_to_midi",
    "to_model",
    "from_model",
    "note_masks",
    "check_batch",
    "save_midi",
    "save_wav",
]


class MidiError(ValueError):
    """A MIDI file cannot be read, holds no notes, or holds notes the roll cannot represent."""


@dataclass(frozen=True)
class RollConfig:
    """The grid: ``steps_per_beat`` steps per quarter note, pitches ``pitch_low .. pitch_low + num_pitches -
    1``.

    ``beats_per_bar`` sets what one bar is for windows (rules, infilling); ``velocity`` adds a velocity
    channel.
    """

    steps_per_beat: int = 4
    pitch_low: int = 36
    num_pitches: int = 48
    beats_per_bar: int = 4
    velocity: bool = False

    def __post_init__(self):
        for name in ("steps_per_beat", "num_pitches", "beats_per_bar"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"RollConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 <= self.pitch_low or self.pitch_low + self.num_pitches > 128:
            raise ValueError(
                f"RollConfig pitches {self.pitch_low}..{self.pitch_low + self.num_pitches - 1} must lie "
                f"in the MIDI range 0..127; lower pitch_low or num_pitches"
            )

    @property
    def channels(self) -> tuple[str, ...]:
        return ("onset", "sustain", "velocity") if self.velocity else ("onset", "sustain")

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def steps_per_bar(self) -> int:
        return self.steps_per_beat * self.beats_per_bar

    @property
    def pitch_high(self) -> int:
        return self.pitch_low + self.num_pitches - 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MidiInfo:
    """What a roll does not hold but a MIDI file should keep: tempo (BPM), time signature, name."""

    tempo: float = 120.0
    time_signature: tuple[int, int] = (4, 4)
    name: str = ""


@dataclass
class Notes:
    """Notes as parallel arrays: MIDI pitch, start and end in grid steps, velocity 1..127."""

    pitch: np.ndarray
    start: np.ndarray
    end: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return len(self.pitch)

    def sorted(self) -> Notes:
        order = np.lexsort((self.pitch, self.start))
        return Notes(self.pitch[order], self.start[order], self.end[order], self.velocity[order])


# ------------------------------------------------------------------------------------------- conversions


def to_model(roll):
    """[0, 1] roll -> model space [-1, 1]."""
    return roll * 2 - 1


def from_model(x):
    """Model space -> [0, 1] roll (clamped)."""
    return ((x + 1) / 2).clamp(0, 1) if isinstance(x, torch.Tensor) else np.clip((x + 1) / 2, 0, 1)


def check_batch(x: torch.Tensor, config: RollConfig, what: str = "roll") -> None:
    """Raise a clear error unless ``x`` is a (B, C, P, T) tensor laid out as ``config`` says."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{what} must be a torch.Tensor of shape (batch, {config.num_channels}, "
            f"{config.num_pitches}, time); got {type(x).__name__}"
        )
    want = f"(batch, {config.num_channels} channels {config.channels}, {config.num_pitches} pitches, time)"
    if x.ndim != 4:
        hint = "; add the batch dimension with x[None]" if x.ndim == 3 else ""
        raise ValueError(f"{what} must have shape {want}, got {tuple(x.shape)}{hint}")
    if x.shape[1] != config.num_channels or x.shape[2] != config.num_pitches:
        raise ValueError(
            f"{what} must have shape {want}, got {tuple(x.shape)}; build the roll with the same "
            f"RollConfig ({config})"
        )
    if x.shape[3] < 1:
        raise ValueError(f"{what} has no time steps")


def note_masks(
    x: torch.Tensor, config: RollConfig, model_space: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (B, P, T) masks ``(starts, sounding)`` of a batch of rolls, by the module's decoding rule."""
    check_batch(x, config)
    threshold = 0.0 if model_space else 0.5
    sounding = x[:, 1] > threshold
    before = torch.nn.functional.pad(sounding[..., :-1], (1, 0))
    starts = sounding & ((x[:, 0] > threshold) | ~before)
    return starts, sounding


def notes_to_roll(
    notes: Notes, config: RollConfig, num_steps: int | None = None, out_of_range: str = "error"
) -> np.ndarray:
    """Rasterise notes (times in grid steps) to a (C, P, T) roll in {0, 1} (velocity channel in [0, 1]).

    ``out_of_range``: "error" (default) refuses pitches outside the config's range, "fold" moves them by
    octaves into it, "drop" leaves them out.
    """
    if out_of_range not in ("error", "fold", "drop"):
        raise ValueError(f"out_of_range must be 'error', 'fold' or 'drop', got {out_of_range!r}")
    pitch = np.asarray(notes.pitch, dtype=np.int64)
    start = np.asarray(notes.start, dtype=np.int64)
    end = np.maximum(np.asarray(notes.end, dtype=np.int64), start + 1)
    vel = np.asarray(notes.velocity, dtype=np.float32)
    outside = (pitch < config.pitch_low) | (pitch > config.pitch_high)
    if outside.any():
        if out_of_range == "error":
            raise MidiError(
                f"{int(outside.sum())} of {len(pitch)} notes lie outside the pitch range "
                f"{config.pitch_low}..{config.pitch_high} (lowest {pitch.min()}, highest {pitch.max()}); "
                f"widen RollConfig(pitch_low=..., num_pitches=...) or pass out_of_range='fold' or 'drop'"
            )
        if out_of_range == "drop":
            keep = ~outside
            pitch, start, end, vel = pitch[keep], start[keep], end[keep], vel[keep]
        else:
            if config.num_pitches < 12:
                raise ValueError(
                    "out_of_range='fold' needs a pitch range of at least one octave (12 pitches)"
                )
            low = pitch < config.pitch_low
            pitch = np.where(
                low, pitch + 12 * np.ceil((config.pitch_low - pitch) / 12).astype(np.int64), pitch
            )
            high = pitch > config.pitch_high
            pitch = np.where(
                high, pitch - 12 * np.ceil((pitch - config.pitch_high) / 12).astype(np.int64), pitch
            )
    if (start < 0).any():
        raise MidiError("notes start before step 0")
    steps = int(end.max()) if len(end) else 0
    num_steps = steps if num_steps is None else int(num_steps)
    if num_steps < steps:
        raise ValueError(f"num_steps={num_steps} is shorter than the notes ({steps} steps)")
    roll = np.zeros((config.num_channels, config.num_pitches, num_steps), dtype=np.float32)
    row = pitch - config.pitch_low
    order = np.argsort(start, kind="stable")  # later notes win the velocity of overlapping cells
    for r, s, e, v in zip(row[order], start[order], end[order], vel[order], strict=False):
        roll[1, r, s:e] = 1.0
        if config.velocity:
            roll[2, r, s:e] = v / 127.0
    roll[0, row, start] = 1.0
    return roll


def roll_to_notes(roll, config: RollConfig, model_space: bool = False, default_velocity: int = 80) -> Notes:
    """Decode one (C, P, T) roll into notes (grid steps), by the rule in the module docstring."""
    x = torch.as_tensor(np.asarray(roll, dtype=np.float32) if not isinstance(roll, torch.Tensor) else roll)
    if x.ndim != 3:
        raise ValueError(
            f"roll must have shape ({config.num_channels}, {config.num_pitches}, time) for one piece, "
            f"got {tuple(x.shape)}; decode a batch one piece at a time"
        )
    starts, sounding = note_masks(x[None].float(), config, model_space)
    starts, sounding = starts[0].numpy(), sounding[0].numpy()
    rows, t0 = np.nonzero(starts)
    if len(rows) == 0:
        return Notes(*(np.zeros(0, dtype=np.int64) for _ in range(4)))
    # a note ends at the first later step that is silent or starts a new note
    stop = ~sounding | starts
    stop[:, 0] = False
    padded = np.concatenate([stop, np.ones((stop.shape[0], 1), bool)], axis=1)
    flat = np.flatnonzero(padded.reshape(-1))
    width = padded.shape[1]
    nxt = flat[np.searchsorted(flat, rows * width + t0, side="right")]
    t1 = nxt - rows * width
    if config.velocity:
        v = np.asarray(from_model(x[2]) if model_space else x[2])[rows, t0]
        vel = np.clip(np.rint(v * 127), 1, 127).astype(np.int64)
    else:
        vel = np.full(len(rows), default_velocity, dtype=np.int64)
    return Notes(rows + config.pitch_low, t0.astype(np.int64), t1.astype(np.int64), vel).sorted()


# -------------------------------------------------------------------------------------------------- MIDI


def _load_pretty_midi(source):
    import pretty_midi

    if isinstance(source, pretty_midi.PrettyMIDI):
        return source, "<PrettyMIDI>"
    name = str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"
    if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise MidiError(f"{name} does not exist or is not a file; give the path of a .mid/.midi file")
    try:
        pm = pretty_midi.PrettyMIDI(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except Exception as e:  # mido / pretty_midi raise many types for corrupt files
        raise MidiError(
            f"{name} is not a readable MIDI file ({type(e).__name__}: {e}); check that it is a Standard "
            f"MIDI File (.mid), not audio, MusicXML or a truncated download"
        ) from None
    return pm, name


def _beats(pm, times: np.ndarray) -> np.ndarray:
    """Seconds -> quarter-note beats, following every tempo change."""
    change_times, tempi = pm.get_tempo_changes()
    if len(change_times) == 0:
        change_times, tempi = np.zeros(1), np.array([120.0])
    seg = np.diff(change_times) * tempi[:-1] / 60.0
    beat_at = np.concatenate([[0.0], np.cumsum(seg)])
    k = np.clip(np.searchsorted(change_times, times, side="right") - 1, 0, None)
    return beat_at[k] + (times - change_times[k]) * tempi[k] / 60.0


def midi_to_roll(
    source, config: RollConfig, out_of_range: str = "error", include_drums: bool = False
) -> tuple[np.ndarray, MidiInfo]:
    """Read a MIDI file (path, bytes or ``PrettyMIDI``) into a (C, P, T) roll and its :class:`MidiInfo`.

    All non-drum instruments are merged. Note starts and ends snap to the nearest grid step (a note keeps at
    least one step). Raises :class:`MidiError` for unreadable files, files without notes and, by default,
    notes outside the pitch range.
    """
    pm, name = _load_pretty_midi(source)
    notes = [n for inst in pm.instruments if include_drums or not inst.is_drum for n in inst.notes]
    if not notes:
        raise MidiError(f"{name} holds no (non-drum) notes; a roll needs at least one note")
    start = _beats(pm, np.array([n.start for n in notes])) * config.steps_per_beat
    end = _beats(pm, np.array([n.end for n in notes])) * config.steps_per_beat
    s = np.rint(start).astype(np.int64)
    raw = Notes(
        np.array([n.pitch for n in notes]),
        s,
        np.maximum(np.rint(end).astype(np.int64), s + 1),
        np.array([n.velocity for n in notes]),
    )
    roll = notes_to_roll(raw, config, out_of_range=out_of_range)
    _, tempi = pm.get_tempo_changes()
    ts = pm.time_signature_changes
    info = MidiInfo(
        tempo=float(tempi[0]) if len(tempi) else 120.0,
        time_signature=(ts[0].numerator, ts[0].denominator) if ts else (4, 4),
        name=Path(name).stem if not name.startswith("<") else "",
    )
    return roll, info


def roll_to_midi(
    roll, config: RollConfig, info: MidiInfo | None = None, model_space: bool = False, program: int = 0
):
    """One (C, P, T) roll -> ``pretty_midi.PrettyMIDI`` with one instrument, the tempo and time signature of
    ``info`` (default 120 BPM, 4/4)."""
    import pretty_midi

    info = info or MidiInfo()
    if not (math.isfinite(info.tempo) and info.tempo > 0):
        raise ValueError(f"tempo must be a positive number of beats per minute, got {info.tempo}")
    notes = roll_to_notes(roll, config, model_space=model_space)
    pm = pretty_midi.PrettyMIDI(initial_tempo=float(info.tempo))
    pm.time_signature_changes.append(
        pretty_midi.TimeSignature(int(info.time_signature[0]), int(info.time_signature[1]), 0.0)
    )
    inst = pretty_midi.Instrument(program=program, name=info.name or "steerdiff")
    step = 60.0 / info.tempo / config.steps_per_beat
    for p, s, e, v in zip(
        notes.pitch.tolist(), notes.start.tolist(), notes.end.tolist(), notes.velocity.tolist(), strict=False
    ):
        inst.notes.append(pretty_midi.Note(velocity=int(v), pitch=int(p), start=s * step, end=e * step))
    pm.instruments.append(inst)
    return pm


# ------------------------------------------------------------------------------------------------ writing


def _write_bytes(path, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:  # the core's atomic write: the file appears whole or not at all
        f.write(data)
    return Path(path)


def save_midi(pm, path) -> Path:
    """Write a ``PrettyMIDI`` atomically."""
    buf = io.BytesIO()
    pm.write(buf)
    return _write_bytes(path, buf.getvalue())


def save_wav(pm, path, fs: int = 22050) -> Path:
    """A quick audio preview: pretty_midi's sine-wave synthesis, written as 16-bit mono WAV atomically."""
    import wave

    audio = pm.synthesize(fs=fs)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(fs)
        w.writeframes(pcm)
    return _write_bytes(path, buf.getvalue())
