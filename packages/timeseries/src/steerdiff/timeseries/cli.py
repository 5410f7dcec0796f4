"""steerdiff-timeseries: data -> train -> forecast / impute / refine / synthesize -> evaluate, and demo.

Data is a bundled dataset name (elecdemand, taylor, us_employment), gluonts:<name> already on disk, or your own
file: wide or long (unique_id,ds,y) CSV/TSV/TXT with or without a header or a time column (--freq and --start
for a bare matrix), GluonTS JSON lines, Parquet, optionally .gz/.bz2/.xz/.zip (docs/timeseries/data.md).
`train` holds out the last --test-windows x prediction points of every series (and --validation-windows before
them, where the guidance scale and the window scaling are chosen) and writes a model bundle that remembers the
data and the split, so the other commands need only --model; a window the model was trained on is never
scored. Every command writes summary.json (and its files) into --out; --json prints the whole summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from steerdiff.core.command import (
    UsageError,
    add_command_presets,
    add_runtime_flags,
    add_sampling_flags,
    existing_dir,
    make_parser,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    run_command,
    subcommands,
)
from steerdiff.core.io import atomic_open, save_figure
from steerdiff.core.sharding import shard_options
from steerdiff.core.training import TrainConfig

from .data import DATASETS, SCALINGS, load_series, parse_freq, to_entries
from .evaluation import GUIDED, METHODS
from .forecast import SCENARIOS, ForecastRangeWarning, missing_mask, with_missing
from .metrics import evaluate_forecast
from .model import TSDiffConfig
from .pipeline import TSDiffPipeline
from .plots import fan_chart
from .presets import PRESETS
from .readers import is_file_source
from .refine import METHODS as REFINE_METHODS
from .refine import REGULARIZERS

__all__ = ["build_parser", "main"]

PROG = "steerdiff-timeseries"
DATA_HELP = (
    f"a bundled dataset ({', '.join(sorted(DATASETS))}), gluonts:<name> already on disk, or a file: wide or "
    "long (unique_id,ds,y) .csv/.tsv/.txt, GluonTS .jsonl, .parquet; optionally .gz/.bz2/.xz/.zip"
)
HEADERS = {"auto": "auto", "yes": True, "no": False}


# ----------------------------------------------------------------------------------------------- helpers


def _read_options(args) -> dict:
    return {"freq": args.freq, "start": args.start, "header": args.header}


def _series(source: str, freq: str | None = None, start: str | None = None, header: str = "auto"):
    """Read the user's data now (before any training); a missing optional dependency is a usage error."""
    try:
        return load_series(source, freq, start=start, header=HEADERS.get(header, header))
    except ImportError as err:
        raise UsageError(str(err)) from None


def _source(data: str) -> str:
    """How the bundle names the data: a file by its absolute path, a dataset by its name."""
    path = Path(data)
    return str(path.resolve()) if is_file_source(data) and path.exists() else data


def _warn(summary: dict, messages) -> dict:
    """Warnings go to stderr (one line each) and into the summary."""
    messages = [m for m in messages if m]
    for m in messages:
        print(f"{PROG}: warning: {' '.join(m.split())}", file=sys.stderr)
    if messages:
        summary["warnings"] = messages
    return summary


def _write_npz(path: Path, **arrays) -> Path:
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def _lags(text: str, freq) -> tuple[int, ...]:
    if text == "auto":
        return parse_freq(freq).default_lags
    if text in ("", "none"):
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(
            f"--lags {text!r} is not a comma-separated list of positive integers; use e.g. 24,168, "
            "auto or none"
        ) from None


def _generator(args) -> torch.Generator:
    return torch.Generator(args.device).manual_seed(args.seed)


def _load(args) -> tuple[TSDiffPipeline, list, object]:
    """The model and the data it is used on (--data, or the data it was trained with), split as in
    training."""
    pipe = TSDiffPipeline.from_pretrained(args.model, device=args.device)
    return (pipe, *_split(args, pipe))


