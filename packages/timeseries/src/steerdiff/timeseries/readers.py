"""Your own series from files: wide and long CSV/TSV/TXT, GluonTS JSON lines, Parquet/Feather, compressed or not.

Every layout is read value by value or refused with a one-line message that names the fix; nothing is
dropped silently. The accepted layouts are listed in ``docs/timeseries/data.md``:

* **wide** delimited text (``.csv``, ``.tsv``, ``.txt``; comma, tab, semicolon or whitespace): one column per
  series, one row per time step, with or without a header row and with or without a time column first. A file
  without a time column needs ``freq`` (and takes an optional ``start``). Empty cells at the start or the end
  of a column are a series that starts later or ends earlier; an empty cell inside a series is an error.
* **long** delimited text with a header: ``unique_id, ds, y`` (statsforecast, neuralforecast) or
  ``item_id, timestamp, target`` (GluonTS, AutoGluon), any row order.
* **GluonTS JSON lines** (``.jsonl``, ``.json``): one ``{"start", "target", "item_id"?}`` object per line.
* **Parquet / Feather** (``.parquet``, ``.feather``; needs pyarrow): a pandas frame in either layout.
* any of them compressed: ``.gz``, ``.bz2``, ``.xz``, ``.zip`` (one member).

``header="auto"`` reads a first row of names as a header and a first row of numbers (or of a timestamp and
numbers) as data; a first row that mixes names and numbers is refused (say ``header=True`` or ``False``).
``header=True`` refuses a first row that holds only data, ``header=False`` one that holds names.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import math
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data import Frequency, Series, parse_freq

__all__ = [
    "COMPRESSIONS",
    "FORMATS",
    "LONG_COLUMNS",
    "TIME_NAMES",
    "is_file_source",
    "read_series",
    "series_from_frame",
]

FORMATS = (".csv", ".tsv", ".txt", ".dat", ".json", ".jsonl", ".parquet", ".feather")
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip")
LONG_COLUMNS = (("unique_id", "ds", "y"), ("item_id", "timestamp", "target"))
TIME_NAMES = {
    "ds",
    "date",
    "time",
    "timestamp",
    "datetime",
    "period",
    "month",
    "year",
    "week",
    "day",
    "index",
}
MISSING = {"", "na", "nan", "null", "none", "n/a", "?", "-"}
HEADER_CHOICES = ("auto", True, False)


def _suffixes(path: Path) -> tuple[str, str | None]:
    """(format suffix, compression suffix or None), lowercase."""
    sfx = [s.lower() for s in path.suffixes]
    comp = sfx[-1] if sfx and sfx[-1] in COMPRESSIONS else None
    rest = sfx[:-1] if comp else sfx
    return (rest[-1] if rest else ""), comp


def is_file_source(text: str) -> bool:
    """Whether ``text`` names a file (it exists, has a path separator or a known suffix) rather than a
    dataset name."""
    path = Path(text)
    if path.exists() or "/" in text or "\\" in text:
        return True
    fmt, comp = _suffixes(path)
    return bool(comp) or fmt in FORMATS


def _open_bytes(path: Path, comp: str | None) -> bytes:
    raw = path.read_bytes()
    try:
        if comp == ".gz":
            return gzip.decompress(raw)
        if comp == ".bz2":
            return bz2.decompress(raw)
        if comp == ".xz":
            return lzma.decompress(raw)
        if comp == ".zip":
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                names = [n for n in z.namelist() if not n.endswith("/")]
                if len(names) != 1:
                    raise ValueError(
                        f"{path} holds {len(names)} files ({names[:4]}); give a zip with exactly one data file"
                    )
                return z.read(names[0])
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"{path} is not a readable {comp} file ({err}); compress it again or unpack it"
        ) from None
    return raw


def _text(path: Path, comp: str | None) -> str:
    data = _open_bytes(path, comp)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(
            f"{path} is not UTF-8 text; give a text file (CSV, TSV, JSON lines) or a .parquet/.feather file"
        ) from None


# ------------------------------------------------------------------------------------------------ cells


def _is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def _number(cell: str) -> float | None:
    """The cell's value (NaN for a missing marker), or None when it is not a number."""
    c = cell.strip()
    if c.lower() in MISSING:
        return math.nan
    try:
        v = float(c)
    except ValueError:
        return None
    return v


