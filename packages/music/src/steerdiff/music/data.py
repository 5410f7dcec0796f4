"""Datasets of pieces: any folder of MIDI files, or the Bach chorales shipped in music21's corpus.

A :class:`Pieces` holds whole pieces as (C, P, T_i) rolls. :func:`split` divides them into train/validation
*by piece* (windows of one piece never land on both sides), :func:`windows` cuts fixed-length training windows
in model space, with transposition augmentation that never pushes a note out of the pitch range.

The chorales are converted from the score (music21 -> notes on the beat grid, no MIDI detour, pickup bars
padded so bar lines fall on window boundaries) once, then cached as an .npz of uint8 rolls (no pickle) in
``cache_dir`` (default ``$STEERDIFF_CACHE/music``, ``~/.cache/steerdiff/music`` when the variable is unset).

A prepared dataset is a folder with ``train.npz`` and ``val.npz`` (:func:`prepare_data`, :func:`save_split`,
:func:`load_split`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from steerdiff.core import runtime
from steerdiff.core.io import atomic_open

from .roll import MidiError, Notes, RollConfig, midi_to_roll, notes_to_roll, to_model

__all__ = [
    "SOURCES",
    "Pieces",
    "synthetic_pieces",
    "load_midi_folder",
    "bach_chorales",
    "split",
    "windows",
    "save_pieces",
    "load_pieces",
    "prepare_data",
    "save_split",
    "load_split",
    "default_cache_dir",
]

SOURCES = ("chorales", "folder", "synthetic")


@dataclass
class Pieces:
    rolls: list[np.ndarray]
    names: list[str]
    config: RollConfig

    def __len__(self) -> int:
        return len(self.rolls)

    def subset(self, index) -> Pieces:
        return Pieces([self.rolls[i] for i in index], [self.names[i] for i in index], self.config)


def default_cache_dir() -> Path:
    """The music package's cache folder, ``cache_dir("music")`` of the core runtime."""
    return runtime.cache_dir("music")


def save_pieces(path, pieces: Pieces) -> Path:
    """Write pieces to one .npz (rolls concatenated along time; uint8 in [0, 255]) atomically."""
    lengths = np.array([r.shape[-1] for r in pieces.rolls], dtype=np.int64)
    data = (
        np.concatenate(pieces.rolls, axis=-1)
        if pieces.rolls
        else np.zeros((pieces.config.num_channels, pieces.config.num_pitches, 0))
    )
    with atomic_open(path, "wb") as f:
        np.savez_compressed(
            f,
            rolls=np.rint(data * 255).astype(np.uint8),
            lengths=lengths,
            names=np.array(json.dumps(pieces.names)),
            config=np.array(json.dumps(pieces.config.to_dict())),
        )
    return Path(path)


def load_pieces(path) -> Pieces:
    """Read pieces written by :func:`save_pieces`; a missing, truncated or foreign file raises a clear
    error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; prepare the data first (steerdiff-music prepare --out {path.parent})"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            config = RollConfig(**json.loads(str(z["config"])))
            lengths = z["lengths"]
            rolls = np.split(z["rolls"].astype(np.float32) / 255, np.cumsum(lengths)[:-1], axis=-1)
            names = json.loads(str(z["names"]))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"{path} is not a pieces file written by save_pieces ({type(err).__name__}: {err}); "
            f"prepare the data again (steerdiff-music prepare)"
        ) from None
    shape = (config.num_channels, config.num_pitches)
    if any(r.shape[:2] != shape for r in rolls) or len(names) != len(rolls):
        raise ValueError(
            f"{path} holds rolls that do not match its own roll layout {shape}; prepare the data again"
        )
    return Pieces(list(rolls), names, config)


def prepare_data(
    source: str = "chorales",
    config: RollConfig | None = None,
    num_pieces: int | None = None,
    folder=None,
    val_fraction: float = 0.15,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Pieces, Pieces]:
    """Pieces from ``source`` ("chorales": music21's Bach chorales, "folder": the MIDI files of ``folder``,
    "synthetic": made-up pieces), split by piece into (train, validation)."""
    config = config or RollConfig()
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {list(SOURCES)}")
    if source == "chorales":
        pieces = bach_chorales(config, num_pieces=num_pieces, progress=progress)
    elif source == "synthetic":
        pieces = synthetic_pieces(config, num_pieces or 32, seed=seed)
    else:
        if folder is None:
            raise ValueError("source 'folder' needs a folder of .mid files (--folder PATH)")
        pieces = load_midi_folder(folder, config, skip_bad=True)
    return split(pieces, val_fraction, seed)


def save_split(folder, train: Pieces, val: Pieces) -> Path:
    """Write a prepared dataset: ``train.npz`` and ``val.npz`` in ``folder``."""
    folder = Path(folder)
    save_pieces(folder / "train.npz", train)
    save_pieces(folder / "val.npz", val)
    return folder


def load_split(folder, which: str = "both"):
    """Read a prepared dataset folder: ``(train, val)`` pieces, or one of them with
    ``which="train"``/``"val"``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data folder {folder} does not exist; prepare it with steerdiff-music prepare --out {folder}"
        )
    names = ("train", "val") if which == "both" else (which,)
    for name in names:
        if not (folder / f"{name}.npz").is_file():
            raise FileNotFoundError(
                f"{folder} holds no {name}.npz, so it is not a prepared dataset; prepare it "
                f"with steerdiff-music prepare --out {folder}"
            )
    out = tuple(load_pieces(folder / f"{name}.npz") for name in names)
    if len(out) == 2 and out[0].config != out[1].config:
        raise ValueError(
            f"{folder}: train.npz and val.npz have different roll layouts; prepare the data again"
        )
    return out if which == "both" else out[0]


