"""Tests for pipelines.validate: fixed repairs, error messages, properties of repaired frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines._frames import series_codes
from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema
from pipelines.validate import SEGMENT_COL, ValidationPolicy, validate

SCHEMA = SeriesSchema(time_col="ds", id_col="id", targets="y")


def frame(times, ids=None, y=None, **extra) -> pd.DataFrame:
    """A small long frame; `y` defaults to 0, 1, 2, ..."""
    n = len(times)
    data = {"ds": times, "id": ids if ids is not None else ["a"] * n}
    data["y"] = y if y is not None else np.arange(n, dtype=float)
    return pd.DataFrame({**data, **extra})


DAYS = [f"2024-01-0{d}" for d in range(1, 8)]


# ---------------------------------------------------------------- fixed-value repairs


def test_clean_frame_is_returned_sorted_typed_and_with_inferred_freq():
    df = frame(DAYS[:3] * 2, ids=["b"] * 3 + ["a"] * 3, y=[1, 2, 3, 4, 5, 6])
    out = validate(df, SCHEMA)
    assert out["id"].tolist() == ["a"] * 3 + ["b"] * 3
    assert out["y"].tolist() == [4.0, 5.0, 6.0, 1.0, 2.0, 3.0]
    assert out["ds"].dtype == "datetime64[ns]"
    assert out["y"].dtype == np.float64
    assert out.attrs["freq"] == "D"
    assert list(out.index) == list(range(6))


def test_interleaved_series_are_grouped_without_needing_unsorted_sort():
    df = frame(["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-02"], ids=list("abab"))
    out = validate(df, SCHEMA)
    assert out["id"].tolist() == ["a", "a", "b", "b"]
    assert out["y"].tolist() == [0.0, 2.0, 1.0, 3.0]


@pytest.mark.parametrize(
    ("gaps", "expected"),
    [("ffill", [1.0, 1.0, 1.0, 7.0]), ("interpolate", [1.0, 3.0, 5.0, 7.0])],
)
def test_gap_fill_inserts_missing_days(gaps, expected):
    df = frame(["2024-01-01", "2024-01-04"], y=[1.0, 7.0], note=["x", "y"])
    out = validate(
        df,
        SeriesSchema(time_col="ds", id_col="id", targets="y", freq="D"),
        policy=ValidationPolicy(gaps=gaps),
    )
    assert out["ds"].dt.strftime("%d").tolist() == ["01", "02", "03", "04"]
    assert out["y"].tolist() == expected
    # columns outside the schema are carried along; inserted rows copy the previous row
    assert out["note"].tolist() == ["x", "x", "x", "y"]
    assert out["id"].tolist() == ["a"] * 4


def test_segment_policy_numbers_gap_free_runs_and_inserts_nothing():
    df = frame(
        [
            "2024-01-01",
            "2024-01-02",
            "2024-01-05",
            "2024-01-06",
            "2024-01-09",
            "2024-01-01",
            "2024-01-02",
        ],
        ids=list("aaaaabb"),
    )
    out = validate(df, SCHEMA, policy=ValidationPolicy(gaps="segment"))
    assert len(out) == 7
    assert out[SEGMENT_COL].tolist() == [0, 0, 1, 1, 2, 0, 0]


def test_business_days_holiday_is_a_gap_on_regular_calendar_but_not_on_observed():
    # 2024-01-15 (Monday) is a holiday; the weekend is never a gap under freq "B".
    days = ["2024-01-11", "2024-01-12", "2024-01-16", "2024-01-17"]
    schema = SeriesSchema(time_col="ds", id_col="id", targets="y", freq="B")
    with pytest.raises(DataValidationError, match=r"misses 1, first \['2024-01-15 00:00:00'\]"):
        validate(frame(days), schema)
    filled = validate(frame(days), schema, policy=ValidationPolicy(gaps="ffill"))
    assert filled["ds"].dt.day.tolist() == [11, 12, 15, 16, 17]
    observed = validate(frame(days), schema, policy=ValidationPolicy(calendar="observed"))
    assert observed["ds"].dt.day.tolist() == [11, 12, 16, 17]


def test_observed_calendar_flags_a_day_only_one_series_lacks():
    df = frame(DAYS[:3] + [DAYS[0], DAYS[2]], ids=list("aaabb"))
    with pytest.raises(DataValidationError, match=r"series 'b' misses 1, first \['2024-01-02"):
        validate(df, SCHEMA, policy=ValidationPolicy(calendar="observed"))


def test_business_day_frequency_is_inferred_despite_holidays():
    days = pd.bdate_range("2024-01-01", "2024-03-01").drop(pd.Timestamp("2024-01-15"))
    out = validate(frame(days), SCHEMA, policy=ValidationPolicy(gaps="ffill"))
    assert out.attrs["freq"] == "B"
    assert len(out) == len(pd.bdate_range("2024-01-01", "2024-03-01"))


def test_keep_last_keeps_the_later_input_row():
    df = frame(["2024-01-01", "2024-01-02", "2024-01-02"], y=[1.0, 2.0, 9.0])
    out = validate(df, SCHEMA, policy=ValidationPolicy(duplicates="keep_last"))
    assert out["y"].tolist() == [1.0, 9.0]


@pytest.mark.parametrize(
    ("how", "expected"),
    [("ffill", [1.0, 1.0, 1.0, 7.0, 7.0]), ("interpolate", [1.0, 3.0, 5.0, 7.0, 7.0])],
)
def test_non_finite_values_are_filled_within_the_series(how, expected):
    y = [1.0, np.nan, np.inf, 7.0, -np.inf, 100.0]
    df = frame(DAYS[:5] + [DAYS[0]], ids=list("aaaaab"), y=y)
    out = validate(df, SCHEMA, policy=ValidationPolicy(non_finite=how))
    assert out["y"].tolist() == [*expected, 100.0]


def test_a_ragged_panel_starts_each_series_at_its_first_complete_row():
    # 'b' began two days late (NaN before); 'a' lacks its covariate on day one; 'c' never began.
    y = [0.0, 1.0, 2.0, 3.0, np.nan, np.nan, 5.0, 6.0, np.nan, np.nan]
    x = [np.nan, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0]
    df = frame(DAYS[:4] * 2 + DAYS[:2], ids=list("aaaabbbbcc"), y=y, x=x)
    schema = SeriesSchema(time_col="ds", id_col="id", targets="y", past_covariates="x")
    out = validate(df, schema)
    starts = out.groupby("id")["ds"].min().astype(str).to_dict()
    assert starts == {"a": "2024-01-02", "b": "2024-01-03"}
    assert out["y"].tolist() == [1.0, 2.0, 3.0, 5.0, 6.0]
    with pytest.raises(DataValidationError) as err:
        validate(df, schema, policy=ValidationPolicy(leading="raise"))
    assert str(err.value).startswith("Column 'y' has 4 NaN/inf values; series 'b' at")
    inner = frame(DAYS[:4], y=[np.nan, 1.0, np.nan, 3.0])  # a NaN after the start still counts
    with pytest.raises(DataValidationError, match="Column 'y' has 1 NaN/inf values; series 'a' "):
        validate(inner, SCHEMA)
    with pytest.raises(DataValidationError, match="No series has a row with every value column"):
        validate(frame(DAYS[:2], y=[np.nan, np.nan]), SCHEMA)


_IDS = st.sampled_from(["a", "b", "c", 1, 2, None, np.nan, pd.NA])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_IDS, st.integers(1, 700)), min_size=1, max_size=6), st.booleans())
def test_series_codes_from_id_blocks_equal_factorizing_every_row(blocks, sort):
    # Blocks of up to 700 rows: requests below and above the size where only each block's
    # first id is factorized; ids repeat in separate blocks, and missing ids of every kind.
    ids = np.concatenate([np.full(n, label, dtype=object) for label, n in blocks])
    try:
        want = pd.factorize(ids, sort=sort)
    except TypeError:  # text next to numbers cannot be sorted: both refuse
        with pytest.raises(TypeError):
            series_codes(ids, sort=sort)
        return
    codes, labels = series_codes(ids, sort=sort)
    np.testing.assert_array_equal(codes, want[0])
    assert list(labels) == list(want[1])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(1, 8)), min_size=1, max_size=4))
def test_trimming_equals_dropping_the_leading_rows_by_hand(shapes):
    parts, by_hand = [], []
    for k, (lead, n) in enumerate(shapes):
        times = pd.date_range("2024-01-01", periods=lead + n, freq="D")
        y = np.r_[np.full(lead, np.nan), np.arange(n, dtype=float) + k]
        part = pd.DataFrame({"ds": times, "id": f"s{k}", "y": y})
        parts.append(part)
        by_hand.append(part.iloc[lead:])
    got = validate(pd.concat(parts), SCHEMA)
    want = validate(pd.concat(by_hand), SCHEMA)
    pd.testing.assert_frame_equal(got, want)


def test_numeric_strings_and_booleans_become_floats():
    df = frame(DAYS[:3], y=["1.5", "2", "-3e1"], flag=[True, False, True])
    schema = SeriesSchema(time_col="ds", id_col="id", targets="y", past_covariates="flag")
    out = validate(df, schema)
    assert out["y"].tolist() == [1.5, 2.0, -30.0]
    assert out["flag"].tolist() == [1.0, 0.0, 1.0]


def test_tick_frequency_is_anchored_at_each_series_start():
    a = pd.date_range("2024-01-01 00:15", periods=3, freq="30min")
    b = pd.date_range("2024-01-01 00:00", periods=3, freq="30min")
    out = validate(frame(list(a) + list(b), ids=list("aaabbb")), SCHEMA)
    assert out.attrs["freq"] == "30min"


def test_tz_aware_times_keep_their_zone():
    times = pd.date_range("2024-03-30", periods=4, freq="h", tz="Europe/Berlin")
    out = validate(frame(times), SCHEMA)
    assert str(out["ds"].dt.tz) == "Europe/Berlin"
    assert out["ds"].tolist() == list(times)


def test_daily_grid_follows_the_local_clock_across_daylight_saving():
    times = pd.date_range("2024-03-28 09:00", periods=6, freq="D", tz="Europe/Berlin")
    out = validate(frame(times.delete(2)), SCHEMA, policy=ValidationPolicy(gaps="ffill"))
    assert out.attrs["freq"] == "D"
    assert out["ds"].tolist() == list(times)


def test_calendar_frequency_keeps_each_series_time_of_day():
    days = pd.bdate_range("2024-01-01", periods=6) + pd.Timedelta("16h")
    schema = SeriesSchema(time_col="ds", id_col="id", targets="y", freq="B")
    out = validate(frame(days.delete(3)), schema, policy=ValidationPolicy(gaps="interpolate"))
    assert out["ds"].tolist() == list(days)
    assert out["y"].tolist() == [0.0, 1.0, 2.0, 2.5, 3.0, 4.0]


def test_single_series_without_id_column():
    df = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=4, freq="MS"), "v": [1, 2, 3, 4]})
    out = validate(df, SeriesSchema(time_col="t", targets="v"))
    assert out.attrs["freq"] == "MS"
    with pytest.raises(DataValidationError, match="series 'series_0' has 4 rows"):
        validate(df, SeriesSchema(time_col="t", targets="v"), min_length=5)


def test_revalidating_a_segmented_frame_recomputes_segments():
    df = frame(["2024-01-01", "2024-01-02", "2024-01-04"])
    policy = ValidationPolicy(gaps="segment")
    once = validate(df, SCHEMA, policy=policy)
    twice = validate(
        once, SeriesSchema(time_col="ds", id_col="id", targets="y", freq="D"), policy=policy
    )
    pd.testing.assert_frame_equal(once, twice)


def test_policy_round_trips_through_a_dict():
    policy = ValidationPolicy(unsorted="sort", gaps="segment", calendar="observed")
    assert ValidationPolicy.from_dict(policy.to_dict()) == policy


# ---------------------------------------------------------------- error messages

S_D = SeriesSchema(time_col="ds", id_col="id", targets="y", freq="D")
BAD_INPUTS = [
    (
        "empty",
        lambda: validate(frame([]), SCHEMA),
        DataValidationError,
        "The frame is empty (0 rows)",
    ),
    (
        "missing columns",
        lambda: validate(pd.DataFrame({"id": ["a"]}), SCHEMA),
        DataValidationError,
        "The following columns are missing: ['ds', 'y']",
    ),
    (
        "time is the index",
        lambda: validate(frame(DAYS[:2]).set_index("ds"), SCHEMA),
        DataValidationError,
        "missing: ['ds'] (it is the index: call frame.reset_index() first)",
    ),
    (
        "repeated column",
        lambda: validate(pd.concat([frame(DAYS[:2]), frame(DAYS[:2])[["y"]]], axis=1), SCHEMA),
        DataValidationError,
        "Columns ['y'] appear more than once in the frame.",
    ),
    (
        "unparseable time",
        lambda: validate(frame(["2024-01-01", "soon", "2024-01-03"]), SCHEMA),
        DataValidationError,
        "1 values that are not timestamps: ['soon'] at rows [1]",
    ),
    (
        "missing time",
        lambda: validate(frame(["2024-01-01", None]), SCHEMA),
        DataValidationError,
        "Column 'ds' has 1 missing timestamps at rows [1]",
    ),
    (
        "numeric time",
        lambda: validate(frame([1, 2, 3]), SCHEMA),
        DataValidationError,
        "Column 'ds' holds int64 numbers, not timestamps",
    ),
    (
        "out of range time",
        lambda: validate(frame([pd.Timestamp("1500-01-01").as_unit("s")]), SCHEMA),
        DataValidationError,
        "outside 1677-09-22..2262-04-11",
    ),
    (
        "text values",
        lambda: validate(frame(DAYS[:3], y=[1.0, "abc", "2"]), SCHEMA),
        DataValidationError,
        "Column 'y' must be numeric; found 1 non-numeric values ['abc'] at rows [1]",
    ),
    (
        "datetime values",
        lambda: validate(frame(DAYS[:2], y=pd.to_datetime(DAYS[:2])), SCHEMA),
        DataValidationError,
        "Column 'y' holds datetime64",
    ),
    (
        "missing ids",
        lambda: validate(frame(DAYS[:2], ids=["a", None]), SCHEMA),
        DataValidationError,
        "Column 'id' (series id) is missing on 1 rows [1]",
    ),
    (
        "unsorted",
        lambda: validate(frame([DAYS[0], DAYS[2], DAYS[1]]), SCHEMA),
        DataValidationError,
        "series 'a' is not sorted by time; 2024-01-02 00:00:00 (row 2) comes after 2024-01-03",
    ),
    (
        "duplicates",
        lambda: validate(frame([DAYS[0], DAYS[1], DAYS[1]]), SCHEMA),
        DataValidationError,
        "1 duplicate timestamps; series 'a' at ['2024-01-02 00:00:00'] (rows [2])",
    ),
    (
        "gap",
        lambda: validate(frame([DAYS[0], DAYS[1], DAYS[4]]), S_D),
        DataValidationError,
        "2 timestamps missing on the grid of freq 'D'; series 'a' misses 2, first "
        "['2024-01-03 00:00:00', '2024-01-04 00:00:00']",
    ),
    (
        "nan",
        lambda: validate(frame(DAYS[:3], y=[1.0, np.nan, 2.0]), SCHEMA),
        DataValidationError,
        "Column 'y' has 1 NaN/inf values; series 'a' at ['2024-01-02 00:00:00']",
    ),
    (
        "inf in second series",
        lambda: validate(frame(DAYS[:2] * 2, ids=list("aabb"), y=[1, 2, 3, np.inf]), SCHEMA),
        DataValidationError,
        "series 'b' at ['2024-01-02 00:00:00'] (rows [3])",
    ),
    (
        "too short",
        lambda: validate(frame(DAYS[:3] + DAYS[:5], ids=list("aaabbbbb")), SCHEMA, min_length=4),
        DataValidationError,
        "1 series too short: series 'a' has 3 rows; each series needs at least min_length=4 rows",
    ),
    (
        "irregular steps",
        lambda: validate(frame(["2024-01-01", "2024-01-03", "2024-01-06"]), SCHEMA),
        DataValidationError,
        "cannot infer the frequency",
    ),
    (
        "freq disagreement",
        lambda: validate(
            frame(
                list(pd.date_range("2024-01-01", periods=3, freq="h"))
                + list(pd.date_range("2024-01-01", periods=3, freq="D")),
                ids=list("aaabbb"),
            ),
            SCHEMA,
        ),
        DataValidationError,
        "series disagree on frequency (series 'a' is 'h', series 'b' is 'D')",
    ),
    (
        "off grid",
        lambda: validate(frame(["2024-01-01", "2024-01-02 12:00", "2024-01-03"]), S_D),
        DataValidationError,
        "1 timestamps are off the grid of freq 'D'; series 'a' at ['2024-01-02 12:00:00']",
    ),
    (
        "leading nan cannot be filled",
        lambda: validate(
            frame(DAYS[:2], y=[np.nan, 1.0]),
            SCHEMA,
            policy=ValidationPolicy(non_finite="ffill", leading="raise"),
        ),
        DataValidationError,
        "series 'a' starts with NaN/inf at 2024-01-01 00:00:00",
    ),
    (
        "bad freq",
        lambda: validate(frame(DAYS[:2]), SeriesSchema(time_col="ds", freq="fortnight")),
        ConfigError,
        "`freq` must be a pandas frequency alias",
    ),
    (
        "min_length 0",
        lambda: validate(frame(DAYS[:2]), SCHEMA, min_length=0),
        ConfigError,
        "`min_length` must be an int >= 1 or None. Received: 0",
    ),
    (
        "bad policy",
        lambda: ValidationPolicy(gaps="drop"),
        ConfigError,
        "`gaps` must be one of ['raise', 'ffill', 'interpolate', 'segment']. Received: gaps='drop'",
    ),
    (
        "policy keys",
        lambda: ValidationPolicy.from_dict({"gap": "ffill"}),
        ConfigError,
        "Unknown policy keys ['gap']",
    ),
    (
        "not a frame",
        lambda: validate([1, 2], SCHEMA),
        ConfigError,
        "`frame` must be a DataFrame. Received: list",
    ),
    (
        "not a schema",
        lambda: validate(frame(DAYS[:2]), {"time_col": "ds"}),
        ConfigError,
        "`schema` must be a SeriesSchema. Received: dict",
    ),
]


@pytest.mark.parametrize(
    ("case", "call", "error", "text"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_raises_a_message_naming_the_problem(case, call, error, text):
    with pytest.raises(error) as info:
        call()
    assert text in str(info.value)


# ---------------------------------------------------------------- properties

FREQS = ["30min", "h", "D", "B", "MS"]


@st.composite
def messy_frames(draw):
    """Regular series, then rows dropped, duplicated, NaN'd and shuffled."""
    freq = draw(st.sampled_from(FREQS))
    rows = []
    for sid in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 25))
        start = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=draw(st.integers(0, 3)))
        times = pd.date_range(start, periods=n, freq=freq)
        if freq in ("B", "MS"):  # anchored offsets keep midnight
            times = pd.date_range("2024-01-01", periods=n, freq=freq)
        keep = [0, n - 1] + [i for i in range(1, n - 1) if draw(st.booleans()) or n < 4]
        for i in sorted(set(keep)):
            y = draw(st.floats(-1e6, 1e6))
            if i > 0 and draw(st.integers(0, 5)) == 0:
                y = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            rows.append((times[i], f"s{sid}", y))
            if draw(st.integers(0, 6)) == 0:  # a later duplicate with a finite value
                rows.append((times[i], f"s{sid}", draw(st.floats(-1e6, 1e6))))
    df = pd.DataFrame(rows, columns=["ds", "id", "y"])
    perm = draw(st.permutations(range(len(df))))
    return df.iloc[list(perm)].set_index(pd.Index(np.arange(len(df)) * 3 + 7)), freq