def _is_time(cell: str) -> bool:
    """A date or a timestamp (not a plain number)."""
    import pandas as pd

    c = cell.strip()
    if not c or _number(c) is not None:
        return False
    try:
        pd.Timestamp(c)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _split_rows(text: str, path: Path) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{path} holds no data rows; give a file with one row per time step")
    first = lines[0]
    sep = next((s for s in ("\t", ";", ",") if s in first), None)
    if sep is None:
        rows = [line.split() for line in lines]
    else:
        import csv

        rows = [[c.strip() for c in r] for r in csv.reader(lines, delimiter=sep)]
    if sep == ";":  # semicolon files (spreadsheet exports) often write a decimal comma: 1,5 is 1.5
        decimal_comma = re.compile(r"^[+-]?\d+,\d+$")
        rows = [[c.replace(",", ".") if decimal_comma.match(c) else c for c in r] for r in rows]
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(
                f"{path}, line {i + 1}: {len(r)} fields where the first line has {width}; every row needs one "
                "cell per column (leave a cell empty for a missing value)"
            )
    return rows


# -------------------------------------------------------------------------------------------- frequency


def _first_irregular(times, freq: Frequency) -> int | None:
    """Index of the first timestamp that is not one step of ``freq`` after the previous one, or None."""
    import pandas as pd

    if len(times) < 2:
        return None
    if freq.unit in ("M", "Q", "Y", "W"):
        unit = {"M": "M", "Q": "Q", "Y": "Y", "W": "W"}[freq.unit]
        ordinals = np.asarray([p.ordinal for p in pd.PeriodIndex(times, freq=unit)])
        steps = np.diff(ordinals)
        bad = np.flatnonzero(steps != freq.n)
    elif freq.unit == "B":
        expected = pd.bdate_range(times[0], periods=len(times), freq=f"{freq.n}B")
        bad = np.flatnonzero(np.asarray(expected) != np.asarray(times))
        return int(bad[0]) if bad.size else None
    else:
        step = pd.Timedelta(freq.n, {"s": "s", "min": "min", "h": "h", "D": "D"}[freq.unit])
        bad = np.flatnonzero(np.diff(np.asarray(times, dtype="datetime64[ns]")) != step.to_timedelta64())
    return int(bad[0]) + 1 if bad.size else None


def _infer(times, where: str) -> Frequency:
    import warnings

    import pandas as pd

    f = None
    if len(times) >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                f = pd.infer_freq(pd.DatetimeIndex(times))
            except (ValueError, TypeError):
                f = None
        f = getattr(f, "freqstr", f)
    if f is None:
        raise ValueError(
            f"{where}: cannot tell the frequency from the timestamps (fewer than 3, or unevenly spaced); "
            "give --freq (e.g. H, D, M) and fill any missing time steps"
        )
    return parse_freq(f)


def _check_times(times, freq: Frequency | None, where: str) -> Frequency:
    """The frequency of evenly spaced, increasing ``times``; uneven or duplicated steps are errors."""
    import pandas as pd

    times = pd.DatetimeIndex(times)
    dup = times.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise ValueError(f"{where}: timestamp {times[i]} appears twice; give each time step once")
    if freq is None:
        order = np.argsort(np.asarray(times, dtype="datetime64[ns]"), kind="stable")
        freq = _infer(times[order], where) if len(times) >= 3 else None
        if freq is None:
            raise ValueError(f"{where}: fewer than 3 timestamps, so the frequency is unknown; give --freq")
    bad = _first_irregular(times, freq)
    if bad is not None:
        raise ValueError(
            f"{where}: the timestamps do not step by one {freq} (frequency {freq}): {times[bad - 1]} is followed "
            f"by {times[bad]}; add the missing time steps (a series must be complete) or give the right --freq"
        )
    return freq


