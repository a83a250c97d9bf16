"""Windows: exact slices of the source, targets right after the history, no boundary crossing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema
from pipelines.window import WindowSpec, inference_windows, make_windows, windows_from_array


def _frame(lengths, *, n_cov=1, segment=None):
    """A long frame whose values encode their row: y = row, cov_j = 1000 * (j + 1) + row."""
    n = sum(lengths)
    ids = np.repeat([f"s{k}" for k in range(len(lengths))], lengths)
    times = np.concatenate([pd.date_range("2020-01-01", periods=m, freq="D") for m in lengths])
    out = pd.DataFrame({"id": ids, "timestamp": times, "y": np.arange(n, dtype=float)})
    for j in range(n_cov):
        out[f"c{j}"] = 1000.0 * (j + 1) + np.arange(n)
    if segment is not None:
        out["_segment"] = segment
    return out


# ---------------------------------------------------------------------------- fixed values


def test_static_windows_fixed_values_and_zero_copy():
    x = np.arange(10, dtype=np.float32)
    w = windows_from_array(x, WindowSpec(lookback=3, horizon=2, stride=2))
    np.testing.assert_array_equal(w.past[..., 0], [[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    np.testing.assert_array_equal(w.target[..., 0], [[3, 4], [5, 6], [7, 8]])
    np.testing.assert_array_equal(w.origin, [2, 4, 6])
    np.testing.assert_array_equal(w.series, [0, 0, 0])
    assert w.past.dtype == np.float32 and w.mask is None
    assert w.future.shape == (3, 2, 0)
    assert np.shares_memory(w.past, w.values) and np.shares_memory(w.target, w.values)
    assert set(w.inputs()) == {"past"}


def test_dynamic_windows_right_and_left_padding_fixed_values():
    x = np.arange(1, 7, dtype=np.float32)  # no zeros in the data, so pads are visible
    right = windows_from_array(x, WindowSpec(3, 1, min_lookback=1))
    np.testing.assert_array_equal(
        right.past[..., 0], [[1, 0, 0], [1, 2, 0], [1, 2, 3], [2, 3, 4], [3, 4, 5]]
    )
    np.testing.assert_array_equal(right.mask.sum(1), [1, 2, 3, 3, 3])
    np.testing.assert_array_equal(right.target[..., 0], [[2], [3], [4], [5], [6]])
    left = windows_from_array(x, WindowSpec(3, 1, min_lookback=2, padding="left"))
    np.testing.assert_array_equal(left.past[..., 0], [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]])
    np.testing.assert_array_equal(left.mask[0], [False, True, True])
    assert set(left.inputs()) == {"past", "mask"}


def test_dynamic_padding_uses_the_mask_not_the_value_zero():
    x = np.zeros(5, dtype=np.float32)  # real zeros: a pad value could not tell them apart
    w = windows_from_array(x, WindowSpec(4, 1, min_lookback=2))
    np.testing.assert_array_equal(w.mask.sum(1), [2, 3, 4])


def test_frame_windows_columns_future_covariates_and_series():
    frame = _frame([5, 4], n_cov=2)
    schema = SeriesSchema(id_col="id", targets="y", past_covariates="c0", future_covariates="c1")
    w = make_windows(frame, schema, WindowSpec(2, 2))
    assert w.series_ids == ("s0", "s1")
    np.testing.assert_array_equal(w.series, [0, 0, 1])
    np.testing.assert_array_equal(w.origin, [1, 2, 1])
    np.testing.assert_array_equal(w.past[0], [[0, 1000, 2000], [1, 1001, 2001]])
    np.testing.assert_array_equal(w.target[2, :, 0], [7, 8])
    np.testing.assert_array_equal(w.future[2, :, 0], [2007, 2008])
    assert set(w.inputs()) == {"past", "future"}


def test_segment_column_from_validate_is_used_by_default():
    frame = _frame([8], segment=[0, 0, 0, 0, 1, 1, 1, 1])
    w = make_windows(frame, SeriesSchema(id_col="id", targets="y"), WindowSpec(2, 1))
    np.testing.assert_array_equal(w.origin, [1, 2, 5, 6])  # none spans rows 3 -> 4


def test_target_rows_keep_targets_inside_and_history_outside():
    x = np.arange(12, dtype=np.float32)
    allowed = np.arange(12) >= 8
    w = windows_from_array(x, WindowSpec(3, 2), target_rows=allowed)
    np.testing.assert_array_equal(w.target[..., 0], [[8, 9], [9, 10], [10, 11]])
    np.testing.assert_array_equal(w.past[0, :, 0], [5, 6, 7])


def test_take_and_spec_round_trip():
    w = windows_from_array(np.arange(20.0), WindowSpec(4, 2, min_lookback=2))
    sub = w.take(np.array([0, 5]))
    np.testing.assert_array_equal(sub.past, w.past[[0, 5]])
    assert WindowSpec.from_dict(w.spec.to_dict()) == w.spec


# ---------------------------------------------------------------------------- properties


@st.composite
def _cases(draw):
    lengths = draw(st.lists(st.integers(1, 30), min_size=1, max_size=4))
    n = sum(lengths)
    breaks = draw(st.lists(st.integers(0, n - 1), max_size=3))
    lookback = draw(st.integers(1, 6))
    spec = WindowSpec(
        lookback=lookback,
        horizon=draw(st.integers(1, 4)),
        stride=draw(st.integers(1, 3)),
        min_lookback=draw(st.none() | st.integers(1, lookback)),
        padding=draw(st.sampled_from(["right", "left"])),
    )
    return lengths, sorted(set(breaks)), spec


def _runs(lengths, breaks, n):
    cuts = set(np.cumsum([0, *lengths])[:-1].tolist()) | set(breaks) | {0}
    edges = sorted(cuts) + [n]
    return list(zip(edges[:-1], edges[1:], strict=False))


@given(_cases())
def test_windows_are_exact_slices_that_never_cross_a_boundary(case):
    lengths, breaks, spec = case
    n = sum(lengths)
    values = np.stack([np.arange(n), -np.arange(n) - 1.0], axis=1).astype(np.float32)
    segment = np.zeros(n, bool)
    segment[breaks] = True
    series_rows = np.cumsum([0, *lengths])[:-1]
    need = spec.min_history + spec.horizon
    runs = _runs(lengths, breaks, n)
    # Brute force: every origin of every run, `stride` apart from the first possible one.
    expected = [
        r for a, b in runs for r in range(a + spec.min_history - 1, b - spec.horizon, spec.stride)
    ]
    assume(expected)
    w = windows_from_array(values, spec, series_rows=series_rows, segment=segment, on_short="skip")
    assert w.last.tolist() == expected
    run_of = {r: (a, b) for a, b in runs for r in range(a, b)}
    for i, last in enumerate(w.last.tolist()):
        a, b = run_of[last]
        first = max(a, last - spec.lookback + 1)
        assert last + spec.horizon < b  # horizon inside the same run (no series/gap crossed)
        assert last - first + 1 >= need - spec.horizon
        history = values[first : last + 1]
        if w.mask is None:
            np.testing.assert_array_equal(w.past[i], history)
        else:  # padded + mask give back the variable-length history; pads are 0
            np.testing.assert_array_equal(w.past[i][w.mask[i]], history)
            assert not w.past[i][~w.mask[i]].any()
            assert w.mask[i].sum() == len(history)
            valid_first = spec.padding == "right"
            assert w.mask[i][0 if valid_first else -1]
        np.testing.assert_array_equal(
            w.target[i, :, 0], values[last + 1 : last + 1 + spec.horizon, 0]
        )
        s = np.searchsorted(series_rows, last, side="right") - 1
        assert w.series[i] == s and w.origin[i] == last - series_rows[s]


@given(_cases(), st.integers(0, 40))
def test_target_rows_are_respected(case, cut):
    lengths, breaks, spec = case
    n = sum(lengths)
    allowed = np.arange(n) >= cut
    try:
        w = windows_from_array(
            np.arange(n, dtype=np.float32),
            spec,
            target_rows=allowed,
            series_rows=np.cumsum([0, *lengths])[:-1],
            on_short="skip",
        )
    except DataValidationError as err:
        # Only when no series is long enough for a window with targets after the cut.
        assert f"{len(lengths)} of {len(lengths)} series too short" in str(err), str(err)
        assume(False)
    for last in w.last.tolist():
        assert allowed[last + 1 : last + 1 + spec.horizon].all()


# ---------------------------------------------------------------------------- inference


def test_inference_windows_take_the_last_history_and_future_covariates():
    frame = _frame([6, 3], n_cov=1)
    schema = SeriesSchema(id_col="id", targets="y", future_covariates="c0")
    future = pd.DataFrame(
        {
            "id": ["s1", "s1", "s0", "s0"],
            "timestamp": pd.to_datetime(["2020-01-04", "2020-01-05", "2020-01-07", "2020-01-08"]),
            "c0": [11.0, 12.0, 1.0, 2.0],
        }
    )
    w = inference_windows(frame, schema, WindowSpec(4, 2, min_lookback=2), future=future)
    assert w.target is None and len(w) == 2
    np.testing.assert_array_equal(w.past[0, :, 0], [2, 3, 4, 5])
    np.testing.assert_array_equal(w.past[1, :, 0], [6, 7, 8, 0])
    np.testing.assert_array_equal(w.mask[1], [True, True, True, False])
    np.testing.assert_array_equal(w.future[..., 0], [[1, 2], [11, 12]])
    np.testing.assert_array_equal(w.origin, [5, 2])


def test_inference_windows_errors():
    frame = _frame([6, 3])
    schema = SeriesSchema(id_col="id", targets="y", past_covariates="c0")
    with pytest.raises(DataValidationError, match=r"'s1' has 3 .*needs at least 4"):
        inference_windows(frame, schema, WindowSpec(4, 2))
    fut_schema = SeriesSchema(id_col="id", targets="y", future_covariates="c0")
    with pytest.raises(ConfigError, match=r"future covariates \['c0'\]: pass `future`"):
        inference_windows(frame, fut_schema, WindowSpec(3, 2))
    short = pd.DataFrame(
        {"id": ["s0", "s1"], "timestamp": pd.to_datetime(["2020-01-07"] * 2), "c0": [1.0, 2.0]}
    )
    with pytest.raises(
        DataValidationError, match=r"exactly horizon=2 rows per series; got 's0': 1"
    ):
        inference_windows(frame, fut_schema, WindowSpec(3, 2), future=short)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"lookback": 0, "horizon": 1},
            r"`lookback` must be an integer >= 1. Received: lookback=0",
        ),
        ({"lookback": 3, "horizon": 0}, r"`horizon` must be an integer >= 1. Received: horizon=0"),
        ({"lookback": 3, "horizon": 1, "stride": 0}, r"Received: stride=0"),
        (
            {"lookback": 3, "horizon": 1, "min_lookback": 4},
            r"between 1 and lookback=3. Received: min_lookback=4",
        ),
        ({"lookback": 3, "horizon": 1, "min_lookback": 0}, r"Received: min_lookback=0"),
        ({"lookback": 3, "horizon": 1, "padding": "middle"}, r"Received: padding='middle'"),
        ({"lookback": 2.5, "horizon": 1}, r"Received: lookback=2.5"),
    ],
)
def test_window_spec_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        WindowSpec(**kwargs)


def test_too_short_series_error_names_series_length_and_requirement():
    frame = _frame([20, 5, 9], segment=None)
    schema = SeriesSchema(id_col="id", targets="y")
    with pytest.raises(DataValidationError) as err:
        make_windows(frame, schema, WindowSpec(8, 3))
    text = str(err.value)
    assert "2 of 3 series too short" in text and "'s1' has 5 rows" in text
    assert "'s2' has 9 rows" in text and "need at least 11 consecutive rows" in text
    w = make_windows(frame, schema, WindowSpec(8, 3), on_short="skip")
    assert set(w.series.tolist()) == {0}
    dynamic = make_windows(frame, schema, WindowSpec(8, 3, min_lookback=2))
    assert set(dynamic.series.tolist()) == {0, 1, 2}  # short series kept


def test_bad_frames_are_rejected_with_the_row_and_series():
    schema = SeriesSchema(id_col="id", targets="y", past_covariates="c0")
    frame = _frame([5, 5])
    frame.loc[7, "c0"] = np.nan
    with pytest.raises(
        DataValidationError,
        match=r"Column 'c0': 1 NaN/inf values, the first at row 7 \(series 's1'\)",
    ):
        make_windows(frame, schema, WindowSpec(2, 1))
    unsorted = _frame([3, 3]).iloc[[0, 3, 1, 4, 2, 5]].reset_index(drop=True)
    with pytest.raises(DataValidationError, match=r"series 's0' appears in separate blocks"):
        make_windows(unsorted, schema, WindowSpec(2, 1))
    with pytest.raises(ConfigError, match=r"missing from `frame`: \['c0'\]"):
        make_windows(_frame([5], n_cov=0), schema, WindowSpec(2, 1))
