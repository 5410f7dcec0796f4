"""GPU check of the core: bf16 autocast and torch.compile against fp32, with the public API only.

For each network (UNet2D on fields, UNet1D on trajectories, MLP on points) and each mode (fp32, bf16,
compile, bf16+compile) it times training steps (``train`` with ``TrainConfig(precision=, compile=)``) and
sampling (``sample(accelerate(denoiser, precision, compile=), ...)``), and measures how far the bf16 and
compiled samples are from fp32's from the same noise and seed. Writes one JSON file.

    python scripts/gpu_core_check.py --device cuda --json runs/core.json
    python scripts/gpu_core_check.py --tiny --device cpu --compile-backend eager --json /tmp/core.json

Training: a warm-up run (compilation, first-call set-up; torch.compile's cache carries over to the next run),
then a timed run of N steps; the one-off cost is the warm-up's time less its steps at the timed rate. Sampling: the first call (compilation
included) and the median of the following ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from steerdiff.core import (
    Denoiser,
    TrainConfig,
    accelerate,
    build_network,
    get_schedule,
    resolve_device,
    sample,
    sigma_grid,
    train,
)

MODES = {  # name: (precision, compiled)
    "fp32": ("fp32", False),
    "bf16": ("bf16", False),
    "compile": ("fp32", True),
    "bf16+compile": ("bf16", True),
}


def networks(tiny: bool):
    """(name, data shape per item, network config, train batch, sample batch)."""
    if tiny:
        return [
            ("unet2d", (1, 16, 16), dict(in_channels=1, base_channels=8, channel_mults=(1, 2)), 4, 4),
            ("unet1d", (5, 16), dict(in_channels=5, base_channels=8, channel_mults=(1, 2)), 4, 4),
            ("mlp", (2,), dict(dim=2, hidden=32, depth=2), 16, 16),
        ]
    return [
        # the Navier-Stokes / piano-roll shape at the inverse prior's width, at an H200-sized batch
        ("unet2d", (1, 64, 64), dict(in_channels=1, base_channels=64, channel_mults=(1, 2, 2)), 128, 256),
        # Hopper-sized trajectory windows (obs 11 + act 3 + reward + done = 16 channels, 32 rows)
        ("unet1d", (16, 32), dict(in_channels=16, base_channels=64, channel_mults=(1, 2, 4)), 256, 1024),
        ("mlp", (2,), dict(dim=2, hidden=256, depth=4), 4096, 16384),
    ]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(name, shape, cfg, batch, precision, compile_, warmup, steps, device, seed):
    """A warm-up run of ``warmup`` steps (compilation, first-call set-up), then a timed run of ``steps``."""
    data = torch.randn(max(4 * batch, 64), *shape, generator=torch.Generator().manual_seed(seed))
    wall, loss = [], float("nan")
    for n in (warmup, steps):
        torch.manual_seed(seed)
        den = Denoiser(build_network(name, **cfg), "edm", sigma_data=1.0)
        config = TrainConfig(
            steps=n,
            batch_size=batch,
            lr=1e-3,
            seed=seed,
            checkpoint_every=0,
            log_every=max(n, 1),
            precision=precision,
            compile=compile_,
        )
        sync(device)
        t0 = time.perf_counter()
        result = train(den, "edm", data, config, progress=False, device=device)
        sync(device)
        wall.append(time.perf_counter() - t0)
        loss = float(result.losses[-1]) if result.losses else loss
    per_step = wall[1] / steps
    return {
        "batch": batch,
        "warmup_steps": warmup,
        "steps": steps,
        "wall_s": [round(w, 4) for w in wall],
        "step_ms": round(1e3 * per_step, 4),
        "one_off_s": round(max(wall[0] - warmup * per_step, 0.0), 3),
        "items_per_s": round(batch / per_step, 1),
        "final_loss": loss,
    }


def time_sampling(den, shape, batch, precision, compile_, steps, repeats, device, seed):
    net = accelerate(den, precision, compile=compile_) if (precision != "fp32" or compile_) else den
    sigmas = sigma_grid(get_schedule("edm"), steps).to(device)
    times, x = [], None
    for _ in range(repeats + 1):
        gen = torch.Generator(device=device).manual_seed(seed)
        x0 = sigmas[0] * torch.randn(batch, *shape, generator=gen, device=device)
        sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            x = sample(net, x0, sigmas, "heun", generator=gen).x
        sync(device)
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times[1:]) if repeats else times[0]
    return x, {
        "batch": batch,
        "sampler": f"heun, {steps} steps",
        "first_call_s": round(times[0], 4),
        "steady_s": round(steady, 4),
        "samples_per_s": round(batch / steady, 1),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--tiny", action="store_true", help="seconds on a CPU: tiny networks and batches")
    p.add_argument("--train-steps", type=int, default=None, help="timed training steps (after a warm-up run)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps")
    p.add_argument("--repeats", type=int, default=None, help="timed sampling calls after the first")
    p.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (eager: a quick CPU test)"
    )
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    p.add_argument(
        "--nets",
        default=None,
        help="comma-separated subset of unet2d, unet1d, mlp (default: all; --tiny: mlp)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="start no new (network, mode) after this many seconds; the JSON lists what was skipped",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="runs/gpu_core_check.json")
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    train_steps = a.train_steps or (2 if a.tiny else 200)
    warmup = 1 if a.tiny else 20
    steps = a.steps or (3 if a.tiny else 32)
    repeats = a.repeats if a.repeats is not None else (1 if a.tiny else 3)
    modes = a.modes.split(",")
    bad = [m for m in modes if m not in MODES]
    if bad:
        p.error(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    wanted = (a.nets or ("mlp" if a.tiny else "unet2d,unet1d,mlp")).split(",")
    backend = True if a.compile_backend == "inductor" else a.compile_backend
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here: bf16 is the thing measured
        torch.backends.cudnn.allow_tf32 = False

    result = {
        "verifies": "bf16 autocast and torch.compile: train-step and sampling throughput vs fp32, and the "
        "deviation of bf16 / compiled samples from fp32 samples drawn from the same noise",
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
        "compile_backend": a.compile_backend,
        "tiny": a.tiny,
        "nets": {},
    }
    t_start = time.perf_counter()
    path = Path(a.json)
    path.parent.mkdir(parents=True, exist_ok=True)

    def finish(complete: bool):
        """Speed-ups against fp32, the verdict, and an atomic write (after every mode: a kill keeps the rest)."""
        for row in result["nets"].values():
            for kind, key in (("train", "step_ms"), ("sample", "steady_s")):
                base = row[kind].get("fp32", {}).get(key)
                for r in row[kind].values():
                    if base and r.get(key):
                        r["speedup_vs_fp32"] = round(base / r[key], 3)
        result["wall_s"] = round(time.perf_counter() - t_start, 2)
        result["complete"] = complete
        errors = [r["errors"] for r in result["nets"].values() if "errors" in r]
        result["ok"] = not errors and all(
            s.get("finite", False) for r in result["nets"].values() for s in r["sample"].values()
        )
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(path)

    # modes outside, networks inside: fp32 and bf16 for every network come before the (slow) compiled modes
    nets = [n for n in networks(a.tiny) if n[0] in wanted]
    dens, references, skipped = {}, {}, []
    for mode in modes:
        precision, compiled = MODES[mode]
        compile_ = backend if compiled else False
        for name, shape, cfg, train_batch, sample_batch in nets:
            if a.max_seconds and time.perf_counter() - t_start > a.max_seconds:
                skipped.append(f"{name}/{mode}")
                continue
            if name not in dens:
                torch.manual_seed(a.seed)
                dens[name] = Denoiser(build_network(name, **cfg), "edm", sigma_data=1.0).to(device).eval()
                result["nets"][name] = {
                    "shape": list(shape),
                    "config": cfg,
                    "parameters": sum(q.numel() for q in dens[name].parameters()),
                    "train": {},
                    "sample": {},
                }
            row = result["nets"][name]
            try:
                row["train"][mode] = time_training(
                    name, shape, cfg, train_batch, precision, compile_, warmup, train_steps, device, a.seed
                )
                x, timing = time_sampling(
                    dens[name], shape, sample_batch, precision, compile_, steps, repeats, device, a.seed
                )
                if mode == "fp32":
                    references[name] = x
                elif name in references:
                    ref = references[name]
                    diff = (x.float() - ref.float()).flatten(1).norm(dim=1)
                    timing["rel_l2_vs_fp32"] = float((diff / ref.flatten(1).norm(dim=1)).median())
                timing["finite"] = bool(torch.isfinite(x).all())
                row["sample"][mode] = timing
            except Exception as err:  # one mode failing (e.g. no compiler) must not lose the others
                row.setdefault("errors", {})[mode] = f"{type(err).__name__}: {err}"[:500]
            print(name, mode, json.dumps({k: row[k].get(mode) for k in ("train", "sample")}), flush=True)
            finish(complete=False)
    result["skipped_for_time"] = skipped
    finish(complete=not skipped)
    print(
        f"{'net':8} {'mode':13} {'train ms/step':>14} {'x fp32':>7} {'sample s':>9} {'x fp32':>7} {'rel L2':>8}"
    )
    for name, row in result["nets"].items():
        for mode in modes:
            tr, sa = row["train"].get(mode, {}), row["sample"].get(mode, {})
            print(
                f"{name:8} {mode:13} {tr.get('step_ms', float('nan')):14.3f} {tr.get('speedup_vs_fp32', 1):7.2f} "
                f"{sa.get('steady_s', float('nan')):9.4f} {sa.get('speedup_vs_fp32', 1):7.2f} "
                f"{sa.get('rel_l2_vs_fp32', 0.0):8.4f}"
            )
    print(f"wrote {path}; ok={result['ok']}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
