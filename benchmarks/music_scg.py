"""Rule-guided symbolic music: SCG against unguided, best-of-n, DPS on a relaxation, SMC and tree search, at
equal budgets.

The protocol (budgets, validation grids, test run) is ``steerdiff.music.benchmark``; this script parses the
arguments, runs it and prints the validation grid and the test table. The model is the ``steerdiff-music
demo`` U-Net trained on music21's Bach chorales (cached under ``$STEERDIFF_CACHE``; trained or resumed to 3000
steps if short of them), or any bundle given with ``--model``.

    python benchmarks/music_scg.py --quick     # < 1 min: 6 samples, S=10, k=3, small grid
    python benchmarks/music_scg.py             # 12 validation + 32 test samples, S=28, k=6
    python benchmarks/music_scg.py --objectives chord_progression --k 16   # one rule at a larger budget
    python benchmarks/music_scg.py --tune --json docs/music/defaults.json  # the library's defaults
"""

from __future__ import annotations

import argparse

from steerdiff.core.benchmarking import environment, print_table, write_json
from steerdiff.core.runtime import configure
from steerdiff.music.benchmark import (
    BENCH_METHODS,
    DEMO_BARS,
    OBJECTIVES,
    SMC_FRACTION,
    load_benchmark_data,
    run_benchmark,
    tune_defaults,
)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a small run: 6 samples, S=10, k=3, a small grid")
    p.add_argument("--samples", type=int, default=32, help="test samples (one held-out target each)")
    p.add_argument(
        "--val-samples", type=int, default=12, help="validation samples for choosing hyper-parameters"
    )
    p.add_argument("--val-pieces", type=int, default=15, help="validation chorales (after the demo's 60)")
    p.add_argument("--steps", type=int, default=28, help="DDPM steps S")
    p.add_argument("--k", type=int, default=6, help="budget: k S network evaluations per guided sample")
    p.add_argument(
        "--bootstrap", type=int, default=50, help="bootstrap repetitions for the OA standard error"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--objectives",
        default=None,
        metavar="NAMES",
        help=f"comma-separated subset of: {', '.join(OBJECTIVES)}",
    )
    p.add_argument(
        "--methods",
        default=None,
        metavar="NAMES",
        help=f"comma-separated subset of: {', '.join(BENCH_METHODS)} (unguided always runs)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="a model bundle to benchmark instead of the demo model (trained without the test and validation "
        "chorales, e.g. the prior of python -m steerdiff.music.prior)",
    )
    p.add_argument(
        "--compact",
        action="store_true",
        help="a smaller validation grid around the full grid's picks on the demo model (for slow machines)",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="instead of the benchmark: choose the library's defaults (DPS scale, SMC lambda, guided window) "
        "on the validation chorales with the core's tune, and write them to --json",
    )
    p.add_argument("--json", default="benchmarks/results/music_scg.json", help="where to write the results")
    a = p.parse_args(argv)
    wanted = OBJECTIVES if a.objectives is None else tuple(a.objectives.split(","))
    if set(wanted) - set(OBJECTIVES):
        unknown = sorted(set(wanted) - set(OBJECTIVES))
        p.error(f"unknown objective(s) {unknown}; choose from {', '.join(OBJECTIVES)}")
    methods = BENCH_METHODS if a.methods is None else tuple(a.methods.split(","))
    if set(methods) - set(BENCH_METHODS):
        p.error(
            f"unknown method(s) {sorted(set(methods) - set(BENCH_METHODS))}; choose from {', '.join(BENCH_METHODS)}"
        )
    if a.quick:
        a.samples, a.val_samples, a.steps, a.k, a.bootstrap = 6, 3, 10, 3, 10
    device = configure(a.device, a.threads, a.seed)

    data = load_benchmark_data(a.quick, a.val_pieces, a.seed, device, model=a.model)
    for note in data.notes:
        print("NOTE:", note)
    if a.tune:
        chosen = tune_defaults(data.pipe, data.val_pieces, a.val_samples, a.steps, seed=a.seed)
        write_json(a.json, {"model": data.model_name, **chosen, "validation_pieces": data.val_pieces.names})
        print(
            f"DPS scale {chosen['dps_scale']:g}; SMC lambda {chosen['lam']}; window start {chosen['window_start']:g}"
        )
        print(f"wrote {a.json}")
        return
    r = run_benchmark(
        data,
        a.samples,
        a.val_samples,
        a.steps,
        a.k,
        a.bootstrap,
        a.seed,
        a.quick,
        wanted,
        log=lambda line: print(line, flush=True),
        methods=methods,
        compact=a.compact,
    )
    print_table(
        "Validation (choosing hyper-parameters): rule loss on validation targets",
        ["objective", "setting", "val loss", "+- se", "val OA", "NFE/sample", "wall s"],
        r["val_rows"],
        notes=[
            f"{a.val_samples} samples, targets from {a.val_samples} windows of {len(data.val_pieces)} "
            f"validation chorales (disjoint from the model's training and the test chorales); OA "
            f"against all {r['num_val_real']} validation windows; lowest val loss wins"
        ],
    )
    real_oa = r["real_oa"]
    print_table(
        "Rule-guided music (test): rule loss (lower better) and OA vs held-out chorales (higher better)",
        [
            "objective",
            "method (validation choice)",
            "rule loss",
            "+- se",
            "OA",
            "+- se",
            "NFE/sample",
            "grads/sample",
            "wall s",
        ],
        r["rows"],
        notes=[
            f"model: {data.model_name}",
            f"{a.samples} samples of {r['length']} steps ({DEMO_BARS} bars); targets from {a.samples} "
            f"held-out windows of {len(data.held_out)} held-out chorales; OA against all {r['num_real']} "
            f"held-out windows (bootstrap se)",
            f"budget <= {r['budget_nfe']} NFE/sample for every guided method (k={a.k} x S={a.steps} DDPM "
            f"steps); SCG G = guided steps of S; SMC steers the last {SMC_FRACTION:g} of its steps, lambda "
            f"in units of 1/spread of the unguided validation loss; DPS counts 1 forward + 1 gradient per "
            f"step; unguided {a.steps} NFE",
            f"reference: {a.samples} real training windows score OA {real_oa[0]:.3f} +- {real_oa[1]:.3f}; "
            f"DPS '-' = the rule has no differentiable relaxation",
        ],
    )
    write_json(
        a.json,
        {
            "benchmark": "music_scg",
            "args": vars(a),
            "model": data.model_name,
            "budget_nfe": r["budget_nfe"],
            "real_train_oa": real_oa,
            "results": r["records"],
            "validation_pieces": data.val_pieces.names,
            "environment": environment(),
        },
    )
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