def _numbers(body: list[list[str]], cols: list[int]):
    """The cells of ``cols`` as floats (missing markers as NaN), or the (row, column) of a cell that is not a
    number."""
    cells = np.asarray([[r[j] for j in cols] for r in body], dtype=object).reshape(len(body), len(cols))
    flat = cells.ravel().astype(str)
    lower = np.char.lower(np.char.strip(flat))
    missing = np.isin(lower, list(MISSING))
    values = np.full(flat.shape, np.nan)
    try:
        values[~missing] = flat[~missing].astype(np.float64)
    except ValueError:  # find the first offender, cell by cell
        for k in np.flatnonzero(~missing):
            if _number(flat[k]) is None:
                i, c = divmod(int(k), len(cols))
                return i, cols[c]
        raise
    return values.reshape(cells.shape)


def _parse_times(cells: Sequence[str], where: str):
    import pandas as pd

    try:
        return pd.DatetimeIndex(pd.to_datetime(list(cells)))  # one format, inferred: fast
    except (ValueError, TypeError, OverflowError):
        pass
    try:
        return pd.DatetimeIndex(pd.to_datetime(list(cells), format="mixed"))
    except (ValueError, TypeError, OverflowError) as err:
        raise ValueError(f"{where}: the time column holds a value that is not a date ({err})") from None


# ------------------------------------------------------------------------------------------ series


def _trimmed(
    values: np.ndarray, name: str, freq: Frequency, start, where: str, row0: int, header: bool
) -> Series:
    """One column as a Series: leading/trailing empties mark a later start or earlier end; inside: an
    error."""
    import pandas as pd

    ok = np.isfinite(values)
    if not ok.any():
        raise ValueError(f"{where}: column {name!r} holds no numbers; remove it or fill it")
    first, last = int(np.argmax(ok)), len(ok) - int(np.argmax(ok[::-1]))
    inner = np.flatnonzero(~ok[first:last])
    if inner.size:
        row = row0 + first + int(inner[0]) + 1 + int(header)
        raise ValueError(
            f"{where}: column {name!r} has {inner.size} empty or NaN cells inside the series (first on line "
            f"{row}); fill them (e.g. pandas .interpolate()) or cut the series there"
        )
    if start is not None and first:
        start = pd.Timestamp(start)
        start = (pd.date_range(start, periods=first + 1, freq=freq.pandas))[-1]
    return Series(values[first:last], freq, None if start is None else str(pd.Timestamp(start)), name)


def _start(start):
    import pandas as pd

    try:
        return pd.Timestamp(str(start))
    except (ValueError, TypeError):
        raise ValueError(
            f"--start {start!r} is not a date; give e.g. 2020-01-01 or '2020-01-01 00:00'"
        ) from None


def _wide(values, names, times, freq, start, where, header: bool) -> list[Series]:

    if times is not None:
        if start is not None:
            raise ValueError(
                f"{where}: the file has a time column, which gives the start; drop --start (it is for files "
                "without one)"
            )
        order = np.argsort(np.asarray(times, dtype="datetime64[ns]"), kind="stable")
        if (np.diff(order) < 0).any():
            raise ValueError(f"{where}: the rows are not in time order; sort them by the time column")
        freq = _check_times(times, parse_freq(freq) if freq is not None else None, where)
        start = times[0]
    else:
        if freq is None:
            raise ValueError(
                f"{where} has no time column, so its frequency is unknown; give --freq (e.g. H, D, M) "
                "and optionally --start (the first timestamp)"
            )
        freq = parse_freq(freq)
        if start is not None:
            start = _start(start)
    return [
        _trimmed(values[:, j], str(names[j]), freq, start, where, 0, header) for j in range(values.shape[1])
    ]


