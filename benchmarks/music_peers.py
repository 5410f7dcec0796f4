"""steerdiff's music rules beside music21, muspy and the official SCG rule functions: agreement and speed.

    python benchmarks/music_peers.py --quick    # 8 rolls for the speed rows, 3 repeats (under a minute)
    python benchmarks/music_peers.py            # 24 rolls, 5 repeats

Pieces: two triad progressions (I IV V I vi ii V I in C and in G) and three random pieces of 30, 60 and 120
notes (pitches 40..90, 1..8 steps), 128 steps of 16th notes (the pieces of tests/music/test_crosscheck.py).
Each roll is written to MIDI by steerdiff's writer and read back by music21 (``converter.parse``,
``quantizePost=False``) and muspy (``read_midi``); each library computes its own numbers.

Agreement: the largest difference between steerdiff's rule and the library's quantity over the pieces (after
the conversion named in the row), or the count of equal values. Speed (median CPU seconds per roll,
interleaved, one thread): steerdiff evaluates a batch of rolls in one call per rule; music21 and muspy parse
each roll's MIDI and compute per piece (that is how they get a roll); the official rule functions of
yjhuangcd/rule-guided-music (``music_rule_guidance/music_rules.py``, from --official, default
/tmp/official/yjhuangcd+rule-guided-music) take the same rolls as tensors. ratio = steerdiff / peer.

Not compared: the official prior's train step and SCG sample. The official model is a DiT (it needs timm and
rotary-embedding-torch) trained on the latents of a VAE whose weights are not available here, so neither runs
on these inputs; its rule functions and its SCG selection are what can run (see docs/parity.md).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import types
from pathlib import Path

import music21
import muspy
import numpy as np
import pretty_midi
import torch

from steerdiff.core.benchmarking import environment, interleaved_cpu_time, print_table, write_json
from steerdiff.core.runtime import set_threads
from steerdiff.music import RollConfig, notes_to_roll, to_model
from steerdiff.music.roll import Notes, note_masks, roll_to_midi
from steerdiff.music.rules import (
    _DEGREE_OF_INTERVAL,
    ChordProgression,
    NoteDensity,
    PitchHistogram,
    chord_root,
    estimate_key,
)

OFFICIAL_COMMIT = "8ab4fa72aad202af16c3ddf676615e52d3d85c63"
CFG = RollConfig(steps_per_beat=4, pitch_low=21, num_pitches=88)
T, BAR = 128, 16
LETTERS = "CDEFGAB"
PROG = [(0, 4), (5, 4), (7, 4), (0, 4), (9, 3), (2, 3), (7, 4), (0, 4)]  # I IV V I vi ii V I


def random_piece(rng, n):
    notes = []
    while len(notes) < n:
        p, s = int(rng.integers(40, 91)), int(rng.integers(0, T))
        e = min(T, s + int(rng.integers(1, 9)))
        if all(q != p or e < s2 or e2 < s for q, s2, e2 in notes):
            notes.append((p, s, e))
    return notes


def progression(tonic):
    notes = []
    for bar, (root, third) in enumerate(PROG):
        r = 48 + (tonic + root) % 12
        notes += [(p + 12, bar * BAR, bar * BAR + 14) for p in (r, r + third, r + 7)]
        notes.append((r, bar * BAR, bar * BAR + 14))
    return notes


def test_pieces():
    rng = np.random.default_rng(0)
    pieces = {"progression_C": progression(0), "progression_G": progression(7)}
    pieces.update({f"random_{n}": random_piece(rng, n) for n in (30, 60, 120)})
    return pieces


def to_roll(notes) -> np.ndarray:
    p, s, e = map(np.array, zip(*notes, strict=True))
    return notes_to_roll(Notes(p, s, e, np.full(len(p), 80)), CFG, num_steps=T)


def midi_bytes(roll) -> bytes:
    buf = io.BytesIO()
    roll_to_midi(roll, CFG).write(buf)
    return buf.getvalue()


def parse_music21(data: bytes):
    return music21.converter.parse(data, format="midi", quantizePost=False)


def parse_muspy(data: bytes, folder: Path):
    path = folder / "piece.mid"
    path.write_bytes(data)
    music = muspy.read_midi(path)
    music.adjust_resolution(CFG.steps_per_beat)
    return music


def tag(figure: str) -> int:
    """The SCG paper's chord tag of a music21 Roman numeral figure."""
    for numeral, degree in (("VII", 7), ("VI", 6), ("IV", 4), ("V", 5), ("III", 3), ("II", 2), ("I", 1)):
        if numeral in figure or numeral.lower() in figure:
            return degree
    return 0


