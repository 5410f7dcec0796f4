"""steerdiff's EnKG and Navier-Stokes solver beside the official EnKG code (devzhk/enkg-pytorch), same fields.

    python benchmarks/inverse_peers.py --quick    # 32x32, the quick prior, 8 particles, 8 steps, 1 field
    python benchmarks/inverse_peers.py            # 32x32, the quick prior, 32 particles, 16 steps, 3 fields
    python benchmarks/inverse_peers.py --prior full   # the same with benchmarks/inverse_ns.py's 2000-step prior

Both EnKGs share the prior network, so its quality moves both rows alike; the comparison is of the two
implementations, not of the prior (benchmarks/inverse_ns.py measures that).

The official code is not part of steerdiff: give the folder of a checkout with --official (default
/tmp/official/devzhk+enkg-pytorch; `git clone https://github.com/devzhk/enkg-pytorch` at commit 2ee4a909).
Its ``algo/enkg.py`` (``EnKG``) and ``inverse_problems/navier_stokes.py`` are imported from there; ``wandb``,
which it imports for logging only, is replaced by a stub.

Accuracy (same truth fields, same prior network, same initial noise, equal forward-model budget):

* steerdiff EnKG: the core's ``EnsembleKalmanGuidance`` in steerdiff's sampler, steerdiff's NS solver;
* official EnKG + steerdiff NS: the official ``EnKG.inference`` driving steerdiff's prior denoiser through a
  thin adapter, on steerdiff's forward model (the same problem: this row isolates the algorithm);
* official EnKG + official NS: the same, on the official solver (``ForwardNavierStokes2d``, fixed time step,
  fields transposed to its (x, y) layout), its measurements simulated by that solver from the same truths.

Both EnKGs are set to the same schedule: Karras grid over the prior's sigma range, the first step unguided
(the official window is threshold_start < i), a constant step scale / ||A||_F (official lr_min_ratio = 0,
steerdiff lr_min_ratio = 1), clean estimates by min(1 + (N - i) // 4, 20) Euler steps down to 0.002.

Speed (interleaved medians, one thread): the NS forward solve of a batch of ensemble members (steerdiff vs the
official solver, same input, same fixed dt, float32) and one guided EnKG step (update + Euler step, both on
steerdiff's forward model). ratio = steerdiff seconds / official seconds (below 1: steerdiff is faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from steerdiff.core import sample
from steerdiff.core.benchmarking import environment, interleaved_cpu_time, print_table, write_json
from steerdiff.core.guidance import EnsembleKalmanGuidance
from steerdiff.core.runtime import set_threads
from steerdiff.inverse import NavierStokes2D
from steerdiff.inverse.benchmark import FULL, QUICK, default_cache, override, prepare
from steerdiff.inverse.methods import MethodConfig, sigma_steps
from steerdiff.inverse.metrics import relative_l2

OFFICIAL_COMMIT = "2ee4a909f1ac024aa9b2385611b71b64fa4aca64"


def import_official(folder: str):
    """``(EnKG, ForwardNavierStokes2d, NavierStokes2d)`` from a checkout of devzhk/enkg-pytorch."""
    path = Path(folder)
    if not (path / "algo" / "enkg.py").is_file():
        raise SystemExit(
            f"{folder} is not a checkout of devzhk/enkg-pytorch (no algo/enkg.py); clone it there or pass "
            "--official PATH"
        )
    os.environ.setdefault("TQDM_DISABLE", "1")  # the official sampling loop draws a progress bar
    sys.modules.setdefault("wandb", types.SimpleNamespace(run=None))  # imported for logging only
    sys.path.insert(0, str(path))
    from algo.enkg import EnKG
    from inverse_problems.navier_stokes import ForwardNavierStokes2d, NavierStokes2d

    return EnKG, ForwardNavierStokes2d, NavierStokes2d


class OfficialNet:
    """The official EnKG's view of a network (``img_channels``, ``img_resolution``, ``round_sigma``,
    ``net(x, sigma)``), answered by steerdiff's prior denoiser; counts its batched calls."""

    def __init__(self, prior, size: int):
        self.prior, self.img_channels, self.img_resolution = prior, 1, size
        self.calls = 0

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma)

    def __call__(self, x, sigma):
        self.calls += 1
        return self.prior(x, float(sigma))


class OfficialOp:
    """The official EnKG's view of a forward operator (``forward``, ``gradient_m``, ``device``) around any batched
    forward function; counts evaluations."""

    device = "cpu"

    def __init__(self, fn):
        self.fn, self.evals, self.calls = fn, 0, 0

    def forward(self, x0):
        self.evals += x0.shape[0]
        self.calls += 1
        return self.fn(x0)

    def gradient_m(self, ys, observation):  # the official BaseOperator's: d/dys sum ||ys - y||^2
        return 2 * (ys - observation)


