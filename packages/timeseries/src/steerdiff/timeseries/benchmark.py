"""The TSDiff benchmark protocol: model selection on validation windows, a refit, and test scoring.

For each dataset and each window scaling (the paper's mean scaling, and standardisation) one unconditional
TSDiff model is trained on everything before the validation windows (the windows just before the held-out
rolling test windows); the scaling, checkpoint and guidance scale with the lowest validation CRPS of TSDiff-Q
are kept, as the TSDiff code selects checkpoints, and TSDiff-MS gets the scale with its own lowest validation
CRPS at that checkpoint. The selected configuration is then trained afresh (same step count; the seed of the
validation run or ``refit_seed``) on everything before the test windows, the data the baselines fit on, and
scored with ``test_samples`` sample paths per window (the paper's 100). Then, side by side on the test
windows:

* forecast CRPS (GluonTS mean_wQuantileLoss), ND, NRMSE and wall time of seasonal naive, linear (ridge),
  TSDiff-MS, TSDiff-Q, and both base forecasters refined by ML and by Langevin with the model's density;
* TSDiff-Q CRPS with half the context missing (random, blackout at the start, blackout at the end);
* LPS: test CRPS of ridge trained on synthetic windows vs on the real training windows.

Trained models are cached under a folder (``default_cache()``: ``$STEERDIFF_CACHE/timeseries/benchmark``), one
folder per dataset and configuration with resumable training checkpoints, a model bundle per snapshot and the
validation scores, so a second run only samples (and scores only what is missing, e.g. a scale added to the
grid). ``benchmarks/timeseries_tsdiff.py`` is the command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import torch

from steerdiff.core.benchmarking import Stopwatch, print_table, write_json
from steerdiff.core.runtime import cache_dir
from steerdiff.core.training import TrainConfig

from .baselines import seasonal_naive
from .data import (
    TestWindows,
    WindowSpec,
    lagged,
    load_dataset,
    parse_freq,
    scale_by_context,
    split_last,
    training_windows,
)
from .evaluation import GUIDED, METHODS, compare_forecasters, compare_missing, compare_training_data
from .forecast import ForecastRangeWarning
from .metrics import crps
from .model import TSDiffConfig
from .pipeline import TSDiffPipeline

__all__ = [
    "DATASETS",
    "FULL",
    "QUICK",
    "VALIDATION_METHODS",
    "claims",
    "default_cache",
    "hold_out",
    "model_config",
    "print_curve",
    "print_results",
    "refit",
    "run_dataset",
    "run_dir",
    "select",
    "setting",
    "train_config",
    "train_run",
    "validation_loss",
    "validation_run",
    "write_results",
]

# per dataset: window, lags, test windows, series used for testing. Lags: the day and the week for hourly data
# (the paper uses 24 x {1..7, 14, 21, 28}; two of them keep the model small), the year for monthly data.
DATASETS = {
    "elecdemand": {
        "context": 96,
        "prediction": 24,
        "lags": (24, 168),
        "test_windows": 7,
        "test_series": None,
    },
    "us_employment": {"context": 36, "prediction": 12, "lags": (12,), "test_windows": 1, "test_series": 24},
    "taylor": {"context": 96, "prediction": 24, "lags": (24, 168), "test_windows": 7, "test_series": None},
}
# the paper's backbone: 3 residual S4 blocks, 64 channels (d_state 64 instead of 128 to fit the CPU budget);
# init_skip: the network adds its input to its output (an option of the TSDiff code), see docs/timeseries.
# One rule for every dataset, as in the TSDiff code: train on the data before the validation windows, and keep
# the window scaling (of `scalings`), the checkpoint (of `checkpoints`, in steps of batch 64; 128 steps = one
# of the paper's epochs) and the guidance scale s (of `scales`; the paper uses s in 1..8 per dataset) with the
# lowest validation CRPS of TSDiff-Q; TSDiff-MS keeps its own best s at that checkpoint. s below 1: MS's
# squared-error guidance overshoots at s >= 2 on us_employment.
# `datasets` overrides the setting per dataset. Standard scaling won validation at every checkpoint on every
# dataset and the curves were still falling at 4000 steps, a thirtieth of the paper's 1000 epochs, so the
# standardised runs train on (resumed: the learning rate is constant): us_employment to 32000 steps (0.03 s a
# step), elecdemand to 16000 (0.27 s a step); taylor stays at 4000.
# `samples` paths per window score validation (the grid is large); `test_samples` (the paper's 100) the test.
FULL = {
    "hidden": 64,
    "blocks": 3,
    "d_state": 64,
    "init_skip": True,
    "scalings": ("mean", "standard"),
    "checkpoints": (2000, 4000),
    "scales": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0),
    "samples": 16,
    "test_samples": 100,
    "num_steps": 100,
    "refine_steps": 20,
    "synthetic": 500,
    "datasets": {
        "us_employment": {"scalings": ("standard",), "checkpoints": (2000, 4000, 8000, 16000, 32000)},
        "elecdemand": {"scalings": ("standard",), "checkpoints": (2000, 4000, 8000, 16000)},
    },
}
QUICK = {
    "hidden": 16,
    "blocks": 1,
    "d_state": 16,
    "init_skip": True,
    "scalings": ("mean", "standard"),
    "checkpoints": (75, 150),
    "scales": (4.0, 8.0),
    "samples": 8,
    "test_samples": 8,
    "num_steps": 25,
    "refine_steps": 10,
    "synthetic": 64,
    "max_test": 4,
    "datasets": {},
}


def default_cache() -> Path:
    """Where trained benchmark models are kept: ``$STEERDIFF_CACHE/timeseries/benchmark``."""
    return cache_dir("timeseries", "benchmark")


def model_config(
    name: str, d: dict, s: dict, series, context: int | None = None, scaling: str = "mean"
) -> TSDiffConfig:
    return TSDiffConfig(
        context or d["context"],
        d["prediction"],
        d["lags"],
        str(series[0].freq),
        s["hidden"],
        s["blocks"],
        s["d_state"],
        init_skip=s["init_skip"],
        scaling=scaling,
    )


def train_config(steps: int, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=64, lr=1e-3, grad_clip=0.5, ema_decay=0.995, seed=seed, checkpoint_every=200
    )


def run_dir(cache: Path | None, prefix: str, key: list) -> Path | None:
    """The cache folder of one training run: ``prefix`` and a hash of ``key`` (None without a cache)."""
    if cache is None:
        return None
    text = json.dumps(key, sort_keys=True, default=str)
    return cache / f"{prefix}_{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def train_run(
    cfg: TSDiffConfig,
    series,
    steps: int,
    seed: int,
    out: Path | None,
    device,
    *,
    test_windows: int,
    validation_windows: int = 0,
    source: str | None = None,
):
    """A TSDiff pipeline with seeded initial weights trained (or resumed from ``out``) to ``steps`` on
    everything before the last ``validation_windows + test_windows`` windows of ``series``: (pipeline, fit
    result, seconds of this call)."""
    with Stopwatch() as sw:
        pipe = TSDiffPipeline.train(
            series,
            cfg,
            train_config(steps, seed),
            test_windows=test_windows,
            validation_windows=validation_windows,
            source=source,
            out_dir=out,
            device=device,
            seed=seed,
        )
    return pipe, pipe.train_result, sw.seconds


def hold_out(series, spec: WindowSpec, d: dict, s: dict) -> tuple[list, TestWindows]:
    """The last ``test_windows`` rolling windows of every series, thinned to a spread across the series (the
    same for every method), and everything before them. Applied to the training part it carves the
    validation windows: the same number of windows, just before the test windows."""
    before, held = split_last(series, spec, d["test_windows"])
    keep = s.get("max_test") or (d["test_series"] and d["test_series"] * d["test_windows"])
    if keep:
        idx = torch.linspace(0, len(held.history) - 1, min(keep, len(held.history))).round().long()
        held.history, held.future = held.history[idx], held.future[idx]
        held.item_ids = [held.item_ids[i] for i in idx]
        held.starts = [held.starts[i] for i in idx]
    return before, held


def run_dataset(
    name: str,
    d: dict,
    s: dict,
    seed: int,
    device: str,
    cache: Path | None,
    train_only: bool = False,
    refit_seed: int | None = None,
    test_series: int | None = None,
    methods=METHODS,
) -> dict:
    """Validate (seed ``seed``), refit the selection (seed ``refit_seed``, default ``seed``) and score it on
    the test windows, sampling with ``seed``'s noise. ``test_series`` (0: all) replaces the dataset's number
    of test series for the test windows only; validation and training do not change. With ``methods`` other
    than all of them, only those forecasts are scored (no missing-value or LPS runs)."""
    refit_seed = seed if refit_seed is None else refit_seed
    series = load_dataset(name)
    curves = {
        sc: validation_run(name, d, s, s["checkpoints"], seed, device, cache, scaling=sc)
        for sc in s["scalings"]
    }
    scaling, steps, scale = select(curves)
    # TSDiff-MS samples the same model with its own scale: its lowest validation CRPS at the selected
    # checkpoint
    ms_row = next(r for r in curves[scaling]["rows"] if r["steps"] == steps)
    ms_scale = min(curves[scaling]["scales"], key=lambda v: (ms_row["tsdiff_ms"][str(v)], v))
    cfg = model_config(name, d, s, series, scaling=scaling)
    test_d = d if test_series is None else {**d, "test_series": test_series or None}
    train, test = hold_out(series, cfg.spec, test_d, s)  # all before the test windows: every method's data
    pipe, refit_seconds = refit(name, cfg, series, train, d["test_windows"], steps, refit_seed, device, cache)
    model = pipe.model
    spec: WindowSpec = model.spec
    config = {
        **test_d,
        "lags": list(d["lags"]),
        "series": len(series),
        "selected_scaling": scaling,
        "selected_steps": steps,
        "selected_scale": scale,
        "selected_scale_ms": ms_scale,
        "refit_seed": refit_seed,
        "validation_train_windows": curves[scaling]["train_windows"],
        "train_seconds": sum(r["train_seconds"] for curve in curves.values() for r in curve["rows"]),
        "refit_seconds": refit_seconds,
        "train_windows": len(training_windows(train, spec)),
        "test_windows": len(test.history),
        "test_samples": s["test_samples"],
    }
    if train_only:
        return {"config": config, "validation": curves}
    g = torch.Generator(model.device).manual_seed(seed)
    opts = {"num_samples": s["test_samples"], "scale": scale, "solver": "ddpm", "num_steps": s["num_steps"]}
    scales = {"tsdiff_q": scale, "tsdiff_ms": ms_scale}
    forecast, _ = compare_forecasters(
        model,
        train,
        test,
        methods=methods,
        refine_steps=s["refine_steps"],
        generator=g,
        **opts | {"scale": scales},
    )
    season = parse_freq(model.config.freq).season_length
    # not a paper baseline: seasonal naive with the longest lag as its season (a week for hourly data), the
    # information TSDiff gets from its lag channel; None where that is the ordinary season
    lag_naive = (
        crps(seasonal_naive(test.history, spec.prediction_length, spec.max_lag), test.future)
        if spec.max_lag > season
        else None
    )
    out = {"config": config, "validation": curves, "forecast": forecast, "seasonal_naive_max_lag": lag_naive}
    if set(methods) != set(METHODS):
        return out
    missing = {
        "none": forecast["tsdiff_q"],  # the same run as TSDiff-Q above
        **compare_missing(model, test, ("random", "blackout_start", "blackout_end"), generator=g, **opts),
    }
    lps = compare_training_data(model, train, test, s["synthetic"], num_steps=s["num_steps"], generator=g)
    return {**out, "missing": missing, "lps": lps}


def refit(
    name: str,
    cfg: TSDiffConfig,
    series: list,
    train: list,
    test_windows: int,
    steps: int,
    seed: int,
    device,
    cache: Path | None,
) -> tuple[TSDiffPipeline, float | None]:
    """The selected configuration trained afresh for ``steps`` on ``train`` (everything before the last
    ``test_windows`` windows of ``series``), seeded as the validation runs are; resumed from, or loaded from,
    the cache. Returns the pipeline and the training seconds of this call (None when loaded)."""
    windows = training_windows(train, cfg.spec)
    out = run_dir(
        cache,
        f"{name}_refit",
        [
            "refit",
            name,
            dataclasses.asdict(cfg),
            dataclasses.asdict(train_config(steps, seed)),
            list(windows.shape),
        ],
    )
    if out is not None and (out / "model").exists():
        return TSDiffPipeline.from_pretrained(out / "model", device=device), None
    pipe, _, seconds = train_run(
        cfg, series, steps, seed, out, device, test_windows=test_windows, source=name
    )
    if out is not None:
        pipe.save_pretrained(out / "model")
    print(name, f"refit on {len(windows)} windows, {steps} steps: {seconds:.0f} s", flush=True)
    return pipe, seconds


VALIDATION_METHODS = ("seasonal_naive", "linear", "seasonal_naive+ml", "linear+ml")


def validation_loss(model, held: TestWindows, seed: int, repeats: int = 32) -> float:
    """Mean denoising loss on the held-out windows (context scaled as in training), over ``repeats`` fixed
    draws of noise level and noise per window: the TSDiff code's other selection criterion."""
    spec = model.spec
    spans = torch.cat([held.history, held.future], 1)
    x0 = lagged(scale_by_context(spans, spec)[0], spec).float().repeat(repeats, 1, 1).to(model.device)
    g = torch.Generator(model.device).manual_seed(seed)
    sigma = model.schedule.sample_training_sigma(x0.shape[0], generator=g, device=model.device)
    noise = torch.randn(x0.shape, generator=g, device=model.device)
    with torch.no_grad():
        return float(model.denoiser.loss(x0, sigma, noise).mean())


