"""Rule-guided symbolic music: SCG against unguided, best-of-n, DPS on a relaxation and SMC, at equal budgets.

For each rule (pitch histogram, note density, chord progression) and the paper's weighted multi-rule objective
(40 / 1 / 1), each method samples the same number of pieces; targets are taken from held-out Bach-chorale
windows, one per sample (as in Huang et al. 2024). Reported: the objective's rule loss on the decoded pieces
(lower is better), OA of 7 musical attributes against held-out pieces (higher is better), network evaluations
per sample (NFE), gradient evaluations per sample and wall time.

Budgets: SCG uses n candidates per guided step; best-of-n and SMC get the integer width whose NFE matches SCG's;
DPS costs 1 NFE + 1 gradient per step (it has no width to match) and skips rules without a relaxation.

    python benchmarks/music_scg.py --quick            # < 1 min: 24 chorales, exact empirical denoiser
    python benchmarks/music_scg.py --model runs/music/model --num-pieces 120 --samples 32 --steps 50 --n 8
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Stopwatch, environment, print_table, write_json  # noqa: E402

from steerdiff.music.data import bach_chorales, split, windows  # noqa: E402
from steerdiff.music.guide import generate  # noqa: E402
from steerdiff.music.metrics import oa_table  # noqa: E402
from steerdiff.music.model import EmpiricalDenoiser, load_model  # noqa: E402
from steerdiff.music.roll import RollConfig  # noqa: E402
from steerdiff.music.rules import ChordProgression, NoteDensity, Objective, PitchHistogram  # noqa: E402

METHODS = ("unguided", "best_of_n", "dps", "smc", "scg")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--model", default=None, help="a steerdiff-music training run (default: empirical denoiser)")
    p.add_argument("--num-pieces", type=int, default=80)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--bars", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="benchmarks/results/music_scg.json")
    a = p.parse_args(argv)
    if a.quick:
        a.num_pieces, a.samples, a.steps, a.n = 24, 8, 12, 4
    torch.manual_seed(a.seed)

    cfg = RollConfig(steps_per_beat=2)
    pieces = bach_chorales(cfg, num_pieces=a.num_pieces, progress=False)
    train, held_out = split(pieces, 0.2, seed=a.seed)
    length = a.bars * cfg.steps_per_bar
    data = windows(train, length, transpose=range(-3, 4))
    real = windows(held_out, length)
    if a.model:
        denoiser, cfg_model, _ = load_model(a.model)
        if cfg_model != cfg:
            sys.exit(f"the model's roll layout {cfg_model} differs from the benchmark's {cfg}")
        model_name = f"U-Net {a.model}"
    else:
        denoiser = EmpiricalDenoiser(data, bandwidth=0.1)
        model_name = f"exact denoiser of {data.shape[0]} training windows (bandwidth 0.1)"
    g = torch.Generator().manual_seed(a.seed + 1)
    ref = real[torch.randint(real.shape[0], (a.samples,), generator=g)]
    rules = {"pitch_histogram": PitchHistogram(cfg), "note_density": NoteDensity(cfg),
             "chord_progression": ChordProgression(cfg)}
    objectives = {name: Objective.from_reference([r], ref) for name, r in rules.items()}
    objectives["multi (40/1/1)"] = Objective.from_reference(
        [(rules["pitch_histogram"], 40.0), (rules["note_density"], 1.0), (rules["chord_progression"], 1.0)], ref)

    rows, records = [], []
    for obj_name, obj in objectives.items():
        width = None
        for method in ("scg", "unguided", "best_of_n", "smc", "dps"):
            if method == "dps" and not any(t.rule.differentiable for t in obj.terms):
                rows.append((obj_name, method, None, None, None, None, None))
                continue
            n = a.n if method == "scg" else (width or a.n)
            with Stopwatch() as sw:
                res = generate(denoiser, cfg, a.samples, length, a.steps, method, obj, n=n,
                               generator=torch.Generator().manual_seed(a.seed))
            if method == "scg":
                width = max(2, round(res.costs.nfe / a.steps))
            loss = float(obj.loss(res.x).mean())
            oa = oa_table(res.x, real, cfg)["mean"]
            grads = res.costs.gradient_evals / a.samples
            rec = {"objective": obj_name, "method": method, "width": n if method not in ("unguided", "dps") else 1,
                   "rule_loss": loss, "per_rule": {k: float(v.mean()) for k, v in obj.losses(res.x).items()},
                   "oa_mean": oa, "nfe": res.costs.nfe, "grad_per_sample": grads, "seconds": sw.seconds}
            records.append(rec)
            rows.append((obj_name, f"{method} ({rec['width']})", loss, oa, res.costs.nfe, grads, sw.seconds))
    order = {m: i for i, m in enumerate(METHODS)}
    rows.sort(key=lambda r: (list(objectives).index(r[0]), order[r[1].split(" ")[0]]))
    print_table("Rule-guided music: rule loss (lower better) and OA vs held-out chorales (higher better)",
                ["objective", "method (width)", "rule loss", "OA", "NFE/sample", "grads/sample", "wall s"], rows,
                notes=[f"model: {model_name}", f"{a.samples} samples x {length} steps ({a.bars} bars), "
                       f"{a.steps} DDPM steps, SCG n={a.n} for sigma <= 20; targets from {len(held_out)} held-out "
                       f"chorales; best-of-n/SMC width matched to SCG's NFE; DPS '-' = no differentiable relaxation"])
    write_json(a.json, {"benchmark": "music_scg", "args": vars(a), "model": model_name, "results": records,
                        "environment": environment()})
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
