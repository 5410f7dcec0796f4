"""steerdiff's TSDiff beside the field's standard forecasting libraries, on the same data and test windows.

    python benchmarks/timeseries_peers.py --quick                   # under a minute: tiny TSDiff, us_employment
    python benchmarks/timeseries_peers.py --json docs/timeseries/peers.json

Needs the peers extra in an environment of its own (GluonTS 0.17 needs pandas < 3):
``pip install -e packages/core -e "packages/timeseries[data,peers]"``.

Per dataset (the split and the rolling test windows of ``benchmarks/timeseries_tsdiff.py``: ``hold_out`` of
``steerdiff.timeseries.benchmark``), rows:

* TSDiff-Q (steerdiff): the benchmark's model (its backbone and scaling), trained for ``--train-steps`` on
  everything before the test windows, or loaded from the benchmark's cache when that run is there; forecasts
  with the model's default self-guidance (quantile, the scale it carries: 4 when none was chosen), DDPM, 100 steps;
* seasonal naive (steerdiff) and statsforecast's SeasonalNaive (its point forecast must be the same);
* statsforecast AutoETS and AutoARIMA (refit per test window on the last ``--peer-history`` points before it, the
  usual way to run them; quantiles from their prediction intervals; timed after an untimed warm-up call on one
  window);
* GluonTS SimpleFeedForward (PyTorch), trained on the same training series for as long as TSDiff's training took
  (its wall-clock limit), 100 sample paths per window.

Columns: CRPS (mean weighted quantile loss over q = 0.1..0.9, the quantiles of the paths or of the intervals), ND,
NRMSE, fit and predict seconds. CRPS of a point forecast is its weighted absolute error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from steerdiff.core.benchmarking import environment, print_table, write_json
from steerdiff.core.runtime import set_threads
from steerdiff.timeseries.baselines import seasonal_naive
from steerdiff.timeseries.benchmark import (
    DATASETS,
    FULL,
    QUICK,
    default_cache,
    hold_out,
    model_config,
    refit,
    setting,
)
from steerdiff.timeseries.data import load_dataset, parse_freq
from steerdiff.timeseries.forecast import ForecastRangeWarning
from steerdiff.timeseries.metrics import QUANTILES, evaluate_forecast

LEVELS = (20, 40, 60, 80)  # central intervals whose ends are the quantiles 0.1 ... 0.9


def quantile_metrics(quantiles: dict[float, np.ndarray], point: np.ndarray, target: np.ndarray) -> dict:
    """CRPS, ND, NRMSE of quantile forecasts {q: (N, H)} with ``point`` the median and the mean (N, H)."""
    y = np.asarray(target, dtype=np.float64)
    denom = np.abs(y).sum()
    wql = [
        2 * np.abs((quantiles[q] - y) * ((y <= quantiles[q]).astype(float) - q)).sum() / denom
        for q in QUANTILES
    ]
    return {
        "crps": float(np.mean(wql)),
        "nd": float(np.abs(y - point).sum() / denom),
        "nrmse": float(np.sqrt(np.mean((y - point) ** 2)) / np.abs(y).mean()),
    }


def _pasts(series, test, limit: int | None) -> list[np.ndarray]:
    """The observed past of each test window (the last ``limit`` points before it)."""
    by_id = {s.item_id: s for s in series}
    out = []
    for item, start in zip(test.item_ids, test.starts, strict=True):
        past = by_id[item].target[:start]
        out.append(past[-limit:] if limit else past)
    return out


def statsforecast_rows(pasts, horizon: int, season: int, target: np.ndarray) -> tuple[dict, np.ndarray]:
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, SeasonalNaive

    frames = [
        pd.DataFrame({"unique_id": i, "ds": np.arange(len(p)), "y": p.astype(np.float64)})
        for i, p in enumerate(pasts)
    ]
    df = pd.concat(frames, ignore_index=True)
    rows, naive = {}, None
    for name, model in (
        ("statsforecast SeasonalNaive", SeasonalNaive(season_length=season)),
        ("statsforecast AutoETS", AutoETS(season_length=season)),
        ("statsforecast AutoARIMA", AutoARIMA(season_length=season)),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a warm-up on the first window, untimed: the first call pays one-off set-up (numba compilation)
            sf = StatsForecast(models=[model], freq=1, n_jobs=1)
            sf.forecast(h=horizon, df=frames[0], level=list(LEVELS))
            t0 = time.perf_counter()
            fc = sf.forecast(h=horizon, df=df, level=list(LEVELS))
            seconds = time.perf_counter() - t0
        fc = fc.sort_values(["unique_id", "ds"])
        col = [c for c in fc.columns if c not in ("unique_id", "ds") and "-lo-" not in c and "-hi-" not in c][
            0
        ]
        point = fc[col].to_numpy().reshape(len(pasts), horizon)
        quantiles = {0.5: point}
        for level in LEVELS:
            lo = fc[f"{col}-lo-{level}"].to_numpy().reshape(len(pasts), horizon)
            hi = fc[f"{col}-hi-{level}"].to_numpy().reshape(len(pasts), horizon)
            quantiles[round((100 - level) / 200, 1)] = lo
            quantiles[round((100 + level) / 200, 1)] = hi
        rows[name] = {**quantile_metrics(quantiles, point, target), "fit_s": None, "predict_s": seconds}
        if name.endswith("SeasonalNaive"):
            naive = point
            rows[name + " (point)"] = {
                **quantile_metrics(dict.fromkeys(QUANTILES, point), point, target),
                "fit_s": None,
                "predict_s": seconds,
            }
    return rows, naive


def gluonts_row(
    train, pasts, freq: str, horizon: int, context: int, seconds: float, samples: int, seed: int, target
):
    import pandas as pd
    from gluonts.torch.model.simple_feedforward import SimpleFeedForwardEstimator

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    root = tempfile.mkdtemp(prefix="gluonts-sff-")
    start = pd.Period("2000-01-01", freq=freq)
    train_data = [
        {"start": start, "target": s.target.astype(np.float32)} for s in train if len(s) > context + horizon
    ]
    torch.manual_seed(seed)
    estimator = SimpleFeedForwardEstimator(
        prediction_length=horizon,
        context_length=context,
        trainer_kwargs={
            "max_epochs": 100_000,
            "max_time": timedelta(seconds=max(seconds, 1.0)),
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "default_root_dir": root,  # its checkpoint, out of the tree
        },
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = estimator.train(train_data)
    fit = time.perf_counter() - t0
    shutil.rmtree(root, ignore_errors=True)
    test_data = [{"start": start, "target": p.astype(np.float32)} for p in pasts]
    t0 = time.perf_counter()
    forecasts = predictor.predict(test_data, num_samples=samples)  # Student-t distributions: draw the paths
    paths = np.stack([f.to_sample_forecast(samples).samples for f in forecasts])
    predict = time.perf_counter() - t0
    m = evaluate_forecast(torch.from_numpy(paths), torch.as_tensor(target))
    return {**m, "fit_s": fit, "predict_s": predict}


def run(name: str, s: dict, args, out_rows: list, notes: list) -> dict:
    d = DATASETS[name]
    series = load_dataset(name)
    freq = parse_freq(str(series[0].freq))
    season = freq.season_length
    scaling = s["scalings"][-1]
    cfg = model_config(name, d, s, series, scaling=scaling)
    train, test = hold_out(series, cfg.spec, d, s)
    target = test.future.numpy().astype(np.float64)
    horizon = cfg.prediction_length
    steps = args.train_steps or (s["checkpoints"][-1])
    pipe, seconds = refit(name, cfg, series, train, d["test_windows"], steps, args.seed, "cpu", args.cache)
    sidecar = None if args.cache is None else _sidecar(args.cache, name, cfg, steps, args.seed)
    if seconds is None:  # loaded from the cache: the training time recorded when it was trained here, if any
        seconds = json.loads(sidecar.read_text())["train_seconds"] if sidecar and sidecar.exists() else None
    elif sidecar is not None:
        sidecar.write_text(json.dumps({"train_seconds": seconds}))
    rows = {}
    samples = s["test_samples"]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastRangeWarning)
        paths = pipe.forecast(test.history, num_samples=samples, num_steps=s["num_steps"], seed=args.seed)
    rows["TSDiff-Q (steerdiff)"] = {
        **evaluate_forecast(paths, test.future),
        "fit_s": seconds,
        "predict_s": time.perf_counter() - t0,
    }
    t0 = time.perf_counter()
    ours_naive = seasonal_naive(test.history, horizon, season)
    rows["seasonal naive (steerdiff)"] = {
        **evaluate_forecast(ours_naive, test.future),
        "fit_s": None,
        "predict_s": time.perf_counter() - t0,
    }
    pasts = _pasts(series, test, args.peer_history)
    sf_rows, sf_naive = statsforecast_rows(pasts, horizon, season, target)
    rows.update(sf_rows)
    ours_point = ours_naive[:, 0].double().numpy()
    naive_gap = float((np.abs(sf_naive - ours_point) / np.abs(sf_naive).clip(1e-12)).max())
    budget = seconds if seconds is not None else args.gluonts_seconds
    gl_context = max(cfg.context_length, 2 * horizon)
    rows["GluonTS SimpleFeedForward"] = gluonts_row(
        train, pasts, _gluonts_freq(freq), horizon, gl_context, budget, samples, args.seed, target
    )
    for method, m in rows.items():
        out_rows.append({"dataset": name, "method": method, **m})
    notes.append(
        f"{name}: {len(test.history)} test windows of {horizon} points, season {season}; TSDiff "
        f"{s['hidden']} channels x {s['blocks']} blocks, state {s['d_state']}, {scaling} scaling, {steps} training "
        f"steps (batch 64; {_seconds(seconds)}), scale "
        f"{pipe.scale_for('quantile'):g}, {samples} paths, {s['num_steps']} DDPM steps; statsforecast on the last "
        f"{args.peer_history or 'all'} points before each window; SimpleFeedForward context {gl_context}, trained "
        f"{budget:.0f} s; statsforecast's SeasonalNaive point forecast and steerdiff's seasonal naive differ by at most "
        f"{naive_gap:.1e} relative (steerdiff returns float32)"
    )
    return {"naive_max_rel_diff": naive_gap, "train_steps": steps, "train_seconds": seconds}


def _sidecar(cache: Path, name: str, cfg, steps: int, seed: int) -> Path:
    key = json.dumps([name, dataclasses.asdict(cfg), steps, seed], sort_keys=True, default=str)
    import hashlib

    return cache / f"{name}_peers_train_seconds_{hashlib.sha1(key.encode()).hexdigest()[:10]}.json"


def _seconds(value: float | None) -> str:
    return "time not recorded" if value is None else f"{value:.0f} s"


def _gluonts_freq(freq) -> str:
    text = str(freq)
    return {"H": "h", "T": "min"}.get(text, text)


def _versions() -> dict:
    out = {}
    for mod in ("torch", "numpy", "pandas", "statsforecast", "gluonts", "lightning"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny TSDiff, few paths, one dataset: under a minute")
    p.add_argument(
        "--datasets",
        default=None,
        help="comma-separated (default: us_employment quick, else us_employment,elecdemand)",
    )
    p.add_argument(
        "--train-steps",
        type=int,
        default=None,
        help="TSDiff training steps (default: the benchmark's last checkpoint of the dataset)",
    )
    p.add_argument(
        "--peer-history",
        type=int,
        default=None,
        help="points before each window that statsforecast fits on (default 1008; quick 240)",
    )
    p.add_argument(
        "--gluonts-seconds",
        type=float,
        default=60.0,
        help="SimpleFeedForward's training time when TSDiff's is not known (a cached model)",
    )
    p.add_argument(
        "--cache", default=None, help="trained-model cache ('' turns it off; default the benchmark's)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    set_threads(args.threads)
    args.cache = None if args.cache == "" else Path(args.cache) if args.cache else default_cache()
    if args.peer_history is None:
        args.peer_history = 240 if args.quick else 1008
    base = QUICK if args.quick else FULL
    names = (args.datasets or ("us_employment" if args.quick else "us_employment,elecdemand")).split(",")
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        p.error(f"unknown dataset(s) {unknown}; choose from {sorted(DATASETS)}")
    rows, notes, extra = [], [], {}
    for name in names:
        extra[name] = run(name, setting(base, name), args, rows, notes)
    versions = _versions()
    notes.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    notes.append(
        f"torch threads {torch.get_num_threads()}; seconds are wall-clock on a possibly shared machine"
    )
    cols = ["dataset", "method", "crps", "nd", "nrmse", "fit_s", "predict_s"]
    print_table(
        "TSDiff beside statsforecast and GluonTS (test windows)",
        ["dataset", "method", "CRPS", "ND", "NRMSE", "fit s", "predict s"],
        [[r.get(c) for c in cols] for r in rows],
        notes,
    )
    if args.json:
        write_json(
            args.json,
            {
                "rows": rows,
                "notes": notes,
                "datasets": extra,
                "versions": versions,
                "environment": environment(),
                "command": "python benchmarks/timeseries_peers.py " + " ".join(sys.argv[1:]),
            },
        )


if __name__ == "__main__":
    main()