def validation_run(
    name: str,
    d: dict,
    s: dict,
    steps,
    seed: int,
    device: str,
    cache: Path | None,
    context: int | None = None,
    methods=("seasonal_naive", "linear"),
    scaling: str = "mean",
) -> dict:
    """Train one run on everything before the validation windows (never touching the test windows) and score
    it on them after each step count in ``steps``: the CRPS of TSDiff-Q and TSDiff-MS at every scale in
    ``s["scales"]`` plus ``methods`` (at the first scale) and the denoising loss. Returns the curve. With a
    cache, the run keeps a snapshot per step count and the scores, so a second call only scores what is
    missing."""
    series = load_dataset(name)
    cfg = model_config(name, d, s, series, context, scaling)
    spec = cfg.spec
    before_test, _ = hold_out(series, spec, d, s)  # the test windows are dropped here, unseen
    train, val = hold_out(before_test, spec, d, s)
    windows = training_windows(train, spec)
    scales = [float(v) for v in s["scales"]]
    steps = sorted(int(n) for n in steps)
    # one resumable run per request: the key leaves out the step counts but their max
    out = run_dir(
        cache,
        f"{name}_val",
        [
            "validation",
            name,
            dataclasses.asdict(cfg),
            dataclasses.asdict(train_config(1, seed)),
            list(windows.shape),
            steps[-1],
            s["samples"],
            s["num_steps"],
        ],
    )
    done = {}
    if out is not None and (out / "validation.json").exists():
        done = {r["steps"]: r for r in json.loads((out / "validation.json").read_text())["rows"]}
    rows = []
    opts = {"num_samples": s["samples"], "solver": "ddpm", "num_steps": s["num_steps"]}
    for n in steps:
        row = done.get(n)
        snapshot = None if out is None else out / f"step_{n}"
        if row and snapshot.exists():
            pipe = None  # loaded below only if a score is missing
        else:
            pipe, result, seconds = train_run(
                cfg,
                series,
                n,
                seed,
                out,
                device,
                test_windows=d["test_windows"],
                validation_windows=d["test_windows"],
                source=name,
            )
            if result.step != n:
                raise RuntimeError(
                    f"{out} holds a run at step {result.step} > {n}; delete it or use another --cache"
                )
            if snapshot is not None:
                pipe.save_pretrained(snapshot)
            model = pipe.model
            row = {
                "steps": n,
                "epochs_of_128_batches": n / 128,
                "train_seconds": seconds,
                "train_loss_last_100": sum(result.losses[-100:]) / len(result.losses[-100:]),
                "val_loss": validation_loss(model, val, seed),
                "tsdiff_q": {},
            }
        missing_scales = [(m, v) for m in GUIDED for v in scales if str(v) not in row.get(m, {})]
        missing_methods = [m for m in methods if m not in row]
        if missing_scales or missing_methods:
            pipe = pipe or TSDiffPipeline.from_pretrained(snapshot, device=device)
            model = pipe.model
            if missing_methods:
                metrics, _ = compare_forecasters(
                    model,
                    train,
                    val,
                    methods=missing_methods,
                    scale=scales[0],
                    generator=torch.Generator(model.device).manual_seed(seed),
                    refine_steps=s["refine_steps"],
                    **opts,
                )
                row.update({m: metrics[m]["crps"] for m in missing_methods})
            for m, v in missing_scales:  # every scale sees the same noise
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ForecastRangeWarning)  # a sweep: the CRPS says it
                    paths = pipe.forecast(
                        val.history,
                        guidance=GUIDED[m],
                        scale=v,
                        generator=torch.Generator(model.device).manual_seed(seed),
                        **opts,
                    )
                row.setdefault(m, {})[str(v)] = crps(paths, val.future)
            print(name, f"{scaling} scaling, context {spec.context_length}", row, flush=True)
        rows.append(row)
        if out is not None:
            write_json(
                out / "validation.json",
                {
                    "rows": sorted(
                        {**done, **{r["steps"]: r for r in rows}}.values(), key=lambda r: r["steps"]
                    )
                },
            )
    curve = {
        "scaling": scaling,
        "context": spec.context_length,
        "train_windows": len(windows),
        "validation_windows": len(val.history),
        "scales": scales,
        "rows": rows,
    }
    return curve