def official_forward(ForwardNS, setting):
    """The official NS forward operator at ``setting``'s grid, time step and stride, in steerdiff's layout."""
    op = ForwardNS(
        resolution=setting.size,
        forward_time=setting.horizon,
        Re=setting.reynolds,
        downsample_factor=setting.downsample,
        dtype=torch.float32,
        delta_t=setting.dt,
        adaptive=False,
        device="cpu",
    )

    def fn(x):  # steerdiff (y, x) fields <-> official (x, y) fields
        return op.forward(x.transpose(-1, -2), unnormalize=False).transpose(-1, -2)

    return fn


def steerdiff_enkg(prior, problem, y, sig, j, scale, updates, seed):
    g = torch.Generator().manual_seed(seed)
    x = float(sig[0]) * torch.randn((j, 1, *problem.field_shape), generator=g)
    n = len(sig) - 1
    guide = EnsembleKalmanGuidance(
        problem.forward,
        y,
        j,
        scale=scale,
        num_updates=updates,
        step_size="frobenius",
        lr_min_ratio=1.0,  # constant step: the official NS setting (its lr_min_ratio = 0)
        sigma_min=0.002,
        window=(1.5 / n, 1.0),  # steps 1 .. N-1: the official rule threshold_start * N < i
    )
    problem.forward.reset_counts()
    t0 = time.process_time()
    out = sample(prior, x, sig, "euler", guidance=[guide])
    wall = time.process_time() - t0
    return out.x, problem.forward.evals, out.costs.network_evals, wall


