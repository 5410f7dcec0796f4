"""``steerdiff-timeseries``: data -> train -> forecast / impute / refine / synthesize -> evaluate, and demo.

Every command takes ``--seed``, ``--device`` (auto: CUDA when present) and ``--out`` (a folder that gets a JSON
summary and, where it helps, a PNG). Data is a bundled dataset name (``elecdemand``, ``taylor``,
``us_employment``), ``gluonts:<name>`` already on disk, a wide or long CSV, or GluonTS JSON lines.
The last ``--test-windows`` x prediction_length points of every series are held out: models train on what
comes before, and every metric is computed on the held-out rolling windows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from steerdiff.core.io import atomic_open, write_json

from . import data as D
from .model import TSDiff, TSDiffConfig

__all__ = ["load_series", "main"]


_write_json = write_json


def _write_npz(path: Path, **arrays) -> None:
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})


def load_series(source: str, freq: str | None = None) -> list[D.Series]:
    """A bundled name, ``gluonts:<name>``, a .csv (wide; long with ``item_id,timestamp,target`` columns) or
    GluonTS .json/.jsonl lines ``{"start", "target"}``."""
    path = Path(source)
    if source.endswith((".jsonl", ".json")):
        if not path.exists():
            raise FileNotFoundError(f"{source} does not exist")
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return D.from_entries(lines, freq)
    if source.endswith(".csv"):
        if not path.exists():
            raise FileNotFoundError(f"{source} does not exist")
        import pandas as pd
        cols = set(pd.read_csv(path, nrows=0).columns)
        if {"item_id", "timestamp", "target"} <= cols:
            return D.from_csv(path, freq, item_id="item_id", timestamp="timestamp", target="target")
        return D.from_csv(path, freq)
    return D.load_dataset(source)


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                        "cpu" if name == "auto" else name)


def _generator(args) -> torch.Generator:
    return torch.Generator(_device(args.device)).manual_seed(args.seed)


def _lags(text: str, freq: str) -> tuple[int, ...]:
    if text == "auto":
        return D.parse_freq(freq).default_lags
    if text in ("", "none"):
        return ()
    return tuple(int(v) for v in text.split(","))


def _split(args, model: TSDiff):
    series = load_series(args.data, args.freq)
    return D.split_last(series, model.spec, args.test_windows)


def _print_table(title: str, rows: dict, columns=("crps", "nd", "nrmse", "seconds")) -> None:
    print(f"\n{title}")
    print(f"{'method':<26}" + "".join(f"{c:>10}" for c in columns))
    for name, m in rows.items():
        print(f"{name:<26}" + "".join(f"{m[c]:>10.4f}" if m.get(c) is not None else f"{'diverged':>10}"
                                      for c in columns))


# ---------------------------------------------------------------------------------------------- commands

def cmd_data(args) -> dict:
    series = load_series(args.data, args.freq)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".series.jsonl.tmp"
    tmp.write_text("".join(json.dumps(e) + "\n" for e in D.to_entries(series)))
    os.replace(tmp, out / "series.jsonl")
    lengths = [len(s) for s in series]
    summary = {"data": args.data, "num_series": len(series), "freq": str(series[0].freq),
               "season_length": series[0].freq.season_length, "default_lags": list(series[0].freq.default_lags),
               "min_length": min(lengths), "max_length": max(lengths), "total_points": sum(lengths)}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(min(4, len(series)), 1, figsize=(9, 2 * min(4, len(series))), squeeze=False)
    for ax, s in zip(axes[:, 0], series):
        ax.plot(s.index(), s.target, lw=0.6)
        ax.set_title(s.item_id, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "series.png", dpi=90)
    plt.close(fig)
    return summary


def cmd_train(args) -> dict:
    from steerdiff.core.training import TrainConfig
    series = load_series(args.data, args.freq)
    freq = str(series[0].freq)
    cfg = TSDiffConfig(args.context, args.prediction, _lags(args.lags, freq), freq, args.hidden, args.blocks,
                       args.d_state, init_skip=args.init_skip, scaling=args.scaling)
    train, _ = D.split_last(series, cfg.spec, args.test_windows)
    windows = D.training_windows(train, cfg.spec, args.stride)
    model = TSDiff(cfg)
    tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, grad_clip=0.5, seed=args.seed,
                     ema_decay=0.995, checkpoint_every=max(args.steps // 4, 1))
    result = model.fit(windows, tc, out_dir=args.out, device=_device(args.device))
    k = max(1, len(result.losses) // 10)
    return {"windows": windows.shape[0], "steps": result.step, "loss_first": float(np.mean(result.losses[:k])),
            "loss_last": float(np.mean(result.losses[-k:])), "config": vars(cfg) | {"lags": list(cfg.lags)}}


def _load(args) -> TSDiff:
    return TSDiff.load(args.model, device=_device(args.device))


def _sample_options(args) -> dict:
    return {"num_samples": args.samples, "scale": args.scale, "solver": args.solver, "num_steps": args.num_steps,
                "batch_size": args.batch_windows}


def cmd_forecast(args) -> dict:
    from .forecast import forecast, missing_mask, with_missing
    from .metrics import evaluate_forecast
    model = _load(args)
    _, test = _split(args, model)
    g = _generator(args)
    history = with_missing(test.history, missing_mask(args.scenario, len(test.history),
                                                      model.spec.context_length, generator=g))
    samples = forecast(model, history, guidance=args.guidance, generator=g, progress=True, **_sample_options(args))
    _write_npz(Path(args.out) / "forecast.npz", samples=samples, history=history, future=test.future)
    _plot(args, history, samples, test, "forecast.png")
    return {"guidance": args.guidance, "scale": args.scale, "scenario": args.scenario,
            "windows": len(test.history), **evaluate_forecast(samples, test.future)}


def _plot(args, history, samples, test, name):
    from .plots import fan_chart
    titles = [f"{i} @ {s}" for i, s in zip(test.item_ids, test.starts)]
    fan_chart(Path(args.out) / name, history, samples, test.future, titles,
              show_history=min(history.shape[1], 3 * samples.shape[2]))


def cmd_impute(args) -> dict:
    from .forecast import impute, missing_mask
    from .metrics import evaluate_forecast
    model = _load(args)
    _, test = _split(args, model)
    g = _generator(args)
    spec = model.spec
    y = torch.cat([test.history, test.future], 1)
    ctx = slice(spec.max_lag, spec.history_length)
    mask = missing_mask(args.scenario, len(y), spec.context_length, args.k, generator=g)
    gappy = y.clone()
    gappy[:, ctx] = gappy[:, ctx].masked_fill(mask, float("nan"))
    samples = impute(model, gappy, guidance=args.guidance, generator=g, progress=True, **_sample_options(args))
    ctx_samples = samples[:, :, :spec.context_length]
    truth = y[:, ctx]
    # score only the imputed points: gather them per window (every window has the same count k)
    k = int(mask[0].sum())
    idx = mask.nonzero()[:, 1].reshape(len(y), k)
    metrics = evaluate_forecast(ctx_samples.gather(2, idx[:, None].expand(-1, ctx_samples.shape[1], -1)),
                                truth.gather(1, idx))
    _write_npz(Path(args.out) / "impute.npz", samples=samples, observed=gappy, truth=y)
    from .plots import fan_chart
    fan_chart(Path(args.out) / "impute.png", gappy[:, :spec.max_lag + 1], ctx_samples, truth,
              [f"{args.scenario}: {i}" for i in test.item_ids], show_history=1)
    return {"scenario": args.scenario, "imputed_points_per_window": k, **metrics}


def cmd_refine(args) -> dict:
    from .evaluation import base_forecasts
    from .metrics import evaluate_forecast
    from .refine import refine
    model = _load(args)
    train, test = _split(args, model)
    if args.base in ("seasonal_naive", "linear"):
        base = base_forecasts(model, train, test)[args.base]
    else:
        base = torch.as_tensor(np.load(args.base), dtype=torch.float32)
    g = _generator(args)
    samples = refine(model, test.history, base, method=args.method, regularizer=args.regularizer,
                     steps=args.refine_steps, num_samples=args.samples, generator=g)
    _write_npz(Path(args.out) / "refine.npz", samples=samples, base=base, future=test.future)
    _plot(args, test.history, samples, test, "refine.png")
    return {"base": args.base, "method": args.method, "base_metrics": evaluate_forecast(base, test.future),
            "refined_metrics": evaluate_forecast(samples, test.future)}


def cmd_synthesize(args) -> dict:
    from .synthesis import generate, linear_predictive_score
    model = _load(args)
    g = _generator(args)
    x = generate(model, args.n, solver=args.solver, num_steps=args.num_steps, generator=g, progress=True)
    _write_npz(Path(args.out) / "synthetic.npz", windows=x)
    out = {"windows": args.n, "shape": list(x.shape)}
    if args.data:
        train, test = _split(args, model)
        real = D.training_windows(train, model.spec)
        ctx, scaling = model.spec.context_length, model.spec.scaling
        out["lps_synthetic"] = linear_predictive_score(x, test, ctx, scaling=scaling)
        out["lps_real"] = linear_predictive_score(real, test, ctx, scaling=scaling)
    return out


def cmd_evaluate(args) -> dict:
    from .evaluation import compare_forecasters, compare_missing, compare_training_data
    model = _load(args)
    train, test = _split(args, model)
    g = _generator(args)
    opts = _sample_options(args)
    metrics, samples = compare_forecasters(model, train, test, refine_steps=args.refine_steps, generator=g,
                                           **opts)
    _print_table("forecast CRPS on held-out rolling windows", metrics)
    missing = compare_missing(model, test, generator=g, **opts)
    _print_table("TSDiff-Q with half the context missing", missing)
    lps = compare_training_data(model, train, test, args.synthetic, solver=args.solver,
                                num_steps=args.num_steps, generator=g)
    print(f"\nLPS (ridge trained on windows, CRPS on test): real {lps['real']['lps']:.4f}, "
          f"synthetic {lps['synthetic']['lps']:.4f}")
    best = min((k for k in metrics if metrics[k]["crps"] is not None), key=lambda k: metrics[k]["crps"])
    for name in ("tsdiff_q", best):
        if samples.get(name) is not None:
            _plot(args, test.history, samples[name], test, f"forecast_{name.replace('+', '_')}.png")
    return {"forecast": metrics, "missing": missing, "lps": lps, "best": best, "windows": len(test.history)}


def cmd_demo(args) -> dict:
    """Train a small model on a bundled real series (default elecdemand, hourly) and run `evaluate`."""
    base = Path(args.out)
    args.data = args.data or "elecdemand"
    args.out = str(base / "model")
    summary = {"train": cmd_train(args)}
    args.model, args.out = str(base / "model"), str(base)
    summary["evaluate"] = cmd_evaluate(args)
    return summary


# -------------------------------------------------------------------------------------------------- main

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="steerdiff-timeseries", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help, model=True, data=True, sampling=True):
        s = sub.add_parser(name, help=help)
        s.set_defaults(fn=fn)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
        s.add_argument("--out", required=name != "demo", default="tsdiff-demo" if name == "demo" else None)
        if data:
            s.add_argument("--data", required=name not in ("demo", "synthesize"),
                           help="elecdemand | taylor | us_employment | gluonts:<name> | file.csv | file.jsonl")
            s.add_argument("--freq", default=None, help="frequency when the data does not carry one (e.g. H)")
            s.add_argument("--test-windows", type=int, default=4, help="held-out rolling windows per series")
        if model:
            s.add_argument("--model", required=True, help="a folder written by `train`")
        if sampling:
            s.add_argument("--samples", type=int, default=100, help="sample paths per window")
            s.add_argument("--scale", type=float, default=4.0, help="self-guidance scale s")
            s.add_argument("--guidance", choices=("quantile", "mse", "none"), default="quantile")
            s.add_argument("--solver", default="ddpm", help="ddpm (TSDiff), ddim, dpmpp_2m ...")
            s.add_argument("--num-steps", type=int, default=100)
            s.add_argument("--batch-windows", type=int, default=None, help="windows sampled at once")
        return s

    add("data", cmd_data, "load a dataset, write GluonTS JSON lines, a summary and a plot", model=False,
        sampling=False)
    for s in (add("train", cmd_train, "train an unconditional TSDiff model", model=False, sampling=False),
              add("demo", cmd_demo, "train and evaluate on a bundled real series", model=False)):
        s.add_argument("--context", type=int, default=168)
        s.add_argument("--prediction", type=int, default=24)
        s.add_argument("--lags", default="auto", help="comma-separated lags, 'auto' (by frequency) or 'none'")
        s.add_argument("--hidden", type=int, default=64)
        s.add_argument("--blocks", type=int, default=3)
        s.add_argument("--d-state", type=int, default=64)
        s.add_argument("--init-skip", action=argparse.BooleanOptionalAction, default=True,
                       help="residual network (eps_hat = x_t + F); keeps self-guidance stable on short training")
        s.add_argument("--scaling", choices=D.SCALINGS, default="mean",
                       help="scale windows by the context mean |y| (the paper's) or standardise them by the "
                       "context mean and std (for series that move little relative to their level)")
        s.add_argument("--steps", type=int, default=2000)
        s.add_argument("--batch-size", type=int, default=64)
        s.add_argument("--lr", type=float, default=1e-3)
        s.add_argument("--stride", type=int, default=1)
    f = add("forecast", cmd_forecast, "self-guided forecasts of the held-out windows, with a fan chart")
    f.add_argument("--scenario", choices=("none", "random", "blackout_start", "blackout_end"), default="none")
    i = add("impute", cmd_impute, "fill missing context points of the held-out windows")
    i.add_argument("--scenario", choices=("random", "blackout_start", "blackout_end"), default="random")
    i.add_argument("--k", type=int, default=None, help="missing points per window (default half the context)")
    r = add("refine", cmd_refine, "refine a base forecaster's forecasts with the model's implicit density")
    r.add_argument("--base", default="seasonal_naive", help="seasonal_naive, linear, or forecasts.npy (N, S, H)")
    r.add_argument("--method", choices=("ml", "langevin"), default="ml")
    r.add_argument("--regularizer", choices=("quantile", "mse"), default="quantile")
    y = add("synthesize", cmd_synthesize, "generate windows; with --data also the linear predictive score")
    y.add_argument("--n", type=int, default=1000)
    add("evaluate", cmd_evaluate, "compare baselines, TSDiff-MS/Q, refinement, missing values and LPS")
    for e in (r, sub.choices["evaluate"], sub.choices["demo"]):
        e.add_argument("--refine-steps", type=int, default=20)
        if e is not r:
            e.add_argument("--synthetic", type=int, default=1000, help="synthetic windows for the LPS")
    # the demo: a few minutes on a CPU (a small model; `train` defaults are the paper-sized backbone)
    sub.choices["demo"].set_defaults(context=96, hidden=32, blocks=2, d_state=32, steps=600, samples=16,
                                     test_windows=7, synthetic=500, stride=2)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        summary = args.fn(args)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"steerdiff-timeseries {args.command}: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    _write_json(out / f"{args.command}.json", summary)
    print(json.dumps(summary, indent=2, default=str)[:2000])
    print(f"\nwrote {out / (args.command + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
