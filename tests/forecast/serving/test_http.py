"""`forecast.serving.http.served_rows` and `served_records`: the scoring server writes the same
JSON bytes for the rows with their timestamps as text, and for them as a list of row dicts, as
for the rows themselves."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.pyfunc.scoring_server import predictions_to_json

from forecast.serving.http import served_records, served_rows


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


@pytest.mark.parametrize("times", TIMES.values(), ids=TIMES.keys())
def test_served_records_are_written_as_the_same_bytes(times):
    rows = _rows(times)
    records = served_records(rows)
    assert isinstance(records, list) and len(records) == len(rows)
    assert _written(records) == _written(rows)
    assert rows["timestamp"].dtype.kind == "M"  # the caller's frame is left as it was


@settings(max_examples=60, deadline=None)
@given(
    forecasts=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=30),
    labels=st.lists(st.text(max_size=8), min_size=1, max_size=4),
    quantiles=st.integers(min_value=0, max_value=3),
)
def test_served_records_match_the_frame_for_any_values(forecasts, labels, quantiles):
    n = len(forecasts)
    rows = pd.DataFrame(
        {
            "series": np.asarray([labels[i % len(labels)] for i in range(n)], dtype=object),
            "timestamp": pd.date_range("2000-01-03 09:30", periods=n, freq="15min"),
            "step": np.arange(1, n + 1, dtype=np.int64) * (2**40),
            "target": np.asarray(["value"] * n, dtype=object),
            "forecast": np.asarray(forecasts, dtype=np.float64),
            **{
                f"p{10 * (j + 1)}": np.asarray(forecasts[::-1], np.float64)
                for j in range(quantiles)
            },
        }
    )
    assert _written(served_records(rows)) == _written(rows)
