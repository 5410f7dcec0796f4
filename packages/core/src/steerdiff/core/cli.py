"""``steerdiff``: the core's command line — quickstart, train, sample, solvers."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from .bundle import load_pretrained, save_pretrained
from .command import (
    UsageError,
    add_runtime_flags,
    add_sampling_flags,
    make_parser,
    nonnegative_int,
    positive_float,
    positive_int,
    probability,
    run_command,
    subcommands,
)
from .denoiser import PARAMETRIZATIONS, Denoiser
from .guidance import ReconstructionGuidance, StochasticControlGuidance
from .io import save_figure, save_npy
from .nets import NETWORKS, build_network
from .sampling import sample
from .schedules import SCHEDULES, SPACINGS, get_schedule, sigma_grid
from .sharding import sample_in_shards
from .solvers import SOLVERS
from .toy import TOY_DATASETS, ring_mixture, toy_dataset
from .training import TrainConfig, train

__all__ = ["build_parser", "load_data", "main"]


def load_data(spec: str) -> torch.Tensor:
    """``toy:NAME[:N]`` for a built-in dataset, or a ``.npy`` file of shape (N, ...) (never unpickled)."""
    if spec.startswith("toy:"):
        parts = spec.split(":")
        return toy_dataset(parts[1], int(parts[2]) if len(parts) > 2 else 20000)
    path = Path(spec)
    if not path.exists():
        raise UsageError(
            f"data file {path} does not exist (give a .npy file or toy:{'|'.join(TOY_DATASETS)})"
        )
    if path.suffix != ".npy":
        raise UsageError(f"{path} is not a .npy file; save your array with numpy.save")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise UsageError(
            f"cannot read {path} as a numeric .npy array ({err}); save a numeric array with numpy.save"
        ) from None
    return torch.from_numpy(np.asarray(array, dtype=np.float32))


def _default_network(data: torch.Tensor, name: str | None) -> tuple[str, dict]:
    if data.ndim == 2:
        return name or "mlp", {"dim": data.shape[1]} if (name or "mlp") == "mlp" else {
            "in_channels": data.shape[1]
        }
    if data.ndim in (3, 4):
        default = "unet1d" if data.ndim == 3 else "unet2d"
        return name or default, {"in_channels": data.shape[1]}
    raise UsageError(f"data of shape {tuple(data.shape)}: expected (N, D), (N, C, L) or (N, C, H, W)")


def cmd_train(args) -> dict:
    data = load_data(args.data)
    net_name, net_cfg = _default_network(data, args.net)
    net = build_network(net_name, **net_cfg)
    denoiser = Denoiser(net, args.parametrization, sigma_data=args.sigma_data)
    schedule = get_schedule(args.schedule)
    config = TrainConfig(
        steps=args.train_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup,
        ema_decay=args.ema_decay,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    out = Path(args.out)
    result = train(denoiser, schedule, data, config, out_dir=out, device=args.device, progress=not args.quiet)
    save_pretrained(
        out / "model",
        domain="core",
        denoiser=result.ema,
        schedule=schedule,
        config={"sample_shape": list(data.shape[1:]), "data": args.data},
    )
    return {
        "train_steps": result.step,
        "final_loss": float(np.mean(result.losses[-100:])),
        "model": str(out / "model"),
        "network": net_name,
        "parametrization": args.parametrization,
        "schedule": schedule.to_dict(),
        "sample_shape": list(data.shape[1:]),
    }


def _model_dir(path: Path) -> Path:
    """A bundle folder, or a ``steerdiff train`` run folder that holds one in ``model/``."""
    return path / "model" if not (path / "config.json").exists() and (path / "model").is_dir() else path


def cmd_sample(args) -> dict | None:
    bundle = load_pretrained(_model_dir(Path(args.model)), "core", device=args.device)
    if bundle.denoiser is None or bundle.schedule is None:
        raise UsageError(
            f"{bundle.path} holds no denoiser and schedule to sample; give a model folder that "
            "steerdiff train wrote"
        )
    recorded = bundle.config.get("sample_shape")
    shape = tuple(args.shape or recorded or ())
    if not shape:
        raise UsageError(f"{bundle.path} records no sample shape; pass --shape, e.g. --shape 2")
    sigmas = sigma_grid(bundle.schedule, args.steps, args.spacing)
    denoiser = bundle.denoiser
    evals = {"network": 0, "samples": 0}

    def job(start: int, stop: int, gen: torch.Generator) -> torch.Tensor:
        x = sigmas[0].item() * torch.randn((stop - start, *shape), generator=gen).to(args.device)
        noise = torch.Generator(device=args.device).manual_seed(
            int(torch.randint(2**62, (1,), generator=gen))
        )
        out = sample(denoiser, x, sigmas, args.solver, generator=noise, progress=not args.quiet)
        evals["network"] += out.costs.network_evals
        evals["samples"] += out.costs.num_samples
        return out.x

    # chunks with their own seeds: the same samples on one process or sharded over torchrun ranks
    key = {
        "model": str(bundle.path.resolve()),
        "steps": args.steps,
        "solver": args.solver,
        "spacing": args.spacing,
        "shape": list(shape),
    }
    x = sample_in_shards(
        job, args.num_samples, Path(args.out), chunk_size=args.chunk_size, seed=args.seed, key=key
    )
    if x is None:  # a torchrun rank other than 0: rank 0 merges and reports
        return None
    assert isinstance(x, torch.Tensor)
    path = save_npy(Path(args.out) / "samples.npy", x.numpy())
    nfe = evals["network"] / evals["samples"] if evals["samples"] else None  # None: every chunk was resumed
    return {"samples": str(path), "shape": list(x.shape), "nfe": nfe}


def _scatter(ax, pts, title, color):
    pts = pts.cpu().numpy()
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color=color)
    ax.set_title(title, fontsize=9)
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")


def cmd_quickstart(args) -> dict:
    """Train a small prior on 8 Gaussians on a ring, then sample it unguided and guided; plot and summarise."""
    out = Path(args.out)
    device = args.device
    t0 = time.perf_counter()
    data = toy_dataset("ring8", 20000, seed=args.seed)
    denoiser = Denoiser(build_network("mlp", dim=2, hidden=128, depth=3), "edm")
    config = TrainConfig(
        steps=args.train_steps,
        batch_size=256,
        lr=2e-3,
        warmup_steps=100,
        ema_decay=0.995,
        seed=args.seed,
        checkpoint_every=0,
    )
    result = train(
        denoiser, "edm", data, config, out_dir=out / "prior", device=device, progress=not args.quiet
    )
    prior = result.ema.eval()
    train_time = time.perf_counter() - t0

    sigmas = sigma_grid(get_schedule("edm"), 32)
    n = args.num_samples

    def draw(solver, guidance=(), seed=0):
        gen = torch.Generator(device=device).manual_seed(args.seed + seed)
        x = sigmas[0].item() * torch.randn(n, 2, generator=gen, device=device)
        return sample(prior, x, sigmas, solver, guidance=guidance, generator=gen, progress=not args.quiet)

    # reconstruction guidance: we observe the first coordinate, y = x_1 + noise, y = 1.4, noise 0.2
    y_obs, noise = 1.4, 0.2
    loss = lambda x0: (x0[:, 0] - y_obs) ** 2 / (2 * noise**2)  # noqa: E731
    # stochastic control guidance: a non-differentiable reward, "both coordinates positive"
    reward = lambda x0: ((x0[:, 0] > 0) & (x0[:, 1] > 0)).float()  # noqa: E731

    runs = {
        "unguided (Heun)": draw("heun"),
        "reconstruction guidance (DPS)": draw("heun", [ReconstructionGuidance(loss, scale=0.05)]),
        "SCG, reward = [x>0 and y>0]": draw("ddpm", [StochasticControlGuidance(reward, num_candidates=8)]),
    }
    exact = ring_mixture()
    near = lambda x: (torch.cdist(x.double().cpu(), exact.means).min(1).values < 0.45).float().mean().item()  # noqa: E731
    summary = {
        "train_steps": result.step,
        "train_seconds": round(train_time, 1),
        "final_loss": float(np.mean(result.losses[-100:])),
        "samples_near_a_mode": {k: near(v.x) for k, v in runs.items()},
        "mean_misfit_|x1-y|": {k: float((v.x[:, 0] - y_obs).abs().mean()) for k, v in runs.items()},
        "mean_reward_first_quadrant": {k: float(reward(v.x).mean()) for k, v in runs.items()},
        "costs": {k: v.costs.as_dict() for k, v in runs.items()},
    }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.8))
    _scatter(axes[0], data[:n], "training data (8 Gaussians)", "gray")
    for ax, (name, run), color in zip(axes[1:], runs.items(), ["C0", "C1", "C2"]):
        _scatter(ax, run.x, f"{name}\nNFE/sample {run.costs.nfe:.0f}", color)
    axes[2].axvline(y_obs, color="k", lw=0.8, ls="--")
    fig.tight_layout()
    save_figure(fig, out / "quickstart.png")
    plt.close(fig)
    summary["plot"] = str(out / "quickstart.png")
    return summary


def cmd_solvers(args) -> dict:
    return {
        "solvers": sorted(SOLVERS),
        "schedules": sorted(SCHEDULES),
        "spacings": list(SPACINGS),
        "parametrizations": list(PARAMETRIZATIONS),
        "networks": sorted(NETWORKS),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "steerdiff",
        "Steer diffusion models at sampling time: train a prior, sample it, guide it.",
        "steerdiff-core",
    )
    add = subcommands(parser)

    q = add("quickstart", "train a small prior on 8 Gaussians, then plot unguided against guided samples")
    add_runtime_flags(q, "runs/quickstart", threads=1)
    q.add_argument("--train-steps", type=positive_int, default=3000, help="training steps")
    add_sampling_flags(q, num_samples=2000, steps=None, solver=None, samples_help="samples per panel")

    t = add("train", "train a prior on a .npy array or a toy dataset; writes a model bundle to OUT/model")
    add_runtime_flags(t, "runs/train")
    t.add_argument(
        "--data", required=True, help=f"file.npy of shape (N, ...) or toy:{'|'.join(TOY_DATASETS)}[:N]"
    )
    t.add_argument(
        "--net",
        choices=sorted(NETWORKS),
        help="network (default: mlp for (N, D), unet1d / unet2d for sequences / fields)",
    )
    t.add_argument(
        "--parametrization", choices=PARAMETRIZATIONS, default="edm", help="denoiser parametrization"
    )
    t.add_argument(
        "--sigma-data",
        type=positive_float,
        default=None,
        help="data standard deviation for EDM preconditioning (default: measured on the data)",
    )
    t.add_argument("--schedule", choices=sorted(SCHEDULES), default="edm", help="noise schedule")
    t.add_argument("--train-steps", type=positive_int, default=5000, help="training steps")
    t.add_argument("--batch-size", type=positive_int, default=256, help="batch size")
    t.add_argument("--lr", type=positive_float, default=1e-3, help="AdamW learning rate")
    t.add_argument("--warmup", type=nonnegative_int, default=100, help="learning-rate warm-up steps")
    t.add_argument("--ema-decay", type=probability, default=0.999, help="EMA decay of the sampling weights")
    t.add_argument(
        "--checkpoint-every",
        type=nonnegative_int,
        default=1000,
        help="steps between resumable checkpoints (0: only at the end)",
    )

    s = add("sample", "sample a trained model into OUT/samples.npy")
    add_runtime_flags(s, "runs/sample")
    s.add_argument("--model", required=True, help="model folder (or a steerdiff train --out folder)")
    add_sampling_flags(s, num_samples=1000, steps=32, solver="heun")
    s.add_argument("--spacing", choices=SPACINGS, default="karras", help="step grid")
    s.add_argument(
        "--chunk-size",
        type=positive_int,
        default=256,
        help="samples per chunk; chunks are saved as they finish (a killed run resumes) and are shared "
        "out over the processes of a torchrun launch",
    )
    s.add_argument(
        "--shape",
        type=positive_int,
        nargs="+",
        help="shape of one sample, e.g. 2 or 4 64 (default: the shape the model was trained on)",
    )

    add("solvers", "list solvers, schedules, spacings, parametrizations and networks")
    return parser


def main(argv: list[str] | None = None) -> int:
    handlers = {
        "quickstart": cmd_quickstart,
        "train": cmd_train,
        "sample": cmd_sample,
        "solvers": cmd_solvers,
    }
    return run_command(build_parser(), handlers, argv)


if __name__ == "__main__":
    raise SystemExit(main())
