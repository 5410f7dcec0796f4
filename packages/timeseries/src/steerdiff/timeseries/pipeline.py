"""The public entry point: one object that trains or loads a TSDiff model and does every job with it.

    from steerdiff.timeseries import TSDiffConfig, TSDiffPipeline, load_dataset

    series = load_dataset("elecdemand")
    pipe = TSDiffPipeline.train(series, TSDiffConfig(96, 24, lags=(168,), freq="H"), test_windows=7)
    pipe.save_pretrained("runs/elecdemand")
    pipe = TSDiffPipeline.from_pretrained("runs/elecdemand")
    train, test = pipe.split(series)              # the split the model was trained with
    paths = pipe.forecast(test.history, num_samples=100, seed=0)

``forecast`` / ``impute`` (self-guidance), ``refine`` (any base forecaster, with the model's density),
``synthesize`` (unconditional windows) and ``evaluate`` (the paper's comparisons) call the library functions
of :mod:`~steerdiff.timeseries.forecast`, :mod:`~steerdiff.timeseries.refine`,
:mod:`~steerdiff.timeseries.synthesis` and :mod:`~steerdiff.timeseries.evaluation`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from steerdiff.core.runtime import resolve_device
from steerdiff.core.training import TrainConfig, TrainResult
from steerdiff.core.tuning import TuningResult

from .data import Series, TestWindows, WindowSpec, parse_freq, split_last, training_windows
from .evaluation import (
    GUIDED,
    METHODS,
    base_forecasts,
    compare_forecasters,
    compare_missing,
    compare_training_data,
    guidance_scales,
)
from .forecast import ForecastRangeWarning, out_of_range, range_warning
from .forecast import forecast as _forecast
from .forecast import impute as _impute
from .model import NUM_STEPS, DataSplit, TSDiff, TSDiffConfig
from .refine import refine as _refine
from .synthesis import generate

__all__ = ["TSDiffPipeline"]


class TSDiffPipeline:
    """A TSDiff model with the data split it was trained with; forecast, impute, refine and synthesize.

    Build one with :meth:`train` (from series) or :meth:`from_pretrained` (a saved bundle); ``model`` is the
    underlying :class:`~steerdiff.timeseries.model.TSDiff` for the library functions.
    """

    def __init__(self, model: TSDiff):
        self.model = model
        self.train_result: TrainResult | None = None
        self.train_windows: int | None = None

    # ------------------------------------------------------------------------------------------ properties

    @property
    def config(self) -> TSDiffConfig:
        return self.model.config

    @property
    def spec(self) -> WindowSpec:
        return self.model.spec

    @property
    def data_split(self) -> DataSplit | None:
        return self.model.split

    @property
    def device(self) -> torch.device:
        return self.model.device

    def __repr__(self) -> str:
        c = self.config
        return (
            f"TSDiffPipeline(context={c.context_length}, prediction={c.prediction_length}, "
            f"lags={list(c.lags)}, freq={c.freq!r}, scaling={c.scaling!r}, device={self.device})"
        )

    # --------------------------------------------------------------------------------- training and files

    @classmethod
    def train(
        cls,
        series: Sequence[Series],
        config: TSDiffConfig,
        train_config: TrainConfig | None = None,
        *,
        test_windows: int = 1,
        validation_windows: int = 0,
        stride: int = 1,
        source: str | None = None,
        read: dict | None = None,
        out_dir=None,
        device=None,
        seed: int | None = None,
        progress: bool = False,
    ) -> TSDiffPipeline:
        """Train a model on everything before the last ``validation_windows + test_windows`` rolling windows
        of every series (``prediction_length`` points each) and remember that split.

        ``seed`` fixes the network's initial weights (training draws from ``train_config.seed``); ``out_dir``
        keeps resumable training checkpoints (``out_dir/checkpoint``); ``source`` names the data in the bundle
        (a dataset name or a file) so that later runs can default to it, ``read`` how the file was read
        (``freq``, ``start``, ``header``). The training curve is in ``pipeline.train_result``. Choose the
        guidance scale afterwards with :meth:`tune_scale` and the window scaling before with
        :meth:`choose_scaling` (both on the validation windows).
        """
        _check_freq(series, config)
        held = test_windows + validation_windows
        if test_windows < 1 or validation_windows < 0:
            raise ValueError(
                f"test_windows must be >= 1 and validation_windows >= 0, got {test_windows}, "
                f"{validation_windows}"
            )
        train, _ = split_last(series, config.spec, held)
        windows = training_windows(train, config.spec, stride)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)  # the network's initial weights
            model = TSDiff(
                config,
                split=DataSplit.of(
                    series, config.prediction_length, test_windows, validation_windows, source, read
                ),
            )
        pipe = cls(model)
        pipe.train_windows = int(windows.shape[0])
        pipe.train_result = model.fit(windows, train_config, out_dir, progress=progress, device=device)
        return pipe

    @classmethod
    def from_pretrained(cls, path, device="auto") -> TSDiffPipeline:
        """Load a model bundle (a folder written by :meth:`save_pretrained` or the ``train`` command)."""
        return cls(TSDiff.from_pretrained(path, device=resolve_device(device)))

    def save_pretrained(self, path) -> Path:
        """Write the model, its window, backbone and data split as a bundle to the folder ``path``."""
        return self.model.save_pretrained(path)

    def to(self, device) -> TSDiffPipeline:
        if isinstance(self.model.denoiser, torch.nn.Module):
            self.model.denoiser.to(resolve_device(device))
        return self

    # ----------------------------------------------------------------------------------------------- data

    def split(
        self, series: Sequence[Series], test_windows: int | None = None
    ) -> tuple[list[Series], TestWindows]:
        """(everything before the test windows, the rolling test windows) of ``series``, cut as the model's
        training data was.

        ``test_windows`` may ask for fewer test windows than the model holds out (the last ones), never more: a
        window the model was trained or validated on is refused, and so is a series whose training part differs
        from the one the model was trained on.
        """
        _check_freq(series, self.config)
        held = self.data_split
        n = test_windows if test_windows is not None else (held.test_windows if held else 1)
        train, test = split_last(series, self.spec, n)
        if held is not None:
            held.check_unseen(test.item_ids, test.starts, series)
        return train, test

    def validation(self, series: Sequence[Series], max_windows: int | None = None) -> TestWindows:
        """The validation windows of ``series`` (between the training part and the test windows), as the model
        was trained; an error when the model was trained without validation windows. ``max_windows`` keeps at
        most that many, evenly spread over them (the same ones every time)."""
        held = self.data_split
        if held is None or held.validation_windows < 1:
            raise ValueError(
                "the model was trained without validation windows; train with validation_windows >= 1 "
                "(--validation-windows) to choose settings on them, or pin the settings"
            )
        _check_freq(series, self.config)
        before, _ = split_last(series, self.spec, held.test_windows)
        _, val = split_last(before, self.spec, held.validation_windows)
        known = {row["item_id"]: row for row in held.series}
        for item, t0 in zip(val.item_ids, val.starts, strict=True):
            row = known.get(item)
            if row is not None and t0 < row["train_end"]:
                raise ValueError(
                    f"series {item!r} is not the data the model was trained on (its validation windows would "
                    "overlap the training part); give the training data"
                )
        n = len(val.history)
        if max_windows is not None and n > max_windows:
            keep = torch.linspace(0, n - 1, max_windows).round().long().unique().tolist()
            val = TestWindows(
                val.history[keep],
                val.future[keep],
                [val.item_ids[i] for i in keep],
                [val.starts[i] for i in keep],
            )
        return val

    # ---------------------------------------------------------------------------------------------- jobs

    def _generator(self, generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
        if generator is not None or seed is None:
            return generator
        return torch.Generator(self.device).manual_seed(int(seed))

    def _run(self, fn, num_items: int, shards, chunk_size: int, seed: int | None, generator, progress: bool):
        """``fn(start, stop, generator, progress)`` over every item: in one call, or in resumable chunks when
        ``shards`` names a folder."""
        if shards is None:
            return fn(0, num_items, self._generator(generator, seed), progress)
        return self._in_shards(
            lambda a, b, g: fn(a, b, g, False), num_items, shards, chunk_size, seed, progress
        )

    def _in_shards(self, fn, num_items: int, shards, chunk_size: int, seed: int | None, progress: bool):
        """Run ``fn(start, stop, generator)`` over items in chunks with the core's sharded sampler."""
        from steerdiff.core.sharding import join_process_group, sample_in_shards

        join_process_group()  # once per process, so that several sharded jobs can follow each other
        device = self.device

        def job(start, stop, generator):
            chunk_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            return fn(start, stop, torch.Generator(device).manual_seed(chunk_seed))

        return sample_in_shards(
            job,
            num_items,
            shards,
            chunk_size=chunk_size,
            seed=0 if seed is None else int(seed),
            progress=progress,
        )

    def forecast(
        self,
        history: torch.Tensor,
        *,
        num_samples: int = 100,
        guidance: str = "quantile",
        scale: float | None = None,
        solver: str = "ddpm",
        num_steps: int = NUM_STEPS,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        progress: bool = False,
        shards=None,
        chunk_size: int = 16,
        **solver_options,
    ) -> torch.Tensor | None:
        """Sample paths of the next ``prediction_length`` points: history (N, max_lag + context) ->
        (N, S, pred).

        NaN in the history marks missing points. ``guidance``: "quantile" (TSDiff-Q), "mse" (TSDiff-MS) or
        "none"; ``scale``: the paper's s, by default the one chosen on the validation windows
        (:meth:`tune_scale`; 4 when none was). ``seed`` (or a ``generator``) makes the draw repeatable. A
        median forecast that leaves the plausible range of its context raises a ``ForecastRangeWarning`` with
        the fix. ``shards`` (a folder) samples in chunks of ``chunk_size`` items with
        :func:`steerdiff.core.sample_in_shards`: resumable, split over the processes of a ``torchrun`` launch,
        and equal whatever their number (each chunk draws from its own seed, ``seed`` or 0); rank 0 gets the
        result, the other ranks ``None``.
        """
        s = self.scale_for(guidance, scale)
        history = torch.as_tensor(history, dtype=torch.float32)
        history = history[None] if history.ndim == 1 else history
        opts = {
            "num_samples": num_samples,
            "guidance": guidance,
            "scale": s,
            "solver": solver,
            "num_steps": num_steps,
            "batch_size": batch_size,
            **solver_options,
        }
        paths = self._run(
            lambda a, b, g, p: _forecast(self.model, history[a:b], generator=g, progress=p, **opts),
            history.shape[0],
            shards,
            chunk_size,
            seed,
            generator,
            progress,
        )
        if paths is not None and guidance != "none":
            report = out_of_range(history, paths, self.spec.context_length)
            message = range_warning(report, guidance, s, tuned=scale is None and guidance in self.model.tuned)
            if message:
                warnings.warn(message, ForecastRangeWarning, stacklevel=2)
        return paths

    def impute(
        self,
        y: torch.Tensor,
        *,
        num_samples: int = 100,
        guidance: str = "quantile",
        scale: float | None = None,
        solver: str = "ddpm",
        num_steps: int = NUM_STEPS,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        progress: bool = False,
        shards=None,
        chunk_size: int = 16,
        **solver_options,
    ) -> torch.Tensor | None:
        """Fill the NaNs of windows (N, max_lag + context + prediction): samples (N, S, context + prediction)
        that keep every observed value exactly. ``shards`` (a folder) samples in chunks of ``chunk_size`` items with
        :func:`steerdiff.core.sample_in_shards`: resumable, split over the processes of a ``torchrun`` launch,
        and equal whatever their number (each chunk draws from its own seed, ``seed`` or 0); rank 0 gets the
        result, the other ranks ``None``."""
        y = torch.as_tensor(y, dtype=torch.float32)
        y = y[None] if y.ndim == 1 else y
        opts = {
            "num_samples": num_samples,
            "guidance": guidance,
            "scale": self.scale_for(guidance, scale),
            "solver": solver,
            "num_steps": num_steps,
            "batch_size": batch_size,
            **solver_options,
        }
        return self._run(
            lambda a, b, g, p: _impute(self.model, y[a:b], generator=g, progress=p, **opts),
            y.shape[0],
            shards,
            chunk_size,
            seed,
            generator,
            progress,
        )

    def scale_for(self, guidance: str, scale: float | None = None) -> float:
        """``scale`` when given, else the scale chosen on the validation windows for ``guidance`` (4 when the
        model has none)."""
        return float(scale) if scale is not None else self.model.guidance_scale(guidance)

    def tune_scale(
        self,
        series: Sequence[Series],
        guidance: str = "quantile",
        *,
        low: float = 0.1,
        high: float = 64.0,
        budget: int = 8,
        num_samples: int = 16,
        num_steps: int = NUM_STEPS,
        solver: str = "ddpm",
        batch_size: int | None = None,
        max_windows: int | None = 64,
        seed: int = 0,
        progress: bool = False,
    ) -> TuningResult:
        """Choose the self-guidance scale of ``guidance`` by the CRPS on the validation windows of ``series``
        (the model's split), searched on a log scale in [``low``, ``high``] with ``budget`` evaluations
        (:func:`steerdiff.core.tune`; every evaluation uses the same noise) on at most ``max_windows`` of
        them, evenly spread. The choice is kept in the model
        (saved with the bundle) and becomes the default ``scale`` of :meth:`forecast` and :meth:`impute`."""
        from steerdiff.core.tuning import LogRange, tune

        from .forecast import GuidanceDiverged
        from .metrics import crps

        val = self.validation(series, max_windows)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=budget, desc=f"choosing the {guidance} scale", leave=False)

        def objective(params):
            g = torch.Generator(self.device).manual_seed(seed)
            try:
                paths = _forecast(
                    self.model,
                    val.history,
                    num_samples=num_samples,
                    guidance=guidance,
                    scale=params["scale"],
                    solver=solver,
                    num_steps=num_steps,
                    batch_size=batch_size,
                    generator=g,
                )
                score = crps(paths, val.future)
            except GuidanceDiverged:
                score = float("inf")
            if bar is not None:
                bar.update()
            return score

        try:
            result = tune(objective, {"scale": LogRange(low, high)}, budget=budget)
        finally:
            if bar is not None:
                bar.close()
        self.model.tuned[guidance] = {
            "scale": result.best["scale"],
            "validation_crps": result.score,
            "at_edge": bool(result.at_edge),
            "curve": [[v, sc] for v, sc in result.curve("scale")],
            "validation_windows": len(val.history),
            "num_samples": num_samples,
        }
        return result

    @classmethod
    def choose_scaling(
        cls,
        series: Sequence[Series],
        config: TSDiffConfig,
        train_config: TrainConfig | None = None,
        *,
        test_windows: int = 1,
        validation_windows: int = 1,
        stride: int = 1,
        scale: float = 4.0,
        num_samples: int = 16,
        num_steps: int = NUM_STEPS,
        max_windows: int | None = 64,
        device=None,
        seed: int | None = None,
        progress: bool = False,
    ) -> tuple[str, dict]:
        """The window scaling (of :data:`~steerdiff.timeseries.data.SCALINGS`) whose model forecasts the
        validation windows best: one model per scaling is trained with ``train_config`` (a short pilot is
        enough) and scored by TSDiff-Q's CRPS at ``scale``. Returns (the choice, the CRPS of each)."""
        import dataclasses

        from .data import SCALINGS
        from .metrics import crps

        if validation_windows < 1:
            raise ValueError(
                "choosing the scaling needs validation windows; give validation_windows >= 1 or pin the scaling"
            )
        scores = {}
        for scaling in SCALINGS:
            pilot = cls.train(
                series,
                dataclasses.replace(config, scaling=scaling),
                train_config,
                test_windows=test_windows,
                validation_windows=validation_windows,
                stride=stride,
                device=device,
                seed=seed,
                progress=progress,
            )
            val = pilot.validation(series, max_windows)
            g = torch.Generator(pilot.device).manual_seed(0 if seed is None else seed)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ForecastRangeWarning)  # a pilot: only its score counts
                    paths = pilot.forecast(
                        val.history, num_samples=num_samples, scale=scale, num_steps=num_steps, generator=g
                    )
                scores[scaling] = crps(paths, val.future)
            except ValueError:  # GuidanceDiverged
                scores[scaling] = float("inf")
        return min(scores, key=scores.get), scores

    def refine(
        self,
        history: torch.Tensor,
        base: torch.Tensor | str,
        *,
        method: str = "ml",
        regularizer: str = "quantile",
        steps: int = 20,
        num_samples: int | None = None,
        train: Sequence[Series] | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        progress: bool = False,
        shards=None,
        chunk_size: int = 16,
        **options,
    ) -> torch.Tensor | None:
        """Refine a base forecaster's sample paths (N, S_base, pred) given history (N, max_lag + context).

        ``base`` may also name a built-in base forecaster, "seasonal_naive" or "linear" (the ridge is fitted
        on ``train``, the series before the test windows). ``method``: "ml" or "langevin"; ``steps``:
        refinement iterations. Returns (N, S, pred). ``shards`` (a folder) samples in chunks of ``chunk_size`` items with
        :func:`steerdiff.core.sample_in_shards`: resumable, split over the processes of a ``torchrun`` launch,
        and equal whatever their number (each chunk draws from its own seed, ``seed`` or 0); rank 0 gets the
        result, the other ranks ``None``.
        """
        if isinstance(base, str):
            base = self.base_forecast(base, history, train)
        history = torch.as_tensor(history, dtype=torch.float32)
        base = torch.as_tensor(base, dtype=torch.float32)
        opts = {
            "method": method,
            "regularizer": regularizer,
            "steps": steps,
            "num_samples": num_samples,
            **options,
        }
        if shards is not None:
            if history.ndim != 2 or base.ndim != 3 or base.shape[0] != history.shape[0]:
                raise ValueError(
                    f"history (N, {self.spec.history_length}) and base (N, samples, "
                    f"{self.spec.prediction_length}) must have the same N, got {tuple(history.shape)} and "
                    f"{tuple(base.shape)}"
                )
        return self._run(
            lambda a, b, g, p: _refine(self.model, history[a:b], base[a:b], generator=g, progress=p, **opts),
            history.shape[0],
            shards,
            chunk_size,
            seed,
            generator,
            progress,
        )

    def base_forecast(
        self, name: str, history: torch.Tensor, train: Sequence[Series] | None = None
    ) -> torch.Tensor:
        """A built-in base forecaster's point forecast (N, 1, pred): "seasonal_naive" or "linear" (needs
        ``train``)."""
        if name not in ("seasonal_naive", "linear"):
            raise ValueError(
                f"unknown base forecaster {name!r}; choose seasonal_naive or linear, or pass sample "
                "paths (N, samples, prediction_length)"
            )
        history = torch.as_tensor(history, dtype=torch.float32)
        if name == "linear" and train is None:
            raise ValueError("the linear base forecaster is fitted on training series; pass train=...")
        test = TestWindows(history, torch.zeros(history.shape[0], self.spec.prediction_length))
        if name == "seasonal_naive" and train is None:
            from .baselines import seasonal_naive

            return seasonal_naive(
                history, self.spec.prediction_length, parse_freq(self.config.freq).season_length
            )
        return base_forecasts(self.model, train, test)[name]

    def synthesize(
        self,
        n: int,
        *,
        solver: str = "ddpm",
        num_steps: int = NUM_STEPS,
        batch_size: int = 1024,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        progress: bool = False,
        shards=None,
        chunk_size: int = 16,
    ) -> torch.Tensor | None:
        """``n`` unconditional windows (n, channels, context + prediction) in the model's scaled units.
        ``shards`` (a folder) samples in chunks of ``chunk_size`` items with
        :func:`steerdiff.core.sample_in_shards`: resumable, split over the processes of a ``torchrun`` launch,
        and equal whatever their number (each chunk draws from its own seed, ``seed`` or 0); rank 0 gets the
        result, the other ranks ``None``."""
        return self._run(
            lambda a, b, g, p: generate(
                self.model,
                b - a,
                solver=solver,
                num_steps=num_steps,
                batch_size=batch_size,
                generator=g,
                progress=p,
            ),
            n,
            shards,
            chunk_size,
            seed,
            generator,
            progress,
        )

    def evaluate(
        self,
        train: Sequence[Series],
        test: TestWindows,
        *,
        methods=METHODS,
        missing: bool = True,
        num_samples: int = 100,
        scale: float | Mapping[str, float] | None = None,
        solver: str = "ddpm",
        num_steps: int = NUM_STEPS,
        refine_steps: int = 20,
        num_synthetic: int = 1000,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> dict:
        """The paper's comparisons on the test windows: ``forecast`` (the CRPS, ND, NRMSE and seconds of each
        of ``methods``, see :data:`~steerdiff.timeseries.evaluation.METHODS`), ``missing`` (TSDiff-Q with half
        the context missing; skipped with ``missing=False``), ``lps`` (synthetic against real training windows;
        skipped with ``num_synthetic=0``), ``best`` (the lowest CRPS), ``scales`` (the guidance scale of each
        self-guided method: ``scale``, or the ones chosen on validation) and ``samples`` (each method's
        paths)."""
        g = self._generator(generator, seed)
        if scale is None:
            scale = {m: self.scale_for(GUIDED[m]) for m in GUIDED}
        scales = guidance_scales(scale)
        opts = {
            "num_samples": num_samples,
            "solver": solver,
            "num_steps": num_steps,
            "batch_size": batch_size,
            "progress": progress,
        }
        metrics, samples = compare_forecasters(
            self.model,
            train,
            test,
            methods=methods,
            scale=scales,
            refine_steps=refine_steps,
            generator=g,
            **opts,
        )
        out = {"forecast": metrics, "scales": scales}
        if missing:
            out["missing"] = compare_missing(self.model, test, generator=g, scale=scales["tsdiff_q"], **opts)
        if num_synthetic:
            out["lps"] = compare_training_data(
                self.model,
                train,
                test,
                num_synthetic,
                solver=solver,
                num_steps=num_steps,
                generator=g,
                progress=progress,
            )
        scored = [k for k in metrics if metrics[k]["crps"] is not None]
        out["best"] = min(scored, key=lambda k: metrics[k]["crps"]) if scored else None
        out["samples"] = samples
        return out


def _check_freq(series: Sequence[Series], config: TSDiffConfig) -> None:
    if not series:
        raise ValueError("no series given")
    model = parse_freq(config.freq)
    other = [s for s in series if s.freq != model]
    if other:
        raise ValueError(
            f"series {other[0].item_id!r} has frequency {other[0].freq}, but the model works on "
            f"{model}; give data of frequency {model} (or train a model for {other[0].freq})"
        )
