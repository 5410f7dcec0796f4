"""Rule-guided symbolic music: SCG against unguided, best-of-n, DPS on a relaxation and SMC, at equal budgets.

The model is the ``steerdiff-music demo`` U-Net trained on music21's Bach chorales (cached under
``$STEERDIFF_CACHE``; trained once, ~10 min on a CPU, if missing). For each rule (pitch-class histogram,
note density, chord progression) and the paper's weighted multi-rule objective (40 / 1 / 1), every method
samples the same pieces' worth of rolls with targets taken from held-out chorale windows, one per sample (as in
Huang et al. 2024). Reported per (objective, method): the objective's rule loss on the decoded pieces (lower is
better) +- its standard error over samples, the mean OA of 7 musical attributes against all held-out windows
(higher is better) +- a bootstrap standard error, network evaluations per sample, and wall time.

Budgets (network evaluations, NFE, per output sample): every guided method gets at most B = k S, S DDPM steps:
* SCG: DDPM with S steps; the last G steps draw n candidates each and keep the best by the rule on their x0-hat
  (the paper: n = 16, every step with t < 750 of 1000). NFE = S + (G - 1)(n - 1) <= k S.
* best-of-m and SMC (FK steering, m particles, guided over the last 3/4 of the steps): m x (k S / m) steps.
* DPS (gradient of the rules' relaxation through the network): k S / 2 steps of one forward and one backward
  pass, counting the backward pass as one evaluation; chords have no relaxation ('-'), and on the
  multi-rule objective DPS guides the differentiable terms only (as the paper's DPS-rule baseline).
* unguided: S (the reference for OA, not budget-matched).

Hyper-parameters are chosen per (objective, method) on VALIDATION targets taken from chorales the model never saw
and that are not among the test chorales (the next chorales of music21's corpus after the demo's 60): SCG's n and
guided window G at the budget (or fewer candidates, n = 2..4, on more steps guided all the way), the number of
best-of/SMC particles m (with S k / m steps), SMC's lambda, DPS's scale. The lowest mean validation rule loss
wins; the script prints the grid and the choice, then runs the
chosen setting once on the TEST targets (held-out windows of the demo's held-out chorales).

    python benchmarks/music_scg.py --quick     # < 1 min: 6 samples, S=10, k=3, small grid (cached model, else stand-in)
    python benchmarks/music_scg.py             # ~25 min on a shared CPU: 12 validation + 32 test samples, S=28, k=6
    python benchmarks/music_scg.py --objectives chord_progression --k 16   # one rule at a larger budget
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch

from steerdiff.core.benchmarking import Stopwatch, environment, print_table, write_json

from steerdiff.music.cli import DEMO_BARS, DEMO_ROLL, demo_run_dir, ensure_demo_model, model_is_trained  # noqa: E402
from steerdiff.music.data import bach_chorales, load_pieces, split, windows  # noqa: E402
from steerdiff.music.guide import generate  # noqa: E402
from steerdiff.music.metrics import oa_table  # noqa: E402
from steerdiff.music.model import EmpiricalDenoiser, load_model  # noqa: E402
from steerdiff.music.roll import RollConfig  # noqa: E402
from steerdiff.music.rules import ChordProgression, NoteDensity, Objective, PitchHistogram  # noqa: E402

METHODS = ("unguided", "best_of_n", "dps", "smc", "scg")
TRAIN_STEPS = 3000  # the benchmark's model: the demo run trained on (resumed to) 3000 steps
DEMO_PIECES = 60    # the demo's chorales (train + test); validation chorales come after them in corpus order
SMC_FRACTION = 0.75  # SMC steers the last 3/4 of its steps (the paper's SCG window, t < 750 of 1000)


def scg_configs(steps: int, k: int, widths, narrow=()) -> list[dict]:
    """SCG settings at the budget B = k S: for each n in ``widths``, S steps and the longest guided window G
    (<= S) with S + (G - 1)(n - 1) <= B; for each n in ``narrow``, more steps guided all the way,
    S' = (B + n - 1) // n (n candidates on S' steps: S' + (S' - 1)(n - 1) <= B)."""
    out = []
    for n in widths:
        g = min(steps, 1 + (k - 1) * steps // (n - 1))
        out.append({"method": "scg", "n": n, "steps": steps, "guide_fraction": g / steps, "G": g})
    for n in narrow:
        s = (k * steps + n - 1) // n
        out.append({"method": "scg", "n": n, "steps": s, "guide_fraction": 1.0, "G": s})
    return out


def grids(steps: int, k: int, quick: bool) -> dict[str, list[dict]]:
    """Candidate settings per method, every one within k S network evaluations per sample. Width is traded for
    steps in every derivative-free method: few candidates / particles on many steps, or many on few."""
    parts = [m for m in ((2, 3, 4, k, 2 * k) if not quick else (k,)) if (k * steps) % m == 0]
    lams = (8.0, 32.0, 128.0) if not quick else (2.0, 8.0)
    return {
        "unguided": [{"method": "unguided", "n": 1, "steps": steps}],
        "best_of_n": [{"method": "best_of_n", "n": m, "steps": k * steps // m} for m in parts],
        "dps": [{"method": "dps", "n": 1, "steps": k * steps // 2, "dps_scale": c}
                for c in ((1.0, 3.0, 10.0, 30.0) if not quick else (1.0,))],
        "smc": [{"method": "smc", "n": m, "steps": k * steps // m, "guide_fraction": SMC_FRACTION, "lam_units": lu}
                for m in parts for lu in lams],
        "scg": scg_configs(steps, k, (6, 8, 11, 16), (2, 3, 4)) if not quick else scg_configs(steps, k, (4, 6)),
    }


def label(c: dict) -> str:
    m = c["method"]
    if m == "best_of_n":
        return f"best-of-{c['n']} ({c['steps']} st)"
    if m == "smc":
        return f"smc {c['n']}p {c['steps']} st, lam {c['lam_units']:g}"
    if m == "scg":
        return f"scg n={c['n']} G={c['G']}/{c['steps']}"
    if m == "dps":
        return f"dps {c['steps']} st, scale {c['dps_scale']:g}"
    return m


def run(denoiser, cfg, obj, c: dict, num: int, length: int, lam: float | None, seed: int, device):
    with Stopwatch() as sw:
        res = generate(denoiser, cfg, num, length, c["steps"], c["method"], obj, n=c["n"],
                       guide_fraction=c.get("guide_fraction", 1.0), lam=lam or 1.0,
                       dps_scale=c.get("dps_scale", 1.0), generator=torch.Generator().manual_seed(seed),
                       device=device)
    return res, sw.seconds


def load_denoiser(a):
    """The cached demo model (trained or resumed now if short of TRAIN_STEPS, except with --quick), its data
    dir and a label."""
    run_dir = demo_run_dir(DEMO_PIECES)
    model_dir = run_dir / "model"
    if not model_is_trained(model_dir, TRAIN_STEPS):
        if a.quick and not model_is_trained(model_dir, 1):
            return None, run_dir / "data", None
        if not a.quick:
            ensure_demo_model(run_dir, num_pieces=DEMO_PIECES, train_steps=TRAIN_STEPS, device=a.device)
    denoiser, _, _ = load_model(model_dir, device=a.device)
    steps = json.loads((model_dir / "train_summary.json").read_text())["steps"]
    return denoiser, run_dir / "data", f"U-Net trained on Bach chorales, {steps} steps ({model_dir})"


def oa_with_se(x, real, cfg, g: torch.Generator, reps: int) -> tuple[float, float]:
    """Mean OA and its bootstrap standard error over the generated samples."""
    oa = oa_table(x, real, cfg)["mean"]
    boots = [oa_table(x[torch.randint(x.shape[0], (x.shape[0],), generator=g)], real, cfg)["mean"]
             for _ in range(reps)]
    return oa, float(torch.tensor(boots).std())


def objectives(cfg, ref) -> dict[str, Objective]:
    rules = {"pitch_histogram": PitchHistogram(cfg), "note_density": NoteDensity(cfg),
             "chord_progression": ChordProgression(cfg)}
    out = {name: Objective.from_reference([r], ref) for name, r in rules.items()}
    out["multi (40/1/1)"] = Objective.from_reference(
        [(rules["pitch_histogram"], 40.0), (rules["note_density"], 1.0), (rules["chord_progression"], 1.0)], ref)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--samples", type=int, default=32, help="test samples (one held-out target each)")
    p.add_argument("--val-samples", type=int, default=12, help="validation samples for choosing hyper-parameters")
    p.add_argument("--val-pieces", type=int, default=15, help="validation chorales (after the demo's 60)")
    p.add_argument("--steps", type=int, default=28, help="DDPM steps S")
    p.add_argument("--k", type=int, default=6, help="budget: k S network evaluations per guided sample")
    p.add_argument("--bootstrap", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--objectives", default=None, metavar="NAMES",
                   help="comma-separated subset of: pitch_histogram, note_density, chord_progression, multi")
    p.add_argument("--json", default="benchmarks/results/music_scg.json")
    a = p.parse_args(argv)
    names = ("pitch_histogram", "note_density", "chord_progression", "multi")
    wanted = names if a.objectives is None else tuple(a.objectives.split(","))
    if set(wanted) - set(names):
        p.error(f"unknown objective(s) {sorted(set(wanted) - set(names))}; choose from {', '.join(names)}")
    if a.quick:
        a.samples, a.val_samples, a.steps, a.k, a.bootstrap = 6, 3, 10, 3, 10
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    denoiser, data_dir, model_name = load_denoiser(a)
    train_pieces = None
    if denoiser is None:
        print("NOTE: no trained demo model is cached (run `steerdiff-music demo` or this script without --quick); "
              "using the SMALL STAND-IN: the exact denoiser of the training windows, which can only reproduce them")
        pieces = bach_chorales(RollConfig(steps_per_beat=2), num_pieces=24, progress=False)
        train_pieces, held_out = split(pieces, 0.4, seed=a.seed)
        val_pieces, held_out = split(held_out, 0.5, seed=a.seed)
        denoiser = EmpiricalDenoiser(windows(train_pieces, DEMO_BARS * pieces.config.steps_per_bar,
                                             transpose=range(-3, 4)), bandwidth=0.1)
        model_name = "STAND-IN: exact empirical denoiser of 14 chorales' training windows (not a trained model)"
    else:
        held_out = load_pieces(data_dir / "val.npz")
        more = bach_chorales(RollConfig(**DEMO_ROLL), num_pieces=DEMO_PIECES + a.val_pieces, progress=False)
        val_pieces = more.subset(range(DEMO_PIECES, len(more)))
        seen = set(load_pieces(data_dir / "train.npz").names) | set(held_out.names)
        if seen & set(val_pieces.names):
            raise SystemExit(f"validation chorales overlap the demo's: {sorted(seen & set(val_pieces.names))}")
    cfg = held_out.config
    length = DEMO_BARS * cfg.steps_per_bar
    real, val_real = windows(held_out, length), windows(val_pieces, length)
    g = torch.Generator().manual_seed(a.seed + 1)
    ref = real[torch.randint(real.shape[0], (a.samples,), generator=g)]
    val_ref = val_real[torch.randint(val_real.shape[0], (a.val_samples,), generator=g)]
    test_objs, val_objs = objectives(cfg, ref), objectives(cfg, val_ref)

    grid = grids(a.steps, a.k, a.quick)
    budget = a.k * a.steps
    boot = torch.Generator().manual_seed(a.seed + 2)
    rows, val_rows, records = [], [], []
    for obj_name in [n for n in test_objs if n.split(" ")[0] in wanted]:
        val_obj, obj = val_objs[obj_name], test_objs[obj_name]
        lam_scale = None
        for method in METHODS:
            options = grid[method]
            if method == "dps" and not any(t.rule.differentiable for t in obj.terms):
                rows.append((obj_name, "dps", None, None, None, None, None, None, None))
                continue
            # validation: every option on the validation targets (seed + 100: other noise than the test run)
            scored = [] if len(options) > 1 or method == "unguided" else [(None, options[0])]
            for c in (options if not scored else ()):
                lam = c["lam_units"] * lam_scale if method == "smc" else None
                res, sec = run(denoiser, cfg, val_obj, c, a.val_samples, length, lam, a.seed + 100, a.device)
                assert res.costs.nfe + res.costs.gradient_evals / a.val_samples <= budget or method == "unguided"
                losses = val_obj.loss(res.x)
                if method == "unguided":  # SMC's lambda unit: 1 / spread of the unguided validation loss
                    lam_scale = 1.0 / max(float(losses.std()), 0.05 * float(losses.mean()), 1e-6)
                val_loss = float(losses.mean())
                scored.append((val_loss, c))
                if len(options) > 1 or method == "unguided":
                    val_rows.append((obj_name, label(c), val_loss, float(losses.std() / math.sqrt(a.val_samples)),
                                     oa_table(res.x, val_real, cfg)["mean"], res.costs.nfe, sec))
            best = min(scored, key=lambda t: t[0])[1]  # a single option is taken without validation
            print(f"  {obj_name:>18} {method:>9}: validation picks {label(best)}"
                  + (f" (of {len(options)})" if len(options) > 1 else ""), flush=True)
            # test: the chosen setting once on the test targets
            lam = best["lam_units"] * lam_scale if method == "smc" else None
            res, sec = run(denoiser, cfg, obj, best, a.samples, length, lam, a.seed, a.device)
            losses = obj.loss(res.x)
            oa, oa_se = oa_with_se(res.x, real, cfg, boot, a.bootstrap)
            loss, loss_se = float(losses.mean()), float(losses.std() / math.sqrt(a.samples))
            grads = res.costs.gradient_evals / a.samples
            records.append({"objective": obj_name, "method": method, "setting": best, "label": label(best),
                            "smc_lam": lam, "rule_loss": loss, "rule_loss_se": loss_se,
                            "per_rule": {k_: float(v.mean()) for k_, v in obj.losses(res.x).items()},
                            "oa_mean": oa, "oa_se": oa_se, "nfe": res.costs.nfe, "grad_per_sample": grads,
                            "budget": res.costs.nfe + grads, "seconds": sec,
                            "validation": [{"label": label(c), "loss": v} for v, c in scored]})
            rows.append((obj_name, label(best), loss, loss_se, oa, oa_se, res.costs.nfe, grads, sec))
            print(f"  {obj_name:>18} {label(best):>30}: loss {loss:.4g} +- {loss_se:.2g}  OA {oa:.3f} +- "
                  f"{oa_se:.3f}  ({sec:.1f} s)", flush=True)
    if train_pieces is None:
        train_pieces = load_pieces(data_dir / "train.npz")
    train_windows = windows(train_pieces, length)
    pick = torch.randperm(train_windows.shape[0], generator=torch.Generator().manual_seed(a.seed))[:a.samples]
    real_oa = oa_with_se(train_windows[pick], real, cfg, boot, a.bootstrap)
    print_table("Validation (choosing hyper-parameters): rule loss on validation targets",
                ["objective", "setting", "val loss", "+- se", "val OA", "NFE/sample", "wall s"], val_rows,
                notes=[f"{a.val_samples} samples, targets from {a.val_samples} windows of {len(val_pieces)} "
                       f"validation chorales (disjoint from the model's training and the test chorales); OA "
                       f"against all {val_real.shape[0]} validation windows; lowest val loss wins"])
    print_table("Rule-guided music (test): rule loss (lower better) and OA vs held-out chorales (higher better)",
                ["objective", "method (validation choice)", "rule loss", "+- se", "OA", "+- se", "NFE/sample",
                 "grads/sample", "wall s"], rows,
                notes=[f"model: {model_name}",
                       f"{a.samples} samples of {length} steps ({DEMO_BARS} bars); targets from {a.samples} held-out "
                       f"windows of {len(held_out)} held-out chorales; OA against all {real.shape[0]} held-out "
                       f"windows (bootstrap se)",
                       f"budget <= {budget} NFE/sample for every guided method (k={a.k} x S={a.steps} DDPM steps); "
                       f"SCG G = guided steps of S; SMC steers the last {SMC_FRACTION:g} of its steps, lambda in "
                       f"units of 1/spread of the unguided validation loss; DPS counts 1 forward + 1 gradient per "
                       f"step; unguided {a.steps} NFE",
                       f"reference: {a.samples} real training windows score OA {real_oa[0]:.3f} +- {real_oa[1]:.3f}; "
                       f"DPS '-' = the rule has no differentiable relaxation"])
    write_json(a.json, {"benchmark": "music_scg", "args": vars(a), "model": model_name, "budget_nfe": budget,
                        "real_train_oa": real_oa, "results": records,
                        "validation_pieces": val_pieces.names, "environment": environment()})
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
