"""``steerdiff-inverse``: make-data -> train-prior -> solve (with metrics and plots); benchmark; demo.

    steerdiff-inverse make-data   --out runs/ns --size 32 --num-train 512 --num-test 4 --noise 1.0
    steerdiff-inverse train-prior --data runs/ns --out runs/ns/prior --train-steps 1000
    steerdiff-inverse solve       --data runs/ns --prior runs/ns/prior --method enkg --out runs/ns/enkg

Your own problem (NumPy .npy files; see docs/inverse/your-data.md):

    steerdiff-inverse train-prior --fields fields.npy --out runs/my/prior
    steerdiff-inverse solve --prior runs/my/prior --measurements y.npy --forward-program "python sim.py" \
        --operator A.npy --noise 0.1 --workers 4 --out runs/my/enkg
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
    add_command_presets,
    add_runtime_flags,
    add_sampling_flags,
    existing_dir,
    existing_file,
    make_parser,
    nonnegative_float,
    positive_float,
    positive_int,
    probability,
    run_command,
    subcommands,
)
from steerdiff.core.io import save_npy, write_json
from steerdiff.core.sharding import shard_options

from .data import Dataset, load_dataset, make_dataset, save_dataset, save_tensors
from .forward import BLOWUP_POLICIES, ForwardModel
from .methods import METHODS, Solution
from .pipeline import InversePipeline
from .presets import PRESETS
from .prior import PriorConfig
from .problems import PROBLEMS, make_problem
from .user import (
    UserForwardModel,
    load_fields,
    load_measurements,
    load_operator,
    make_executor,
    program_function,
    python_function,
)

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
    if args.fields is not None:  # a user's own fields: checked before any training
        fields, problem = load_fields(args.fields, min_count=2), None
    else:
        dataset = load_dataset(args.data)  # checked before any training
        fields, problem = dataset.train, dataset.problem
    t0 = time.perf_counter()
    pipe = InversePipeline.train(
        fields,
        problem,
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
        "num_fields": int(fields.shape[0]),
        "problem": problem.name if problem is not None else None,
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
    if sol is None:
        return None  # another torchrun rank: rank 0 writes the solution
    metrics = pipe.evaluate(sol, truth, y)
    save_tensors(out / "solution.safetensors", {"estimate": sol.estimate, "ensemble": sol.ensemble})
    return _report(out, method, sol, metrics, truth, y)


def _report(out: Path, method: str, sol: Solution, metrics: dict, truth, y) -> dict:
    save_npy(out / "estimate.npy", sol.estimate.detach().cpu().numpy())
    save_npy(out / "ensemble.npy", sol.ensemble.detach().cpu().numpy())
    from .plots import plot_solution

    score = (
        f"relative L2 {metrics['rel_l2']:.3f}" if "rel_l2" in metrics else f"misfit {metrics['misfit']:.3f}"
    )
    plot_solution(out / "fields.png", truth, y, sol.estimate, sol.ensemble, title=f"{method}: {score}")
    write_json(out / "metrics.json", {"method": method, **metrics, "config": sol.info["config"]})
    return {
        "method": method,
        **{k: v for k, v in metrics.items() if k != "rel_l2_per_sample"},
        "metrics": str(out / "metrics.json"),
        "plot": str(out / "fields.png"),
        "solution": str(out / "solution.safetensors"),
        "estimate": str(out / "estimate.npy"),
        "ensemble": str(out / "ensemble.npy"),
    }


USER_FLAGS = {
    "forward": "--forward",
    "forward_program": "--forward-program",
    "operator": "--operator",
    "truth": "--truth",
    "noise": "--noise",
    "field_size": "--field-size",
    "rows_per_call": "--rows-per-call",
}


def _options(args, noise_std: float) -> dict:
    return {
        **shard_options(Path(args.out) / "solve", args.chunk_size, default=4),
        "particles": args.num_samples,
        "steps": args.steps,
        "scale": args.scale,
        "window": tuple(args.window),
        "num_updates": args.updates,
        "iterations": args.iterations,
        "num_candidates": args.candidates,
        "likelihood_std": max(noise_std, 1.0),
    }


def _check_method(method: str, forward: ForwardModel) -> None:
    if method == "dps" and not forward.differentiable:
        raise UsageError(
            f"dps needs gradients of the forward model, but {forward.name} is a black box; "
            "use --method enkg, eki, scg or smc"
        )


def cmd_solve(args) -> dict:
    if args.method != "eki" and args.prior is None:
        raise UsageError(
            f"--prior is required by {args.method}; give a folder written by train-prior "
            "(or use --method eki, which needs no prior)"
        )
    if args.measurements is not None:
        return _solve_user(args)
    given = [flag for dest, flag in USER_FLAGS.items() if getattr(args, dest) is not None]
    given += ["--workers"] if args.workers != 1 else []
    if given:
        raise UsageError(
            f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} with --measurements (your own data); "
            "--data holds the measurements of its own problem"
        )
    dataset = load_dataset(args.data)
    problem = make_problem(
        dataset.meta["problem"], **{**dataset.meta["options"], "on_blowup": args.on_blowup or "penalty"}
    )
    _check_method(args.method, problem.forward)
    if args.method == "eki":
        pipe = InversePipeline(None, problem, args.device)
    else:
        pipe = InversePipeline.from_pretrained(args.prior, device=args.device, problem=problem)
    return _solve_and_write(
        pipe,
        dataset,
        Path(args.out),
        args.method,
        args.num_fields or 1,
        _options(args, problem.forward.noise_std),
        args.seed,
        not args.quiet,
    )


def _solve_user(args) -> dict:
    """Solve a user's measurements with a user's forward model (or the prior's recorded problem's)."""
    y = load_measurements(args.measurements)
    count = args.num_fields or y.shape[0]
    if count > y.shape[0]:
        raise UsageError(
            f"--num-fields {count} is more than the {y.shape[0]} measurement row(s) in {args.measurements}"
        )
    pipe = InversePipeline.from_pretrained(args.prior, device=args.device) if args.prior else None
    truth = load_fields(args.truth, "true fields") if args.truth is not None else None
    if truth is not None and truth.shape[0] != y.shape[0]:
        raise UsageError(
            f"{args.truth} holds {truth.shape[0]} true field(s) for {y.shape[0]} measurement row(s); give "
            "one true field per measurement row"
        )
    sizes = {}
    if pipe is not None and pipe.prior.field_shape:
        sizes["the prior"] = pipe.prior.field_shape[-1]
    if truth is not None:
        sizes[str(args.truth)] = truth.shape[-1]
    if args.field_size is not None:
        sizes["--field-size"] = args.field_size
    if len(set(sizes.values())) > 1:
        raise UsageError(
            "the field grids disagree: "
            + ", ".join(f"{k}: {v}x{v}" for k, v in sizes.items())
            + "; give fields of the prior's grid"
        )
    own = args.forward is not None or args.forward_program is not None or args.operator is not None
    executor = None
    try:
        if own:
            if not sizes:
                raise UsageError(
                    "the field grid is unknown: give --field-size N (fields of N x N), --truth or a --prior"
                )
            size = next(iter(sizes.values()))
            if args.forward is not None:
                function, name = python_function(args.forward), f"forward model {args.forward}"
            elif args.forward_program is not None:
                function = program_function(args.forward_program)
                name = f"forward program `{args.forward_program}`"
            else:
                function, name = None, "observation operator"
            operator = load_operator(args.operator) if args.operator is not None else None
            executor = make_executor(args.workers, program=args.forward_program is not None)
            forward = UserForwardModel(
                (1, size, size),
                tuple(y.shape[1:]),
                function,
                operator,
                name=name,
                executor=executor,
                chunk_size=args.rows_per_call,
                noise_std=args.noise or 0.0,
                on_blowup=args.on_blowup or "raise",
            )
            if pipe is None:
                pipe = InversePipeline(None, None, args.device)
        else:
            if pipe is None or pipe.problem is None:
                raise UsageError(
                    "give your forward model: --forward module:function, --forward-program COMMAND and/or "
                    "--operator A.npy (the prior records no problem whose forward model could be used)"
                )
            spec = pipe.prior.problem_spec
            options = {**spec.get("options", {}), "on_blowup": args.on_blowup or "penalty"}
            if args.noise is not None:
                options["noise_std"] = args.noise
            pipe.problem = make_problem(spec["name"], **options)
            forward = pipe.problem.forward
            if tuple(y.shape[1:]) != tuple(forward.output_shape):
                raise UsageError(
                    f"the measurements in {args.measurements} are rows of shape {tuple(y.shape[1:])}, but "
                    f"the prior's {spec['name']} problem measures {tuple(forward.output_shape)}; give "
                    "measurements of that shape, or your own forward model (--forward, --forward-program, "
                    "--operator)"
                )
        _check_method(args.method, forward)
        out = Path(args.out)
        sol = pipe.solve(
            y[:count],
            forward=forward if own else None,
            method=args.method,
            seed=args.seed,
            progress=not args.quiet,
            **_options(args, forward.noise_std),
        )
        if sol is None:
            return None  # another torchrun rank: rank 0 writes the solution
        truth = truth[:count].to(sol.estimate.device) if truth is not None else None
        metrics = pipe.evaluate(sol, truth, y[:count], forward if own else None)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    save_tensors(out / "solution.safetensors", {"estimate": sol.estimate, "ensemble": sol.ensemble})
    return _report(out, args.method, sol, metrics, truth, y[:count].to(sol.estimate.device))


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


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, __doc__, distribution="steerdiff-inverse")
    add = subcommands(parser)

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

    p = add(
        "train-prior",
        "train the diffusion prior on a data set's training fields or your own (--fields); writes OUT/model",
    )
    add_runtime_flags(p, out="runs/inverse/prior")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=existing_dir, help="data set folder written by make-data")
    source.add_argument(
        "--fields",
        type=existing_file,
        help="your own training fields: a .npy array (N, H, W) or (N, 1, H, W) of square grids",
    )
    p.add_argument("--train-steps", type=positive_int, default=1000, help="training steps")
    p.add_argument("--channels", type=positive_int, default=16, help="base channels of the U-Net")
    p.add_argument("--batch-size", type=positive_int, default=32, help="training batch size")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate")

    p = add(
        "solve",
        "solve a data set's test measurements or your own (--measurements); writes metrics.json, fields.png, "
        "solution.safetensors, estimate.npy and ensemble.npy",
    )
    add_runtime_flags(p, out="runs/inverse/solve")
    add_sampling_flags(
        p, num_samples=32, steps=30, solver=None, samples_help="particles (ensemble members) per test field"
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        help="solve in resumable chunks of this many measurements, kept in <out>/solve/shards and shared out "
        "over the processes of a torchrun launch (the result does not depend on their number); default: one "
        "batch, or chunks of 4 under torchrun",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", type=existing_dir, help="data set folder written by make-data (its test measurements)"
    )
    source.add_argument(
        "--measurements",
        type=existing_file,
        help="your own measurements: a .npy array (M, ...) with one row per problem instance",
    )
    p.add_argument(
        "--prior",
        type=existing_dir,
        default=None,
        help="prior folder written by train-prior (every method but eki needs one)",
    )
    p.add_argument("--method", default="enkg", choices=METHODS, help="solver")
    p.add_argument(
        "--num-fields",
        type=positive_int,
        default=None,
        help="how many test fields / measurement rows to solve (default: 1 of --data, all of --measurements)",
    )
    p.add_argument("--scale", type=positive_float, default=2.0, help="enkg / eki: step scale")
    p.add_argument(
        "--window",
        type=probability,
        nargs=2,
        metavar=("START", "STOP"),
        default=(0.05, 0.95),
        help="enkg: guided steps as fractions of --steps (the steps i with floor(START*steps) <= i < "
        "floor(STOP*steps))",
    )
    p.add_argument("--updates", type=positive_int, default=1, help="enkg: corrections per guided step")
    p.add_argument("--iterations", type=positive_int, default=100, help="eki: iterations")
    p.add_argument("--candidates", type=positive_int, default=8, help="scg: candidates per step")
    p.add_argument(
        "--on-blowup",
        default=None,
        choices=BLOWUP_POLICIES,
        help="what a forward-model output with NaN or inf does: raise an error, or score a constant penalty "
        "(default: penalty for the built-in problems, raise for your own forward model)",
    )
    own = p.add_argument_group("your own problem (with --measurements)")
    model = own.add_mutually_exclusive_group()
    model.add_argument(
        "--forward",
        metavar="MODULE:FUNCTION",
        default=None,
        help="a Python forward model: FUNCTION(x) maps a float32 array (B, 1, H, W) to (B, ...) outputs",
    )
    model.add_argument(
        "--forward-program",
        metavar="COMMAND",
        default=None,
        help="an external forward model, run as COMMAND INPUT.npy OUTPUT.npy: it reads the fields "
        "(B, 1, H, W) and saves (B, ...) outputs with numpy.save",
    )
    own.add_argument(
        "--operator",
        type=existing_file,
        default=None,
        help="observation operator (.npy): a matrix (m, n) on each flattened forward output (on the field "
        "itself without a forward model), or a boolean mask of the observed entries",
    )
    own.add_argument(
        "--noise",
        type=nonnegative_float,
        default=None,
        help="measurement noise standard deviation (default: 0, or the prior's recorded problem's)",
    )
    own.add_argument(
        "--truth",
        type=existing_file,
        default=None,
        help="true fields (.npy), one per row, to score the estimate",
    )
    own.add_argument(
        "--field-size",
        type=positive_int,
        default=None,
        help="fields are N x N (needed only without a --prior or --truth: eki on your own problem)",
    )
    own.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="forward-model calls run at once (threads for a program, processes for a Python function)",
    )
    own.add_argument(
        "--rows-per-call",
        type=positive_int,
        default=None,
        help="rows (fields) per forward-model call (default: the batch split evenly over --workers)",
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
    add_command_presets(parser, PRESETS)  # --preset paper / gpu-check / smoke (presets.py)
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
