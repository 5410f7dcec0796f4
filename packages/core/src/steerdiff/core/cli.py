"""``steerdiff``: the core's command line — quickstart, train, sample, solvers."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_denoiser, load_schedule
from .denoiser import PARAMETRIZATIONS, Denoiser
from .guidance import ReconstructionGuidance, StochasticControlGuidance
from .io import atomic_open, save_figure, write_json
from .nets import NETWORKS, build_network
from .sampling import sample
from .schedules import SCHEDULES, SPACINGS, get_schedule, sigma_grid
from .solvers import SOLVERS
from .toy import TOY_DATASETS, ring_mixture, toy_dataset
from .training import TrainConfig, resolve_device, train

__all__ = ["main"]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, array)


def load_data(spec: str) -> torch.Tensor:
    """``toy:NAME[:N]`` for a built-in dataset, or a ``.npy`` file of shape (N, ...) (never unpickled)."""
    if spec.startswith("toy:"):
        parts = spec.split(":")
        return toy_dataset(parts[1], int(parts[2]) if len(parts) > 2 else 20000)
    path = Path(spec)
    if not path.exists():
        raise SystemExit(f"error: data file {path} does not exist (give a .npy file or toy:{'|'.join(TOY_DATASETS)})")
    if path.suffix != ".npy":
        raise SystemExit(f"error: {path} is not a .npy file; save your array with numpy.save")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise SystemExit(f"error: cannot read {path} as a numeric .npy array: {err}") from None
    return torch.from_numpy(np.asarray(array, dtype=np.float32))


def _default_network(data: torch.Tensor, name: str | None) -> tuple[str, dict]:
    if data.ndim == 2:
        return name or "mlp", {"dim": data.shape[1]} if (name or "mlp") == "mlp" else {"in_channels": data.shape[1]}
    if data.ndim in (3, 4):
        default = "unet1d" if data.ndim == 3 else "unet2d"
        return name or default, {"in_channels": data.shape[1]}
    raise SystemExit(f"error: data of shape {tuple(data.shape)}: expected (N, D), (N, C, L) or (N, C, H, W)")


def cmd_train(args) -> dict:
    data = load_data(args.data)
    net_name, net_cfg = _default_network(data, args.net)
    net = build_network(net_name, **net_cfg)
    denoiser = Denoiser(net, args.parametrization, sigma_data=args.sigma_data)
    schedule = get_schedule(args.schedule)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                         ema_decay=args.ema_decay, seed=args.seed, checkpoint_every=args.checkpoint_every)
    result = train(denoiser, schedule, data, config, out_dir=args.out, device=args.device, progress=not args.quiet)
    summary = {"steps": result.step, "final_loss": float(np.mean(result.losses[-100:])), "out": str(args.out),
               "network": net_name, "parametrization": args.parametrization, "schedule": schedule.to_dict(),
               "sample_shape": list(data.shape[1:])}
    write_json(Path(args.out) / "train_summary.json", summary)
    return summary


def cmd_sample(args) -> dict:
    device = resolve_device(args.device)
    denoiser = load_denoiser(args.checkpoint, ema=not args.no_ema, device=device).eval()
    schedule = load_schedule(args.checkpoint)
    run_summary = Path(args.checkpoint) / "train_summary.json"
    recorded = json.loads(run_summary.read_text()).get("sample_shape") if run_summary.exists() else None
    shape = tuple(args.shape or recorded or ())
    if not shape:
        raise SystemExit("error: no train_summary.json beside the checkpoint records the sample shape; "
                         "pass --shape, e.g. --shape 2")
    sigmas = sigma_grid(schedule, args.steps, args.spacing)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    x = sigmas[0].item() * torch.randn((args.n, *shape), generator=gen, device=device)
    out = sample(denoiser, x, sigmas, args.solver, generator=gen, progress=not args.quiet)
    _save_npy(Path(args.out), out.x.cpu().numpy())
    return {"samples": str(args.out), "shape": list(out.x.shape), **out.costs.as_dict()}


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
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    data = toy_dataset("ring8", 20000, seed=args.seed)
    denoiser = Denoiser(build_network("mlp", dim=2, hidden=128, depth=3), "edm")
    config = TrainConfig(steps=args.steps, batch_size=256, lr=2e-3, warmup_steps=100, ema_decay=0.995,
                         seed=args.seed, checkpoint_every=0)
    result = train(denoiser, "edm", data, config, out_dir=out / "prior", device=device, progress=not args.quiet)
    prior = result.ema.eval()
    train_time = time.perf_counter() - t0

    sigmas = sigma_grid(get_schedule("edm"), 32)
    n = args.n

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
        "train_steps": result.step, "train_seconds": round(train_time, 1),
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
    write_json(out / "summary.json", summary)
    return summary


def cmd_solvers(args) -> dict:
    return {"solvers": sorted(SOLVERS), "schedules": sorted(SCHEDULES), "spacings": list(SPACINGS),
            "parametrizations": list(PARAMETRIZATIONS), "networks": sorted(NETWORKS)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="steerdiff", description="Steer diffusion models at sampling time.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, out_default, threads=None):
        sp.add_argument("--threads", type=int, default=threads,
                        help="CPU threads for torch (default: torch's own choice; 1 is fastest for small networks)")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
        sp.add_argument("--out", default=out_default)
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    q = sub.add_parser("quickstart", help="train a small prior on 8 Gaussians, save unguided vs guided samples")
    common(q, "runs/quickstart", threads=1)
    q.add_argument("--steps", type=int, default=3000)
    q.add_argument("--n", type=int, default=2000, help="samples per panel")

    t = sub.add_parser("train", help="train a prior on a .npy array or a toy dataset")
    common(t, "runs/train")
    t.add_argument("--data", required=True, help="file.npy of shape (N, ...) or toy:ring8|moons|spiral[:N]")
    t.add_argument("--net", choices=sorted(NETWORKS), help="default: mlp for (N, D), unet1d/unet2d for sequences/fields")
    t.add_argument("--parametrization", choices=PARAMETRIZATIONS, default="edm")
    t.add_argument("--sigma-data", type=float, default=None)
    t.add_argument("--schedule", choices=sorted(SCHEDULES), default="edm")
    t.add_argument("--steps", type=int, default=5000)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup", type=int, default=100)
    t.add_argument("--ema-decay", type=float, default=0.999)
    t.add_argument("--checkpoint-every", type=int, default=1000)

    s = sub.add_parser("sample", help="sample a trained prior into a .npy file")
    common(s, "runs/samples.npy")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--steps", type=int, default=32)
    s.add_argument("--solver", choices=sorted(SOLVERS), default="heun")
    s.add_argument("--spacing", choices=SPACINGS, default="karras")
    s.add_argument("--shape", type=int, nargs="+", help="shape of one sample, e.g. 2 or 4 64")
    s.add_argument("--no-ema", action="store_true")

    sub.add_parser("solvers", help="list solvers, schedules, spacings, parametrizations and networks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    handlers = {"quickstart": cmd_quickstart, "train": cmd_train, "sample": cmd_sample, "solvers": cmd_solvers}
    try:
        summary = handlers[args.command](args)
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