def select(curves: dict) -> tuple[str, int, float]:
    """The (scaling, steps, scale) with the lowest validation CRPS of TSDiff-Q over ``curves`` (one per
    scaling); ties go to the earlier scaling, fewer steps, smaller s."""
    order = list(curves)
    best = min(
        (row["tsdiff_q"][str(v)], order.index(sc), row["steps"], v)
        for sc, curve in curves.items()
        for row in curve["rows"]
        for v in curve["scales"]
    )
    return order[best[1]], best[2], best[3]


def print_curve(name: str, curve: dict, methods=()) -> None:
    scales = curve["scales"]
    print_table(
        f"Validation, {name} ({curve.get('scaling', 'mean')} scaling, context {curve['context']}, "
        f"{curve['validation_windows']} windows before the test windows)",
        ["steps", "train s", "val loss", *[f"TSDiff-Q s={v:g}" for v in scales], *methods],
        [
            [
                r["steps"],
                r["train_seconds"],
                r["val_loss"],
                *[r["tsdiff_q"][str(v)] for v in scales],
                *[r[m] for m in methods],
            ]
            for r in curve["rows"]
        ],
        digits=4,
    )


def setting(base: dict, name: str, scaling: str | None = None) -> dict:
    """The setting for dataset ``name``: ``base`` with its per-dataset overrides, and only ``scaling`` if
    given."""
    out = {**base, **base["datasets"].get(name, {})}
    return {**out, "scalings": (scaling,)} if scaling else out


