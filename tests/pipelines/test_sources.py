"""Tests for pipelines.sources: reading frames and files, wide <-> long reshaping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema
from pipelines.sources import long_to_wide, read_frame, read_parquet, wide_to_long

SCHEMA = SeriesSchema(time_col="ds", id_col="id", targets="y")


def sample() -> pd.DataFrame:
    return pd.DataFrame(
        {"ds": ["2024-01-01", "2024-01-02"], "id": ["a", "a"], "y": [1.5, 2.5], "n": [1, 2]}
    )


@pytest.mark.parametrize("name", ["data.csv", "data.csv.gz", "data.parquet", "data.pq"])
def test_files_round_trip(tmp_path, name):
    path = tmp_path / name
    if "csv" in name:
        sample().to_csv(path, index=False)
    else:
        sample().to_parquet(path)
    out = read_frame(path, schema=SCHEMA)
    pd.testing.assert_frame_equal(out, sample(), check_dtype=False)
    assert out["y"].tolist() == [1.5, 2.5]


def test_string_path_and_explicit_format(tmp_path):
    path = tmp_path / "export.txt"
    sample().to_csv(path, index=False)
    assert read_frame(str(path), format="csv")["n"].tolist() == [1, 2]


def test_dataframe_source_is_copied():
    src = sample()
    out = read_frame(src, schema=SCHEMA)
    out.loc[0, "y"] = 99.0
    assert src.loc[0, "y"] == 1.5


def test_wide_to_long_fixed_values():
    wide = pd.DataFrame({"t": ["d1", "d2"], "DAX": [1.0, 2.0], "SMI": [3.0, 4.0]})
    long = wide_to_long(wide, time_col="t")
    assert list(long.columns) == ["t", "series", "value"]
    assert long.values.tolist() == [
        ["d1", "DAX", 1.0],
        ["d2", "DAX", 2.0],
        ["d1", "SMI", 3.0],
        ["d2", "SMI", 4.0],
    ]
    only = wide_to_long(wide, time_col="t", value_cols=["SMI"], id_name="k", value_name="v")
    assert only[["k", "v"]].values.tolist() == [["SMI", 3.0], ["SMI", 4.0]]


@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=12),
    st.integers(1, 4),
)
def test_long_to_wide_inverts_wide_to_long(values, n_series):
    times = pd.date_range("2024-01-01", periods=len(values), freq="h")
    wide = pd.DataFrame({"ts": times, **{f"s{i}": np.roll(values, i) for i in range(n_series)}})
    long = wide_to_long(wide, time_col="ts")
    assert len(long) == len(values) * n_series
    back = long_to_wide(long, time_col="ts", id_col="series", value_col="value")
    pd.testing.assert_frame_equal(back, wide, check_dtype=False)


BAD = [
    ("missing csv", lambda p: read_frame(p / "nope.csv"), ConfigError, "File not found: "),
    (
        "missing parquet",
        lambda p: read_frame(p / "nope.parquet"),
        ConfigError,
        "Expected an existing parquet file",
    ),
    (
        "unknown suffix",
        lambda p: read_frame(p / "data.xlsx"),
        ConfigError,
        "allowed suffixes: ['.csv', '.csv.gz', '.csv.zip', '.parquet', '.pq']",
    ),
    ("no suffix", lambda p: read_frame(p / "data"), ConfigError, "unsupported file type '(none)'"),
    (
        "unknown format",
        lambda p: read_frame(p / "a.csv", format="xlsx"),
        ConfigError,
        "`format` must be one of ['csv', 'parquet'] or None. Received: format='xlsx'",
    ),
    (
        "int source",
        lambda p: read_frame(3),
        ConfigError,
        "`source` must be a pandas DataFrame or the path of a CSV or Parquet file. Received: int 3",
    ),
    ("none source", lambda p: read_frame(None), ConfigError, "Received: NoneType None"),
    ("list source", lambda p: read_frame([1, 2]), ConfigError, "Received: list [1, 2]"),
    (
        "schema columns",
        lambda p: read_frame(pd.DataFrame({"id": [1]}), schema=SCHEMA),
        DataValidationError,
        "The following columns are missing: ['ds', 'y']",
    ),
    (
        "schema id column in csv",
        lambda p: read_frame(_csv(p, "ds,y\n2024-01-01,1\n"), schema=SCHEMA),
        DataValidationError,
        "The following columns are missing: ['id']. Found columns: ['ds', 'y']",
    ),
    (
        "bad schema",
        lambda p: read_frame(sample(), schema={"time_col": "ds"}),
        ConfigError,
        "`schema` must be a SeriesSchema. Received: dict",
    ),
    (
        "empty csv",
        lambda p: read_frame(_csv(p, "")),
        DataValidationError,
        "is empty; expected a CSV header row",
    ),
    ("directory", lambda p: read_frame(_dir(p)), ConfigError, "got a directory"),
    (
        "corrupt parquet",
        lambda p: read_frame(_csv(p, "not parquet", "x.parquet")),
        DataValidationError,
        "Cannot read",
    ),
    (
        "wide missing time",
        lambda p: wide_to_long(pd.DataFrame({"a": [1]}), time_col="t"),
        DataValidationError,
        "The following columns are missing: ['t']",
    ),
    (
        "wide missing values",
        lambda p: wide_to_long(
            pd.DataFrame({"t": [1], "a": [1]}), time_col="t", value_cols=["a", "b"]
        ),
        DataValidationError,
        "The following columns are missing: ['b']",
    ),
    (
        "wide no series",
        lambda p: wide_to_long(pd.DataFrame({"t": [1]}), time_col="t"),
        ConfigError,
        "`value_cols` must name at least one series column",
    ),
    (
        "wide name clash",
        lambda p: wide_to_long(pd.DataFrame({"t": [1], "a": [1]}), time_col="t", value_name="t"),
        ConfigError,
        "`time_col`, `id_name` and `value_name` must differ",
    ),
    (
        "wide not a frame",
        lambda p: wide_to_long({"t": [1]}, time_col="t"),
        ConfigError,
        "`frame` must be a pandas DataFrame. Received: dict",
    ),
    (
        "long duplicates",
        lambda p: long_to_wide(
            pd.DataFrame({"t": [1, 1], "id": ["a", "a"], "v": [1, 2]}),
            time_col="t",
            id_col="id",
            value_col="v",
        ),
        DataValidationError,
        "2 rows share a (series, timestamp), first [['a', '1'], ['a', '1']]",
    ),
    (
        "long missing",
        lambda p: long_to_wide(pd.DataFrame({"t": [1]}), time_col="t", id_col="id", value_col="v"),
        DataValidationError,
        "The following columns are missing: ['id', 'v']",
    ),
]


def _csv(directory, text, name="x.csv"):
    path = directory / name
    path.write_text(text)
    return path


def _dir(directory):
    (directory / "folder.csv").mkdir()
    return directory / "folder.csv"


@pytest.mark.parametrize(("case", "call", "error", "text"), BAD, ids=[b[0] for b in BAD])
def test_bad_source_raises_a_message_naming_the_problem(tmp_path, case, call, error, text):
    with pytest.raises(error) as info:
        call(tmp_path)
    assert text in str(info.value)


def _parquet_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2020-01-01", periods=4, freq="D"),
            "series": ["a", "a", "b", None],
            "value": [1.5, np.nan, 3.0, 4.0],
        }
    )


def test_read_parquet_gives_the_frame_pandas_reads(tmp_path):
    path = tmp_path / "request.parquet"
    _parquet_frame().to_parquet(path, index=False)
    pd.testing.assert_frame_equal(read_parquet(path), pd.read_parquet(path))


def test_read_parquet_hands_pyarrow_the_path_not_a_python_file(tmp_path, monkeypatch):
    # A Python file object leaves Python buffers to pyarrow's I/O thread, which aborts the
    # process when it frees the last one while the interpreter exits (SIGABRT, 3 of 400
    # fresh processes that read and exited; 0 of 400 reading the path).
    path = tmp_path / "request.parquet"
    _parquet_frame().to_parquet(path, index=False)
    sources = []
    original = pyarrow.parquet.read_table

    def spy(source, *args, **kwargs):
        sources.append(source)
        return original(source, *args, **kwargs)

    monkeypatch.setattr(pyarrow.parquet, "read_table", spy)
    read_parquet(path)
    assert sources == [str(path)]
