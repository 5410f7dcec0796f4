"""Produce tests/parity/fixtures/music_rules.json from the official SCG code (yjhuangcd/rule-guided-music).

Needs a checkout of the official code (not part of steerdiff) and music21 (pip install music21); run
    cd /tmp/official/yjhuangcd+rule-guided-music && OMP_NUM_THREADS=1 python \
        /work/main/tests/parity/generate/gen_music.py /work/main/tests/parity/fixtures
Stubs: pkg_resources (used by the bundled pretty_midi only to locate a soundfont), blobfile and mpi4py
(imported by guided_diffusion/dist_util.py for distributed training only).
"""

import json
import sys
import types

import numpy as np
import torch

for name in ("pkg_resources", "blobfile", "mpi4py"):
    sys.modules[name] = types.SimpleNamespace(resource_filename=lambda *a: "", MPI=None)
sys.path.insert(0, ".")
import guided_diffusion.gaussian_diffusion as gd  # noqa: E402
from music_rule_guidance import music_rules  # noqa: E402
from music_rule_guidance.rule_maps import FUNC_DICT, LOSS_DICT  # noqa: E402

out = sys.argv[1]
SOURCE = "yjhuangcd/rule-guided-music@8ab4fa72aad202af16c3ddf676615e52d3d85c63"
T = 128  # columns; chords: fs = 8 columns per second at 120 bpm = 4 columns per beat, window 2 s = 16 columns


def official_roll(notes, vel=True):
    """(1, 1, 128, T) in [-1, 1]: -1 background, a note's cells at velocity / 127 * 2 - 1."""
    r = -torch.ones(1, 1, 128, T, dtype=torch.float32)
    for p, s, e, v in notes:
        r[0, 0, p, s:e] = (v if vel else 127) / 127 * 2 - 1
    return r


def random_piece(rng, n):
    notes = []
    while len(notes) < n:
        p, s = int(rng.integers(40, 91)), int(rng.integers(0, T))
        e, v = min(T, s + int(rng.integers(1, 9))), int(rng.integers(30, 128))
        # no two notes of one pitch touch: the official roll has no onset channel and would merge them
        if all(q != p or e < s2 or e2 < s for q, s2, e2, _ in notes):
            notes.append((p, s, e, v))
    return notes


TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7), "dom7": (0, 4, 7, 10), "dim": (0, 3, 6)}


def progression(tonic, chords, inversion_every=3, bass=True, melody=None):
    """One chord per bar of 16 columns, held 14 columns (a gap keeps repeated pitches apart)."""
    notes = []
    for bar, (degree_semitones, kind) in enumerate(chords):
        root = 48 + (tonic + degree_semitones) % 12
        pcs = [root + i for i in TRIADS[kind]]
        if inversion_every and bar % inversion_every == 2:
            pcs = pcs[1:] + [pcs[0] + 12]
        for p in pcs:
            notes.append((p, bar * 16, bar * 16 + 14, 100))
        if bass:
            notes.append((root - 12, bar * 16, bar * 16 + 14, 90))
    return notes