REPAIR = st.builds(
    ValidationPolicy,
    unsorted=st.just("sort"),
    duplicates=st.just("keep_last"),
    gaps=st.sampled_from(["ffill", "interpolate", "segment"]),
    non_finite=st.sampled_from(["ffill", "interpolate"]),
)


@given(messy_frames(), REPAIR)
def test_repaired_frames_are_sorted_unique_regular_and_finite(case, policy):
    df, freq = case
    schema = SeriesSchema(time_col="ds", id_col="id", targets="y", freq=freq)
    out = validate(df, schema, policy=policy)
    assert np.isfinite(out["y"]).all()
    assert out["ds"].dtype == "datetime64[ns]"
    units = ["id", SEGMENT_COL] if policy.gaps == "segment" else ["id"]
    for key, part in out.groupby(units):
        times = pd.DatetimeIndex(part["ds"])
        assert times.is_monotonic_increasing and times.is_unique
        expected = pd.date_range(times[0], periods=len(times), freq=freq)
        assert times.equals(expected), f"{key} is not on the {freq} grid"
    # every finite observation survives at its timestamp (the last of duplicates wins)
    last = (
        df.assign(pos=np.arange(len(df)))
        .sort_values("pos")
        .drop_duplicates(["id", "ds"], keep="last")
    )
    merged = last.merge(out, on=["id", "ds"], suffixes=("_in", "_out"), validate="1:1")
    finite = np.isfinite(merged["y_in"])
    assert np.array_equal(merged.loc[finite, "y_in"], merged.loc[finite, "y_out"])
    assert out[["id", "ds"]].equals(
        out.sort_values(["id", "ds"])[["id", "ds"]].reset_index(drop=True)
    )


@given(messy_frames(), st.builds(ValidationPolicy, gaps=st.sampled_from(["raise", "segment"])))
def test_validate_never_mutates_its_input(case, policy):
    df, freq = case
    before = df.copy(deep=True)
    schema = SeriesSchema(time_col="ds", id_col="id", targets="y", freq=freq)
    try:
        out = validate(df, schema, policy=policy)
        out.iloc[:, :] = out.iloc[::-1, :].to_numpy()  # writing to the result leaves df alone
    except DataValidationError:
        pass
    pd.testing.assert_frame_equal(df, before)