def _data_of(args, pipe: TSDiffPipeline) -> list:
    """--data read with the read flags, or the model's own training data read as it was in training."""
    split = pipe.data_split
    if getattr(args, "data", None):
        return _series(args.data, **_read_options(args))
    if split is None or split.source is None:
        raise UsageError(f"the model in {args.model} does not record its training data; give --data")
    read = {**split.read, **{k: v for k, v in _read_options(args).items() if v not in (None, "auto")}}
    return _series(split.source, **read)


def _split(args, pipe: TSDiffPipeline):
    return pipe.split(_data_of(args, pipe), args.test_windows)


def _shards(args, job: str) -> dict:
    """Sharded, resumable sampling into <out>/<job>/shards with --chunk-size, or under torchrun."""
    options = shard_options(Path(args.out) / job, args.chunk_size, default=16)
    return {**options, "seed": args.seed} if options else {}


def _sampling(args) -> dict:
    return {
        "num_samples": args.num_samples,
        "solver": args.solver,
        "num_steps": args.steps,
        "batch_size": args.batch_windows,
    }


def _plot(out: Path, name: str, history, samples, test) -> str:
    titles = [f"{i} @ {s}" for i, s in zip(test.item_ids, test.starts, strict=False)]
    return str(
        fan_chart(
            out / name,
            history,
            samples,
            test.future,
            titles,
            show_history=min(history.shape[1], 3 * samples.shape[2]),
        )
    )


def _read_base(path: Path, test) -> torch.Tensor:
    """A base forecast file (N, samples, prediction), checked against the test windows when it is read."""
    try:
        base = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise UsageError(
            f"--base {path}: not a readable .npy file ({err}); save the forecasts with numpy.save"
        ) from None
    n, h = test.future.shape
    if base.ndim != 3 or base.shape[0] != n or base.shape[2] != h:
        raise UsageError(
            f"--base {path} has shape {base.shape}, but the {n} test windows need forecasts of shape "
            f"({n}, samples, {h}); save one row of sample paths per test window"
        )
    if not np.isfinite(base).all():
        raise UsageError(f"--base {path} contains NaN or inf; give finite forecasts")
    return torch.as_tensor(base, dtype=torch.float32)


def _table(title: str, rows: dict, columns=("crps", "nd", "nrmse", "seconds")) -> None:
    print(f"\n{title}")
    print(f"{'method':<26}" + "".join(f"{c:>10}" for c in columns))
    for name, m in rows.items():
        print(
            f"{name:<26}"
            + "".join(f"{m[c]:>10.4f}" if m.get(c) is not None else f"{'diverged':>10}" for c in columns)
        )


