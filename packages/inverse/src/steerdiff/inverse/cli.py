"""``steerdiff-inverse``: make-data -> train-prior -> solve (with metrics and plots); benchmark; demo.

    steerdiff-inverse make-data   --out runs/ns --size 32 --num-train 512 --num-test 4 --noise 1.0
    steerdiff-inverse train-prior --data runs/ns --out runs/ns/prior --train-steps 1000
    steerdiff-inverse solve       --data runs/ns --prior runs/ns/prior --method enkg --out runs/ns/enkg
    steerdiff-inverse benchmark   --quick
    steerdiff-inverse demo        --out runs/demo

Every command writes summary.json into its --out folder and prints the summary (--json: all of it as JSON).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from steerdiff.core.command import (
    UsageError,
    add_runtime_flags,
    add_sampling_flags,
    existing_dir,
    make_parser,
    nonnegative_float,
    positive_float,
    positive_int,
    run_command,
    subcommands,
)
from steerdiff.core.io import write_json

from .data import Dataset, load_dataset, make_dataset, save_dataset, save_tensors
from .forward import BLOWUP_POLICIES
from .methods import METHODS, Solution
from .pipeline import InversePipeline
from .prior import PriorConfig
from .problems import PROBLEMS, make_problem

__all__ = ["build_parser", "main"]

PROG = "steerdiff-inverse"


# ------------------------------------------------------------------------------------------- handlers


def cmd_make_data(args) -> dict:
    options = {"size": args.size, "noise_std": args.noise}
    if args.downsample is not None:
        options["downsample" if args.problem == "navier_stokes" else "stride"] = args.downsample
    if args.problem == "navier_stokes":
        options.update(dt=args.dt, reynolds=args.reynolds, horizon=args.horizon)
    problem = make_problem(args.problem, **options)
    dataset = make_dataset(problem, args.num_train, args.num_test, seed=args.seed, progress=not args.quiet)
    save_dataset(args.out, dataset)
    return {**dataset.meta, "data": str(args.out)}


def _prior_config(args) -> PriorConfig:
    return PriorConfig(
        base_channels=args.channels,
        steps=args.train_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )


def cmd_train_prior(args) -> dict:
    dataset = load_dataset(args.data)  # checked before any training
    t0 = time.perf_counter()
    pipe = InversePipeline.train(
        dataset.train,
        dataset.problem,
        _prior_config(args),
        out_dir=args.out,
        device=args.device,
        progress=not args.quiet,
    )
    training = pipe.prior.info["training"]
    return {
        "model": str(Path(args.out) / "model"),
        "train_steps": training["train_steps"],
        "final_loss": training["final_loss"],
        "scale": pipe.prior.scale,
        "field_shape": list(pipe.prior.field_shape),
        "problem": dataset.problem.name,
        "seconds": time.perf_counter() - t0,
    }


def _solve_and_write(
    pipe: InversePipeline,
    dataset: Dataset,
    out: Path,
    method: str,
    num_fields: int,
    solve_options: dict,
    seed: int,
    progress: bool,
) -> dict:
    if num_fields > dataset.test.shape[0]:
        raise UsageError(
            f"--num-fields {num_fields} is more than the {dataset.test.shape[0]} test field(s) of the "
            "data set; lower it or make a data set with more --num-test"
        )
    truth = dataset.test[:num_fields].to(pipe.device)
    y = dataset.y[:num_fields].to(pipe.device)
    sol: Solution = pipe.solve(y, method=method, seed=seed, progress=progress, **solve_options)
    metrics = pipe.evaluate(sol, truth, y)
    save_tensors(out / "solution.safetensors", {"estimate": sol.estimate, "ensemble": sol.ensemble})
    from .plots import plot_solution

    plot_solution(
        out / "fields.png",
        truth,
        y,
        sol.estimate,
        sol.ensemble,
        title=f"{method}: relative L2 {metrics['rel_l2']:.3f}",
    )
    write_json(out / "metrics.json", {"method": method, **metrics, "config": sol.info["config"]})
    return {
        "method": method,
        **{k: v for k, v in metrics.items() if k != "rel_l2_per_sample"},
        "metrics": str(out / "metrics.json"),
        "plot": str(out / "fields.png"),
        "solution": str(out / "solution.safetensors"),
    }


def cmd_solve(args) -> dict:
    if args.method != "eki" and args.prior is None:
        raise UsageError(
            f"--prior is required by {args.method}; give a folder written by train-prior "
            "(or use --method eki, which needs no prior)"
        )
    dataset = load_dataset(args.data)
    problem = make_problem(
        dataset.meta["problem"], **{**dataset.meta["options"], "on_blowup": args.on_blowup}
    )
    if args.method == "eki":
        pipe = InversePipeline(None, problem, args.device)
    else:
        pipe = InversePipeline.from_pretrained(args.prior, device=args.device, problem=problem)
    options = {
        "particles": args.num_samples,
        "steps": args.steps,
        "scale": args.scale,
        "num_updates": args.updates,
        "iterations": args.iterations,
        "num_candidates": args.candidates,
        "likelihood_std": max(problem.forward.noise_std, 1.0),
    }
    return _solve_and_write(
        pipe, dataset, Path(args.out), args.method, args.num_fields, options, args.seed, not args.quiet
    )


def cmd_benchmark(args) -> dict:
    from .benchmark import FULL, QUICK, default_cache, rows_table, run

    setting = QUICK if args.quick else FULL
    cache = args.cache if args.cache is not None else default_cache()
    rows, chosen = run(setting, cache, seed=args.seed, device=args.device, progress=not args.quiet)
    if not args.quiet:
        print(rows_table(setting, rows, chosen, quick=args.quick), file=sys.stderr)
    path = write_json(Path(args.out) / "benchmark.json", {"rows": rows, "chosen": chosen})
    return {
        "benchmark": str(path),
        "chosen": chosen,
        "rel_l2": {f"{r['method']} noise {r['noise']:g}": r["rel_l2"] for r in rows},
    }


def cmd_demo(args) -> dict:
    """Small Navier-Stokes inversion end to end: data, prior, EnKG and EKI, plots and a summary."""
    out = Path(args.out)
    progress = not args.quiet
    problem = make_problem("navier_stokes", size=32, noise_std=1.0)
    dataset = make_dataset(problem, args.num_train, 1, seed=args.seed, progress=progress)
    save_dataset(out, dataset)
    config = PriorConfig(base_channels=8, steps=args.train_steps, batch_size=32, lr=1e-3, seed=args.seed)
    pipe = InversePipeline.train(
        dataset.train, dataset.problem, config, out_dir=out / "prior", device=args.device, progress=progress
    )
    pipe.problem = make_problem("navier_stokes", **{**dataset.meta["options"], "on_blowup": "penalty"})
    options = {"particles": 32, "steps": 20, "iterations": 60, "likelihood_std": 1.0}
    rel = {}
    for method in ("enkg", "eki"):
        result = _solve_and_write(pipe, dataset, out / method, method, 1, options, args.seed, progress)
        rel[method] = result["rel_l2"]
    return {
        "rel_l2": rel,
        "model": str(out / "prior" / "model"),
        "plots": [str(out / m / "fields.png") for m in ("enkg", "eki")],
        "note": f"a {args.train_steps}-step prior on {args.num_train} fields shows the pipeline, not EnKG's "
        "accuracy (errors near 1 are expected); benchmarks/inverse_ns.py trains a full prior and "
        "compares every method",
    }


HANDLERS = {
    "make-data": cmd_make_data,
    "train-prior": cmd_train_prior,
    "solve": cmd_solve,
    "benchmark": cmd_benchmark,
    "demo": cmd_demo,
}


# ------------------------------------------------------------------------------------------- parser


def _one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Usage errors as one line on stderr (the problem and where to find the options), exit code 2."""

    def error(message: str):
        print(f"{parser.prog}: error: {message}; see `{parser.prog} --help` for the options", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign]
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _one_line_errors(make_parser(PROG, __doc__, distribution="steerdiff-inverse"))
    new = subcommands(parser)

    subs = []

    def add(name: str, help: str) -> argparse.ArgumentParser:
        subs.append(_one_line_errors(new(name, help)))
        return subs[-1]

    p = add(
        "make-data", "simulate training fields, test fields and their measurements into a data set folder"
    )
    add_runtime_flags(p, out="runs/inverse/data")
    p.add_argument("--problem", default="navier_stokes", choices=sorted(PROBLEMS), help="the inverse problem")
    p.add_argument("--size", type=positive_int, default=32, help="grid points per side of a field")
    p.add_argument("--dt", type=positive_float, default=1e-2, help="navier_stokes: solver time step")
    p.add_argument("--reynolds", type=positive_float, default=200.0, help="navier_stokes: Reynolds number")
    p.add_argument(
        "--horizon",
        type=nonnegative_float,
        default=1.0,
        help="navier_stokes: simulated time between the unknown and the observed field",
    )
    p.add_argument(
        "--downsample",
        type=positive_int,
        default=None,
        help="observe every N-th grid point (default: the problem's own, 2 for navier_stokes and "
        "saturated, 4 for linear)",
    )
    p.add_argument(
        "--noise", type=nonnegative_float, default=0.0, help="measurement noise standard deviation"
    )
    p.add_argument("--num-train", type=positive_int, default=512, help="training fields for the prior")
    p.add_argument("--num-test", type=positive_int, default=4, help="test fields and their measurements")

    p = add("train-prior", "train the diffusion prior on a data set's training fields; writes OUT/model")
    add_runtime_flags(p, out="runs/inverse/prior")
    p.add_argument("--data", type=existing_dir, required=True, help="data set folder written by make-data")
    p.add_argument("--train-steps", type=positive_int, default=1000, help="training steps")
    p.add_argument("--channels", type=positive_int, default=16, help="base channels of the U-Net")
    p.add_argument("--batch-size", type=positive_int, default=32, help="training batch size")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate")

    p = add(
        "solve", "solve a data set's test measurements; writes metrics.json, fields.png, solution.safetensors"
    )
    add_runtime_flags(p, out="runs/inverse/solve")
    add_sampling_flags(
        p, num_samples=32, steps=30, solver=None, samples_help="particles (ensemble members) per test field"
    )
    p.add_argument("--data", type=existing_dir, required=True, help="data set folder written by make-data")
    p.add_argument(
        "--prior",
        type=existing_dir,
        default=None,
        help="prior folder written by train-prior (every method but eki needs one)",
    )
    p.add_argument("--method", default="enkg", choices=METHODS, help="solver")
    p.add_argument("--num-fields", type=positive_int, default=1, help="how many of the test fields to solve")
    p.add_argument("--scale", type=positive_float, default=2.0, help="enkg / eki: step scale")
    p.add_argument("--updates", type=positive_int, default=1, help="enkg: corrections per guided step")
    p.add_argument("--iterations", type=positive_int, default=100, help="eki: iterations")
    p.add_argument("--candidates", type=positive_int, default=8, help="scg: candidates per step")
    p.add_argument(
        "--on-blowup",
        default="penalty",
        choices=BLOWUP_POLICIES,
        help="what a simulator blow-up (NaN or inf) does: raise an error, or score a constant penalty",
    )

    p = add("benchmark", "compare EnKG, DPS, EKI, SCG and SMC on Navier-Stokes (as benchmarks/inverse_ns.py)")
    add_runtime_flags(p, out="runs/inverse/benchmark", threads=1)
    p.add_argument("--quick", action="store_true", help="small setting, default hyper-parameters, no tuning")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder for the simulated fields and the trained prior (default: "
        "$STEERDIFF_CACHE/inverse_ns, $STEERDIFF_CACHE defaulting to ~/.cache/steerdiff)",
    )

    p = add("demo", "a small Navier-Stokes inversion end to end: data, prior, EnKG and EKI, plots")
    add_runtime_flags(p, out="runs/inverse/demo")
    p.add_argument("--num-train", type=positive_int, default=256, help="training fields for the prior")
    p.add_argument("--train-steps", type=positive_int, default=300, help="prior training steps")
    for sub in subs:  # a default of 0 (--seed, --threads) is shown too
        for action in sub._actions:
            if (
                action.default == 0
                and not isinstance(action.default, bool)
                and "%(default)" not in (action.help or "")
            ):
                action.help = f"{action.help} (default: %(default)s)"
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return run_command(build_parser(), HANDLERS, argv)
    except SystemExit as exit_:  # a usage error (one line already printed), --help or --version
        if exit_.code in (0, None):
            raise
        return int(exit_.code) if isinstance(exit_.code, int) else 2


if __name__ == "__main__":
    sys.exit(main())
