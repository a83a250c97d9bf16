"""The MSTL seasonal profile: fitted on the rows given, a function of the timestamp only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecast.config import ForecastConfig
from pipelines.deseason import Deseasonalizer
from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema

SCHEMA = SeriesSchema(time_col="timestamp", id_col="id", targets=("y",))
PATTERN = np.array([3.0, -1.0, -4.0, 2.0])  # sums to 0: a pure seasonal of period 4


def _frame(n=40, freq="MS", start="2000-01-01", tz=None, ids=("a", "b")) -> pd.DataFrame:
    t = np.arange(n)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "id": sid,
                    "timestamp": pd.date_range(start, periods=n, freq=freq, tz=tz),
                    "y": level + 0.1 * t + (k + 1) * PATTERN[t % 4],
                }
            )
            for k, (sid, level) in enumerate(zip(ids, (10.0, 50.0), strict=False))
        ],
        ignore_index=True,
    )


def _steps_after(frame, sid, n, freq):
    last = frame.loc[frame["id"] == sid, "timestamp"].iloc[-1]
    return pd.date_range(last, periods=n + 1, freq=freq)[1:]


def test_the_profile_is_the_last_cycle_and_repeats_over_any_horizon():
    frame = _frame()
    d = Deseasonalizer(method="mstl", seasons=(4,)).fit(frame, SCHEMA, freq="MS")
    cycle = d.cycles_[4][:, 0]  # (S, 4)
    # A clean period-4 pattern: MSTL recovers it (series b's is twice a's).
    np.testing.assert_allclose(cycle[0], PATTERN[[0, 1, 2, 3]][np.arange(36, 40) % 4], atol=0.05)
    np.testing.assert_allclose(cycle[1], 2 * cycle[0], atol=0.1)
    future = _steps_after(frame, "a", 9, "MS")  # 9 months after the anchor
    got = d.seasonal(future.asi8, np.zeros(9, int))[:, 0]
    np.testing.assert_array_equal(got, cycle[0][np.arange(9) % 4])
    # Earlier timestamps (history before the anchor) map onto the same cycle.
    past = frame.loc[frame["id"] == "b", "timestamp"]
    np.testing.assert_array_equal(
        d.seasonal(pd.DatetimeIndex(past).asi8, np.ones(40, int))[:, 0], cycle[1][np.arange(40) % 4]
    )


def test_transform_subtracts_the_profile_and_the_state_round_trips_through_json():
    frame = _frame()
    d = Deseasonalizer(method="mstl", seasons=(4,)).fit(frame, SCHEMA, freq="MS")
    again = Deseasonalizer.from_dict(json.loads(json.dumps(d.to_dict())))
    out, out2 = d.transform(frame), again.transform(frame)
    np.testing.assert_array_equal(out["y"], out2["y"])
    codes = d.series_index(frame["id"].tolist())
    seas = d.seasonal(pd.DatetimeIndex(frame["timestamp"]).asi8, codes)[:, 0]
    np.testing.assert_allclose(out["y"] + seas, frame["y"], rtol=1e-12)
    # The remainder has (almost) no season left: its lag-4 differences are the trend's.
    rem = out.loc[out["id"] == "a", "y"].to_numpy()
    np.testing.assert_allclose(rem[4:] - rem[:-4], 0.4, atol=0.1)


def test_only_the_rows_given_to_fit_shape_the_profile():
    frame = _frame()
    train = frame.groupby("id").head(32).reset_index(drop=True)
    d = Deseasonalizer(method="mstl", seasons=(4,)).fit(train, SCHEMA, freq="MS")
    wild = frame.assign(y=np.where(frame.groupby("id").cumcount() >= 32, 1e6, frame["y"]))
    d2 = Deseasonalizer(method="mstl", seasons=(4,)).fit(
        wild.groupby("id").head(32).reset_index(drop=True), SCHEMA, freq="MS"
    )
    np.testing.assert_array_equal(d.cycles_[4], d2.cycles_[4])
    assert (
        d.anchor_.tolist()
        == pd.DatetimeIndex(train.groupby("id")["timestamp"].last()).asi8.tolist()
    )


def test_sub_daily_steps_count_absolute_time_across_dst():
    # Half-hours over the 2024-03-31 switch in Europe/London (a 46-half-hour day).
    frame = _frame(n=48 * 6, freq="30min", start="2024-03-28", tz="Europe/London", ids=("a",))
    d = Deseasonalizer(method="mstl", seasons=(4,)).fit(frame, SCHEMA, freq="30min")
    times = pd.DatetimeIndex(frame["timestamp"])
    got = d.seasonal(times.asi8, np.zeros(len(times), int))[:, 0]
    np.testing.assert_array_equal(got, d.cycles_[4][0, 0][np.arange(len(times)) % 4])


def test_errors_name_the_series_the_seasons_and_the_keys():
    with pytest.raises(
        DataValidationError, match=r"series 'a' has 6 rows and the seasons are \[4\]"
    ):
        Deseasonalizer(method="mstl", seasons=(4,)).fit(_frame(n=6), SCHEMA, freq="MS")
    d = Deseasonalizer(method="mstl", seasons=(4,)).fit(_frame(), SCHEMA, freq="MS")
    with pytest.raises(DataValidationError, match=r"Series \['zz'\] were not seen"):
        d.transform(_frame(ids=("zz",)))
    with pytest.raises(ConfigError, match="needs a season longer than one step"):
        Deseasonalizer(method="mstl", seasons=(1,))
    base = {"name": "d", "data": {"dataset": "sp500"}, "window": {"lookback": 10, "horizon": 2}}
    with pytest.raises(ConfigError, match=r"`deseasonalize` must be one of \['none', 'mstl'\]"):
        ForecastConfig.from_dict({**base, "model": {"deseasonalize": "stl"}})
    with pytest.raises(
        ConfigError, match=r"`model.deseasonalize: mstl` needs a regular grid \(`data.calendar: "
    ):
        ForecastConfig.from_dict(
            {
                **base,
                "data": {"dataset": "sp500", "calendar": "XNYS"},
                "model": {"deseasonalize": "mstl"},
            }
        )