def _long(ids, time_cells, y, freq, where, start=None) -> list[Series]:
    ids = np.asarray([str(i) for i in ids])
    numeric_time = all(_number(str(t)) is not None and not _is_missing(str(t)) for t in time_cells[:50])
    out = []
    freqs = set()
    for key in sorted(set(ids.tolist())):  # by id, whatever the row order
        rows = np.flatnonzero(ids == key)
        yy = np.asarray(y, dtype=np.float64)[rows]
        tt = [time_cells[i] for i in rows]
        w = f"{where}, series {key!r}"
        if numeric_time:
            steps = np.asarray([float(t) for t in tt])
            order = np.argsort(steps, kind="stable")
            steps, yy = steps[order], yy[order]
            if freq is None:
                raise ValueError(
                    f"{w}: the ds column holds step numbers, not dates; give --freq (e.g. H, D, M)"
                )
            d = np.diff(steps)
            if (d != 1).any():
                i = int(np.flatnonzero(d != 1)[0])
                raise ValueError(
                    f"{w}: step {steps[i]:g} is followed by {steps[i + 1]:g}; give every step once"
                )
            f = parse_freq(freq)
            first = None if start is None else _start(start)
        else:
            if start is not None:
                raise ValueError(f"{where}: the time column holds dates, which give the start; drop --start")
            times = _parse_times(tt, w)
            order = np.argsort(np.asarray(times, dtype="datetime64[ns]"), kind="stable")
            times, yy = times[order], yy[order]
            f = _check_times(times, parse_freq(freq) if freq is not None else None, w)
            first = times[0]
        freqs.add(f)
        out.append(_trimmed(yy, str(key), f, first, w, 0, False))
    if len(freqs) > 1:
        raise ValueError(
            f"{where}: the series have different frequencies {sorted(map(str, freqs))}; give --freq"
        )
    return out


def _layout_long(names: Sequence[str]) -> tuple[str, str, str] | None:
    lower = [str(n).strip().lower() for n in names]
    for cols in LONG_COLUMNS:
        if set(cols) <= set(lower):
            return tuple(names[lower.index(c)] for c in cols)
    return None


def _check_long_extra(names, cols, where):
    extra = [n for n in names if n not in cols]
    if extra:
        raise ValueError(
            f"{where}: long layout ({', '.join(cols)}) with extra columns {extra}; the model is univariate: drop "
            "them, or give each as its own series"
        )


# --------------------------------------------------------------------------------------------- readers


