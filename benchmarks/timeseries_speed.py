"""Speed of steerdiff's TSDiff against the official TSDiff code on the same input, measured interleaved.

    python benchmarks/timeseries_speed.py --quick          # about a minute: one step, one repetition
    python benchmarks/timeseries_speed.py --json docs/timeseries/speed.json

Rows (one dataset's window: elecdemand by default, context + prediction with its lag channels): a training
step (batch 64: forward, backward, Adam), a forecast of one window with 100 paths and a forecast of 40 windows x
16 paths, both TSDiff-Q with the DDPM sampler, and the paths per second of each. Both sides run the paper's small
backbone (3 residual S4 blocks, 64 channels, state 128, step embedding 128) with random weights (speed does not
depend on training), one torch thread, float32, on the same tensors.

The official code (amazon-science/unconditional-time-series-diffusion) is not part of steerdiff: give a checkout
with ``--official DIR`` (its ``src`` folder is imported). It needs gluonts, lightning, einops and opt_einsum (the
``peers`` extra, plus ``pip install einops opt_einsum``); its plotting and linear-baseline imports (seaborn,
sklearn) are stubbed, and pykeops is absent, so its S4 kernels run in pure PyTorch as on any CPU install. Its
DDPM guidance (``DDPMGuidance._reverse_diffusion``) is called directly on the scaled window, as its predictor does
after GluonTS's input transformation. Without the checkout only steerdiff's column is printed.

Sampling rows run ``--steps`` of the 100 DDPM steps, every one guided (the first ones of steerdiff's 100-step grid,
the last ones of the official loop: each guided step costs the same) and are scaled to 100 steps. Repetitions alternate steerdiff and the
official code and the medians are reported, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from steerdiff.core.benchmarking import environment, print_table, write_json
from steerdiff.core.runtime import set_threads
from steerdiff.timeseries.benchmark import DATASETS
from steerdiff.timeseries.forecast import forecast
from steerdiff.timeseries.model import SCHEDULE, TSDiff, TSDiffConfig

HIDDEN, BLOCKS, D_STATE, EMB = 64, 3, 128, 128  # the official diffusion_small_config


def _steerdiff(d: dict, context: int) -> TSDiff:
    cfg = TSDiffConfig(context, d["prediction"], d["lags"], "H", HIDDEN, BLOCKS, D_STATE, EMB)
    return TSDiff(cfg)


def _load_official(root: Path):
    """The official TSDiff model class and DDPM guidance, with its plotting/baseline-only imports stubbed."""
    sys.path.insert(0, str(root / "src"))
    try:
        import pytorch_lightning  # noqa: F401
    except ImportError:  # lightning 2 ships it as lightning.pytorch
        import lightning.pytorch as pl
        import lightning.pytorch.utilities as plu

        sys.modules["pytorch_lightning"], sys.modules["pytorch_lightning.utilities"] = pl, plu
    import gluonts.torch.scaler as scaler

    sys.modules.setdefault("gluonts.torch.modules.scaler", scaler)  # moved in newer GluonTS
    sns = types.ModuleType("seaborn")
    sns.set = lambda *a, **k: None
    sys.modules.setdefault("seaborn", sns)
    for name, attrs in {
        "sklearn": {},
        "sklearn.linear_model": {"LinearRegression": object, "Ridge": object},
        "uncond_ts_diff.model.linear._estimator": {"LinearEstimator": object},
    }.items():
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules.setdefault(name, mod)
    from uncond_ts_diff.model import TSDiff as Official
    from uncond_ts_diff.sampler.observation_guidance import DDPMGuidance
    from uncond_ts_diff.utils import linear_beta_schedule

    return Official, DDPMGuidance, linear_beta_schedule


def _official(classes, d: dict, context: int):
    Official, _, schedule = classes
    channels = 1 + len(d["lags"])
    backbone = {
        "input_dim": channels,
        "hidden_dim": HIDDEN,
        "output_dim": channels,
        "step_emb": EMB,
        "num_residual_blocks": BLOCKS,
        "residual_block": "s4",
    }
    return Official(
        backbone, 100, schedule, context, d["prediction"], freq="H", use_lags=False, init_skip=True
    )


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 sampling step, 1 repetition: about a minute")
    p.add_argument("--dataset", default="elecdemand", choices=sorted(DATASETS), help="whose window")
    p.add_argument("--context", type=int, default=None, help="context length (default: the dataset's)")
    p.add_argument(
        "--steps", type=int, default=None, help="DDPM steps timed per forecast (default 10; quick 1)"
    )
    p.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (default 3; quick 1)")
    p.add_argument("--official", default="/tmp/official-tsdiff", help="checkout of the official TSDiff code")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    set_threads(args.threads)
    steps = args.steps or (1 if args.quick else 10)
    repeats = args.repeats or (1 if args.quick else 3)
    d = DATASETS[args.dataset]
    context = args.context or d["context"]
    torch.manual_seed(0)
    ours = _steerdiff(d, context)
    spec = ours.spec
    length, channels = spec.length, spec.channels

    official = None
    root = Path(args.official)
    if (root / "src" / "uncond_ts_diff").is_dir():
        classes = _load_official(root)
        official = _official(classes, d, context)
    else:
        print(f"no official checkout at {root}: steerdiff only")

    gen = torch.Generator().manual_seed(0)
    batch = 0.3 * torch.randn(64, channels, length, generator=gen)  # scaled training windows

    def history(n):
        return 10 + torch.randn(n, spec.history_length, generator=gen).cumsum(1) * 0.1

    jobs = {}
    # ---- training step: forward + backward + Adam on the same 64 windows
    opt = torch.optim.Adam(ours.denoiser.parameters(), lr=1e-3)

    def ours_train():
        sigma = SCHEDULE.sample_training_sigma(64, generator=gen)
        loss = ours.denoiser.loss(batch, sigma, torch.randn(batch.shape, generator=gen)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    jobs["train step (batch 64)"] = {"steerdiff": ours_train, "units": None}
    if official is not None:
        official.train()
        opt_off = torch.optim.Adam(official.parameters(), lr=1e-3)
        x_off = batch.transpose(1, 2).contiguous()  # (B, L, C): the official layout

        def official_train():
            t = torch.randint(0, 100, (64,))
            loss, _, _ = official.p_losses(x_off, t, None, loss_type="l2")
            opt_off.zero_grad(set_to_none=True)
            loss.backward()
            opt_off.step()

        jobs["train step (batch 64)"]["official"] = official_train

    # ---- forecasts: TSDiff-Q, DDPM, scale 4, `steps` steps timed, scaled to 100
    # weights as each side leaves them when sampling: steerdiff takes no weight gradients while sampling, the
    # official guidance differentiates its loaded model as it is
    # the first `steps` steps of the 100-step grid: every one of them guided (on the full grid only the last step,
    # beta_tilde = 0 in the paper's eq. 2, is not), so that the time scales to 100 steps
    grid = ours.sigmas(100)[: steps + 1]
    ours.sigmas = lambda num_steps=100: grid
    for windows, paths in ((1, 100), (40, 16)):
        h = history(windows)
        rows = windows * paths

        def ours_forecast(h=h, paths=paths):
            forecast(ours, h, num_samples=paths, scale=4.0, generator=gen, allow_nonzero_end=True)

        job = {"steerdiff": ours_forecast, "units": rows}
        if official is not None:
            guide = classes[1](official, d["prediction"], scale=4.0, num_samples=paths, guidance="quantile")
            obs = 0.3 * torch.randn(rows, length, channels, generator=gen)
            mask = torch.zeros(rows, length, channels)
            mask[:, :context] = 1

            def official_forecast(guide=guide, obs=obs, mask=mask):
                official.timesteps = steps  # the last `steps` of the 100 steps
                try:
                    guide._reverse_diffusion(obs, mask, None, 4.0)
                finally:
                    official.timesteps = 100

            job["official"] = official_forecast
        jobs[f"forecast {windows} x {paths} paths (per 100 steps)"] = job

    rows = []
    for name, job in jobs.items():
        sides = [k for k in ("steerdiff", "official") if k in job]
        for side in sides:  # warm-up
            job[side]()
        times = {k: [] for k in sides}
        for _ in range(repeats):
            for side in sides:  # interleaved
                times[side].append(_timed(job[side]))
        scale = 100 / steps if job["units"] else 1.0
        med = {k: statistics.median(w for w, _ in v) * scale for k, v in times.items()}
        cpu = {k: statistics.median(c for _, c in v) * scale for k, v in times.items()}
        row = {"job": name, "steerdiff_s": med["steerdiff"], "official_s": med.get("official")}
        row["ratio"] = med["steerdiff"] / med["official"] if "official" in med else None
        row["steerdiff_cpu_s"], row["official_cpu_s"] = cpu["steerdiff"], cpu.get("official")
        row["cpu_ratio"] = cpu["steerdiff"] / cpu["official"] if "official" in cpu else None
        if job["units"]:
            row["steerdiff_paths_per_s"] = job["units"] / med["steerdiff"]
            row["official_paths_per_s"] = job["units"] / med["official"] if "official" in med else None
        row["repeats"] = repeats
        rows.append(row)
    notes = [
        f"{args.dataset} window: context {context}, prediction {d['prediction']}, {channels} channels "
        f"(lags {list(d['lags'])}); backbone 3 S4 blocks x 64 channels, state 128, step embedding 128",
        f"sampling: TSDiff-Q (quantile self-guidance, scale 4), DDPM; {steps} guided steps of 100 timed, scaled to 100",
        f"medians of {repeats} repetitions, steerdiff and the official code alternating (the machine may be shared)",
        "ratio = steerdiff seconds / official seconds (below 1: steerdiff faster); the CPU-time ratio divides the "
        "process CPU seconds instead, which other work on the machine disturbs less",
        f"torch threads {torch.get_num_threads()}",
    ]
    cols = [
        "job",
        "steerdiff_s",
        "official_s",
        "ratio",
        "cpu_ratio",
        "steerdiff_paths_per_s",
        "official_paths_per_s",
    ]
    print_table(
        "TSDiff speed: steerdiff vs the official code",
        [
            "job",
            "steerdiff s",
            "official s",
            "ratio",
            "CPU-time ratio",
            "steerdiff paths/s",
            "official paths/s",
        ],
        [[r.get(c) for c in cols] for r in rows],
        notes,
    )
    if args.json:
        versions = {"torch": torch.__version__}
        for mod in ("gluonts", "lightning", "pandas", "numpy"):
            try:
                versions[mod] = __import__(mod).__version__
            except ImportError:
                pass
        write_json(
            args.json,
            {
                "rows": rows,
                "notes": notes,
                "versions": versions,
                "official": str(root) if official is not None else None,
                "environment": environment(),
                "command": "python benchmarks/timeseries_speed.py " + " ".join(sys.argv[1:]),
            },
        )


if __name__ == "__main__":
    main()
