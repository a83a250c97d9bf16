"""Tests for pipelines.calendars: specs, session grids, horizons and their use in validate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.calendars import REGULAR, Calendar, infer_sessions
from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema
from pipelines.validate import ValidationPolicy, data_timestamp, validate

US_HOURS = {"open": "09:30", "close": "16:00", "days": "Mon-Fri", "holidays": "US"}
SCHEMA = SeriesSchema(time_col="ds", targets="y")


def frame(times) -> pd.DataFrame:
    return pd.DataFrame({"ds": times, "y": np.arange(len(times), dtype=float)})


def test_specs_parse_to_the_documented_calendars():
    assert Calendar.from_spec(None) is REGULAR and Calendar.from_spec("regular") is REGULAR
    assert Calendar.from_spec("business") == Calendar(kind="business")
    assert Calendar.from_spec("xnys") == Calendar(kind="exchange", exchange="XNYS")
    hours = Calendar.from_spec(US_HOURS)
    assert hours.describe() == "working days Mon-Fri less US holidays 09:30-16:00"
    assert Calendar.from_spec({"days": "Tue-Sun"}).days == (1, 2, 3, 4, 5, 6)
    assert Calendar.from_spec({"days": ["Sat", "Sun"]}).days == (5, 6)
    assert Calendar.from_spec({"open": 570, "close": "16:00"}).open == "09:30"  # YAML 09:30
    for cal in (hours, Calendar.from_spec("XNYS"), Calendar.from_spec("business"), REGULAR):
        assert Calendar.from_dict(cal.to_dict()) == cal
    assert Calendar.from_dict(None) is REGULAR  # pipeline states saved before calendars


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("XNYZ", "`data.calendar` 'XNYZ' is neither 'regular', 'business' nor an exchange"),
        ({"days": "Mon-Fry"}, "`data.calendar.days` must be 'business', 'all', a range"),
        ({"holidays": "USA!"}, "`data.calendar.holidays` must be a country code"),
        ({"holidays": "US-XX"}, "`data.calendar.holidays`: US has no subdivision 'XX'"),
        ({"open": "25:00"}, "`data.calendar.open` must be a time of day 'HH:MM'"),
        ({"open": "16:00", "close": "09:30"}, "`data.calendar.close` must be after"),
        ({"opens": "09:00"}, "Unknown keys ['opens'] in `data.calendar`. Did you mean 'open'?"),
        ({"exchange": "XNYS", "days": "all"}, "`data.calendar.exchange` sets the sessions"),
        (3, "`data.calendar` must be one of 'regular', 'business'"),
    ],
)
def test_bad_specs_name_the_key_and_what_is_accepted(spec, text):
    with pytest.raises(ConfigError) as info:
        Calendar.from_spec(spec)
    assert text in str(info.value)


def test_business_days_skip_weekends_and_the_countrys_holidays():
    cal = Calendar.from_spec({"days": "business", "holidays": "US"})
    nxt = cal.next_times(pd.Timestamp("2024-12-24 16:00"), 3, "B")
    assert list(nxt.strftime("%Y-%m-%d %H:%M")) == [
        "2024-12-26 16:00",  # Christmas skipped, the series' time of day kept
        "2024-12-27 16:00",
        "2024-12-30 16:00",
    ]


def test_opening_hours_run_to_the_next_working_day_in_the_data_zone():
    cal = Calendar.from_spec(US_HOURS)
    last = pd.Timestamp("2024-11-27 15:00", tz="America/New_York")
    nxt = cal.next_times(last, 4, "30min")
    assert str(nxt.tz) == "America/New_York"
    assert list(nxt.strftime("%m-%d %H:%M")) == [
        "11-27 15:30",
        "11-29 09:30",
        "11-29 10:00",
        "11-29 10:30",
    ]
    assert cal.season(30 * 60 * 10**9) == 13  # half-hours from 09:30 to 16:00


def test_exchange_sessions_and_trading_minutes_with_early_closes():
    cal = Calendar.from_spec("XNYS")
    days = cal.next_times(pd.Timestamp("2015-12-23"), 3, "B")
    assert list(days.strftime("%m-%d")) == ["12-24", "12-28", "12-29"]  # no 12-25
    bars = cal.next_times(pd.Timestamp("2015-11-27 12:00"), 3, "30min")
    # The day after Thanksgiving closes at 13:00: the next bar is Monday's open.
    assert list(bars.strftime("%m-%d %H:%M")) == ["11-27 12:30", "11-30 09:30", "11-30 10:00"]


CALENDARS = st.sampled_from(
    [
        Calendar.from_spec(US_HOURS),
        Calendar.from_spec(
            {"days": "Tue-Sat", "holidays": "GB", "open": "11:00", "close": "23:00"}
        ),
        Calendar.from_spec({"days": "business", "holidays": "DE"}),
        Calendar.from_spec("XNYS"),
        Calendar.from_spec("XLON"),
    ]
)


@given(CALENDARS, st.sampled_from(["B", "h", "30min"]), st.integers(0, 45), st.integers(1, 30))
def test_the_served_horizon_is_the_next_stretch_of_the_validated_grid(cal, freq, k, n):
    """One grid for validation and serving: the n timestamps after the k-th are grid[k+1:]."""
    hours = cal.open is not None
    if hours and freq == "B":
        freq = "h"
    step = None if freq == "B" else int(pd.Timedelta(pd.tseries.frequencies.to_offset(freq)).value)
    lo, hi = pd.Timestamp("2024-11-01").value, pd.Timestamp("2025-03-01").value
    grid = cal.grid(lo, hi, step, None)
    assert (np.diff(grid) > 0).all() and len(grid) > k + n
    last = pd.Timestamp(int(grid[k]))
    got = cal.next_times(last, n, freq).asi8
    assert (got == grid[k + 1 : k + 1 + n]).all()
    assert (cal.times_from(last, n, freq).asi8 == grid[k : k + n]).all()


def test_validate_judges_gaps_against_the_sessions():
    cal = Calendar.from_spec(US_HOURS)
    times = cal.times_from(pd.Timestamp("2024-11-25 09:30"), 13 * 8, "30min")  # over Thanksgiving
    out = validate(
        frame(times), SeriesSchema(time_col="ds", targets="y", freq="30min"), calendar=cal
    )
    assert out.attrs["calendar"] == cal.to_dict() and len(out) == 13 * 8
    with pytest.raises(DataValidationError) as info:
        validate(frame(times.delete(20)), SeriesSchema(time_col="ds", targets="y"), calendar=cal)
    assert "1 timestamps missing on the grid of working days Mon-Fri less US holidays" in str(
        info.value
    )
    assert "2024-11-26 13:00:00" in str(info.value)
    with pytest.raises(DataValidationError, match="off the grid of working days"):
        validate(frame(times + pd.Timedelta("7h")), SCHEMA, calendar=cal)


def test_opening_hours_are_inferred_and_a_holiday_gap_names_the_key_to_set():
    cal = Calendar.from_spec(US_HOURS)
    times = cal.times_from(pd.Timestamp("2024-11-25 09:30"), 13 * 8, "30min")
    assert infer_sessions(times.asi8, 30 * 60 * 10**9) == Calendar(
        kind="business", open="09:30", close="16:00"
    )  # under two weeks with no weekend row: Mon-Fri
    with pytest.raises(DataValidationError) as info:  # Thanksgiving is a gap for Mon-Fri
        validate(frame(times), SCHEMA)
    text = str(info.value)
    assert "13 timestamps missing on the grid of working days Mon-Fri 09:30-16:00" in text
    assert "(inferred from the history)" in text and "2024-11-28 09:30:00" in text
    assert "data.calendar: {open: '09:30', close: '16:00', days: 'Mon-Fri', holidays:" in text


def test_a_regular_gap_suggests_saying_the_calendar():
    times = pd.bdate_range("2024-12-16", "2024-12-31").delete(7)  # 12-25 missing
    with pytest.raises(DataValidationError, match=r"say which: data.calendar: business"):
        validate(frame(times), SeriesSchema(time_col="ds", targets="y", freq="B"))
    cal = Calendar.from_spec({"days": "business", "holidays": "US"})
    assert len(validate(frame(times), SCHEMA, calendar=cal)) == len(times)


def test_opening_hours_need_intraday_data_and_one_calendar():
    with pytest.raises(ConfigError, match="has opening hours, so it needs intraday data"):
        validate(
            frame(pd.bdate_range("2024-01-01", periods=5)),
            SCHEMA,
            calendar=Calendar.from_spec(US_HOURS),
        )
    with pytest.raises(ConfigError, match="Two calendars"):
        validate(
            frame(pd.bdate_range("2024-01-01", periods=5)),
            SCHEMA,
            policy=ValidationPolicy(calendar="observed"),
            calendar=Calendar.from_spec("XNYS"),
        )


@pytest.mark.parametrize(("day", "count"), [("2024-03-31", 46), ("2024-10-27", 50)])
def test_dst_days_of_a_local_half_hourly_series_keep_every_half_hour(day, count):
    """Tz-aware times step in absolute time: 46 or 50 half-hours, none invented or dropped."""
    times = pd.date_range(f"{day} 00:00", periods=count + 48, freq="30min", tz="Europe/London")
    out = validate(frame(times), SCHEMA)  # frequency inferred
    assert out.attrs["freq"] == "30min" and out["ds"].dt.tz is not None
    assert (out["ds"].dt.date.astype(str) == day).sum() == count
    with pytest.raises(DataValidationError, match="1 timestamps missing"):
        validate(frame(times.delete(5)), SCHEMA)


def test_mixed_utc_offsets_in_text_are_instants():
    text = ["2024-03-31 00:30:00+00:00", "2024-03-31 02:00:00+01:00", "2024-03-31 02:30:00+01:00"]
    out = validate(frame(text), SCHEMA)
    assert str(out["ds"].dt.tz) == "UTC" and out.attrs["freq"] == "30min"


def test_config_timestamps_are_read_in_the_data_zone():
    tz = "Europe/London"
    assert data_timestamp("2024-06-01 12:00", tz, "split.test") == pd.Timestamp(
        "2024-06-01 11:00", tz="UTC"
    )
    assert data_timestamp("2024-06-01 12:00+00:00", tz, "split.test").hour == 13
    with pytest.raises(
        ConfigError, match="`split.test` has a UTC offset .* the time column is naive"
    ):
        data_timestamp("2024-06-01 12:00+00:00", None, "split.test")
    with pytest.raises(ConfigError, match="is not one instant in the data's zone"):
        data_timestamp("2024-10-27 01:30", tz, "data.start")  # the clock shows it twice
