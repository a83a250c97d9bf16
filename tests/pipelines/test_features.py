"""Tests for pipelines.features: exact values, no look-ahead, serving reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.datasets import load
from pipelines.errors import ConfigError, DataValidationError
from pipelines.features import (
    FeatureSpec,
    add_features,
    calendar_features,
    future_features,
    lags,
    log_returns,
    ohlc_features,
    rolling_volatility,
    simple_returns,
)
from pipelines.schema import SeriesSchema
from pipelines.validate import SEGMENT_COL, ValidationPolicy, validate

E = np.e
SCHEMA = SeriesSchema(time_col="ds", id_col="id", targets="close")


def two_series() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ds": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"] * 2),
            "id": ["a"] * 4 + ["b"] * 4,
            "close": [1.0, E, E**3, E**3, 10.0, 11.0, 9.9, 9.9],
        }
    )


def nan_list(values) -> list:
    return [None if np.isnan(v) else round(float(v), 12) for v in values]


def test_log_and_simple_returns_restart_at_each_series():
    df = two_series()
    assert nan_list(log_returns(df, ["close"], id_col="id")["close_log_return"]) == [
        None,
        1.0,
        2.0,
        0.0,
        None,
        round(np.log(1.1), 12),
        round(np.log(0.9), 12),
        0.0,
    ]
    assert nan_list(simple_returns(df, "close", id_col="id")["close_return"])[4:] == [
        None,
        0.1,
        -0.1,
        0.0,
    ]


def test_returns_work_on_interleaved_rows():
    df = two_series().sort_values(["ds", "id"])  # a, b, a, b, ...
    out = log_returns(df, ["close"], id_col="id").loc[[0, 1, 2, 3], "close_log_return"]
    assert nan_list(out) == [None, 1.0, 2.0, 0.0]


def test_ohlc_features_fixed_values():
    df = pd.DataFrame({"open": [100.0], "high": [110.0], "low": [90.0], "close": [105.0]})
    out = ohlc_features(df)
    assert out["log_range"].iloc[0] == pytest.approx(np.log(110 / 90))
    assert out["body"].iloc[0] == pytest.approx(0.05)


def test_rolling_volatility_uses_the_last_window_returns_only():
    df = two_series()
    vol = rolling_volatility(df, ["close"], 2, id_col="id")["close_vol2"]
    # series a returns: [nan, 1, 2, 0] -> std([1, 2]), std([2, 0])
    assert nan_list(vol[:4]) == [
        None,
        None,
        round(np.std([1, 2], ddof=1), 12),
        round(np.std([2, 0], ddof=1), 12),
    ]
    assert nan_list(vol[4:6]) == [None, None]


def test_lags_shift_within_each_series():
    out = lags(two_series(), ["close"], [1, 2], id_col="id")
    assert nan_list(out["close_lag1"])[4:] == [None, 10.0, 11.0, 9.9]
    assert nan_list(out["close_lag2"])[:4] == [None, None, 1.0, round(E, 12)]


def test_calendar_features_fixed_values():
    times = pd.Series(pd.to_datetime(["2024-01-01 06:00", "2024-04-03 18:00"]), index=[5, 9])
    out = calendar_features(times, ["hour", "weekday", "month"])
    assert list(out.index) == [5, 9]
    assert out.loc[5, "hour_sin"] == pytest.approx(1.0)  # 06:00 is a quarter of the day
    assert out.loc[9, "hour_sin"] == pytest.approx(-1.0)
    assert out.loc[5, "weekday_sin"] == pytest.approx(0.0)  # Monday
    assert out.loc[5, "weekday_cos"] == pytest.approx(1.0)
    assert out.loc[9, "weekday_sin"] == pytest.approx(np.sin(2 * np.pi * 2 / 7))  # Wednesday
    assert out.loc[9, "month_sin"] == pytest.approx(1.0)  # April = 3/12 of the year
    assert np.allclose(out.filter(like="_sin") ** 2 + out.filter(like="_cos").to_numpy() ** 2, 1)


def test_add_features_roles_warmup_and_target_swap():
    spec = FeatureSpec(
        log_returns=("close",),
        volatility=(2,),
        lags=(1,),
        calendar=("weekday",),
        target="log_return",
    )
    out, schema = add_features(two_series(), SCHEMA, spec)
    assert spec.warmup == 2
    assert schema.targets == ("close_log_return",)
    assert schema.past_covariates == ("close_vol2", "close_log_return_lag1")
    assert schema.future_covariates == ("weekday_sin", "weekday_cos")
    assert out["ds"].dt.day.tolist() == [3, 4, 3, 4]  # two warm-up rows dropped per series
    assert nan_list(out["close_log_return"][:2]) == [2.0, 0.0]
    assert nan_list(out["close_log_return_lag1"][:2]) == [1.0, 2.0]
    assert "close" in out.columns and "close" not in schema.value_columns
    assert not out[list(schema.value_columns)].isna().any().any()


def test_spec_round_trips_through_json():
    spec = FeatureSpec(
        log_returns=["close"],
        ohlc=["open", "high", "low", "close"],
        volatility=[5, 20],
        calendar=["hour"],
        lags=[1, 24],
        target="log_return",
    )
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.volatility == (5, 20)


def test_features_reproduce_on_recent_history_and_future_timestamps():
    ds = load("sp500")
    frame = validate(ds.frame, ds.schema, policy=ds.policy)
    spec = FeatureSpec(
        log_returns=("close", "volume"),
        ohlc=("open", "high", "low", "close"),
        volatility=(20,),
        lags=(1, 5),
        calendar=("weekday", "month"),
        target="log_return",
    )
    full, schema = add_features(frame, ds.schema, spec)
    # Serving sees only recent history: warm-up rows plus the window it needs.
    recent, schema2 = add_features(frame.tail(spec.warmup + 64), ds.schema, spec)
    assert schema2 == schema and len(recent) == 64
    cols = list(schema.value_columns)
    np.testing.assert_array_equal(full[cols].tail(64).to_numpy(), recent[cols].to_numpy())
    future = pd.bdate_range("2016-01-04", periods=5)
    cal = future_features(future, FeatureSpec.from_dict(spec.to_dict()))
    assert list(cal.columns) == list(schema.future_covariates)
    assert cal["weekday_sin"].iloc[0] == pytest.approx(0.0)  # Monday


def test_segments_restart_features():
    df = pd.DataFrame(
        {
            "ds": pd.to_datetime(
                ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-06", "2024-01-07", "2024-01-08"]
            ),
            "id": ["a"] * 6,
            "close": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
        }
    )
    seg = validate(
        df,
        SeriesSchema(time_col="ds", id_col="id", targets="close", freq="D"),
        policy=ValidationPolicy(gaps="segment"),
    )
    out, _ = add_features(seg, SCHEMA, FeatureSpec(log_returns=("close",)))
    assert out[SEGMENT_COL].tolist() == [0, 0, 1, 1]  # one warm-up row per segment
    assert out["close_log_return"].tolist() == pytest.approx([np.log(2)] * 4)


BAD = [
    (
        lambda: FeatureSpec(calendar=("hours",)),
        ConfigError,
        "`calendar` must hold one of ['minute', 'hour', 'weekday', 'day_of_month', 'day_of_year', "
        "'month']. Received: calendar=['hours']",
    ),
    (lambda: FeatureSpec(lags=(0,)), ConfigError, "`lags` must hold ints >= 1. Received: lags=[0]"),
    (lambda: FeatureSpec(volatility=(5,)), ConfigError, "`volatility` is computed on log returns"),
    (
        lambda: FeatureSpec(target="price"),
        ConfigError,
        "`target` must be None or one of ['log_return', 'simple_return']. Received: target='price'",
    ),
    (lambda: FeatureSpec(ohlc=("open", "close")), ConfigError, "`ohlc` must name 4 columns"),
    (lambda: FeatureSpec.from_dict({"lag": [1]}), ConfigError, "Unknown feature spec keys ['lag']"),
    (
        lambda: rolling_volatility(two_series(), ["close"], 1),
        ConfigError,
        "`window` must be an int >= 2. Received: window=1",
    ),
    (
        lambda: add_features(two_series(), SCHEMA, FeatureSpec(log_returns=("volume",))),
        DataValidationError,
        "The following columns are missing: ['volume']",
    ),
    (
        lambda: log_returns(
            two_series().assign(close=[1.0, 0.0, 2, 3, 4, 5, 6, 7]), ["close"], id_col="id"
        ),
        DataValidationError,
        "Log returns need positive values; column 'close' has 1 values <= 0 or NaN, first rows [1] "
        "(series ['a'])",
    ),
    (
        lambda: simple_returns(two_series().assign(close=[1.0, 0.0, 2, 3, 4, 5, 6, 7]), ["close"]),
        DataValidationError,
        "it is 0 for columns ['close'] before rows [2]",
    ),
    (
        lambda: ohlc_features(
            pd.DataFrame({"open": [1.0], "high": [1.0], "low": [2.0], "close": [1.0]})
        ),
        DataValidationError,
        "OHLC features need open > 0, low > 0 and high >= low",
    ),
    (
        lambda: add_features(two_series(), SCHEMA, FeatureSpec(lags=(4,))),
        DataValidationError,
        "Series ['a', 'b'] have at most 4 rows; the features need 4 warm-up rows",
    ),
    (
        lambda: add_features(
            add_features(two_series(), SCHEMA, FeatureSpec(lags=(1,)))[0],
            SCHEMA,
            FeatureSpec(lags=(1,)),
        ),
        DataValidationError,
        "Feature columns ['close_lag1'] are already in the frame",
    ),
    (
        lambda: calendar_features(["2024-01-01", "someday"]),
        DataValidationError,
        "Calendar features need timestamps",
    ),
]


@pytest.mark.parametrize(("call", "error", "text"), BAD)
def test_bad_feature_input_names_the_problem(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert text in str(info.value)


@st.composite
def bars(draw):
    """Positive OHLC bars for 1-3 series of 8-30 steps, with one row to perturb."""
    rows = []
    for sid in range(draw(st.integers(1, 3))):
        n = draw(st.integers(8, 30))
        floats = st.floats(0.5, 2.0)
        close = np.cumprod(draw(st.lists(floats, min_size=n, max_size=n)))
        opens = close * np.array(draw(st.lists(floats, min_size=n, max_size=n)))
        low = np.minimum(opens, close) * 0.9
        high = np.maximum(opens, close) * 1.1
        for i, t in enumerate(pd.date_range("2024-01-01", periods=n, freq="h")):
            rows.append((t, f"s{sid}", opens[i], high[i], low[i], close[i], 1e3 * (i + 1)))
    df = pd.DataFrame(rows, columns=["ds", "id", "open", "high", "low", "close", "volume"])
    return df, draw(st.integers(0, len(df) - 1)), draw(st.floats(0.2, 5.0))


SPEC = FeatureSpec(
    log_returns=("close", "volume"),
    simple_returns=("open",),
    ohlc=("open", "high", "low", "close"),
    volatility=(3,),
    lags=(1, 2),
    calendar=("hour",),
    target="log_return",
)


@given(bars())
def test_changing_a_future_value_never_changes_an_earlier_feature(case):
    df, j, factor = case
    changed = df.copy()
    changed.loc[j, ["open", "high", "low", "close", "volume"]] *= factor
    schema = SeriesSchema(time_col="ds", id_col="id", targets="close")
    a, new_schema = add_features(df, schema, SPEC)
    b, _ = add_features(changed, schema, SPEC)
    cols = list(new_schema.value_columns)
    earlier = (a["id"] != df.loc[j, "id"]) | (a["ds"] < df.loc[j, "ds"])
    assert earlier.equals((b["id"] != df.loc[j, "id"]) | (b["ds"] < df.loc[j, "ds"]))
    np.testing.assert_array_equal(a.loc[earlier, cols].to_numpy(), b.loc[earlier, cols].to_numpy())