def load_midi_folder(
    folder, config: RollConfig, out_of_range: str = "fold", skip_bad: bool = False
) -> Pieces:
    """Every .mid/.midi file under ``folder`` (recursively), sorted by path.

    Unreadable or empty files raise :class:`MidiError` naming the file, unless ``skip_bad``, which warns and
    skips them. Notes outside the pitch range are octave-folded by default (``out_of_range``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give a folder that holds .mid files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if not files:
        raise MidiError(f"{folder} holds no .mid or .midi files")
    rolls, names = [], []
    for f in files:
        try:
            roll, _ = midi_to_roll(f, config, out_of_range=out_of_range)
        except MidiError as e:
            if not skip_bad:
                raise
            warnings.warn(f"skipped {f}: {e}", stacklevel=2)
            continue
        rolls.append(roll)
        names.append(str(f.relative_to(folder)))
    if not rolls:
        raise MidiError(f"none of the {len(files)} MIDI files in {folder} could be read")
    return Pieces(rolls, names, config)


def _score_to_roll(score, config: RollConfig) -> np.ndarray:
    """A music21 score -> roll on the beat grid, the pickup bar padded to a full bar."""
    measures = score.parts[0].getElementsByClass("Measure")
    pad = float(measures[0].paddingLeft) if len(measures) else 0.0
    pitch, start, end = [], [], []
    for n in score.stripTies().flatten().notes:
        ql = float(n.quarterLength)
        if ql <= 0:  # grace notes
            continue
        for p in n.pitches:
            pitch.append(p.midi)
            start.append(float(n.offset) + pad)
            end.append(float(n.offset) + pad + ql)
    s = np.rint(np.array(start) * config.steps_per_beat).astype(np.int64)
    e = np.rint(np.array(end) * config.steps_per_beat).astype(np.int64)
    return notes_to_roll(Notes(np.array(pitch), s, e, np.full(len(pitch), 80)), config, out_of_range="fold")


def bach_chorales(
    config: RollConfig | None = None, num_pieces: int | None = None, cache_dir=None, progress: bool = True
) -> Pieces:
    """The four-part Bach chorales of music21's corpus (needs the ``data`` extra: ``pip install
    steerdiff-music[data]``), the first ``num_pieces`` of them in corpus order (None: all, ~2 minutes the
    first time), converted once and cached."""
    config = config or RollConfig()
    key = hashlib.sha1(json.dumps([config.to_dict(), num_pieces]).encode()).hexdigest()[:12]
    cache = Path(cache_dir or default_cache_dir()) / f"bach_chorales_{num_pieces or 'all'}_{key}.npz"
    if cache.is_file():
        return load_pieces(cache)
    try:
        from music21 import corpus
    except ImportError:
        raise ImportError(
            "the Bach chorales come from music21's corpus: pip install 'steerdiff-music[data]'"
        ) from None
    from tqdm.auto import tqdm

    rolls, names = [], []
    paths = sorted(corpus.getComposer("bach"), key=str)
    bar = tqdm(total=num_pieces or len(paths), desc="converting chorales", disable=not progress)
    for path in paths:
        if num_pieces is not None and len(rolls) >= num_pieces:
            break
        try:
            score = corpus.parse(path)
        except Exception:  # a few corpus files do not parse; they are not chorales we need
            continue
        if len(score.parts) != 4:
            continue
        rolls.append(_score_to_roll(score, config))
        names.append(Path(path).stem)
        bar.update(1)
    bar.close()
    pieces = Pieces(rolls, names, config)
    save_pieces(cache, pieces)
    return pieces


def synthetic_pieces(config: RollConfig, num_pieces: int = 16, num_bars: int = 8, seed: int = 0) -> Pieces:
    """Small made-up pieces (no downloads, no music21): one random major/minor triad per bar, held or repeated
    in the bass/middle voices on a random subdivision, with a melody of chord tones on beats or half-beats.
    For tests and tutorials; the chorales are the real data."""
    if config.num_pitches < 24:
        raise ValueError("synthetic_pieces needs at least two octaves of pitch range")
    g = torch.Generator().manual_seed(seed)
    spb, bar = config.steps_per_beat, config.steps_per_bar
    rolls = []
    for _ in range(num_pieces):
        pitch, start, end = [], [], []
        for b in range(num_bars):
            root = int(torch.randint(12, (1,), generator=g))
            third = 3 if torch.rand(1, generator=g) < 0.4 else 4
            base = config.pitch_low + (root - config.pitch_low) % 12
            chord = [base, base + 12 + third, base + 12 + 7]
            sub = bar // int(torch.randint(1, 3, (1,), generator=g)) if bar > 1 else 1
            for s in range(b * bar, (b + 1) * bar, sub):
                for p in chord:
                    pitch.append(p), start.append(s), end.append(s + sub)
            step = max(spb // (1 + int(torch.randint(2, (1,), generator=g))), 1)
            tones = [p + 24 for p in chord if p + 24 <= config.pitch_high] or chord
            for s in range(b * bar, (b + 1) * bar, step):
                pitch.append(tones[int(torch.randint(len(tones), (1,), generator=g))]), start.append(s)
                end.append(s + step)
        notes = Notes(np.array(pitch), np.array(start), np.array(end), np.full(len(pitch), 80))
        rolls.append(notes_to_roll(notes, config, num_steps=num_bars * bar, out_of_range="fold"))
    return Pieces(rolls, [f"synthetic_{i}" for i in range(num_pieces)], config)


def split(pieces: Pieces, val_fraction: float = 0.1, seed: int = 0) -> tuple[Pieces, Pieces]:
    """Random train/validation split by piece (at least one piece on each side)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if len(pieces) < 2:
        raise ValueError(f"need at least 2 pieces to split, got {len(pieces)}")
    perm = torch.randperm(len(pieces), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(max(1, round(val_fraction * len(pieces))), len(pieces) - 1)
    return pieces.subset(sorted(perm[n_val:])), pieces.subset(sorted(perm[:n_val]))


def windows(
    pieces: Pieces,
    length: int,
    hop: int | None = None,
    transpose: range | list[int] = (0,),
    min_notes: int = 1,
) -> torch.Tensor:
    """Fixed-length windows (N, C, P, length) in model space.

    Windows start every ``hop`` steps (default one bar); each is repeated for every semitone shift in
    ``transpose`` that keeps all its notes inside the pitch range (others are left out, not clipped).
    Windows with fewer than ``min_notes`` note starts are left out.
    """
    hop = hop or pieces.config.steps_per_bar
    if length < 1 or hop < 1:
        raise ValueError(f"length and hop must be positive, got {length}, {hop}")
    cuts = [
        torch.from_numpy(r).unfold(-1, length, hop).permute(2, 0, 1, 3)
        for r in pieces.rolls
        if r.shape[-1] >= length
    ]
    if not cuts:
        raise ValueError(
            f"no piece is at least {length} steps long; use shorter windows (fewer --bars) or longer pieces"
        )
    w = torch.cat(cuts)
    w = w[w[:, 0].flatten(1).sum(1) >= min_notes]
    sounding = w[:, 1].amax(-1) > 0.5  # (N, P)
    rows = torch.arange(w.shape[2])
    low = torch.where(sounding, rows, w.shape[2]).amin(1)
    high = torch.where(sounding, rows, -1).amax(1)
    out = []
    for k in transpose:
        ok = (low + k >= 0) & (high + k < w.shape[2])
        out.append(torch.roll(w[ok], shifts=int(k), dims=2))
    return to_model(torch.cat(out)).contiguous()