def _train(args, series, source: str, out: Path, read: dict | None = None) -> tuple[TSDiffPipeline, dict]:
    freq = str(series[0].freq)
    if args.validation_windows is None:
        args.validation_windows = args.test_windows
    auto_scaling = args.scaling == "auto"
    if auto_scaling and args.validation_windows < 1:
        raise UsageError(
            "--scaling auto chooses the scaling on validation windows; give --validation-windows >= 1 or pin "
            f"--scaling to one of {', '.join(SCALINGS)}"
        )
    config = TSDiffConfig(
        args.context,
        args.prediction,
        _lags(args.lags, freq),
        freq,
        args.hidden,
        args.blocks,
        args.d_state,
        init_skip=args.init_skip,
        scaling="mean" if auto_scaling else args.scaling,
    )
    tc = TrainConfig(
        steps=args.train_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        grad_clip=0.5,
        seed=args.seed,
        ema_decay=0.995,
        checkpoint_every=max(args.train_steps // 4, 1),
    )
    scaling_scores = None
    if auto_scaling:
        import dataclasses

        pilot = dataclasses.replace(
            tc, steps=args.pilot_steps or max(args.train_steps // 4, 1), checkpoint_every=0
        )
        choice, scaling_scores = TSDiffPipeline.choose_scaling(
            series,
            config,
            pilot,
            test_windows=args.test_windows,
            validation_windows=args.validation_windows,
            stride=args.stride,
            num_samples=args.tune_samples,
            num_steps=args.steps,
            max_windows=args.tune_windows,
            device=args.device,
            seed=args.seed,
            progress=not args.quiet,
        )
        config = dataclasses.replace(config, scaling=choice)
    pipe = TSDiffPipeline.train(
        series,
        config,
        tc,
        test_windows=args.test_windows,
        validation_windows=args.validation_windows,
        stride=args.stride,
        source=source,
        read=read,
        out_dir=out,
        device=args.device,
        seed=args.seed,
        progress=not args.quiet,
    )
    if scaling_scores is not None:
        pipe.model.tuned["scaling"] = {"choice": config.scaling, "validation_crps": scaling_scores}
    tuned = {}
    if args.validation_windows >= 1 and args.tune_budget > 0:
        for guidance in ("quantile", "mse"):
            result = pipe.tune_scale(
                series,
                guidance,
                budget=args.tune_budget,
                num_samples=args.tune_samples,
                num_steps=args.steps,
                max_windows=args.tune_windows,
                seed=args.seed,
                progress=not args.quiet,
            )
            tuned[guidance] = {"scale": result.best["scale"], "validation_crps": result.score}
            if result.at_edge:
                tuned[guidance]["at_edge"] = True
    model_dir = pipe.save_pretrained(out / "model")
    result = pipe.train_result
    k = max(1, len(result.losses) // 10)
    return pipe, {
        "model": str(model_dir),
        "windows": pipe.train_windows,
        "train_steps": result.step,
        "loss_first": float(np.mean(result.losses[:k])),
        "loss_last": float(np.mean(result.losses[-k:])),
        "scaling": config.scaling,
        **({"scaling_validation_crps": scaling_scores} if scaling_scores else {}),
        **({"scales": tuned} if tuned else {}),
        "config": pipe.model.bundle_config(),
    }


# ---------------------------------------------------------------------------------------------- commands


def cmd_data(args) -> dict:
    info: dict = {}
    try:
        series = load_series(args.data, args.freq, start=args.start, header=HEADERS[args.header], info=info)
    except ImportError as err:
        raise UsageError(str(err)) from None
    out = Path(args.out)
    with atomic_open(out / "series.jsonl", "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in to_entries(series))
    lengths = [len(s) for s in series]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(4, len(series))
    fig, axes = plt.subplots(n, 1, figsize=(9, 2 * n), squeeze=False)
    for ax, s in zip(axes[:, 0], series, strict=False):
        ax.plot(s.index(), s.target, lw=0.6)
        ax.set_title(s.item_id, fontsize=9)
    fig.tight_layout()
    try:
        save_figure(fig, out / "series.png", dpi=90)
    finally:
        plt.close(fig)
    return {
        "data": args.data,
        **({"read_as": info} if info else {}),
        "num_series": len(series),
        "item_ids": [s.item_id for s in series[:20]],
        "start": None if series[0].start is None else str(series[0].start),
        "freq": str(series[0].freq),
        "season_length": series[0].freq.season_length,
        "default_lags": list(series[0].freq.default_lags),
        "min_length": min(lengths),
        "max_length": max(lengths),
        "total_points": sum(lengths),
        "series": str(out / "series.jsonl"),
        "plot": str(out / "series.png"),
    }


def cmd_train(args) -> dict:
    series = _series(args.data, **_read_options(args))
    _, summary = _train(args, series, _source(args.data), Path(args.out), _read_options(args))
    return _warn(summary, [_edge_warning(g, v) for g, v in summary.get("scales", {}).items()])


def _edge_warning(guidance: str, tuned: dict) -> str | None:
    if not tuned.get("at_edge"):
        return None
    return (
        f"the {guidance} guidance scale chosen on validation ({tuned['scale']:g}) is at the edge of the searched "
        "range; more validation windows or a longer training may move it"
    )


def _forecast_warnings(pipe: TSDiffPipeline, history, samples, guidance: str, scale) -> list:
    from .forecast import out_of_range, range_warning

    if guidance == "none":
        return []
    report = out_of_range(history, samples, pipe.spec.context_length)
    tuned = scale is None and guidance in pipe.model.tuned
    return [range_warning(report, guidance, pipe.scale_for(guidance, scale), tuned)]


def cmd_forecast(args) -> dict:
    pipe, _, test = _load(args)
    g = _generator(args)
    history = with_missing(
        test.history, missing_mask(args.scenario, len(test.history), pipe.spec.context_length, generator=g)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastRangeWarning)  # reported below, once
        samples = pipe.forecast(
            history,
            guidance=args.guidance,
            scale=args.scale,
            generator=g,
            progress=not args.quiet,
            **_sampling(args),
            **_shards(args, "forecast"),
        )
    if samples is None:
        return None  # another torchrun rank: rank 0 writes the results
    out = Path(args.out)
    _write_npz(out / "forecast.npz", samples=samples, history=history, future=test.future)
    summary = {
        "guidance": args.guidance,
        "scale": pipe.scale_for(args.guidance, args.scale),
        "scale_from": "--scale" if args.scale is not None else _scale_origin(pipe, args.guidance),
        "scenario": args.scenario,
        "windows": len(test.history),
        **evaluate_forecast(samples, test.future),
        "samples": str(out / "forecast.npz"),
        "plot": _plot(out, "forecast.png", history, samples, test),
    }
    return _warn(summary, _forecast_warnings(pipe, history, samples, args.guidance, args.scale))


def _scale_origin(pipe: TSDiffPipeline, guidance: str) -> str:
    return "validation" if guidance in pipe.model.tuned else "default (the model chose none on validation)"


def cmd_impute(args) -> dict:
    pipe, _, test = _load(args)
    g = _generator(args)
    spec = pipe.spec
    if args.k is not None and args.k >= spec.context_length:
        raise UsageError(
            f"--k {args.k} must be below the context length {spec.context_length} so that some "
            "context stays observed"
        )
    y = torch.cat([test.history, test.future], 1)
    ctx = slice(spec.max_lag, spec.history_length)
    mask = missing_mask(args.scenario, len(y), spec.context_length, args.k, generator=g)
    gappy = y.clone()
    gappy[:, ctx] = gappy[:, ctx].masked_fill(mask, float("nan"))
    samples = pipe.impute(
        gappy,
        guidance=args.guidance,
        scale=args.scale,
        generator=g,
        progress=not args.quiet,
        **_sampling(args),
        **_shards(args, "impute"),
    )
    if samples is None:
        return None
    ctx_samples = samples[:, :, : spec.context_length]
    truth = y[:, ctx]
    k = int(mask[0].sum())  # score only the imputed points (every window has the same count k)
    idx = mask.nonzero()[:, 1].reshape(len(y), k)
    metrics = (
        evaluate_forecast(
            ctx_samples.gather(2, idx[:, None].expand(-1, ctx_samples.shape[1], -1)), truth.gather(1, idx)
        )
        if k
        else {}
    )
    out = Path(args.out)
    _write_npz(out / "impute.npz", samples=samples, observed=gappy, truth=y)
    plot = fan_chart(
        out / "impute.png",
        gappy[:, : spec.max_lag + 1],
        ctx_samples,
        truth,
        [f"{args.scenario}: {i}" for i in test.item_ids],
        show_history=1,
    )
    return {
        "scenario": args.scenario,
        "scale": pipe.scale_for(args.guidance, args.scale),
        "imputed_points_per_window": k,
        **metrics,
        "samples": str(out / "impute.npz"),
        "plot": str(plot),
    }


def cmd_refine(args) -> dict:
    pipe, train, test = _load(args)
    if args.base in ("seasonal_naive", "linear"):
        base = pipe.base_forecast(args.base, test.history, train)
    else:
        path = Path(args.base)
        if not path.is_file():
            raise UsageError(
                f"--base {path}: no such file; give seasonal_naive, linear or a .npy file of "
                "forecasts (N, samples, prediction)"
            )
        base = _read_base(path, test)
    samples = pipe.refine(
        test.history,
        base,
        method=args.method,
        regularizer=args.regularizer,
        steps=args.refine_steps,
        num_samples=args.num_samples,
        generator=_generator(args),
        progress=not args.quiet,
        **_shards(args, "refine"),
    )
    if samples is None:
        return None
    out = Path(args.out)
    _write_npz(out / "refine.npz", samples=samples, base=base, future=test.future)
    return {
        "base": args.base,
        "method": args.method,
        "base_metrics": evaluate_forecast(base, test.future),
        "refined_metrics": evaluate_forecast(samples, test.future),
        "samples": str(out / "refine.npz"),
        "plot": _plot(out, "refine.png", test.history, samples, test),
    }


def cmd_synthesize(args) -> dict:
    from .synthesis import linear_predictive_score

    pipe = TSDiffPipeline.from_pretrained(args.model, device=args.device)
    train = test = None
    if args.data:  # read and check the data before sampling
        train, test = _split(args, pipe)
    x = pipe.synthesize(
        args.num_samples,
        solver=args.solver,
        num_steps=args.steps,
        generator=_generator(args),
        progress=not args.quiet,
        **_shards(args, "synthesize"),
    )
    if x is None:
        return None
    out = Path(args.out)
    summary = {
        "windows": args.num_samples,
        "shape": list(x.shape),
        "samples": str(_write_npz(out / "synthetic.npz", windows=x)),
    }
    if train is not None:
        from .data import training_windows

        real = training_windows(train, pipe.spec)
        ctx, scaling = pipe.spec.context_length, pipe.spec.scaling
        summary["lps_synthetic"] = linear_predictive_score(x, test, ctx, scaling=scaling)
        summary["lps_real"] = linear_predictive_score(real, test, ctx, scaling=scaling)
    return summary


def _methods(text: str) -> tuple[tuple[str, ...], bool, bool]:
    """--methods: (forecasting methods, the missing-value check, the LPS check)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if "all" in names:
        names = [*METHODS, "missing", "lps"]
    unknown = [n for n in names if n not in (*METHODS, "missing", "lps")]
    if unknown or not names:
        raise UsageError(
            f"--methods: unknown {unknown or text!r}; give a comma-separated list of {', '.join(METHODS)}, "
            "missing, lps, or all"
        )
    return tuple(n for n in names if n in METHODS), "missing" in names, "lps" in names


def _evaluate(args, pipe: TSDiffPipeline, train, test) -> dict:
    methods, missing, lps = _methods(args.methods)
    scale = None
    if args.scale is not None:
        scale = {m: args.scale for m in GUIDED}
    result = pipe.evaluate(
        train,
        test,
        methods=methods,
        missing=missing,
        scale=scale,
        generator=_generator(args),
        refine_steps=args.refine_steps,
        num_synthetic=args.synthetic if lps else 0,
        progress=not args.quiet,
        **_sampling(args),
    )
    samples = result.pop("samples")
    out = Path(args.out)
    plots = {}
    for name in dict.fromkeys(("tsdiff_q", result["best"])):
        if name is not None and samples.get(name) is not None:
            plots[name] = _plot(
                out, f"forecast_{name.replace('+', '_')}.png", test.history, samples[name], test
            )
    if not args.json and not args.quiet:
        _table("forecast CRPS on held-out rolling windows", result["forecast"])
        if "missing" in result:
            _table("TSDiff-Q with half the context missing", result["missing"])
        if "lps" in result:
            lps = result["lps"]
            print(
                f"\nLPS (ridge trained on windows, CRPS on test): real {lps['real']['lps']:.4f}, "
                f"synthetic {lps['synthetic']['lps']:.4f}\n"
            )
    notes = [
        _forecast_warnings(pipe, test.history, samples[m], GUIDED[m], result["scales"][m])[0]
        for m in GUIDED
        if samples.get(m) is not None
    ]
    return _warn({**result, "windows": len(test.history), "plots": plots}, notes)


def cmd_evaluate(args) -> dict:
    pipe, train, test = _load(args)
    return _evaluate(args, pipe, train, test)


def cmd_demo(args) -> dict:
    """Train a small model on a bundled real series and evaluate it, through the library."""
    series = _series(args.data, **_read_options(args))
    out = Path(args.out)
    pipe, summary = _train(args, series, _source(args.data), out, _read_options(args))
    train, test = pipe.split(series)
    return {"train": summary, "evaluate": _evaluate(args, pipe, train, test)}


HANDLERS = {
    "data": cmd_data,
    "train": cmd_train,
    "forecast": cmd_forecast,
    "impute": cmd_impute,
    "refine": cmd_refine,
    "synthesize": cmd_synthesize,
    "evaluate": cmd_evaluate,
    "demo": cmd_demo,
}


# ----------------------------------------------------------------------------------------------- parser


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """argparse errors as one line on stderr (exit 2) that names the problem and points to --help."""

    def error(message: str):
        parser.exit(2, f"{parser.prog}: error: {' '.join(message.split())}; see {parser.prog} --help\n")

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:  # a default of 0 is a default too: show it
        if (
            action.help
            and "%(default)" not in action.help
            and type(action.default) in (int, float)
            and action.default == 0
        ):
            action.help += " (default: %(default)s)"


def _data_flags(p: argparse.ArgumentParser, required: bool, default: str | None = None) -> None:
    if required:
        p.add_argument("--data", required=True, help=DATA_HELP)
    elif default is not None:
        p.add_argument("--data", default=default, help=DATA_HELP)
    else:
        p.add_argument(
            "--data", default=None, help=f"{DATA_HELP}; default: the data the model was trained on"
        )
    _read_flags(p)


def _read_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--freq",
        default=None,
        help="frequency (e.g. H, 30min, D, M): needed for a file without timestamps, checked against them "
        "otherwise",
    )
    p.add_argument(
        "--start", default=None, help="first timestamp of a file without a time column (e.g. 2020-01-01)"
    )
    p.add_argument(
        "--header",
        choices=tuple(HEADERS),
        default="auto",
        help="does the file's first row name the columns? auto: names are a header, numbers are data",
    )


def _shard_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        help="sample in resumable chunks of this many items (windows), kept in <out>/<command>/shards and "
        "shared out over the processes of a torchrun launch (the result does not depend on their number); "
        "default: one batch, or chunks of 16 under torchrun",
    )


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        type=existing_dir,
        required=True,
        help="a model folder written by `train` (<train --out>/model) or by save_pretrained",
    )
    p.add_argument(
        "--test-windows",
        type=positive_int,
        default=None,
        help="held-out rolling windows per series to score (at most the model's own; a window it was "
        "trained on is refused); default: the model's own split",
    )


def _guidance_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--guidance",
        choices=("quantile", "mse", "none"),
        default="quantile",
        help="self-guidance: quantile (TSDiff-Q), mse (TSDiff-MS) or none (unconditional)",
    )
    p.add_argument(
        "--scale",
        type=nonnegative_float,
        default=None,
        help="self-guidance scale s; default: the scale chosen on the validation windows in training (4 when "
        "the model has none)",
    )
    p.add_argument(
        "--batch-windows",
        type=positive_int,
        default=None,
        help="windows whose rows go through the network at once (each brings --num-samples rows); default: as "
        "many rows as fit a memory budget; the paths do not depend on it",
    )


def _train_flags(
    p: argparse.ArgumentParser,
    *,
    context=168,
    hidden=64,
    blocks=3,
    d_state=64,
    train_steps=2000,
    test_windows=4,
    stride=1,
) -> None:
    p.add_argument(
        "--test-windows",
        type=positive_int,
        default=test_windows,
        help="held-out rolling test windows at the end of every series (never trained on)",
    )
    p.add_argument(
        "--validation-windows",
        type=nonnegative_int,
        default=None,
        help="rolling windows before the test windows also left out of training, on which the guidance scale "
        "and the scaling are chosen; default: as many as --test-windows (0: none; then pin --scaling, and "
        "the scale is 4 unless given)",
    )
    p.add_argument("--context", type=positive_int, default=context, help="context length (points)")
    p.add_argument("--prediction", type=positive_int, default=24, help="prediction length (points)")
    p.add_argument("--lags", default="auto", help="comma-separated lags, auto (by frequency) or none")
    p.add_argument("--hidden", type=positive_int, default=hidden, help="S4D channels")
    p.add_argument("--blocks", type=positive_int, default=blocks, help="S4D residual blocks")
    p.add_argument("--d-state", type=positive_int, default=d_state, help="S4D state size")
    p.add_argument(
        "--init-skip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="residual network (eps_hat = x_t + F); keeps self-guidance stable on short training",
    )
    p.add_argument(
        "--scaling",
        choices=("auto", *SCALINGS),
        default="auto",
        help="auto: the one whose pilot model forecasts the validation windows best; mean: divide windows by "
        "the context mean |y| (the paper's); standard: subtract the context mean, divide by its std",
    )
    p.add_argument(
        "--pilot-steps",
        type=nonnegative_int,
        default=0,
        help="training steps of each pilot model for --scaling auto (0: a quarter of --train-steps)",
    )
    p.add_argument(
        "--tune-budget",
        type=nonnegative_int,
        default=8,
        help="validation forecasts per guidance to choose its scale after training (0: keep the default 4)",
    )
    p.add_argument(
        "--tune-samples",
        type=positive_int,
        default=16,
        help="sample paths per validation window when choosing",
    )
    p.add_argument(
        "--tune-windows",
        type=positive_int,
        default=64,
        help="validation windows used when choosing (at most; evenly spread over all of them)",
    )
    p.add_argument("--train-steps", type=positive_int, default=train_steps, help="training steps")
    p.add_argument("--batch-size", type=positive_int, default=64, help="training batch size")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate (Adam)")
    p.add_argument("--stride", type=positive_int, default=stride, help="stride between training windows")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, __doc__.split("\n\n")[0], distribution="steerdiff-timeseries")
    add = subcommands(parser)

    p = add("data", "load a dataset, write GluonTS JSON lines, a summary and a plot")
    _data_flags(p, required=True)
    add_runtime_flags(p, out="runs/timeseries/data")

    p = add(
        "train",
        "train an unconditional TSDiff model; writes <out>/model (the bundle) and resumable "
        "checkpoints in <out>/checkpoint",
    )
    _data_flags(p, required=True)
    _train_flags(p)
    p.add_argument(
        "--steps",
        type=positive_int,
        default=100,
        help="sampler steps of the validation forecasts that choose the guidance scale and the scaling",
    )
    add_runtime_flags(p, out="runs/timeseries/train")

    p = add("forecast", "self-guided forecasts of the held-out windows, with a fan chart")
    _model_flags(p)
    _data_flags(p, required=False)
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="none",
        help="which half of the context to hide: none, random points, or a blackout at its start or end",
    )
    _guidance_flags(p)
    add_sampling_flags(p, num_samples=100, steps=100, solver="ddpm", samples_help="sample paths per window")
    _shard_flag(p)
    add_runtime_flags(p, out="runs/timeseries/forecast")

    p = add("impute", "fill missing context points of the held-out windows")
    _model_flags(p)
    _data_flags(p, required=False)
    p.add_argument(
        "--scenario",
        choices=SCENARIOS[1:],
        default="random",
        help="which context points are missing: random, or a blackout at its start or end",
    )
    p.add_argument(
        "--k", type=nonnegative_int, default=None, help="missing points per window; default: half the context"
    )
    _guidance_flags(p)
    add_sampling_flags(p, num_samples=100, steps=100, solver="ddpm", samples_help="sample paths per window")
    _shard_flag(p)
    add_runtime_flags(p, out="runs/timeseries/impute")

    p = add("refine", "refine a base forecaster's forecasts with the model's implicit density")
    _model_flags(p)
    _data_flags(p, required=False)
    p.add_argument(
        "--base",
        default="seasonal_naive",
        help="seasonal_naive, linear, or a .npy file of forecasts (test windows, samples, prediction)",
    )
    p.add_argument(
        "--method",
        choices=REFINE_METHODS,
        default="ml",
        help="ml (gradient descent) or langevin (energy-based sampling)",
    )
    p.add_argument(
        "--regularizer",
        choices=REGULARIZERS,
        default="quantile",
        help="penalty for moving away from the base forecast",
    )
    p.add_argument("--refine-steps", type=positive_int, default=20, help="refinement iterations")
    add_sampling_flags(
        p,
        num_samples=100,
        steps=None,
        solver=None,
        samples_help="refined paths per window (a multiple of the base's samples)",
    )
    _shard_flag(p)
    add_runtime_flags(p, out="runs/timeseries/refine")

    p = add("synthesize", "generate windows; with --data also the linear predictive score")
    p.add_argument(
        "--model",
        type=existing_dir,
        required=True,
        help="a model folder written by `train` (<train --out>/model) or by save_pretrained",
    )
    p.add_argument(
        "--test-windows",
        type=positive_int,
        default=None,
        help="held-out rolling windows per series for the score; default: the model's own split",
    )
    p.add_argument("--data", default=None, help=f"{DATA_HELP}; given, the synthetic windows are scored (LPS)")
    _read_flags(p)
    add_sampling_flags(p, num_samples=1000, steps=100, solver="ddpm", samples_help="windows to generate")
    _shard_flag(p)
    add_runtime_flags(p, out="runs/timeseries/synthesize")

    evaluate = add("evaluate", "compare baselines, TSDiff-MS/Q, refinement, missing values and LPS")
    _model_flags(evaluate)
    _data_flags(evaluate, required=False)
    demo = add(
        "demo",
        "train a small model on a bundled real series, choose its scaling and scales on validation windows and "
        "evaluate it (several minutes on a CPU)",
    )
    _data_flags(demo, required=False, default="elecdemand")
    _train_flags(demo, context=96, hidden=32, blocks=2, d_state=32, train_steps=600, test_windows=7, stride=2)
    for p, samples, out in ((evaluate, 100, "runs/timeseries/evaluate"), (demo, 16, "runs/timeseries/demo")):
        _guidance_flags(p)
        p.add_argument("--refine-steps", type=positive_int, default=20, help="refinement iterations")
        p.add_argument(
            "--methods",
            default=",".join((*METHODS, "missing")),
            help="comma-separated: forecasting methods, missing (TSDiff-Q with half the context missing), lps "
            "(the synthetic-data check), or all",
        )
        p.add_argument(
            "--synthetic",
            type=positive_int,
            default=1000 if p is evaluate else 500,
            help="synthetic windows for the linear predictive score (with --methods ...,lps)",
        )
        add_sampling_flags(
            p, num_samples=samples, steps=100, solver="ddpm", samples_help="sample paths per window"
        )
        add_runtime_flags(p, out=out)

    for action in parser._subparsers._group_actions:  # noqa: SLF001 - the subcommand parsers
        for sub in action.choices.values():
            _one_line_errors(sub)
    _one_line_errors(parser)
    add_command_presets(parser, PRESETS)  # --preset paper / gpu-check / smoke (presets.py)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line (``argv`` without the program name); returns the exit code."""
    return run_command(build_parser(), HANDLERS, argv)


if __name__ == "__main__":
    sys.exit(main())
