"""The paper's comparisons on held-out rolling windows, shared by the CLI, the demo and the benchmark.

* :func:`compare_forecasters`: seasonal naive, linear (ridge), TSDiff-MS, TSDiff-Q, and both base forecasters
  refined by ML and by Langevin, as CRPS / ND / NRMSE with wall time;
* :func:`compare_missing`: TSDiff-Q under random missing and blackouts at the start and end of the context;
* :func:`compare_training_data`: the linear predictive score of synthetic vs real training windows.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

import torch

from .baselines import LinearForecaster, seasonal_naive
from .data import Series, TestWindows, parse_freq, training_windows
from .forecast import GuidanceDiverged, forecast, missing_mask, with_missing
from .metrics import evaluate_forecast
from .model import TSDiff
from .refine import refine
from .synthesis import generate, linear_predictive_score

__all__ = ["BASES", "GUIDED", "METHODS", "compare_forecasters", "compare_missing", "compare_training_data"]

BASES = ("seasonal_naive", "linear")
GUIDED = {"tsdiff_ms": "mse", "tsdiff_q": "quantile"}  # self-guided methods and their observation likelihood
METHODS = BASES + tuple(GUIDED) + tuple(f"{b}+{m}" for b in BASES for m in ("ml", "langevin"))


def guidance_scales(scale: float | Mapping[str, float]) -> dict[str, float]:
    """One guidance scale per self-guided method: ``scale`` for both, or a mapping with one value per key of
    :data:`GUIDED`."""
    if not isinstance(scale, Mapping):
        return dict.fromkeys(GUIDED, float(scale))
    if set(scale) != set(GUIDED):
        raise ValueError(
            f"scale: a mapping needs exactly one value per guided method {list(GUIDED)}, got "
            f"{sorted(scale)}; or pass one number for both"
        )
    return {m: float(scale[m]) for m in GUIDED}


def _timed(fn: Callable[[], torch.Tensor], test: TestWindows) -> tuple[dict, torch.Tensor | None]:
    """Metrics and samples of one method; a diverged guided run is reported (metrics None), not hidden."""
    t0 = time.perf_counter()
    try:
        samples = fn()
    except GuidanceDiverged as e:
        return {
            "crps": None,
            "nd": None,
            "nrmse": None,
            "seconds": time.perf_counter() - t0,
            "error": str(e),
        }, None
    metrics = evaluate_forecast(samples, test.future)
    metrics["seconds"] = time.perf_counter() - t0
    return metrics, samples


def base_forecasts(model: TSDiff, train: Sequence[Series], test: TestWindows) -> dict[str, torch.Tensor]:
    """Point forecasts (N, 1, pred) of the two base forecasters, the linear one (the paper's: mean scaling,
    whatever the model's scaling) fitted on every window of the ``train`` series."""
    spec = model.spec
    season = parse_freq(model.config.freq).season_length
    windows = training_windows(train, dataclasses.replace(spec, scaling="mean"))
    lin = LinearForecaster(spec.context_length, spec.prediction_length).fit(windows[:, 0])
    return {
        "seasonal_naive": seasonal_naive(test.history, spec.prediction_length, season),
        "linear": lin.predict(test.history),
    }


def compare_forecasters(
    model: TSDiff,
    train: Sequence[Series],
    test: TestWindows,
    *,
    methods=METHODS,
    num_samples: int = 100,
    scale: float | Mapping[str, float] = 4.0,
    solver: str = "ddpm",
    num_steps: int = 100,
    refine_steps: int = 20,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[dict, dict]:
    """Metrics and sample paths of every method in ``methods`` (see :data:`METHODS`); the linear base is
    fitted on the ``train`` series. ``scale``: the guidance scale of TSDiff-MS and TSDiff-Q, or one per
    method (see :func:`guidance_scales`; MS's squared error has an unbounded gradient, Q's pinball loss does
    not, so the two may want different scales)."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    scales = guidance_scales(scale)
    t0 = time.perf_counter()
    bases = base_forecasts(model, train, test) if set(methods) - set(GUIDED) else {}  # all others use them
    base_seconds = time.perf_counter() - t0
    sample_opts = {
        "num_samples": num_samples,
        "solver": solver,
        "num_steps": num_steps,
        "batch_size": batch_size,
        "generator": generator,
        "progress": progress,
    }
    runs = {
        m: (lambda m=m: forecast(model, test.history, guidance=GUIDED[m], scale=scales[m], **sample_opts))
        for m in GUIDED
    }
    for b in BASES:
        for m in ("ml", "langevin"):
            runs[f"{b}+{m}"] = lambda b=b, m=m: refine(
                model,
                test.history,
                bases[b],
                method=m,
                steps=refine_steps,
                num_samples=num_samples,
                generator=generator,
                progress=progress,
            )
    metrics, samples = {}, {}
    for name in methods:
        if name in bases:
            metrics[name], samples[name] = _timed(lambda b=bases[name]: b, test)
            metrics[name]["seconds"] = base_seconds
        else:
            metrics[name], samples[name] = _timed(runs[name], test)
    return metrics, samples


def compare_missing(
    model: TSDiff,
    test: TestWindows,
    scenarios=("none", "random", "blackout_start", "blackout_end"),
    *,
    guidance: str = "quantile",
    generator: torch.Generator | None = None,
    **options,
) -> dict:
    """TSDiff forecast metrics when half the context is missing (the same model for every scenario)."""
    spec, out = model.spec, {}
    for scenario in scenarios:
        mask = missing_mask(scenario, test.history.shape[0], spec.context_length, generator=generator)
        history = with_missing(test.history, mask)
        out[scenario], _ = _timed(
            lambda h=history: forecast(model, h, guidance=guidance, generator=generator, **options), test
        )
    return out


def compare_training_data(
    model: TSDiff,
    train: Sequence[Series],
    test: TestWindows,
    num_synthetic: int,
    *,
    solver: str = "ddpm",
    num_steps: int = 100,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> dict:
    """LPS (test CRPS of ridge trained on the windows, in the model's scaling) for the real windows of the
    ``train`` series and for ``num_synthetic`` synthetic ones."""
    real_windows = training_windows(train, model.spec)
    t0 = time.perf_counter()
    synthetic = generate(
        model, num_synthetic, solver=solver, num_steps=num_steps, generator=generator, progress=progress
    )
    seconds = time.perf_counter() - t0
    ctx, scaling = model.spec.context_length, model.spec.scaling
    return {
        "real": {
            "lps": linear_predictive_score(real_windows, test, ctx, scaling=scaling),
            "windows": real_windows.shape[0],
        },
        "synthetic": {
            "lps": linear_predictive_score(synthetic, test, ctx, scaling=scaling),
            "windows": num_synthetic,
            "seconds": seconds,
        },
    }
