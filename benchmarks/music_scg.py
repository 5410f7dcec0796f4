"""Rule-guided symbolic music: SCG against unguided, best-of-n, DPS on a relaxation and SMC, at equal budgets.

The model is the ``steerdiff-music demo`` U-Net trained on music21's Bach chorales (cached under
``$STEERDIFF_CACHE``; trained once, ~10 min on a CPU, if missing). For each rule (pitch-class histogram,
note density, chord progression) and the paper's weighted multi-rule objective (40 / 1 / 1), every method
samples the same pieces' worth of rolls with targets taken from held-out chorale windows, one per sample (as in
Huang et al. 2024). Reported per (objective, method): the objective's rule loss on the decoded pieces (lower is
better) +- its standard error over samples, the mean OA of 7 musical attributes against all held-out windows
(higher is better) +- a bootstrap standard error, network evaluations per sample, and wall time.

Budgets (network evaluations, NFE, per output sample), matched exactly:
* SCG: DDPM with S steps; the last G steps (G/S ~ 0.75, the paper's t < 750 of 1000) draw n candidates each and
  keep the best by the rule on their x0-hat. NFE = (S - G) + 1 + (G - 1) n; G is chosen so this is k S.
* best-of-k and SMC (FK steering, k particles, guided over the same window): k S.
* DPS (gradient of the rules' relaxation through the network): S_dps = k S / 2 steps of one forward and one
  backward pass, counting the backward pass as one evaluation; chords have no relaxation ('-'), and on the
  multi-rule objective DPS guides the differentiable terms only (as the paper's DPS-rule baseline).
* unguided: S (the reference for OA, not budget-matched).

    python benchmarks/music_scg.py --quick     # < 1 min: 8 samples, S=12, n=4 (cached model, else stand-in)
    python benchmarks/music_scg.py             # ~12 min on a shared CPU: 32 samples, S=28, n=8, G=21, k=6
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Stopwatch, environment, print_table, write_json  # noqa: E402

from steerdiff.music.cli import DEMO_BARS, demo_run_dir, ensure_demo_model, model_is_trained  # noqa: E402
from steerdiff.music.data import load_pieces, windows  # noqa: E402
from steerdiff.music.guide import generate  # noqa: E402
from steerdiff.music.metrics import oa_table  # noqa: E402
from steerdiff.music.model import EmpiricalDenoiser, load_model  # noqa: E402
from steerdiff.music.rules import ChordProgression, NoteDensity, Objective, PitchHistogram  # noqa: E402

METHODS = ("unguided", "best_of_n", "dps", "smc", "scg")
TRAIN_STEPS = 1500  # the demo's default


def scg_window(steps: int, n: int, fraction: float) -> tuple[int, int]:
    """(G, k): the number of guided steps nearest ``fraction * steps`` whose SCG cost (S - G) + 1 + (G - 1) n
    is a whole multiple k of S, so best-of-k and SMC with k particles cost exactly the same."""
    best = None
    for g in range(2, steps + 1):
        nfe = steps - g + 1 + (g - 1) * n
        if nfe % steps == 0 and (best is None or abs(g - fraction * steps) < abs(best - fraction * steps)):
            best = g
    if best is None:
        raise SystemExit(f"no guided window makes SCG's cost a multiple of S={steps} with n={n}; change --steps/--n")
    return best, (steps - best + 1 + (best - 1) * n) // steps


def load_denoiser(a):
    """The cached demo model (trained now if missing, except with --quick), its data dir and a label."""
    run = demo_run_dir()
    model_dir = run / "model"
    if not model_is_trained(model_dir, TRAIN_STEPS):
        if a.quick:
            return None, run / "data", None
        ensure_demo_model(run, train_steps=TRAIN_STEPS, device=a.device)
    denoiser, cfg, _ = load_model(model_dir, device=a.device)
    return denoiser, run / "data", f"U-Net trained on Bach chorales ({model_dir})"


def oa_with_se(x, real, cfg, g: torch.Generator, reps: int) -> tuple[float, float]:
    """Mean OA and its bootstrap standard error over the generated samples."""
    oa = oa_table(x, real, cfg)["mean"]
    boots = [oa_table(x[torch.randint(x.shape[0], (x.shape[0],), generator=g)], real, cfg)["mean"]
             for _ in range(reps)]
    return oa, float(torch.tensor(boots).std())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--steps", type=int, default=28, help="DDPM steps S")
    p.add_argument("--n", type=int, default=8, help="SCG candidates per guided step")
    p.add_argument("--guide-fraction", type=float, default=0.75, help="target share of guided steps G/S")
    p.add_argument("--dps-scale", type=float, default=1.0)
    p.add_argument("--smc-lam", type=float, default=5.0,
                   help="SMC lambda in units of 1/spread of the unguided loss (its std, at least 5%% of its mean)")
    p.add_argument("--bootstrap", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="benchmarks/results/music_scg.json")
    a = p.parse_args(argv)
    if a.quick:
        a.samples, a.steps, a.n, a.bootstrap = 8, 12, 4, 20
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    denoiser, data_dir, model_name = load_denoiser(a)
    train_pieces = None
    if denoiser is None:
        from steerdiff.music.data import bach_chorales, split
        from steerdiff.music.roll import RollConfig

        print("NOTE: no trained demo model is cached (run `steerdiff-music demo` or this script without --quick); "
              "using the SMALL STAND-IN: the exact denoiser of the training windows, which can only reproduce them")
        pieces = bach_chorales(RollConfig(steps_per_beat=2), num_pieces=24, progress=False)
        train_pieces, held_out = split(pieces, 0.2, seed=a.seed)
        denoiser = EmpiricalDenoiser(windows(train_pieces, DEMO_BARS * pieces.config.steps_per_bar,
                                             transpose=range(-3, 4)), bandwidth=0.1)
        model_name = "STAND-IN: exact empirical denoiser of 24 chorales' training windows (not a trained model)"
    else:
        held_out = load_pieces(data_dir / "val.npz")
    cfg = held_out.config
    length = DEMO_BARS * cfg.steps_per_bar
    real = windows(held_out, length)
    g = torch.Generator().manual_seed(a.seed + 1)
    ref = real[torch.randint(real.shape[0], (a.samples,), generator=g)]
    rules = {"pitch_histogram": PitchHistogram(cfg), "note_density": NoteDensity(cfg),
             "chord_progression": ChordProgression(cfg)}
    objectives = {name: Objective.from_reference([r], ref) for name, r in rules.items()}
    objectives["multi (40/1/1)"] = Objective.from_reference(
        [(rules["pitch_histogram"], 40.0), (rules["note_density"], 1.0), (rules["chord_progression"], 1.0)], ref)

    guided, k = scg_window(a.steps, a.n, a.guide_fraction)
    dps_steps = k * a.steps // 2
    width = {"unguided": 1, "best_of_n": k, "smc": k, "scg": a.n, "dps": 1}
    boot = torch.Generator().manual_seed(a.seed + 2)
    rows, records = [], []
    for obj_name, obj in objectives.items():
        lam = None
        for method in ("unguided", "best_of_n", "dps", "smc", "scg"):
            if method == "dps" and not any(t.rule.differentiable for t in obj.terms):
                rows.append((obj_name, method, None, None, None, None, None, None, None))
                continue
            steps = dps_steps if method == "dps" else a.steps
            with Stopwatch() as sw:
                res = generate(denoiser, cfg, a.samples, length, steps, method, obj, n=width[method],
                               guide_fraction=guided / a.steps, lam=lam or 1.0, dps_scale=a.dps_scale,
                               generator=torch.Generator().manual_seed(a.seed), device=a.device)
            losses = obj.loss(res.x)
            if method == "unguided":  # SMC's inverse temperature, in units of the unguided loss spread
                lam = a.smc_lam / max(float(losses.std()), 0.05 * float(losses.mean()), 1e-6)
            oa, oa_se = oa_with_se(res.x, real, cfg, boot, a.bootstrap)
            loss, loss_se = float(losses.mean()), float(losses.std() / math.sqrt(a.samples))
            budget = res.costs.nfe + res.costs.gradient_evals / a.samples
            rec = {"objective": obj_name, "method": method, "width": width[method], "steps": steps,
                   "rule_loss": loss, "rule_loss_se": loss_se,
                   "per_rule": {k_: float(v.mean()) for k_, v in obj.losses(res.x).items()},
                   "oa_mean": oa, "oa_se": oa_se, "nfe": res.costs.nfe,
                   "grad_per_sample": res.costs.gradient_evals / a.samples, "budget": budget,
                   "seconds": sw.seconds, "smc_lam": lam if method == "smc" else None}
            records.append(rec)
            label = {"best_of_n": f"best-of-{k}", "smc": f"smc ({k})", "scg": f"scg ({a.n})",
                     "dps": f"dps ({steps} st)"}.get(method, method)
            rows.append((obj_name, label, loss, loss_se, oa, oa_se, res.costs.nfe,
                         rec["grad_per_sample"], sw.seconds))
            print(f"  {obj_name:>18} {label:>14}: loss {loss:.4g} +- {loss_se:.2g}  OA {oa:.3f} +- {oa_se:.3f}  "
                  f"({sw.seconds:.1f} s)", flush=True)
    real_oa = None
    if train_pieces is None:
        train_pieces = load_pieces(data_dir / "train.npz")
    train_windows = windows(train_pieces, length)
    pick = torch.randperm(train_windows.shape[0], generator=torch.Generator().manual_seed(a.seed))[:a.samples]
    real_oa = oa_with_se(train_windows[pick], real, cfg, boot, a.bootstrap)
    print_table("Rule-guided music: rule loss (lower better) and OA vs held-out chorales (higher better)",
                ["objective", "method", "rule loss", "+- se", "OA", "+- se", "NFE/sample", "grads/sample",
                 "wall s"], rows,
                notes=[f"model: {model_name}",
                       f"{a.samples} samples of {length} steps ({DEMO_BARS} bars); targets from {a.samples} held-out "
                       f"windows of {len(held_out)} held-out chorales; OA against all {real.shape[0]} held-out "
                       f"windows (bootstrap se)",
                       f"budget {k * a.steps} NFE/sample for every guided method: DDPM S={a.steps}; SCG n={a.n} on "
                       f"the last G={guided} steps; best-of-{k}; SMC {k} particles on the same window "
                       f"(lambda={a.smc_lam}/spread of the unguided loss); DPS {dps_steps} steps x (1 forward + 1 "
                       f"gradient), scale {a.dps_scale}; unguided {a.steps} NFE",
                       f"reference: {a.samples} real training windows score OA {real_oa[0]:.3f} +- {real_oa[1]:.3f}; "
                       f"DPS '-' = the rule has no differentiable relaxation"])
    write_json(a.json, {"benchmark": "music_scg", "args": vars(a), "model": model_name, "guided_steps": guided,
                        "budget_nfe": k * a.steps, "real_train_oa": real_oa, "results": records,
                        "environment": environment()})
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
