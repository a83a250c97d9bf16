"""Tests of forecast/serving/artifacts.py: reading a model's and a request's files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet

from forecast.serving.artifacts import read_parquet


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2020-01-01", periods=4, freq="D"),
            "series": ["a", "a", "b", None],
            "value": [1.5, np.nan, 3.0, 4.0],
        }
    )


def test_read_parquet_gives_the_frame_pandas_reads(tmp_path):
    path = tmp_path / "request.parquet"
    _frame().to_parquet(path, index=False)
    pd.testing.assert_frame_equal(read_parquet(path), pd.read_parquet(path))


def test_read_parquet_hands_pyarrow_the_path_not_a_python_file(tmp_path, monkeypatch):
    # A Python file object leaves Python buffers to pyarrow's I/O thread, which aborts the
    # process when it frees the last one while the interpreter exits (SIGABRT, 3 of 400
    # fresh processes that read and exited; 0 of 400 reading the path).
    path = tmp_path / "request.parquet"
    _frame().to_parquet(path, index=False)
    sources = []
    original = pyarrow.parquet.read_table

    def spy(source, *args, **kwargs):
        sources.append(source)
        return original(source, *args, **kwargs)

    monkeypatch.setattr(pyarrow.parquet, "read_table", spy)
    read_parquet(path)
    assert sources == [str(path)]
