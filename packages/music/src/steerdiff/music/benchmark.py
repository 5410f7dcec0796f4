"""The rule-guided music benchmark: SCG against unguided, best-of-n, DPS on a relaxation and SMC, at equal
budgets.

For each rule (pitch-class histogram, note density, chord progression) and the SCG paper's weighted multi-rule
objective (40 / 1 / 1), every method samples pieces with targets taken from held-out chorale windows, one per
sample (as in Huang et al. 2024). Reported per (objective, method): the objective's rule loss on the decoded
pieces (lower is better) +- its standard error over samples, the mean OA of 7 musical attributes against all
held-out windows (higher is better) +- a bootstrap standard error, network evaluations per sample, wall time.

Budgets (network evaluations, NFE, per output sample): every guided method gets at most B = k S, S DDPM steps:

* SCG: S steps; the last G steps draw n candidates each and keep the best by the rule on their x0-hat
  (the paper: n = 16, every step with t < 750 of 1000). NFE = S + (G - 1)(n - 1) <= k S.
* best-of-m and SMC (FK steering, m particles, guided over the last 3/4 of the steps): m x (k S / m) steps.
* DPS (gradient of the rules' relaxation through the network): k S / 2 steps of one forward and one backward
  pass; chords have no relaxation ('-'); on the multi-rule objective DPS guides the differentiable terms only.
* unguided: S steps (the reference for OA, not budget-matched).

Hyper-parameters are chosen per (objective, method) on validation targets from chorales that are neither
training nor test pieces; the lowest mean validation rule loss wins and runs once on the test targets.
``run_benchmark`` runs the protocol; ``benchmarks/music_scg.py`` is its command line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from steerdiff.core.benchmarking import Stopwatch
from steerdiff.core.tuning import LinearRange, LogRange, tune

from .data import Pieces, bach_chorales, load_split, save_split, split, windows
from .demo import DEMO_BARS, DEMO_ROLL, demo_run_dir, ensure_demo_model
from .metrics import oa_table
from .model import EmpiricalDenoiser
from .pipeline import Generation, MusicPipeline, trained_steps
from .roll import RollConfig
from .rules import ChordProgression, NoteDensity, Objective, PitchHistogram

__all__ = [
    "BENCH_METHODS",
    "TREE_SPLITS",
    "TREE_TEMPERATURES",
    "last_steps",
    "tree_configs",
    "OBJECTIVES",
    "TRAIN_STEPS",
    "DEMO_PIECES",
    "SMC_FRACTION",
    "BenchmarkData",
    "scg_configs",
    "grids",
    "label",
    "run_setting",
    "oa_with_se",
    "objectives",
    "load_benchmark_data",
    "stand_in_data",
    "run_benchmark",
    "tune_defaults",
]

BENCH_METHODS = ("unguided", "best_of_n", "dps", "smc", "scg", "tree_search")
# tree search: (beams, children) splits of the budget, then selection by sampling at these temperatures (in
# units of the spread of the unguided validation loss, like SMC's lambda)
TREE_SPLITS = ((2, 2), (2, 3), (3, 2), (2, 4), (4, 2), (4, 3), (4, 4))
TREE_TEMPERATURES = (0.1, 0.3, 1.0)
COMPACT_QUICK = ((2, 2), (1, 2))
OBJECTIVES = ("pitch_histogram", "note_density", "chord_progression", "multi")
TRAIN_STEPS = 3000  # the benchmark's model: the demo run trained on (resumed to) 3000 steps
DEMO_PIECES = 60  # the demo's chorales (train + test); validation chorales come after them in corpus order
SMC_FRACTION = 0.75  # SMC steers the last 3/4 of its steps (the paper's SCG window, t < 750 of 1000)


def last_steps(guided: int, steps: int) -> tuple[float, float]:
    """The step window that guides the last ``guided`` of ``steps`` sampler steps."""
    guided = max(1, min(int(guided), steps))
    return ((steps - guided) / steps, 1.0)


def tree_configs(steps: int, k: int, splits: Sequence[tuple[int, int]]) -> list[dict]:
    """Tree-search settings at the budget B = k S: for each (beams, children) split, the most steps S' with
    every step guided that fit, (S' - 1) beams children + beams <= B (the last step keeps each beam's one
    child)."""
    budget, out = k * steps, []
    for beams, children in splits:
        s = (budget - beams) // (beams * children) + 1
        if s >= 2:
            out.append(
                {"method": "tree_search", "beams": beams, "n": children, "steps": s, "selection": "top"}
            )
    return out


def scg_configs(steps: int, k: int, widths: Sequence[int], narrow: Sequence[int] = ()) -> list[dict]:
    """SCG settings at the budget B = k S: for each n in ``widths``, S steps and the longest guided window G
    (<= S) with S + (G - 1)(n - 1) <= B; for each n in ``narrow``, more steps guided all the way,
    S' = (B + n - 1) // n (n candidates on S' steps: S' + (S' - 1)(n - 1) <= B)."""
    out = []
    for n in widths:
        g = min(steps, 1 + (k - 1) * steps // (n - 1))
        out.append({"method": "scg", "n": n, "steps": steps, "window": last_steps(g, steps), "G": g})
    for n in narrow:
        s = (k * steps + n - 1) // n
        out.append({"method": "scg", "n": n, "steps": s, "window": (0.0, 1.0), "G": s})
    return out


def grids(steps: int, k: int, quick: bool, compact: bool = False) -> dict[str, list[dict]]:
    """Candidate settings per method, every one within k S network evaluations per sample. Width is traded for
    steps in every derivative-free method: few candidates / particles on many steps, or many on few.
    ``compact``: a smaller grid around the settings the full grid picked on the demo model (for slow
    machines); ``quick``: the smallest, a check that the protocol runs."""
    if quick:
        widths, lams, scales, scg, splits = (
            (k,),
            (2.0, 8.0),
            (1.0,),
            scg_configs(steps, k, (4, 6)),
            COMPACT_QUICK,
        )
    elif compact:
        widths, lams, scales = (k, 2 * k), (8.0, 128.0), (10.0, 30.0, 100.0)
        scg, splits = scg_configs(steps, k, (8, 16), (3,)), ((2, 3), (2, 4), (4, 2))
    else:
        widths, lams, scales = (2, 3, 4, k, 2 * k), (8.0, 32.0, 128.0), (1.0, 3.0, 10.0, 30.0)
        scg, splits = scg_configs(steps, k, (6, 8, 11, 16), (2, 3, 4)), TREE_SPLITS
    parts = [m for m in widths if (k * steps) % m == 0]
    return {
        "unguided": [{"method": "unguided", "n": 1, "steps": steps}],
        "best_of_n": [{"method": "best_of_n", "n": m, "steps": k * steps // m} for m in parts],
        "dps": [{"method": "dps", "n": 1, "steps": k * steps // 2, "dps_scale": c} for c in scales],
        "smc": [
            {
                "method": "smc",
                "n": m,
                "steps": k * steps // m,
                "window": last_steps(round(SMC_FRACTION * (k * steps // m)), k * steps // m),
                "lam_units": lu,
            }
            for m in parts
            for lu in lams
        ],
        "scg": scg,
        "tree_search": tree_configs(steps, k, splits),
    }


def label(c: dict) -> str:
    """A short name of a setting, as the tables print it."""
    m = c["method"]
    if m == "best_of_n":
        return f"best-of-{c['n']} ({c['steps']} st)"
    if m == "smc":
        return f"smc {c['n']}p {c['steps']} st, lam {c['lam_units']:g}"
    if m == "scg":
        return f"scg n={c['n']} G={c['G']}/{c['steps']}"
    if m == "dps":
        return f"dps {c['steps']} st, scale {c['dps_scale']:g}"
    if m == "tree_search":
        sel = "top" if c["selection"] == "top" else f"sample T {c['temp_units']:g}"
        return f"tree {c['beams']}x{c['n']} {c['steps']} st, {sel}"
    return m


def run_setting(
    pipe: MusicPipeline, obj: Objective, c: dict, num: int, lam: float | None, seed: int
) -> tuple[Generation, float]:
    """One setting ``c`` (from ``grids``) on ``num`` samples toward ``obj``: the pieces and the wall
    seconds."""
    with Stopwatch() as sw:
        gen = pipe.generate(
            rules=obj,
            method=c["method"],
            num_samples=num,
            steps=c["steps"],
            n=c["n"],
            window=c.get("window", (0.0, 1.0)),
            lam=lam or 1.0,
            dps_scale=c.get("dps_scale", 1.0),
            beams=c.get("beams", 1),
            selection=c.get("selection", "top"),
            temperature=c.get("temperature", 1.0),
            seed=seed,
        )
    return gen, sw.seconds


def oa_with_se(
    x: torch.Tensor, real: torch.Tensor, cfg: RollConfig, g: torch.Generator, reps: int
) -> tuple[float, float]:
    """Mean OA and its bootstrap standard error over the generated samples."""
    x = x.cpu()
    oa = oa_table(x, real, cfg)["mean"]
    boots = [
        oa_table(x[torch.randint(x.shape[0], (x.shape[0],), generator=g)], real, cfg)["mean"]
        for _ in range(reps)
    ]
    return oa, float(torch.tensor(boots).std())


def objectives(cfg: RollConfig, ref: torch.Tensor) -> dict[str, Objective]:
    """The four objectives with targets from the reference windows ``ref`` (one per sample)."""
    rules = {
        "pitch_histogram": PitchHistogram(cfg),
        "note_density": NoteDensity(cfg),
        "chord_progression": ChordProgression(cfg),
    }
    out = {name: Objective.from_reference([r], ref) for name, r in rules.items()}
    out["multi (40/1/1)"] = Objective.from_reference(
        [(rules["pitch_histogram"], 40.0), (rules["note_density"], 1.0), (rules["chord_progression"], 1.0)],
        ref,
    )
    return out


@dataclass
class BenchmarkData:
    """The model and the three sets of pieces a benchmark run uses."""

    pipe: MusicPipeline
    model_name: str
    held_out: Pieces  # test targets and the OA reference
    val_pieces: Pieces  # validation targets (choosing hyper-parameters)
    train_pieces: Pieces  # the model's training pieces (the real-data OA reference row)
    notes: list[str] = field(default_factory=list)


def stand_in_data(pieces: Pieces, seed: int = 0, device="cpu") -> BenchmarkData:
    """A small stand-in: the exact empirical denoiser of 60 % of ``pieces`` (it can only reproduce its
    training windows), validation and test on 20 % each."""
    train_pieces, held_out = split(pieces, 0.4, seed=seed)
    val_pieces, held_out = split(held_out, 0.5, seed=seed)
    length = DEMO_BARS * pieces.config.steps_per_bar
    den = EmpiricalDenoiser(windows(train_pieces, length, transpose=range(-3, 4)), bandwidth=0.1)
    pipe = MusicPipeline(den, pieces.config, length, device=device)
    name = (
        f"STAND-IN: exact empirical denoiser of {len(train_pieces)} pieces' training windows "
        "(not a trained model)"
    )
    return BenchmarkData(pipe, name, held_out, val_pieces, train_pieces)


def load_benchmark_data(
    quick: bool,
    val_pieces: int = 15,
    seed: int = 0,
    device="cpu",
    progress: bool = True,
    model=None,
) -> BenchmarkData:
    """The cached demo model (trained or resumed now to ``TRAIN_STEPS``, except with ``quick``), its held-out
    chorales and ``val_pieces`` validation chorales after the demo's; with ``quick`` and no cached model, the
    stand-in on 24 chorales. ``model``: another model bundle on the same pieces (one trained without the
    demo's held-out chorales and the validation chorales, such as the prior of ``steerdiff.music.prior``)."""
    run_dir = demo_run_dir(DEMO_PIECES)
    model_dir = run_dir / "model" if model is None else Path(model)
    steps = trained_steps(model_dir)
    if model is None and steps < TRAIN_STEPS and (not quick or steps < 1):
        if quick:
            pieces = bach_chorales(RollConfig(steps_per_beat=2), num_pieces=24, progress=False)
            data = stand_in_data(pieces, seed=seed, device=device)
            data.notes.append(
                "no trained demo model is cached (run `steerdiff-music demo` or the benchmark without "
                "--quick); using the SMALL STAND-IN: the exact denoiser of the training windows, which "
                "can only reproduce them"
            )
            return data
        ensure_demo_model(
            run_dir, num_pieces=DEMO_PIECES, train_steps=TRAIN_STEPS, device=device, progress=progress
        )
    pipe = MusicPipeline.from_pretrained(model_dir, device=device)
    if not (run_dir / "data" / "val.npz").is_file():  # the demo's chorales, prepared as the demo does
        save_split(run_dir / "data", *split(bach_chorales(RollConfig(**DEMO_ROLL), DEMO_PIECES), 0.15, 0))
    train_pieces, held_out = load_split(run_dir / "data")
    more = bach_chorales(RollConfig(**DEMO_ROLL), num_pieces=DEMO_PIECES + val_pieces, progress=False)
    val = more.subset(range(DEMO_PIECES, len(more)))
    seen = (set(train_pieces.names) | set(held_out.names)) & set(val.names)
    if seen:
        raise ValueError(f"validation chorales overlap the demo's: {sorted(seen)}")
    name = f"U-Net trained on Bach chorales, {trained_steps(model_dir)} steps ({Path(model_dir)})"
    return BenchmarkData(pipe, name, held_out, val, train_pieces)


def run_benchmark(
    data: BenchmarkData,
    samples: int = 32,
    val_samples: int = 12,
    steps: int = 28,
    k: int = 6,
    bootstrap: int = 50,
    seed: int = 0,
    quick: bool = False,
    wanted: Sequence[str] = OBJECTIVES,
    log: Callable[[str], None] | None = print,
    methods: Sequence[str] = BENCH_METHODS,
    compact: bool = False,
) -> dict:
    """The protocol: validation over each method's grid, then the chosen setting once on the test targets.

    Returns ``rows`` (the test table), ``val_rows`` (the validation grid), ``records`` (JSON-ready, one per
    objective and method), ``real_oa`` (real training windows against the held-out ones) and the counts the
    table notes need.
    """
    unknown = sorted(set(wanted) - set(OBJECTIVES))
    if unknown:
        raise ValueError(f"unknown objective(s) {unknown}; choose from {', '.join(OBJECTIVES)}")
    unknown = sorted(set(methods) - set(BENCH_METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(BENCH_METHODS)}")
    log = log or (lambda _: None)
    pipe, cfg = data.pipe, data.held_out.config
    length = DEMO_BARS * cfg.steps_per_bar
    real, val_real = windows(data.held_out, length), windows(data.val_pieces, length)
    g = torch.Generator().manual_seed(seed + 1)
    ref = real[torch.randint(real.shape[0], (samples,), generator=g)]
    val_ref = val_real[torch.randint(val_real.shape[0], (val_samples,), generator=g)]
    test_objs, val_objs = objectives(cfg, ref), objectives(cfg, val_ref)

    grid = grids(steps, k, quick, compact)
    budget = k * steps
    boot = torch.Generator().manual_seed(seed + 2)
    rows, val_rows, records = [], [], []
    for obj_name in [n for n in test_objs if n.split(" ")[0] in wanted]:
        val_obj, obj = val_objs[obj_name], test_objs[obj_name]
        lam_scale = None
        for method in [m for m in BENCH_METHODS if m in methods or m == "unguided"]:
            options = grid[method]
            if method == "dps" and not any(t.rule.differentiable for t in obj.terms):
                rows.append((obj_name, "dps", None, None, None, None, None, None, None))
                continue
            # validation: every option on the validation targets (seed + 100: other noise than the test run)
            scored = [] if len(options) > 1 or method == "unguided" else [(None, options[0])]

            def validate(opts, method=method, scored=scored, val_obj=val_obj, obj_name=obj_name):
                nonlocal lam_scale
                for c in opts:
                    lam = c["lam_units"] * lam_scale if method == "smc" else None
                    res, sec = run_setting(pipe, val_obj, c, val_samples, lam, seed + 100)
                    used = res.costs.nfe + res.costs.gradient_evals / val_samples
                    if method != "unguided" and used > budget:
                        raise AssertionError(f"{label(c)} exceeds the budget of {budget} NFE per sample")
                    losses = val_obj.loss(res.x)
                    if method == "unguided":  # SMC's lambda unit: 1 / spread of the unguided validation loss
                        lam_scale = 1.0 / max(float(losses.std()), 0.05 * float(losses.mean()), 1e-6)
                    val_loss = float(losses.mean())
                    scored.append((val_loss, c))
                    val_rows.append(
                        (
                            obj_name,
                            label(c),
                            val_loss,
                            float(losses.std() / math.sqrt(val_samples)),
                            oa_table(res.x.cpu(), val_real, cfg)["mean"],
                            res.costs.nfe,
                            sec,
                        )
                    )

            if not scored:
                validate(options)
            if method == "tree_search" and len(options) > 1:
                # then selection by sampling, at temperatures in units of the unguided loss's spread
                split_ = min(scored, key=lambda t: t[0])[1]
                temps = (
                    TREE_TEMPERATURES[1:2]
                    if quick
                    else TREE_TEMPERATURES[1:]
                    if compact
                    else TREE_TEMPERATURES
                )
                validate(
                    [
                        {**split_, "selection": "sample", "temp_units": t, "temperature": t / lam_scale}
                        for t in temps
                    ]
                )
                options = options + [c for _, c in scored[len(options) :]]
            best = min(scored, key=lambda t: t[0])[1]  # a single option is taken without validation
            log(
                f"  {obj_name:>18} {method:>9}: validation picks {label(best)}"
                + (f" (of {len(options)})" if len(options) > 1 else "")
            )
            # test: the chosen setting once on the test targets
            lam = best["lam_units"] * lam_scale if method == "smc" else None
            res, sec = run_setting(pipe, obj, best, samples, lam, seed)
            losses = obj.loss(res.x)
            oa, oa_se = oa_with_se(res.x, real, cfg, boot, bootstrap)
            loss, loss_se = float(losses.mean()), float(losses.std() / math.sqrt(samples))
            grads = res.costs.gradient_evals / samples
            records.append(
                {
                    "objective": obj_name,
                    "method": method,
                    "setting": best,
                    "label": label(best),
                    "smc_lam": lam,
                    "rule_loss": loss,
                    "rule_loss_se": loss_se,
                    "per_rule": {k_: float(v.mean()) for k_, v in obj.losses(res.x).items()},
                    "oa_mean": oa,
                    "oa_se": oa_se,
                    "nfe": res.costs.nfe,
                    "grad_per_sample": grads,
                    "budget": res.costs.nfe + grads,
                    "seconds": sec,
                    "validation": [{"label": label(c), "loss": v} for v, c in scored],
                }
            )
            rows.append((obj_name, label(best), loss, loss_se, oa, oa_se, res.costs.nfe, grads, sec))
            log(
                f"  {obj_name:>18} {label(best):>30}: loss {loss:.4g} +- {loss_se:.2g}  OA {oa:.3f} +- "
                f"{oa_se:.3f}  ({sec:.1f} s)"
            )
    train_windows = windows(data.train_pieces, length)
    pick = torch.randperm(train_windows.shape[0], generator=torch.Generator().manual_seed(seed))[:samples]
    real_oa = oa_with_se(train_windows[pick], real, cfg, boot, bootstrap)
    return {
        "rows": rows,
        "val_rows": val_rows,
        "records": records,
        "real_oa": real_oa,
        "budget_nfe": budget,
        "length": length,
        "num_real": int(real.shape[0]),
        "num_val_real": int(val_real.shape[0]),
    }


def tune_defaults(
    pipe: MusicPipeline,
    val_pieces: Pieces,
    samples: int = 12,
    steps: int = 28,
    n: int = 8,
    budget: int = 8,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Choose ``generate``'s defaults on validation chorales with the core's ``tune`` (coarse to fine, at most
    ``budget`` evaluations per setting): the DPS scale, SMC's lambda per rule and for the multi-rule
    objective, and the start of the guided window of the search methods (SCG with ``n`` candidates, on
    chords). Every score is the mean validation rule loss relative to unguided sampling's, on the same
    targets and noise (``samples`` targets from windows of ``val_pieces``, ``steps`` sampler steps)."""
    log = log or (lambda _: None)
    cfg = val_pieces.config
    length = DEMO_BARS * cfg.steps_per_bar
    val_real = windows(val_pieces, length)
    g = torch.Generator().manual_seed(seed + 1)
    objs = objectives(cfg, val_real[torch.randint(val_real.shape[0], (samples,), generator=g)])
    multi = next(k for k in objs if k.startswith("multi"))

    def loss(name: str, **kw) -> float:
        gen = pipe.generate(rules=objs[name], num_samples=samples, steps=steps, seed=seed + 100, **kw)
        return float(objs[name].loss(gen.x).mean())

    base = {name: loss(name, method="unguided") for name in objs}
    out: dict = {"unguided_loss": base, "samples": samples, "steps": steps, "n": n, "trials": {}}

    def run(key: str, fn, space: dict) -> dict:
        res = tune(fn, space, budget=budget)
        out["trials"][key] = res.as_dict()
        log(
            f"  {key}: best {res.best} (relative loss {res.score:.3g}"
            + (f"; at the edge of its range: {res.at_edge}" if res.at_edge else "")
            + ")"
        )
        return res.best

    relaxed = ("pitch_histogram", "note_density")
    best = run(
        "dps_scale",
        lambda p: sum(loss(r, method="dps", dps_scale=p["scale"]) / base[r] for r in relaxed) / len(relaxed),
        {"scale": LogRange(1.0, 1000.0)},
    )
    out["dps_scale"] = best["scale"]
    out["lam"] = {}
    for name in ("pitch_histogram", "note_density", "chord_progression", multi):
        best = run(
            f"smc lam ({name})",
            lambda p, name=name: loss(name, method="smc", n=n, lam=p["lam"]) / base[name],
            {"lam": LogRange(0.1, 10000.0)},
        )
        out["lam"]["multi" if name == multi else name] = best["lam"]
    best = run(
        "scg window start (chord_progression)",
        lambda p: (
            loss("chord_progression", method="scg", n=n, window=(p["start"], 1.0)) / base["chord_progression"]
        ),
        {"start": LinearRange(0.0, 0.9)},
    )
    out["window_start"] = best["start"]
    return out