def official_enkg(EnKG, prior, op, size, y, sig, j, scale, updates, seed):
    net = OfficialNet(prior, size)
    algo = EnKG(
        net,
        op,
        guidance_scale=scale,
        num_steps=len(sig) - 1,
        num_updates=updates,
        sigma_max=float(sig[0]),
        sigma_min=float(sig[-2]),
        num_samples=j,
        threshold_start=0.0,
        threshold_end=0.0,
        batch_size=j,
        lr_min_ratio=0.0,  # the official NS config: a constant guidance_scale
    )
    torch.manual_seed(seed)  # the official code draws its initial noise from the global generator
    t0 = time.process_time()
    x = algo.inference(y)
    wall = time.process_time() - t0
    return x, op.evals, net.calls * j, wall


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small setting (under a minute)")
    ap.add_argument("--official", default="/tmp/official/devzhk+enkg-pytorch", help="official checkout")
    ap.add_argument("--cache", default=str(default_cache()), help="folder of the cached data and prior")
    ap.add_argument("--scale", type=float, default=2.0, help="EnKG step scale (official NS config: 2.0)")
    ap.add_argument("--updates", type=int, default=1, help="EnKG updates per guided step")
    ap.add_argument("--repeats", type=int, default=None, help="timing repeats (default 3 quick, 7 full)")
    ap.add_argument(
        "--prior", choices=("quick", "full"), default="quick", help="the quick (40-step) or full prior"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="result JSON (default docs/inverse/peers[_quick].json)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    torch.set_grad_enabled(False)
    EnKG, ForwardNS, OfficialSolver = import_official(args.official)
    base = QUICK if args.prior == "quick" else FULL
    setting = base if args.quick else override(base, num_particles=32, num_steps=16, num_test=3)
    j, n_steps, n_fields = setting.num_particles, setting.num_steps, setting.num_test
    repeats = args.repeats or (5 if args.quick else 9)
    prior = prepare(setting, args.cache, progress=False)
    prior.eval()
    problem = setting.problem(0.0)
    sig = sigma_steps(prior, MethodConfig(num_steps=n_steps))
    truth = problem.sample_fields(n_fields, torch.Generator().manual_seed(10_000 + args.seed))
    off_fn = official_forward(ForwardNS, setting)

    # ------------------------------------------------------------------ accuracy at equal forward budget
    runs = {
        "steerdiff EnKG, steerdiff NS": [],
        "official EnKG, steerdiff NS": [],
        "official EnKG, official NS": [],
    }
    agree = []
    for i in range(n_fields):
        w = truth[i : i + 1]
        seed = args.seed * 1000 + i
        y = problem.forward(w)
        y_off = off_fn(w)
        ours = steerdiff_enkg(prior, problem, y, sig, j, args.scale, args.updates, seed)
        theirs = official_enkg(
            EnKG, prior, OfficialOp(problem.forward), setting.size, y, sig, j, args.scale, args.updates, seed
        )
        own = official_enkg(
            EnKG, prior, OfficialOp(off_fn), setting.size, y_off, sig, j, args.scale, args.updates, seed
        )
        for name, (x, evals, nfe, wall) in zip(runs, (ours, theirs, own), strict=True):
            runs[name].append(
                {
                    "rel_l2": float(relative_l2(x.mean(0, keepdim=True), w)[0]),
                    "forward_evals": evals,
                    "network_evals": nfe,
                    "seconds": wall,
                }
            )
        agree.append(float((ours[0] - theirs[0]).norm() / theirs[0].norm()))
    acc_rows = []
    for name, rs in runs.items():
        acc_rows.append(
            [
                name,
                statistics.mean(r["rel_l2"] for r in rs),
                rs[0]["forward_evals"],
                rs[0]["network_evals"],
                statistics.mean(r["seconds"] for r in rs),
            ]
        )
    print_table(
        f"EnKG on Navier-Stokes {setting.size}x{setting.size} (J = {j}, {n_steps} steps, {n_fields} field(s), "
        f"scale {args.scale}, {args.updates} update(s))",
        ["implementation", "rel L2 (mean)", "forward evals", "network evals", "CPU s / field"],
        acc_rows,
        notes=[
            "Same truths, prior network and initial noise; rel L2 of the ensemble mean to the truth.",
            f"steerdiff EnKG vs official EnKG on the same forward model, final ensembles: relative difference "
            f"{max(agree):.1e} (max over fields).",
        ],
    )

    # ------------------------------------------------------------------ speed
    speed_rows = []
    gen = torch.Generator().manual_seed(1)
    for size in (32, 64, 128) if not args.quick else (32, 64):
        ours_ns = NavierStokes2D(size, setting.reynolds, setting.horizon, setting.dt)
        theirs_ns = OfficialSolver(size, size, Re=setting.reynolds, device="cpu", dtype=torch.float32)
        force = ForwardNS(resolution=size, dtype=torch.float32, device="cpu").force
        w0 = (
            problem.grf.sample(j, gen)
            if size == setting.size
            else torch.randn(j, 1, size, size, generator=gen)
        )
        w0t = w0[:, 0].transpose(-1, -2).contiguous()
        med = interleaved_cpu_time(
            {
                "steerdiff": lambda ns=ours_ns, w=w0: ns(w),
                "official": lambda s=theirs_ns, w=w0t, f=force: s.solve(
                    w, f, setting.horizon, setting.reynolds, adaptive=False, delta_t=setting.dt
                ),
            },
            repeats,
        )
        speed_rows.append(
            [
                f"NS forward solve {size}x{size}, {j} fields, T = {setting.horizon}, dt = {setting.dt}",
                med["steerdiff"],
                med["official"],
                med["steerdiff"] / med["official"],
            ]
        )
    # one guided EnKG step in the middle of the grid (update + Euler step), both on steerdiff's forward model
    i = n_steps // 2
    ode = min(1 + (n_steps - i) // 4, 20)
    x = float(sig[i]) * torch.randn((j, 1, *problem.field_shape), generator=gen)
    y = problem.forward(truth[:1])
    guide = EnsembleKalmanGuidance(
        problem.forward,
        y,
        j,
        scale=args.scale,
        num_updates=args.updates,
        ode_steps=ode,
        step_size="frobenius",
        lr_min_ratio=1.0,
        sigma_min=0.002,
    )
    net, op = OfficialNet(prior, setting.size), OfficialOp(problem.forward)
    algo = EnKG(
        net,
        op,
        args.scale,
        n_steps,
        args.updates,
        float(sig[0]),
        float(sig[-2]),
        num_samples=j,
        batch_size=j,
        lr_min_ratio=0.0,
    )
    s0, s1 = float(sig[i]), float(sig[i + 1])

    def official_step():
        upd, t_hat = algo.update_particles(x, y, num_steps=ode, sigma_start=s0, guidance_scale=args.scale)
        den = net(upd, t_hat)
        return upd + (s1 - t_hat) * (upd - den) / t_hat

    def steerdiff_step():
        return sample(prior, x, [s0, s1], "euler", guidance=[guide], allow_nonzero_end=True).x

    step_diff = float((steerdiff_step() - official_step()).norm() / official_step().norm())
    med = interleaved_cpu_time({"steerdiff": steerdiff_step, "official": official_step}, repeats)
    speed_rows.append(
        [
            f"one EnKG step ({ode} ODE steps, {args.updates} update(s)), {j} particles, {setting.size}x{setting.size}",
            med["steerdiff"],
            med["official"],
            med["steerdiff"] / med["official"],
        ]
    )
    print_table(
        "Speed: steerdiff vs the official EnKG code (median CPU seconds, interleaved)",
        ["job", "steerdiff s", "official s", "ratio"],
        speed_rows,
        notes=[
            f"ratio = steerdiff / official (below 1: steerdiff faster); {repeats} interleaved repeats, "
            f"{torch.get_num_threads()} thread(s), float32.",
            f"The two EnKG steps give the same particles to {step_diff:.1e} (relative).",
        ],
    )
    out = args.out or f"docs/inverse/peers{'_quick' if args.quick else ''}.json"
    write_json(
        out,
        {
            "official": {
                "repository": "devzhk/enkg-pytorch",
                "commit": OFFICIAL_COMMIT,
                "folder": args.official,
            },
            "setting": dataclasses.asdict(setting),
            "scale": args.scale,
            "updates": args.updates,
            "accuracy": {
                "headers": ["implementation", "rel_l2", "forward_evals", "network_evals", "seconds"],
                "rows": acc_rows,
                "runs": runs,
                "enkg_difference_same_forward": agree,
            },
            "speed": {
                "headers": ["job", "steerdiff_s", "official_s", "ratio"],
                "rows": speed_rows,
                "repeats": repeats,
                "step_difference": step_diff,
            },
            "environment": environment(),
        },
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