def _delimited(path: Path, comp, freq, start, header, info: dict) -> list[Series]:
    rows = _split_rows(_text(path, comp), path)
    first = rows[0]
    body_col0 = [r[0] for r in rows[1 : 1 + 50]] or [first[0]]
    # the first row: names (text), data (numbers, maybe a timestamp first) or both
    text_cells = [
        c for j, c in enumerate(first) if c.strip() and _number(c) is None and not (j == 0 and _is_time(c))
    ]
    numeric_cells = [c for c in first[1:] if c.strip() and _number(c) is not None]
    if header == "auto":
        if text_cells and numeric_cells:
            raise ValueError(
                f"{path}: the first row mixes names and numbers ({', '.join(first[:4])}...); say --header yes "
                "if it names the columns, --header no if it is data"
            )
        has_header = bool(text_cells)
    elif header:
        if not text_cells and not (len(first) > 1 and first[0].strip().lower() in TIME_NAMES):
            raise ValueError(
                f"{path}: --header yes, but the first row looks like data ({', '.join(first[:4])}...); drop "
                "--header yes to read it as data, or add a row of column names"
            )
        has_header = True
    else:
        if text_cells:
            raise ValueError(
                f"{path}: --header no, but the first row looks like column names ({', '.join(first[:4])}...); "
                "drop --header no to read it as a header"
            )
        has_header = False
    names = [c.strip() for c in first] if has_header else None
    body = rows[1:] if has_header else rows
    if not body:
        raise ValueError(f"{path} has a header but no data rows")
    if has_header:
        if len(set(names)) != len(names):
            raise ValueError(
                f"{path}: the header repeats a column name ({names}); give each column its own name"
            )
        cols = _layout_long(names)
        if cols is not None:
            info.update(layout="long", header=True, columns=list(cols))
            _check_long_extra(names, cols, path)
            idx = [names.index(c) for c in cols]
            y = []
            for i, r in enumerate(body):
                v = _number(r[idx[2]])
                if v is None:
                    raise ValueError(
                        f"{path}, line {i + 2}: {cols[2]} {r[idx[2]]!r} is not a number; give numbers (an empty "
                        "cell for a missing value)"
                    )
                y.append(v)
            return _long([r[idx[0]] for r in body], [r[idx[1]] for r in body], y, freq, str(path), start)
    # wide: is the first column a time column?
    col0 = [r[0] for r in body]
    named_time = has_header and names[0].strip().lower() in TIME_NAMES
    time_col = all(_is_time(c) for c in col0[:50]) or (
        has_header and names[0] == "" and all(_is_time(c) for c in col0[:50])
    )
    if named_time and not time_col:
        time_col = all(
            _number(c) is not None and not _is_missing(c) for c in col0[:50]
        )  # years, steps: dates
    if not time_col and any(_is_time(c) for c in body_col0):
        bad = next(i for i, c in enumerate(col0) if not _is_time(c))
        raise ValueError(
            f"{path}, line {bad + 1 + int(has_header)}: the first column holds dates, but {col0[bad]!r} is not "
            "one; fix that cell"
        )
    data_cols = list(range(1, len(first))) if time_col else list(range(len(first)))
    if not data_cols:
        raise ValueError(f"{path} has a time column but no series column; add one column per series")
    values = _numbers(body, data_cols)
    if isinstance(values, tuple):  # (row, column) of the first cell that is not a number
        i, j = values
        what = f"column {names[j]!r}" if names else f"column {j + 1}"
        raise ValueError(
            f"{path}, line {i + 1 + int(has_header)}, {what}: {body[i][j]!r} is not a number; every series "
            "cell must be a number (an empty cell only at the start or end of a series)"
        )
    times = None
    if time_col:
        if named_time and not all(_is_time(c) for c in col0[:50]):
            numbers = np.asarray([_number(c) for c in col0], dtype=np.float64)
            if np.isnan(numbers).any() or (numbers != np.round(numbers)).any():
                raise ValueError(
                    f"{path}: the time column {names[0]!r} holds numbers that are not whole; give dates, years or "
                    "step numbers"
                )
            if ((numbers >= 1000) & (numbers <= 9999)).all():  # years
                times = _parse_times([str(int(v)) for v in numbers], str(path))
            else:  # step numbers: consecutive, and the frequency comes from --freq
                steps = np.diff(numbers)
                if (steps != 1).any():
                    i = int(np.flatnonzero(steps != 1)[0])
                    raise ValueError(
                        f"{path}: step {numbers[i]:g} is followed by {numbers[i + 1]:g} in column {names[0]!r}; "
                        "give every step once, in order"
                    )
        else:
            times = _parse_times(col0, str(path))
    names_out = [names[j] for j in data_cols] if names else [str(k) for k in range(len(data_cols))]
    info.update(layout="wide", header=has_header, time_column=bool(time_col), columns=len(data_cols))
    return _wide(values, names_out, times, freq, start, str(path), has_header)


def _jsonl(path: Path, comp, freq, start) -> list[Series]:
    from .data import from_entries

    if start is not None:
        raise ValueError(f"{path}: GluonTS entries carry their own start; drop --start")
    text = _text(path, comp)
    if text.lstrip().startswith("["):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON ({err.msg}); give a list of GluonTS entries") from None
    else:
        entries = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}, line {i + 1}: not JSON ({err.msg}); give one GluonTS entry "
                    '{"start", "target"} per line'
                ) from None
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(
                f"{path}, entry {i + 1}: expected an object with 'start' and 'target', got {type(e).__name__}"
            )
        if "target" in e:
            t = e["target"]
            if not isinstance(t, list) or any(isinstance(v, (list, dict, str)) and v != "NaN" for v in t):
                raise ValueError(
                    f"{path}, entry {i + 1}: 'target' must be a flat list of numbers (one series per entry; give a "
                    "multivariate series as one entry per component)"
                )
            e["target"] = [math.nan if v is None or v == "NaN" else v for v in t]
    return from_entries(entries, freq)


