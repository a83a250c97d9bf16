"""Chronological splits: disjoint ordered targets, one calendar cut, history only as input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.errors import ConfigError
from pipelines.schema import SeriesSchema
from pipelines.split import FrameSplit, SplitRanges, rolling_origins, split_by_time
from pipelines.window import WindowSpec, make_windows

SCHEMA = SeriesSchema(id_col="id", targets="y")


def _panel(lengths: dict[str, int], end: str = "2020-01-31") -> pd.DataFrame:
    """Series that all end on `end` (daily), with y = day of the calendar."""
    parts = []
    for name, n in lengths.items():
        times = pd.date_range(end=end, periods=n, freq="D")
        parts.append(pd.DataFrame({"id": name, "timestamp": times, "y": times.day.astype(float)}))
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------- fixed values


def test_fractions_and_counts_on_an_array():
    assert split_by_time(100, validation=0.2, test=0.1) == SplitRanges(
        range(0, 70), range(70, 90), range(90, 100)
    )
    assert split_by_time(50, validation=0, test=12) == SplitRanges(
        range(0, 38), range(38, 38), range(38, 50)
    )
    rows, targets = split_by_time(100, validation=0.2, test=0.1).with_history("test", 5)
    assert rows == range(85, 100)
    np.testing.assert_array_equal(np.flatnonzero(targets), np.arange(5, 15))


def test_dates_cut_every_series_on_the_same_calendar():
    frame = _panel({"long": 31, "short": 10})
    split = split_by_time(frame, SCHEMA, validation="2020-01-20", test="2020-01-26")
    assert isinstance(split, FrameSplit)
    assert split.train.timestamp.max() == pd.Timestamp("2020-01-19")
    assert split.validation.timestamp.min() == pd.Timestamp("2020-01-20")
    assert split.test.timestamp.min() == pd.Timestamp("2020-01-26")
    assert set(split.test.id) == {"long", "short"}
    assert split.describe()["test"] == {
        "start": "2020-01-26 00:00:00",
        "end": "2020-01-31 00:00:00",
        "steps": 6,
    }
    # Fractions are of the calendar, not of each series: the short series is cut at the
    # same timestamps as the long one.
    by_fraction = split_by_time(frame, SCHEMA, validation=0.2, test=0.2)
    cuts = by_fraction.test.groupby("id").timestamp.min()
    assert cuts["long"] == cuts["short"]


def test_with_history_adds_lookback_rows_per_series_as_input_only():
    frame = _panel({"a": 20, "b": 12})
    split = split_by_time(frame, SCHEMA, validation=0, test=5)
    rows, targets = split.with_history("test", 3)
    assert rows.groupby("id").size().to_dict() == {"a": 8, "b": 8}
    assert rows[targets].reset_index(drop=True).equals(split.test)
    w = make_windows(rows, SCHEMA, WindowSpec(3, 2), target_rows=targets)
    assert len(w) == 2 * 4  # every test step is a target of some window, none earlier
    cut = split.test.timestamp.min()
    target_rows = w.last[:, None] + np.arange(1, 3)
    assert (rows.timestamp.to_numpy()[target_rows] >= cut.to_datetime64()).all()
    assert (rows.timestamp.to_numpy()[w.last] < cut.to_datetime64()).any()  # history reads train


def test_rolling_origins_fixed_values():
    expanding = rolling_origins(100, n_folds=3, horizon=10)
    assert [(f.train, f.test) for f in expanding] == [
        (range(0, 70), range(70, 80)),
        (range(0, 80), range(80, 90)),
        (range(0, 90), range(90, 100)),
    ]
    sliding = rolling_origins(100, n_folds=2, horizon=5, step=3, min_train=20, window="sliding")
    assert [(f.train, f.test) for f in sliding] == [
        (range(72, 92), range(92, 97)),
        (range(75, 95), range(95, 100)),
    ]
    folds = rolling_origins(_panel({"a": 31, "b": 20}), SCHEMA, n_folds=2, horizon=7)
    assert [f.test.timestamp.min().day for f in folds] == [18, 25]
    assert all(len(f.validation) == 0 for f in folds)


# ---------------------------------------------------------------------------- properties


@given(
    n=st.integers(3, 500),
    validation=st.floats(0, 0.45),
    test=st.floats(0.01, 0.45),
)
def test_split_parts_are_disjoint_ordered_and_cover_every_step(n, validation, test):
    try:
        ranges = split_by_time(n, validation=validation, test=test)
    except ConfigError as err:  # only for a part too small to hold a step
        assert "is empty" in str(err)
        return
    steps = [list(ranges.part(p)) for p in ("train", "validation", "test")]
    assert sum(steps, []) == list(range(n))  # disjoint, ordered, complete
    assert len(steps[0]) > 0 and len(steps[2]) > 0


@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    validation=st.floats(0, 0.4),
    test=st.floats(0.05, 0.4),
)
def test_frame_split_targets_are_disjoint_and_ordered_in_time(lengths, validation, test):
    frame = _panel({f"s{k}": n for k, n in enumerate(lengths)})
    try:
        split = split_by_time(frame, SCHEMA, validation=validation, test=test)
    except ConfigError as err:
        assert "is empty" in str(err)
        return
    parts = [split.rows(p) for p in ("train", "validation", "test")]
    np.testing.assert_array_equal(sum(p.astype(int) for p in parts), 1)  # each row in one part
    times = [frame.timestamp[p] for p in parts]
    for earlier, later in zip(times, times[1:], strict=False):
        if len(earlier) and len(later):
            assert earlier.max() < later.min()
    for name in ("validation", "test"):
        rows, targets = split.with_history(name, 4)
        assert rows.groupby("id").size().le(4 + rows[targets].groupby("id").size()).all()
        assert rows[targets].timestamp.isin(times[1 if name == "validation" else 2]).all()


@given(
    n=st.integers(10, 300),
    n_folds=st.integers(1, 5),
    horizon=st.integers(1, 10),
    step=st.integers(1, 10),
    window=st.sampled_from(["expanding", "sliding"]),
)
def test_rolling_origin_folds_train_strictly_before_test(n, n_folds, horizon, step, window):
    try:
        folds = rolling_origins(n, n_folds=n_folds, horizon=horizon, step=step, window=window)
    except ConfigError as err:
        assert "need at least" in str(err)
        return
    assert folds[-1].test.stop == n
    for fold in folds:
        assert len(fold.test) == horizon and fold.train.stop == fold.test.start
    starts = [f.test.start for f in folds]
    assert starts == sorted(starts) and np.all(np.diff(starts) == step)
    if step >= horizon:  # tiling test periods never share a target step
        tests = [s for f in folds for s in f.test]
        assert len(tests) == len(set(tests))


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"validation": 0.5, "test": 0.5},
            r"must sum to less than 1 .* Received: validation=0.5, test=0.5",
        ),
        ({"validation": 0.1, "test": 0.001}, r"The test part is empty: test=0.001 of 100 steps"),
        ({"validation": 0.001, "test": 0.1}, r"The validation part is empty: validation=0.001"),
        (
            {"validation": 0.2, "test": 5, "horizon": 12},
            r"horizon=12 is longer than the test period \(5 steps\)",
        ),
        ({"validation": 0.1, "test": "2020-01-01"}, r"`test` as a date needs a frame"),
        ({"validation": 0.1, "test": 1.5}, r"in \[0, 1\). Received: test=1.5"),
        ({"validation": 0.1, "test": 101}, r"between 0 and 100 steps. Received: test=101"),
    ],
)
def test_split_errors_name_the_part_and_the_reason(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        split_by_time(100, **kwargs)


def test_frame_split_errors():
    frame = _panel({"a": 10})
    with pytest.raises(ConfigError, match=r"The train part is empty"):
        split_by_time(frame, SCHEMA, validation=0, test="2019-12-01")
    with pytest.raises(ConfigError, match=r"The test part is empty: test='2021-01-01' leaves no"):
        split_by_time(frame, SCHEMA, validation=0, test="2021-01-01")
    with pytest.raises(ConfigError, match=r"validation part must start before the test part"):
        split_by_time(frame, SCHEMA, validation="2020-01-30", test="2020-01-25")
    with pytest.raises(ConfigError, match=r"needs its `schema`"):
        split_by_time(frame)


def test_rolling_origin_errors():
    with pytest.raises(
        ConfigError,
        match=r"5 folds with horizon=12, step=12 and min_train=10 need at least 70 steps; the data has 60",
    ):
        rolling_origins(60, n_folds=5, horizon=12, min_train=10)
    with pytest.raises(ConfigError, match=r"Received: window='rolling'"):
        rolling_origins(60, n_folds=2, horizon=5, window="rolling")
    with pytest.raises(
        ConfigError, match=r"`n_folds` must be an integer >= 1. Received: n_folds=0"
    ):
        rolling_origins(60, n_folds=0, horizon=5)
