"""`forecast.serving.http.served_rows`: the scoring server writes the same JSON bytes for the
rows with their timestamps as text as for the rows themselves."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc.scoring_server import predictions_to_json

from forecast.serving.http import served_rows


def _written(rows: pd.DataFrame) -> str:
    out = io.StringIO()
    predictions_to_json(rows, out)
    return out.getvalue()


def _rows(times: pd.Series) -> pd.DataFrame:
    n = len(times)
    return pd.DataFrame(
        {
            "series": [f"s{i % 3}" for i in range(n)],
            "timestamp": times,
            "step": np.arange(1, n + 1, dtype=np.int64),
            "target": "value",
            "forecast": np.random.default_rng(0).normal(size=n) * 1e3,
        }
    )


TIMES = {
    "daily": pd.Series(pd.date_range("1998-08-17", periods=40, freq="D")),
    "half-hourly, second unit": pd.Series(
        pd.date_range("2014-01-21 20:00", periods=40, freq="30min").as_unit("s")
    ),
    "fractions of a second": pd.Series(
        pd.date_range("2014-01-21", periods=40, freq="250ms").as_unit("ns")
        + pd.to_timedelta(np.arange(40), unit="ns")
    ),
    "a UTC offset": pd.Series(pd.date_range("2015-03-02 09:00", periods=40, freq="h", tz="+01:00")),
    "a timezone across DST": pd.Series(
        pd.date_range("2021-03-27", periods=40, freq="h", tz="Europe/Berlin")
    ),
    "NaT": pd.Series([pd.Timestamp("2020-01-01"), pd.NaT] * 20, dtype="datetime64[ns]"),
}


@pytest.mark.parametrize("times", TIMES.values(), ids=TIMES.keys())
def test_served_rows_are_written_as_the_same_bytes(times):
    rows = _rows(times)
    served = served_rows(rows)
    assert _written(served) == _written(rows)
    assert served["timestamp"].dtype == object and isinstance(served["timestamp"].iloc[0], str)
    assert rows["timestamp"].dtype.kind == "M"  # the caller's frame is left as it was
    pd.testing.assert_frame_equal(served.drop(columns="timestamp"), rows.drop(columns="timestamp"))


def test_rows_without_timestamps_are_returned_as_they_are():
    rows = _rows(TIMES["daily"]).drop(columns="timestamp")
    assert served_rows(rows) is rows
