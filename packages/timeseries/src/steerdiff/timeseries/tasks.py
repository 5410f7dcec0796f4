"""Guided tasks for the guidance matrix (``steerdiff.core.matrix``): forecasting and imputation with TSDiff.

One unconditional TSDiff model per dataset is the prior; a sample is a whole window (context + horizon, every
lag channel) in the model's scaled units. One instance is one held-out window:

* **forecast** — the context is observed, the horizon is not;
* **impute** — the horizon and half the context are observed, the other half of the context is missing
  (``random`` points or a ``blackout_start`` / ``blackout_end`` block, the domain's missing-value scenarios).

The guidance targets all speak of the observed entries of the window (every channel, lags included), as
TSDiff's self-guidance does:

* ``loss``: the sum of squared errors on the observed entries (TSDiff-MS's self-guidance loss) -> ``dps``,
  the family TSDiff's self-guidance belongs to;
* ``known``: (mask, values) of the observed entries -> ``inpainting``;
* ``reward``: minus the loss -> ``best_of_n``, ``scg``, ``tree``, ``smc``;
* ``forward``: x -> the observed entries of x, flattened, with ``observation`` their values and a small
  ``noise_std`` -> ``enkg``.

The metric is the normalized CRPS (GluonTS mean_wQuantileLoss, the domain's :func:`~.metrics.crps`) of the
scored points (the horizon, or the missing context points) against the truth, over the samples drawn for one
window, in the data's original units; beside it the ND and the scaled MSE of the mean of the samples.

Validation windows come from the validation part of the model's split, test windows from its test part; the
model never trained on either.

    from steerdiff.timeseries import guided_tasks
    from steerdiff.core.matrix import run_matrix
    cells = run_matrix(guided_tasks(quick=True), [32, 128])
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import torch

from steerdiff.core.matrix import GuidedTask, Target
from steerdiff.core.runtime import cache_dir, resolve_device

from .data import TestWindows, lagged, load_dataset, scale_by_context
from .forecast import SCENARIOS, missing_mask
from .guidance import ObservationLoss
from .model import TSDiff

__all__ = ["KINDS", "TimeSeriesTask", "guided_tasks", "task_prior"]

KINDS = ("forecast", "impute")
DATASET = "us_employment"  # 148 monthly series: the most windows for validation and test, and short ones
NOISE_STD = 0.05  # EnKG's measurement noise on the observed entries, in scaled units (the data are exact)
# sampler steps: the matrix's defaults (TSDiff itself uses 100 DDPM steps)
STEPS = {True: 8, False: 16}
# training steps of the prior: the benchmark's quick checkpoint, and its first full checkpoint (the longest
# that trains within about ten minutes on one CPU thread)
TRAIN_STEPS = {True: 150, False: 2000}
# the run's settings for these tasks: the benchmark's defaults are too many network evaluations for the S4D
# prior within the time the matrix may take (quick: about 10 s of CPU for both tasks; full: about 13 minutes on
# one thread). tune_budget 5 is the search's whole coarse grid of each strength range.
SETTINGS = {
    True: {"num_samples": 8, "validation": 1, "test": 2, "tune_budget": 3},
    False: {"num_samples": 16, "validation": 1, "test": 8, "tune_budget": 5},
}


class TimeSeriesTask(GuidedTask):
    """Forecast or impute held-out windows with a TSDiff prior.

    ``model``: a :class:`~steerdiff.timeseries.model.TSDiff`; ``validation`` / ``test``: held-out windows
    (:class:`~steerdiff.timeseries.data.TestWindows`, data units) the model never trained on; ``kind``:
    "forecast" or "impute"; ``scenario``: which context points are missing for "impute" (``random``,
    ``blackout_start``, ``blackout_end``; half the context); ``steps``: sampler steps.
    """

    paper_family = "dps"  # TSDiff's self-guidance: reconstruction guidance on the observed entries
    solver = "ddpm"

    def __init__(
        self,
        model: TSDiff,
        validation: TestWindows,
        test: TestWindows,
        kind: str = "forecast",
        scenario: str = "random",
        steps: int = 16,
        name: str | None = None,
        settings: dict | None = None,
        noise_std: float = NOISE_STD,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown task kind {kind!r}; choose one of {list(KINDS)}")
        if kind == "impute" and scenario not in SCENARIOS[1:]:
            raise ValueError(
                f"unknown missing-value scenario {scenario!r} for imputation; choose one of {list(SCENARIOS[1:])}"
            )
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not noise_std > 0:
            raise ValueError(f"noise_std must be > 0 (EnKG's measurement noise), got {noise_std}")
        spec = model.spec
        for split, w in (("validation", validation), ("test", test)):
            if w.history.ndim != 2 or w.history.shape[1] != spec.history_length:
                raise ValueError(
                    f"{split} windows must have history (N, {spec.history_length}) for this model, got "
                    f"{tuple(w.history.shape)}"
                )
            if w.future.shape != (w.history.shape[0], spec.prediction_length):
                raise ValueError(
                    f"{split} windows must have future (N, {spec.prediction_length}), got {tuple(w.future.shape)}"
                )
        self.model, self.kind, self.scenario = model, kind, scenario
        self.windows = {"validation": validation, "test": test}
        self.noise_std = float(noise_std)
        self.device = model.device
        self._sigmas = model.sigmas(steps)
        self.name = name or (
            f"timeseries forecast ({DATASET})"
            if kind == "forecast"
            else f"timeseries impute, {scenario} ({DATASET})"
        )
        what = "horizon" if kind == "forecast" else "missing context points"
        self.metric = f"CRPS of the {what} (normalized, 1 = the mean |y|)"
        self.settings = dict(settings or {})
        self._cache: dict = {}

    def prior(self):
        return self.model.denoiser, (self.model.spec.channels, self.model.spec.length)

    def sigmas(self):
        return self._sigmas

    def instances(self, split: str, count: int):
        """``count`` windows of ``split``, evenly spread over them (the same ones every call)."""
        if split not in self.windows:
            raise ValueError(f"unknown split {split!r}; choose 'validation' or 'test'")
        w = self.windows[split]
        n = w.history.shape[0]
        if not 1 <= count <= n:
            raise ValueError(f"ask for 1 to {n} {split} windows (the {split} part holds {n}), got {count}")
        key = (split, count)
        if key not in self._cache:
            idx = torch.linspace(0, n - 1, count).round().long().tolist()
            offset = {"validation": 0, "test": 1_000_003}[split]
            self._cache[key] = [self._instance(w.history[i], w.future[i], offset + i) for i in idx]
        return self._cache[key]

    def _instance(self, history: torch.Tensor, future: torch.Tensor, seed: int) -> tuple[Target, dict]:
        spec = self.model.spec
        y = torch.cat([history, future]).double()  # (span,) data units
        unknown = torch.zeros(spec.length, dtype=torch.bool)  # channel 0 points that are not observed
        if self.kind == "forecast":
            unknown[spec.context_length :] = True
        else:
            gen = torch.Generator().manual_seed(seed)
            unknown[: spec.context_length] = missing_mask(
                self.scenario, 1, spec.context_length, generator=gen
            )[0]
        observed_y = y.clone()
        observed_y[spec.max_lag :] = observed_y[spec.max_lag :].masked_fill(unknown, float("nan"))
        scaled, loc, scale = scale_by_context(observed_y[None], spec)  # scaled by the observed context
        obs = lagged(scaled, spec).float()  # (1, C, L), NaN where unknown (lag channels included)
        mask = torch.isfinite(obs[0])
        values = torch.nan_to_num(obs[0], nan=0.0)
        loss = ObservationLoss(obs.to(self.device))
        device_mask = mask.to(self.device)
        target = Target(
            loss=loss,
            reward=lambda x0: -loss(x0),
            forward=lambda x0: x0[:, device_mask],
            observation=values[mask].to(self.device),
            known=(device_mask, values.to(self.device)),
            noise_std=self.noise_std,
        )
        context = {
            "truth": y[spec.max_lag :],  # (L,) data units
            "truth_scaled": ((y - loc[0]) / scale[0])[spec.max_lag :],
            "scored": unknown,
            "loc": float(loc),
            "scale": float(scale),
        }
        return target, context

    def score(self, context: dict, x: torch.Tensor) -> dict[str, float]:
        """CRPS of the scored points over the samples ``x`` (S, C, L), with the ND and the scaled MSE of their
        mean; infinite when a sample is not finite (a diverged guidance)."""
        from .metrics import crps

        if x.ndim != 3 or x.shape[1:] != (self.model.spec.channels, self.model.spec.length):
            raise ValueError(
                f"samples must have shape (S, {self.model.spec.channels}, {self.model.spec.length}), got "
                f"{tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            return {"crps": float("inf"), "nd_mean": float("inf"), "mse_scaled": float("inf")}
        pick = context["scored"]
        scaled = x[:, 0].detach().cpu().double()[:, pick]  # (S, k)
        paths = scaled * context["scale"] + context["loc"]
        truth = context["truth"][pick]
        mean = paths.mean(0)
        return {
            "crps": crps(paths[None], truth[None]),
            "nd_mean": float((truth - mean).abs().sum() / truth.abs().sum()),
            "mse_scaled": float((scaled.mean(0) - context["truth_scaled"][pick]).pow(2).mean()),
        }


def task_prior(quick: bool, *, device="auto", seed: int = 0) -> tuple[TSDiff, TestWindows, TestWindows]:
    """The prior of the guided tasks and its held-out windows: (model, validation windows, test windows).

    The model is the domain benchmark's configuration for ``us_employment`` (quick: its tiny one), standard
    scaling, trained with the benchmark's settings on everything before the last two windows of every series
    (one validation, one test window each); trained once and cached under
    ``$STEERDIFF_CACHE/timeseries/guided_tasks`` with its windows, so a second call only loads.
    """
    from . import benchmark as bench
    from .pipeline import TSDiffPipeline

    d = bench.DATASETS[DATASET]
    s = bench.setting(bench.QUICK if quick else bench.FULL, DATASET, "standard")
    steps = TRAIN_STEPS[quick]
    # the key holds everything the model depends on except the data, which a name fixes
    sizes = {k: s[k] for k in ("hidden", "blocks", "d_state", "init_skip")}
    key = ["guided_tasks", DATASET, d["context"], d["prediction"], list(d["lags"]), sizes]
    key.append(dataclasses.asdict(bench.train_config(steps, seed)))
    out = bench.run_dir(
        cache_dir("timeseries", "guided_tasks"), f"{DATASET}_{'quick' if quick else 'full'}", key
    )
    device = resolve_device(device)
    windows = out / "windows.safetensors"
    if (out / "model").exists() and windows.exists():
        model = TSDiff.from_pretrained(out / "model", device=device)
        return (model, *_load_windows(windows))
    series = load_dataset(DATASET)
    cfg = bench.model_config(DATASET, d, s, series, scaling="standard")
    pipe, _, seconds = bench.train_run(
        cfg, series, steps, seed, out, device, test_windows=1, validation_windows=1, source=DATASET
    )
    pipe.save_pretrained(out / "model")
    validation = pipe.validation(series)
    _, test = pipe.split(series)
    _save_windows(windows, validation, test)
    model = TSDiffPipeline.from_pretrained(out / "model", device=device).model
    return model, validation, test


def _save_windows(path: Path, validation: TestWindows, test: TestWindows) -> None:
    from safetensors.torch import save_file

    tensors = {
        "validation_history": validation.history,
        "validation_future": validation.future,
        "test_history": test.history,
        "test_future": test.future,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    save_file({k: v.contiguous().double() for k, v in tensors.items()}, tmp)
    os.replace(tmp, path)


def _load_windows(path: Path) -> tuple[TestWindows, TestWindows]:
    from safetensors.torch import load_file

    t = load_file(path)
    return (
        TestWindows(t["validation_history"], t["validation_future"]),
        TestWindows(t["test_history"], t["test_future"]),
    )


def guided_tasks(quick: bool, *, device="auto") -> list[TimeSeriesTask]:
    """The domain's guided tasks on ``us_employment``: forecasting, and imputation with half the context missing
    at random. ``quick``: the tiny cached prior and 8 sampler steps; otherwise the benchmark's model and 16."""
    model, validation, test = task_prior(quick, device=device)
    opts = {"steps": STEPS[quick], "settings": SETTINGS[quick]}
    return [
        TimeSeriesTask(model, validation, test, "forecast", **opts),
        TimeSeriesTask(model, validation, test, "impute", "random", **opts),
    ]