MAJOR = [(0, "maj"), (5, "maj"), (7, "dom7"), (0, "maj"), (9, "min"), (2, "min"), (7, "maj"), (0, "maj")]
MINOR = [(0, "min"), (5, "min"), (7, "maj"), (0, "min"), (8, "maj"), (3, "maj"), (10, "maj"), (0, "min")]
POP = [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj"), (0, "maj"), (7, "maj"), (9, "min"), (5, "maj")]

rng = np.random.default_rng(0)
pieces = {
    "prog_C_major": progression(0, MAJOR),
    "prog_G_major": progression(7, MAJOR),
    "prog_Eb_major_root_position": progression(3, MAJOR, inversion_every=0),
    "prog_A_minor": progression(9, MINOR),
    "prog_D_pop": progression(2, POP),
    "prog_F_pop_no_bass": progression(5, POP, bass=False),
    "random_sparse": random_piece(rng, 30),
    "random_medium": random_piece(rng, 60),
    "random_dense": random_piece(rng, 120),
}
rules = {}
for name, notes in pieces.items():
    x_vel, x_bin = official_roll(notes, vel=True), official_roll(notes, vel=False)
    rules[name] = {
        # the official functions modify their input in place: give each a copy
        "pitch_hist_velocity": music_rules.total_pitch_class_histogram(x_vel.clone()).tolist(),
        "pitch_hist": music_rules.total_pitch_class_histogram(x_bin.clone()).tolist(),
        "note_density_interval16": music_rules.note_density(x_bin.clone(), interval=16).tolist(),
        "note_density_interval16_hr1": music_rules.note_density(
            x_bin.clone(), interval=16, horizontal_scale=1
        ).tolist(),
        "chords_fs8_window2": music_rules.get_chords(x_bin.clone(), fs=8, window_size=2.0).tolist(),
    }
    print(name, rules[name]["chords_fs8_window2"])

# ------------------------------------------------ SCG candidate selection: GaussianDiffusion.scg_sample
# 2 samples x 4 candidates. To put fixed candidates through the official function, its mean_pred is 0,
# g_coeff 1 and the "noise" it draws (th.randn_like) is replaced by the candidates; the model returns eps = 0
# at a timestep with alpha_bar = 1 - 1e-12, so each candidate's pred_xstart is the candidate itself.
targets = ["prog_C_major", "prog_A_minor"]
cands = [  # candidate n of sample b: cands[n][b] (the official order n * B + b); no candidate is its target
    ["prog_G_major", "random_dense"],
    ["random_medium", "prog_F_pop_no_bass"],
    ["prog_D_pop", "prog_C_major"],
    ["random_sparse", "prog_G_major"],
]
scg_rules = ["pitch_hist", "note_density_hr_1", "chord_progression_pixel"]
weights = {"pitch_hist": 40.0, "note_density_hr_1": 1.0, "chord_progression_pixel": 1.0}
N, B = len(cands), len(targets)
cand_rolls = torch.stack([torch.cat([official_roll(pieces[c], vel=False) for c in row]) for row in cands])
ref = torch.cat([official_roll(pieces[t], vel=False) for t in targets])
rule_targets = {r: FUNC_DICT[r](ref.clone()) for r in scg_rules}
diff = gd.GaussianDiffusion(
    betas=np.full(10, 1e-12),
    model_mean_type=gd.ModelMeanType.EPSILON,
    model_var_type=gd.ModelVarType.FIXED_SMALL,
    loss_type=gd.LossType.MSE,
)
real_randn_like = gd.th.randn_like
gd.th.randn_like = lambda t: cand_rolls.clone()
try:
    chosen = diff.scg_sample(
        lambda x, t, y: torch.zeros_like(x),
        torch.zeros(B, dtype=torch.long),
        torch.zeros(B, 1, 128, T),
        1.0,
        None,
        1.0,
        model_kwargs={"y": torch.zeros(B, dtype=torch.long), "rule": rule_targets},
        scg_kwargs={"num_samples": N, **weights},
    )
finally:
    gd.th.randn_like = real_randn_like
selected = [int(next(n for n in range(N) if torch.equal(chosen[b], cand_rolls[n, b]))) for b in range(B)]
# each candidate's loss per rule, by the same official functions (FUNC_DICT, LOSS_DICT), for the record
flat = cand_rolls.reshape(N * B, 1, 128, T)
losses = {
    r: LOSS_DICT[r](FUNC_DICT[r](flat.clone()), rule_targets[r].repeat(N, 1)).reshape(N, B).tolist()
    for r in scg_rules
}
print("selected", selected, losses)
fixture = {
    "meta": {
        "source": SOURCE,
        "files": [
            "music_rule_guidance/music_rules.py",
            "music_rule_guidance/rule_maps.py",
            "guided_diffusion/gaussian_diffusion.py",
        ],
        "functions": {
            "pitch_hist": "music_rules.total_pitch_class_histogram(roll)",
            "note_density_interval16": "music_rules.note_density(roll, interval=16) (horizontal_scale=5)",
            "note_density_interval16_hr1": "music_rules.note_density(roll, interval=16, horizontal_scale=1)",
            "chords_fs8_window2": "music_rules.get_chords(roll, fs=8, window_size=2.0) (music21 key + Roman numerals)",
            "scg": "GaussianDiffusion.scg_sample with FUNC_DICT/LOSS_DICT rules pitch_hist, note_density_hr_1, "
            "chord_progression_pixel",
        },
        "roll": "official rolls (1, 1, 128, T=128) in [-1, 1]; a note (pitch, start, end, velocity) fills "
        "columns start..end-1 with velocity/127*2-1 ('velocity' entries) or 1 (all others)",
        "music21": __import__("music21").__version__,
        "command": "cd /tmp/official/yjhuangcd+rule-guided-music && OMP_NUM_THREADS=1 python "
        "/work/main/tests/parity/generate/gen_music.py /work/main/tests/parity/fixtures",
    },
    "num_steps": T,
    "pieces": {k: [list(map(int, n)) for n in v] for k, v in pieces.items()},
    "rules": rules,
    "scg": {
        "targets": targets,
        "candidates": cands,
        "rules": scg_rules,
        "weights": weights,
        "rule_targets": {r: v.tolist() for r, v in rule_targets.items()},
        "selected": selected,
        "losses": losses,
    },
}
with open(f"{out}/music_rules.json", "w") as f:
    json.dump(fixture, f, indent=1)
print("done")