def _crps(results: dict, name: str, method: str) -> float:
    """A method's test CRPS; a diverged run (None) never wins."""
    v = results[name]["forecast"][method]["crps"]
    return float("inf") if v is None else v


def claims(results: dict, methods=METHODS) -> list[tuple[str, dict[str, bool]]]:
    """The paper's claims checked per dataset, for those whose methods were scored:
    ``[(claim, {dataset: holds})]``."""
    goals = [
        (
            "TSDiff-Q beats seasonal naive and linear",
            ("tsdiff_q", "seasonal_naive", "linear"),
            lambda n: (
                _crps(results, n, "tsdiff_q")
                < min(_crps(results, n, "seasonal_naive"), _crps(results, n, "linear"))
            ),
        )
    ]
    for b in ("seasonal_naive", "linear"):
        goals.append(
            (
                f"best refinement of {b} beats {b}",
                (b, f"{b}+ml", f"{b}+langevin"),
                lambda n, b=b: (
                    min(_crps(results, n, f"{b}+ml"), _crps(results, n, f"{b}+langevin"))
                    < _crps(results, n, b)
                ),
            )
        )
    return [
        (claim, {n: holds(n) for n in results}) for claim, needs, holds in goals if set(needs) <= set(methods)
    ]


def print_results(results: dict, methods=METHODS, notes=()) -> None:
    """The test tables of :func:`run_dataset` results, one column per dataset."""
    names = list(results)
    print_table(
        "Forecast CRPS",
        ["method", *names],
        [[m, *[results[n]["forecast"][m]["crps"] for n in names]] for m in methods],
        notes=list(notes),
    )
    print_table(
        "Wall time (s) per method, all test windows",
        ["method", *names],
        [[m, *[results[n]["forecast"][m]["seconds"] for n in names]] for m in methods],
    )
    lag_note = (
        "A week for hourly data: what TSDiff reads from its lag-168 channel. '-': the max lag is the "
        "ordinary season."
    )
    print_table(
        "Reference (not a paper baseline): seasonal naive with the longest lag as season",
        ["CRPS", *names],
        [["seasonal naive, season = max lag", *[results[n]["seasonal_naive_max_lag"] for n in names]]],
        notes=[lag_note],
    )
    first = next(iter(results.values()))
    if "missing" in first:
        print_table(
            "TSDiff-Q CRPS with half the context missing",
            ["scenario", *names],
            [[sc, *[results[n]["missing"][sc]["crps"] for n in names]] for sc in first["missing"]],
        )
        print_table(
            "Linear predictive score (ridge trained on the windows; test CRPS)",
            ["training data", *names],
            [[k, *[results[n]["lps"][k]["lps"] for n in names]] for k in ("real", "synthetic")],
        )
    print_table(
        "Paper claims, here (those whose methods were scored)",
        ["claim", *names],
        [[claim, *[holds[n] for n in names]] for claim, holds in claims(results, methods)],
    )


def write_results(path, obj: dict) -> Path:
    """Write a benchmark's JSON atomically."""
    return write_json(path, obj)