def series_from_frame(
    df, freq=None, start=None, where: str = "the DataFrame", info: dict | None = None
) -> list[Series]:
    """A pandas DataFrame in any accepted layout: long (``unique_id, ds, y`` or ``item_id, timestamp,
    target`` columns), wide with a DatetimeIndex or a datetime column first, or a bare numeric matrix (needs
    ``freq``)."""
    import pandas as pd

    info = {} if info is None else info
    names = [str(c) for c in df.columns]
    cols = _layout_long(names)
    info["layout"] = "long" if cols is not None else "wide"
    if cols is not None:
        _check_long_extra(names, cols, where)
        y = pd.to_numeric(df[cols[2]], errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(np.isnan(y) & df[cols[2]].notna().to_numpy())
        if bad.size:
            raise ValueError(f"{where}, row {bad[0]}: {cols[2]} {df[cols[2]].iloc[bad[0]]!r} is not a number")
        ts = df[cols[1]]
        cells = [str(v) for v in ts] if not pd.api.types.is_datetime64_any_dtype(ts) else [str(v) for v in ts]
        return _long(df[cols[0]].tolist(), cells, y, freq, where, start)
    times = None
    if isinstance(df.index, pd.DatetimeIndex):
        times = df.index
    elif isinstance(df.index, pd.PeriodIndex):
        times = df.index.to_timestamp()
    elif len(df.columns) > 1 and pd.api.types.is_datetime64_any_dtype(df.iloc[:, 0]):
        times = pd.DatetimeIndex(df.iloc[:, 0])
        df = df.iloc[:, 1:]
    non_numeric = [str(c) for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise ValueError(
            f"{where}: columns {non_numeric} are not numeric; a wide frame holds one numeric column per series "
            "(the time as its index or first column)"
        )
    return _wide(df.to_numpy(np.float64), [str(c) for c in df.columns], times, freq, start, where, True)


def read_series(
    path, freq: str | Frequency | None = None, start=None, header="auto", info: dict | None = None
) -> list[Series]:
    """Series from a file in any accepted layout (see the module docstring and ``docs/timeseries/data.md``).

    ``freq``: needed when the file has no timestamps, checked against them otherwise. ``start``: the first
    timestamp of a file without a time column. ``header``: ``"auto"``, ``True`` or ``False``. ``info``, a
    dict, is filled with what was found: format, compression, layout (wide or long), header, time column.
    """
    if header not in HEADER_CHOICES:
        raise ValueError(f"header must be 'auto', True or False, got {header!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"data file {path} does not exist; give an existing file (.csv, .tsv, .txt, .jsonl, .parquet, "
            "optionally .gz/.bz2/.xz/.zip) or a bundled dataset name"
        )
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a data file")
    fmt, comp = _suffixes(path)
    info = {} if info is None else info
    info.update(format=fmt.lstrip(".") or "text", compression=comp.lstrip(".") if comp else None)
    if fmt in (".json", ".jsonl"):
        info["layout"] = "gluonts entries"
        return _jsonl(path, comp, freq, start)
    if fmt in (".parquet", ".feather"):
        import pandas as pd

        if comp:
            raise ValueError(f"{path}: {fmt} files are compressed inside; give the {fmt} file itself")
        try:
            df = pd.read_parquet(path) if fmt == ".parquet" else pd.read_feather(path)
        except ImportError:
            raise ImportError(
                f"reading {fmt} files needs pyarrow: pip install pyarrow (or save the frame as CSV)"
            ) from None
        return series_from_frame(df, freq, start, str(path), info)
    return _delimited(path, comp, freq, start, header, info)
