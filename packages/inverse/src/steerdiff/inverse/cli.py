"""``steerdiff-inverse``: make-data -> train-prior -> solve (with metrics and plots) -> benchmark; demo.

    steerdiff-inverse make-data   --out runs/ns --size 32 --num-train 512 --num-test 4 --noise 1.0
    steerdiff-inverse train-prior --data runs/ns --out runs/ns/prior --steps 1000
    steerdiff-inverse solve       --data runs/ns --prior runs/ns/prior --method enkg --out runs/ns/enkg
    steerdiff-inverse benchmark   --quick
    steerdiff-inverse demo        --out runs/demo
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from steerdiff.core.io import atomic_path

from .methods import METHODS, MethodConfig, solve
from .metrics import evaluate
from .prior import PriorConfig, load_prior, train_prior, write_json
from .problems import PROBLEMS, make_problem

DATA = "data.safetensors"


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _save_tensors(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, tmp)


def _load_data(folder: Path):
    from safetensors.torch import load_file

    if not (folder / DATA).exists() or not (folder / "problem.json").exists():
        raise SystemExit(f"error: {folder} holds no data set ({DATA} + problem.json); create one with "
                         "`steerdiff-inverse make-data --out DIR`")
    meta = json.loads((folder / "problem.json").read_text())
    return meta, load_file(folder / DATA)


def cmd_make_data(args):
    options = {"size": args.size, "noise_std": args.noise}
    if args.problem == "navier_stokes":
        options.update(dt=args.dt, reynolds=args.reynolds, horizon=args.horizon, downsample=args.downsample)
    problem = make_problem(args.problem, **options)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    train = problem.sample_fields(args.num_train, g, progress=True)
    test = problem.sample_fields(args.num_test, g)
    y = problem.forward.measure(test, g)
    out = Path(args.out)
    _save_tensors(out / DATA, {"train": train, "test": test, "y": y})
    summary = {"problem": args.problem, "options": problem.config(), "seed": args.seed,
               "num_train": args.num_train, "num_test": args.num_test, "field_std": float(train.std()),
               "field_max": float(train.abs().max()), "seconds": time.perf_counter() - t0}
    write_json(out / "problem.json", summary)
    print(json.dumps(summary, indent=2))


def cmd_train_prior(args):
    _, data = _load_data(Path(args.data))
    cfg = PriorConfig(base_channels=args.channels, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed)
    train_prior(data["train"], args.out, cfg, device=_device(args.device), progress=True)
    print(Path(args.out, "prior.json").read_text())


def _problem_from(meta, **override):
    return make_problem(meta["problem"], **{**meta["options"], **override})


def cmd_solve(args):
    meta, data = _load_data(Path(args.data))
    device = _device(args.device)
    problem = _problem_from(meta, on_blowup=args.on_blowup)
    prior = load_prior(args.prior, device=device) if args.method != "eki" else None
    truth, y = data["test"][:args.num].to(device), data["y"][:args.num].to(device)
    cfg = MethodConfig(num_particles=args.particles, num_steps=args.steps, scale=args.scale,
                       num_updates=args.updates, iterations=args.iterations,
                       likelihood_std=max(problem.forward.noise_std, 1.0))
    sol = solve(args.method, prior, problem, y, cfg, generator=torch.Generator(device).manual_seed(args.seed),
                progress=True)
    metrics = evaluate(sol, problem, truth, y)
    out = Path(args.out)
    _save_tensors(out / "solution.safetensors", {"estimate": sol.estimate, "ensemble": sol.ensemble})
    from .plots import plot_solution
    plot_solution(out / "fields.png", truth, y, sol.estimate, sol.ensemble,
                  title=f"{args.method}: relative L2 {metrics['rel_l2']:.3f}")
    write_json(out / "metrics.json", {"method": args.method, **metrics, "config": sol.info["config"]})
    print(json.dumps({k: v for k, v in metrics.items() if k != "rel_l2_per_sample"}, indent=2))
    print(f"wrote {out / 'metrics.json'} and {out / 'fields.png'}")


def cmd_benchmark(args):
    from .benchmark import FULL, QUICK, run

    setting = QUICK if args.quick else FULL
    rows, chosen = run(setting, args.cache, seed=args.seed, device=_device(args.device), progress=True)
    for r in rows:
        print(f"noise {r['noise']:<4g} {r['method']:<5} rel L2 {r['rel_l2']:.3f}  misfit {r['misfit']:.3f}  "
              f"fwd {r['forward_evals']} ({r['forward_calls']} seq)  net {r['network_evals']}  "
              f"{r['wall_time']:.1f} s")
    write_json(Path(args.out) / "benchmark.json", {"rows": rows, "chosen": chosen})


def cmd_demo(args):
    """Small Navier-Stokes inversion end to end: data, prior, EnKG and EKI, plots and a JSON summary."""
    out = Path(args.out)
    common = ["--seed", str(args.seed), "--device", args.device]
    main(["make-data", "--out", str(out), "--size", "32", "--num-train", str(args.num_train),
          "--num-test", "1", "--noise", "1.0", *common])
    main(["train-prior", "--data", str(out), "--out", str(out / "prior"), "--steps", str(args.steps),
          "--channels", "8", *common])
    for method in ("enkg", "eki"):
        main(["solve", "--data", str(out), "--prior", str(out / "prior"), "--method", method, "--particles", "32",
              "--steps", "20", "--iterations", "60", "--out", str(out / method), *common])
    summary = {m: json.loads((out / m / "metrics.json").read_text())["rel_l2"] for m in ("enkg", "eki")}
    write_json(out / "summary.json", {"rel_l2": summary})
    print(f"demo done: relative L2 {summary}; plots in {out}/enkg/fields.png and {out}/eki/fields.png")
    print(f"(a {args.steps}-step toy prior on {args.num_train} fields shows the pipeline, not EnKG's accuracy: errors "
          f"near or above 1 are expected here; benchmarks/inverse_ns.py trains a real prior and compares all methods)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="steerdiff-inverse", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    def add(name, fn, help_):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="auto", help="cpu, cuda or auto")
        p.set_defaults(fn=fn)
        return p

    p = add("make-data", cmd_make_data, "simulate training fields and test measurements")
    p.add_argument("--out", required=True)
    p.add_argument("--problem", default="navier_stokes", choices=sorted(PROBLEMS))
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--dt", type=float, default=1e-2)
    p.add_argument("--reynolds", type=float, default=200.0)
    p.add_argument("--horizon", type=float, default=1.0)
    p.add_argument("--downsample", type=int, default=2)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--num-train", type=int, default=512)
    p.add_argument("--num-test", type=int, default=4)

    p = add("train-prior", cmd_train_prior, "train the diffusion prior on the training fields")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)

    p = add("solve", cmd_solve, "solve the test measurements, write metrics.json and fields.png")
    p.add_argument("--data", required=True)
    p.add_argument("--prior", help="prior directory (not needed by eki)")
    p.add_argument("--method", default="enkg", choices=METHODS)
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=1, help="how many test fields")
    p.add_argument("--particles", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--updates", type=int, default=1)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--on-blowup", default="penalty", choices=["raise", "penalty"])

    p = add("benchmark", cmd_benchmark, "compare EnKG, DPS, EKI, SCG and SMC (see benchmarks/inverse_ns.py)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--cache", default=None)
    p.add_argument("--out", default="runs/benchmark")

    p = add("demo", cmd_demo, "a small Navier-Stokes inversion end to end")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--num-train", type=int, default=256)
    p.add_argument("--steps", type=int, default=300)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "solve" and args.method != "eki" and not args.prior:
        raise SystemExit("error: --prior is required for every method but eki")
    if args.command == "benchmark" and args.cache is None:
        from .benchmark import default_cache
        args.cache = str(default_cache())
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