def music21_rules(score):
    """music21's pitch-class distribution, key, and per-bar chord degrees (the SCG paper's analysis)."""
    dist = np.array(
        music21.analysis.discrete.AardenEssen()._getPitchClassDistribution(score.flatten()), float
    )
    key = score.analyze("key")
    chords = list(score.chordify().flatten().getElementsByClass(music21.chord.Chord))
    bars = []
    for b in range(T // BAR):
        overlap = [
            max(0.0, min(float(c.offset + c.quarterLength) / 4, b + 1) - max(float(c.offset) / 4, b))
            for c in chords
        ]
        best = int(np.argmax(overlap)) if chords else 0
        if not chords or overlap[best] == 0:
            bars.append(None)
            continue
        c = chords[best]
        rn = music21.roman.romanNumeralFromChord(c, music21.key.Key(key.tonic.name, key.mode))
        bars.append((c, tag(rn.figure)))
    return dist / dist.sum(), key, bars


def music21_notes(score):
    rows = []
    for n in score.flatten().notes:
        onset = n.tie is None or n.tie.type == "start"
        rows += [(round(float(n.offset) * 4), round(float(n.quarterLength) * 4), onset) for _ in n.pitches]
    return rows


def agreement(pieces, folder):
    hist_rule, dens_rule, chord_rule = (
        PitchHistogram(CFG),
        NoteDensity(CFG, window=BAR),
        ChordProgression(CFG),
    )
    diffs = {k: 0.0 for k in ("hist", "dens", "poly", "entropy")}
    used = keys = 0
    chords = {"agree": 0, "root": 0, "spelling": 0, "slice": 0}
    triads = [0, 0]
    for name, notes in pieces.items():
        roll = to_roll(notes)
        x = to_model(torch.tensor(roll))[None]
        data = midi_bytes(roll)
        score, music = parse_music21(data), parse_muspy(data, folder)
        dist, key, bars = music21_rules(score)
        hist = hist_rule.attribute(x)[0].double()
        diffs["hist"] = max(diffs["hist"], float(np.abs(hist.numpy() - dist).max()))
        rows = music21_notes(score)
        ref = []
        for b in range(T // BAR):
            lo, hi = b * BAR, (b + 1) * BAR
            ref.append(sum(max(0, min(o + d, hi) - max(o, lo)) for o, d, _ in rows) / BAR)
        ref += [len({o for o, _, on in rows if on and b * BAR <= o < (b + 1) * BAR}) for b in range(T // BAR)]
        dens = dens_rule.attribute(x)[0].double().numpy()
        diffs["dens"] = max(diffs["dens"], float(np.abs(dens - np.array(ref)).max()))
        starts, sounding = note_masks(x, CFG)
        voiced = int((sounding[0].sum(0) > 0).sum())
        poly = float(dens[: T // BAR].mean()) * T / voiced
        diffs["poly"] = max(diffs["poly"], abs(poly - muspy.polyphony(music)))
        pc = (torch.arange(CFG.num_pitches) + CFG.pitch_low) % 12
        counts = torch.zeros(12, dtype=torch.float64).index_add_(0, pc, starts[0].sum(-1).double())
        prob = counts[counts > 0] / counts.sum()
        diffs["entropy"] = max(
            diffs["entropy"], abs(float(-(prob * prob.log2()).sum()) - muspy.pitch_class_entropy(music))
        )
        used += int((hist > 0).sum()) == muspy.n_pitch_classes_used(music)
        ours_key = int(estimate_key(hist[None].float())[0])
        keys += ours_key == key.tonic.pitchClass + (12 if key.mode == "minor" else 0)
        ours = chord_rule.attribute(x)[0].long().tolist()
        for b, bar in enumerate(bars):
            c, degree = bar
            pcs = torch.zeros(12)
            for p in c.pitches:
                pcs[p.pitchClass] = 1
            root = int(chord_root(pcs[None], torch.tensor([c.bass().pitchClass]))[0])
            same_chord = _DEGREE_OF_INTERVAL[(root - ours_key % 12) % 12]
            if name.startswith("progression"):
                triads[0] += ours[b] == degree
                triads[1] += 1
            elif ours[b] != same_chord:
                chords["slice"] += 1
            elif root != c.root().pitchClass:
                chords["root"] += 1
            elif same_chord != degree:
                chords["spelling"] += 1
            else:
                chords["agree"] += ours[b] == degree
    n = len(pieces)
    rnd = sum(chords.values())
    return [
        [
            "pitch histogram",
            "PitchHistogram (sounding cells, sum 1)",
            "music21 key-finder distribution (quarter lengths), normalised",
            f"max |diff| {diffs['hist']:.1e}",
        ],
        [
            "note density",
            "NoteDensity(window=16): vertical, horizontal",
            "music21 notes: overlap / 16 steps, distinct onsets per bar",
            f"max |diff| {diffs['dens']:.1e}",
        ],
        [
            "polyphony",
            "mean vertical density x T / voiced steps",
            "muspy.polyphony",
            f"max |diff| {diffs['poly']:.1e}",
        ],
        [
            "pitch-class entropy",
            "entropy of note starts per pitch class",
            "muspy.pitch_class_entropy",
            f"max |diff| {diffs['entropy']:.1e}",
        ],
        [
            "pitch classes used",
            "nonzero PitchHistogram bins",
            "muspy.n_pitch_classes_used",
            f"{used}/{n} equal",
        ],
        ["key", "estimate_key (Aarden-Essen)", "music21 analyze('key')", f"{keys}/{n} equal"],
        [
            "chords, triad progressions",
            "ChordProgression (degree)",
            "music21 chordify + romanNumeralFromChord",
            f"{triads[0]}/{triads[1]} bars equal",
        ],
        [
            "chords, random clusters",
            "ChordProgression (degree)",
            "music21 chordify + romanNumeralFromChord",
            f"{chords['agree']}/{rnd} bars equal; differ: root {chords['root']}, spelling {chords['spelling']}, slice {chords['slice']}",
        ],
    ], {
        "diffs": diffs,
        "pitch_classes_used": used,
        "keys": keys,
        "chords_random": chords,
        "chords_triads": triads,
    }


def import_official(folder: str):
    """The official ``music_rules`` module, its bundled pretty_midi kept apart from the installed one."""
    path = Path(folder)
    if not (path / "music_rule_guidance" / "music_rules.py").is_file():
        return None, f"{folder} is not a checkout of yjhuangcd/rule-guided-music"
    installed = {k: v for k, v in sys.modules.items() if k == "pretty_midi" or k.startswith("pretty_midi.")}
    for k in installed:
        del sys.modules[k]
    for name in ("pkg_resources", "blobfile", "mpi4py"):  # a soundfont locator and distributed training only
        sys.modules.setdefault(name, types.SimpleNamespace(resource_filename=lambda *a: "", MPI=None))
    sys.path.insert(0, str(path))
    try:
        from music_rule_guidance import music_rules
    except ImportError as e:
        return None, f"the official rule functions do not import here ({e})"
    finally:
        sys.path.remove(str(path))
        for k in [k for k in sys.modules if k == "pretty_midi" or k.startswith("pretty_midi.")]:
            del sys.modules[k]
        sys.modules.update(installed)
    return music_rules, None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 rolls, 3 repeats")
    ap.add_argument("--rolls", type=int, default=None, help="rolls in the speed rows (default 8 quick, 24)")
    ap.add_argument("--repeats", type=int, default=None, help="timing repeats (default 3 quick, 5)")
    ap.add_argument(
        "--official", default="/tmp/official/yjhuangcd+rule-guided-music", help="official checkout"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="result JSON (default docs/music/peers[_quick].json)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    torch.set_grad_enabled(False)
    b = args.rolls or (8 if args.quick else 24)
    repeats = args.repeats or (3 if args.quick else 5)
    folder = Path(tempfile.mkdtemp(prefix="music_peers_"))

    agree_rows, agree = agreement(test_pieces(), folder)
    print_table(
        "steerdiff's rules vs music21 and muspy on the same pieces (MIDI round trip)",
        ["quantity", "steerdiff", "library", "agreement"],
        agree_rows,
        notes=[
            f"music21 {music21.__version__}, muspy {muspy.__version__}; 2 triad progressions, 3 random pieces."
        ],
    )

    # ---------------------------------------------------------------- speed
    rng = np.random.default_rng(1)
    rolls = [to_roll(random_piece(rng, int(rng.integers(30, 121)))) for _ in range(b)]
    x = to_model(torch.tensor(np.stack(rolls)))
    blobs = [midi_bytes(r) for r in rolls]
    rules = (PitchHistogram(CFG), NoteDensity(CFG, window=BAR), ChordProgression(CFG))

    def steerdiff_rules():
        return [r.attribute(x) for r in rules]

    def steerdiff_muspy_metrics():
        starts, sounding = note_masks(x, CFG)
        dens = rules[1].attribute(x)
        pc = torch.nn.functional.one_hot((torch.arange(CFG.num_pitches) + CFG.pitch_low) % 12, 12).float()
        counts = starts.float().sum(-1) @ pc
        prob = counts / counts.sum(-1, keepdim=True)
        entropy = -(prob * prob.clamp_min(1e-12).log2()).sum(-1)
        poly = dens[:, : T // BAR].mean(-1) * T / (sounding.sum(1) > 0).sum(-1)
        return entropy, poly, (counts > 0).sum(-1)

    def music21_per_piece():
        return [music21_rules(parse_music21(d)) for d in blobs]

    def muspy_per_piece():
        out = []
        for d in blobs:
            m = parse_muspy(d, folder)
            out.append((muspy.pitch_class_entropy(m), muspy.polyphony(m), muspy.n_pitch_classes_used(m)))
        return out

    def speed_row(label: str, steerdiff_fn, peer_fn) -> list:
        med = interleaved_cpu_time({"s": steerdiff_fn, "p": peer_fn}, repeats)
        return [label, med["s"] / b, med["p"] / b, med["s"] / med["p"]]

    rows = [
        speed_row(
            f"histogram + key + chords, {b} rolls: music21 per piece (parse + analyse)",
            steerdiff_rules,
            music21_per_piece,
        ),
        speed_row(
            f"entropy + polyphony + classes used, {b} rolls: muspy per piece (read + metrics)",
            steerdiff_muspy_metrics,
            muspy_per_piece,
        ),
    ]
    official, why = import_official(args.official)
    if official is not None:
        xo = -torch.ones(b, 1, 128, T)
        xo[:, 0, CFG.pitch_low : CFG.pitch_high + 1] = torch.where(
            x[:, 1] > 0, torch.tensor(80 / 127 * 2 - 1), torch.tensor(-1.0)
        )

        def official_rules():
            return (
                official.total_pitch_class_histogram(xo.clone()),
                official.note_density(xo.clone(), interval=16, horizontal_scale=1.0),
                official.get_chords(xo.clone(), fs=8, window_size=2.0),
            )

        rows.append(
            speed_row(
                f"histogram + density + chords, {b} rolls: official rule functions",
                steerdiff_rules,
                official_rules,
            )
        )
        rows.append(
            speed_row(
                f"pitch histogram only, {b} rolls: official",
                lambda: rules[0].attribute(x),
                lambda: official.total_pitch_class_histogram(xo.clone()),
            )
        )
    notes = [
        f"median CPU seconds per roll, {repeats} interleaved repeats, {torch.get_num_threads()} thread(s); "
        "ratio = steerdiff / peer (below 1: steerdiff faster). steerdiff evaluates the whole batch in one call "
        "per rule.",
    ]
    if why:
        notes.append(f"official rule functions: not run ({why}).")
    print_table(
        "Speed: rule evaluation per roll",
        ["job", "steerdiff s/roll", "peer s/roll", "ratio"],
        rows,
        notes=notes,
    )
    out = args.out or f"docs/music/peers{'_quick' if args.quick else ''}.json"
    write_json(
        out,
        {
            "official": {
                "repository": "yjhuangcd/rule-guided-music",
                "commit": OFFICIAL_COMMIT,
                "folder": args.official,
                "ran": official is not None,
                "why_not": why,
            },
            "versions": {
                "music21": music21.__version__,
                "muspy": muspy.__version__,
                "pretty_midi": pretty_midi.__version__,
            },
            "agreement": {
                "headers": ["quantity", "steerdiff", "library", "agreement"],
                "rows": agree_rows,
                **agree,
            },
            "speed": {
                "headers": ["job", "steerdiff_s_per_roll", "peer_s_per_roll", "ratio"],
                "rows": rows,
                "rolls": b,
                "repeats": repeats,
            },
            "environment": environment(),
        },
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
