"""The serving edge: a request as pandas reads a CSV (text times, UTC offsets, integers,
extra columns) becomes the frame the forecaster reads; what cannot be read is named."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.serving.coerce import RequestLayout, coerce_request
from pipelines.errors import DataValidationError

LAYOUT = RequestLayout(time_col="ds", id_col="id", value_columns=("y", "x"))


def typed(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ds": pd.date_range("2024-03-30 22:00", periods=n, freq="h"),
            "id": ["a"] * n,
            "y": np.arange(n, dtype=np.float64),
            "x": np.linspace(0.5, 2.0, n),
        }
    )


def read_back(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` as `pd.read_csv` gives it back: times as text, whole numbers as int64."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)))


def test_a_csv_as_pandas_reads_it_becomes_the_typed_frame():
    want = typed()
    csv = read_back(want.assign(y=want["y"].astype(np.int64), note="extra"))
    assert csv["ds"].dtype == object and csv["y"].dtype == np.int64 and "note" in csv
    got = coerce_request(csv, LAYOUT)
    pd.testing.assert_frame_equal(got, want[["ds", "id", "y", "x"]])


def test_a_utc_offset_is_kept():
    want = typed().assign(ds=lambda f: f["ds"].dt.tz_localize("+01:00"))
    got = coerce_request(read_back(want), LAYOUT)
    assert str(got["ds"].dt.tz) == "UTC+01:00"
    assert (got["ds"] == want["ds"]).all()


def test_offsets_that_change_at_a_dst_switch_become_the_same_instants_in_utc():
    local = typed(6).assign(ds=pd.date_range("2024-03-31 00:00", periods=6, freq="h", tz="CET"))
    csv = read_back(local)
    assert csv["ds"].str[-6:].unique().tolist() == ["+01:00", "+02:00"]
    got = coerce_request(csv, LAYOUT)
    assert str(got["ds"].dt.tz) == "UTC"
    assert (got["ds"] == local["ds"]).all()  # the same instants
    assert (got["ds"].diff().dropna() == pd.Timedelta("1h")).all()


def test_timestamps_with_and_without_an_offset_are_refused_naming_both_rows():
    csv = read_back(typed()).astype({"ds": object})
    csv.loc[2, "ds"] = "2024-03-31 00:00:00+01:00"
    with pytest.raises(DataValidationError) as err:
        coerce_request(csv, LAYOUT)
    assert str(err.value) == (
        "Column 'ds' mixes timestamps with and without a UTC offset: row 2 has "
        "'2024-03-31 00:00:00+01:00', row 0 has '2024-03-30 22:00:00'. Write every "
        "timestamp with its offset, or none."
    )


@pytest.mark.parametrize(
    ("col", "row", "value", "message"),
    [
        (
            "ds",
            3,
            "soon",
            "Column 'ds' must hold a timestamp such as '2020-01-31 12:30' in "
            "every row; row 3 has 'soon' (1 such rows).",
        ),
        (
            "y",
            1,
            "12,5",
            "Column 'y' must hold a number in every row; row 1 has '12,5' (1 such rows).",
        ),
    ],
)
def test_what_is_not_coercible_is_named_with_column_row_and_value(col, row, value, message):
    csv = read_back(typed()).astype({col: object})
    csv.loc[row, col] = value
    with pytest.raises(DataValidationError) as err:
        coerce_request(csv, LAYOUT)
    assert str(err.value) == message


def test_missing_values_stay_missing_and_missing_columns_are_left_to_the_forecaster():
    frame = typed().astype({"y": object})
    frame.loc[3, "y"] = None  # a JSON null: a future row's target
    got = coerce_request(frame.drop(columns="x"), LAYOUT)
    assert list(got.columns) == ["ds", "id", "y"]
    assert got["y"].dtype == np.float64 and np.isnan(got["y"].iloc[3])


def test_series_ids_take_the_kind_the_model_was_fitted_on():
    ints = RequestLayout(time_col="ds", id_col="id", value_columns=("y",), integer_ids=True)
    frame = typed().assign(id=["7", "7", "12", "12"])
    assert coerce_request(frame, ints)["id"].tolist() == [7, 7, 12, 12]
    texts = RequestLayout(time_col="ds", id_col="id", value_columns=("y",))
    assert coerce_request(frame.assign(id=[7, 7, 12, 12]), texts)["id"].tolist() == [
        "7",
        "7",
        "12",
        "12",
    ]
    unknown = frame.assign(id=["7", "x", "12", "12"])  # not all integers: the scaler says who
    assert coerce_request(unknown, ints)["id"].tolist() == ["7", "x", "12", "12"]


def test_the_layout_round_trips_through_model_metadata():
    layout = RequestLayout(time_col="t", id_col="s", value_columns=("a", "b"), integer_ids=True)
    assert layout.to_columns()[:2] == [
        {"name": "t", "type": "datetime"},
        {"name": "s", "type": "long"},
    ]
    assert RequestLayout.from_columns(layout.to_columns()) == layout
    single = RequestLayout(time_col="t", id_col=None, value_columns=("a",))
    assert RequestLayout.from_columns(single.to_columns()) == single


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=30),
    offset=st.sampled_from([None, "+00:00", "-05:00", "+05:30"]),
    start=st.datetimes(min_value=pd.Timestamp("1990-01-01"), max_value=pd.Timestamp("2090-01-01")),
)
def test_a_csv_round_trip_coerces_to_what_the_typed_frame_coerces_to(values, offset, start):
    n = len(values)
    times = pd.date_range(pd.Timestamp(start).floor("s"), periods=n, freq="37min")
    if offset is not None:
        times = times.tz_localize(offset)
    frame = pd.DataFrame({"ds": times, "id": "s", "y": values, "x": np.float64(values) / 8})
    typed_out = coerce_request(frame, LAYOUT)
    csv_out = coerce_request(read_back(frame), LAYOUT)
    pd.testing.assert_frame_equal(csv_out, typed_out, check_dtype=False)
    assert csv_out["y"].dtype == np.float64
    assert (csv_out["ds"] == frame["ds"]).all()
