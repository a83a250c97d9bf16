"""Tests for forecast.evaluation.metrics: hand-computed values, scikit-learn agreement, invariants, errors."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_pinball_loss,
    root_mean_squared_error,
)

from forecast.evaluation import metrics
from forecast.evaluation.baselines import SeasonalNaive
from pipelines.errors import ConfigError, DataValidationError

# y_true / y_pred as (N=2, H=3, T=1), values chosen so every error is easy to check by hand.
Y_TRUE = np.array([[1.0, 2.0, 4.0], [2.0, 4.0, 8.0]])[..., None]
Y_PRED = np.array([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]])[..., None]
# abs errors: [[1, 0, 2], [0, 2, 6]]


def _pair_strategy(positive: bool = False):
    """(y_true, y_pred) of the same random (N, H, T) shape with bounded finite values."""
    lo = 0.5 if positive else -100.0

    @st.composite
    def pair(draw):
        shape = (
            draw(st.integers(1, 6)),
            draw(st.integers(1, 5)),
            draw(st.integers(1, 3)),
        )
        elems = st.floats(lo, 100.0, allow_nan=False, allow_infinity=False, width=64)
        return draw(arrays(np.float64, shape, elements=elems)), draw(
            arrays(np.float64, shape, elements=st.floats(-100.0, 100.0, width=64))
        )

    return pair()


# ---------------------------------------------------------------- fixed values


def test_point_metrics_match_hand_computed_values():
    assert metrics.mae(Y_TRUE, Y_PRED) == pytest.approx(11 / 6)
    np.testing.assert_allclose(metrics.mae(Y_TRUE, Y_PRED, reduce=False), [0.5, 1.0, 4.0])
    assert metrics.rmse(Y_TRUE, Y_PRED) == pytest.approx(np.sqrt(45 / 6))
    np.testing.assert_allclose(
        metrics.rmse(Y_TRUE, Y_PRED, reduce=False), np.sqrt([0.5, 2.0, 20.0])
    )
    # |e| / |y|: [[1, 0, 0.5], [0, 0.5, 0.75]]
    assert metrics.mape(Y_TRUE, Y_PRED) == pytest.approx(2.75 / 6)
    np.testing.assert_allclose(metrics.mape(Y_TRUE, Y_PRED, reduce=False), [0.5, 0.25, 0.625])
    # 2|e| / (|y| + |p|): [[2/3, 0, 2/3], [0, 2/3, 1.2]]
    np.testing.assert_allclose(
        metrics.smape(Y_TRUE, Y_PRED, reduce=False), [1 / 3, 1 / 3, (2 / 3 + 1.2) / 2]
    )


def test_smape_scores_zero_for_a_perfect_zero_forecast():
    y = np.zeros((2, 2, 1))
    assert metrics.smape(y, y) == 0.0
    assert metrics.smape(y, np.ones_like(y)) == pytest.approx(2.0)


def test_seasonal_naive_scale_and_mase_by_hand():
    assert metrics.seasonal_naive_scale([1.0, 3.0, 2.0, 5.0], season=1) == pytest.approx(2.0)
    assert metrics.seasonal_naive_scale([1.0, 3.0, 2.0, 5.0], season=2) == pytest.approx(1.5)
    two = metrics.seasonal_naive_scale(np.array([[1.0, 0.0], [3.0, 4.0], [2.0, 0.0]]), season=1)
    np.testing.assert_allclose(two, [1.5, 4.0])
    assert metrics.mase(Y_TRUE, Y_PRED, scale=2.0) == pytest.approx(11 / 12)
    # One scale per window (windows from two series).
    per_window = metrics.mase(Y_TRUE, Y_PRED, scale=np.array([[1.0], [2.0]]), reduce=False)
    np.testing.assert_allclose(per_window, [(1 + 0) / 2, (0 + 1) / 2, (2 + 3) / 2])


def test_interval_coverage_and_width_by_hand(caplog):
    lower = Y_TRUE - np.array([[0.0, 1.0, -1.0], [1.0, 1.0, 1.0]])[..., None]
    upper = lower + 2.0
    # Covered: [[yes (bound), yes, no], [yes, yes, yes]]
    np.testing.assert_allclose(
        metrics.interval_coverage(Y_TRUE, lower, upper, reduce=False), [1.0, 1.0, 0.5]
    )
    assert metrics.interval_width(lower, upper) == pytest.approx(2.0)
    with caplog.at_level(logging.WARNING, logger="forecast.evaluation.metrics"):
        assert metrics.interval_coverage(Y_TRUE, upper, lower) == 0.0
    assert "6 of 6 intervals have lower > upper" in caplog.text


def test_directional_accuracy_leaves_out_zero_observations():
    y = np.array([[1.0, -1.0, 0.0, 2.0]])[..., None]
    p = np.array([[3.0, 1.0, 5.0, 0.0]])[..., None]
    # Hit, miss, (no direction: left out), miss (a zero forecast is a miss).
    assert metrics.directional_accuracy(y, p) == pytest.approx(1 / 3)
    levels = np.array([[11.0, 9.0]])[..., None]
    ref = np.array([[10.0]])
    assert (
        metrics.directional_accuracy(levels, levels + 1.5, reference=ref) == 0.5
    )  # up: hit, down: miss
    with pytest.raises(DataValidationError, match="at steps \\[3\\]: no values left"):
        metrics.directional_accuracy(y, p, reduce=False)


# ---------------------------------------------------------------- scikit-learn agreement


@given(_pair_strategy())
def test_mae_and_rmse_agree_with_sklearn(pair):
    y, p = pair
    assert metrics.mae(y, p) == pytest.approx(mean_absolute_error(y.ravel(), p.ravel()))
    assert metrics.rmse(y, p) == pytest.approx(root_mean_squared_error(y.ravel(), p.ravel()))
    for h in range(y.shape[1]):
        expected = mean_absolute_error(y[:, h].ravel(), p[:, h].ravel())
        assert metrics.mae(y, p, reduce=False)[h] == pytest.approx(expected)


@given(_pair_strategy(positive=True))
def test_mape_agrees_with_sklearn(pair):
    y, p = pair
    expected = mean_absolute_percentage_error(y.ravel(), p.ravel())
    assert metrics.mape(y, p) == pytest.approx(expected)


@given(_pair_strategy(), st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4, unique=True))
def test_pinball_agrees_with_sklearn(pair, levels):
    y, p = pair
    q = sorted(levels)
    q_pred = p[..., None] + np.linspace(-1, 1, len(q))
    loss = metrics.pinball_loss(y, q_pred, q)
    by_step = metrics.pinball_loss(y, q_pred, q, reduce=False)
    for i, level in enumerate(q):
        expected = mean_pinball_loss(y.ravel(), q_pred[..., i].ravel(), alpha=level)
        assert loss[i] == pytest.approx(expected)
        assert by_step[0, i] == pytest.approx(
            mean_pinball_loss(y[:, 0].ravel(), q_pred[:, 0, :, i].ravel(), alpha=level)
        )


# ---------------------------------------------------------------- invariants


@given(st.data(), st.integers(1, 5), st.integers(12, 40))
def test_seasonal_naive_forecast_in_sample_has_mase_one(data, season, n):
    series = data.draw(
        arrays(np.float64, n, elements=st.floats(-50, 50, allow_subnormal=False, width=64))
    )
    if np.all(series[season:] == series[:-season]):
        return  # scale 0: MASE undefined (tested separately)
    windows = sliding_window_view(series, season + 1)  # each: season of history + next value
    past, target = windows[:, :season, None], windows[:, season:, None]  # (N, s, 1), (N, 1, 1)
    forecast = SeasonalNaive(horizon=1, season=season).predict(past)
    scale = metrics.seasonal_naive_scale(series, season)
    assert metrics.mase(target, forecast, scale=scale) == pytest.approx(1.0)


@given(_pair_strategy(positive=True), st.randoms(use_true_random=False))
def test_metrics_are_invariant_to_permuting_windows(pair, rnd):
    y, p = pair
    q_pred = np.sort(np.stack([p - 1, p, p + 2], axis=-1), axis=-1)
    perm = np.array(rnd.sample(range(len(y)), len(y)))
    kwargs = {"scale": 1.5, "quantiles": [0.1, 0.5, 0.9]}
    before = metrics.evaluate(y, p, q_pred=q_pred, **kwargs)
    after = metrics.evaluate(y[perm], p[perm], q_pred=q_pred[perm], **kwargs)
    assert after == pytest.approx(before)


# ---------------------------------------------------------------- evaluate


def test_evaluate_names_and_values():
    q_pred = np.stack([Y_PRED - 1, Y_PRED, Y_PRED + 1], axis=-1)
    out = metrics.evaluate(
        Y_TRUE, Y_PRED, scale=2.0, quantiles=[0.1, 0.5, 0.9], q_pred=q_pred, directional=True
    )
    assert list(out) == [
        "mae",
        "rmse",
        "smape",
        "mape",
        "mase",
        "pinball_p10",
        "pinball_p50",
        "pinball_p90",
        "pinball_mean",
        "coverage_80",
        "width_80",
        "directional_accuracy",
    ]
    assert out["mae"] == metrics.mae(Y_TRUE, Y_PRED)
    assert out["mase"] == pytest.approx(11 / 12)
    assert out["coverage_80"] == metrics.interval_coverage(Y_TRUE, Y_PRED - 1, Y_PRED + 1)
    assert out["width_80"] == pytest.approx(2.0)
    assert out["pinball_p50"] == pytest.approx(metrics.mae(Y_TRUE, Y_PRED) / 2)
    assert all(isinstance(v, float) for v in out.values())


def test_evaluate_leaves_out_mape_on_zeros_and_names_other_intervals():
    y = np.array([[0.0, 1.0]])[..., None]
    q_pred = np.stack([y - 1, y, y + 1, y + 2], axis=-1)
    out = metrics.evaluate(y, y + 1, quantiles=[0.025, 0.05, 0.95, 0.975], q_pred=q_pred)
    assert "mape" not in out and "mase" not in out
    assert {"pinball_p2_5", "pinball_p05", "pinball_p95", "pinball_p97_5"} <= set(out)
    assert {"coverage_95", "width_95", "coverage_90", "width_90"} <= set(out)
    assert out["width_95"] == pytest.approx(3.0) and out["width_90"] == pytest.approx(1.0)


def test_evaluate_by_step_is_a_step_by_metric_table():
    table = metrics.evaluate_by_step(Y_TRUE, Y_PRED, scale=2.0)
    assert isinstance(table, pd.DataFrame)
    assert table.index.name == "step" and list(table.index) == [1, 2, 3]
    assert list(table.columns) == list(metrics.evaluate(Y_TRUE, Y_PRED, scale=2.0))
    np.testing.assert_allclose(table["mae"], metrics.mae(Y_TRUE, Y_PRED, reduce=False))
    # Every step has the same count, so the overall MAE is the mean of the steps.
    assert table["mae"].mean() == pytest.approx(metrics.mae(Y_TRUE, Y_PRED))


# ---------------------------------------------------------------- errors


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(
        DataValidationError, match=r"y_true.shape=\(2, 3, 1\), y_pred.shape=\(2, 3\)"
    ):
        metrics.mae(Y_TRUE, Y_PRED[..., 0])
    with pytest.raises(
        DataValidationError, match=r"3-D array \(N, H, T\). Received: y_true.shape=\(2, 3\)"
    ):
        metrics.evaluate(Y_TRUE[..., 0], Y_PRED[..., 0])


def test_nan_predictions_raise_with_their_count():
    bad = Y_PRED.copy()
    bad[0, 1, 0] = bad[1, 2, 0] = np.nan
    with pytest.raises(DataValidationError, match=r"`y_pred` holds 2 NaN/inf values .*\(0, 1, 0\)"):
        metrics.evaluate(Y_TRUE, bad)
    q_pred = np.stack([Y_PRED, Y_PRED], axis=-1)
    q_pred[0, 0, 0, 1] = np.inf
    with pytest.raises(DataValidationError, match="`q_pred` holds 1 NaN/inf"):
        metrics.pinball_loss(Y_TRUE, q_pred, [0.1, 0.9])


def test_mape_refuses_zeros_naming_count_and_positions():
    y = Y_TRUE.copy()
    y[1, 0, 0] = y[1, 2, 0] = 0.0
    with pytest.raises(
        DataValidationError,
        match=r"holds 2 zeros \(first at \(window, step, target\): \[\(1, 0, 0\), \(1, 2, 0\)\]\)",
    ):
        metrics.mape(y, Y_PRED)


@pytest.mark.parametrize(
    ("quantiles", "message"),
    [
        ([0.0, 0.5], "strictly between 0 and 1"),
        ([0.5, 1.2], "strictly between 0 and 1"),
        ([0.9, 0.1], "strictly increasing"),
        ([0.1, 0.1], "strictly increasing"),
    ],
)
def test_bad_quantiles_raise(quantiles, message):
    q_pred = np.stack([Y_PRED] * len(quantiles), axis=-1)
    with pytest.raises(ConfigError, match=f"{message}.*Received: quantiles="):
        metrics.evaluate(Y_TRUE, Y_PRED, quantiles=quantiles, q_pred=q_pred)


def test_quantile_arguments_must_match():
    with pytest.raises(ConfigError, match="pass both or neither"):
        metrics.evaluate(Y_TRUE, Y_PRED, quantiles=[0.1, 0.9])
    with pytest.raises(DataValidationError, match=r"q_pred.shape=\(2, 3, 1, 2\)"):
        metrics.evaluate(
            Y_TRUE, Y_PRED, quantiles=[0.1, 0.5, 0.9], q_pred=np.stack([Y_PRED] * 2, axis=-1)
        )


def test_mase_scale_errors():
    with pytest.raises(DataValidationError, match="`scale` must be finite and > 0"):
        metrics.mase(Y_TRUE, Y_PRED, scale=0.0)
    with pytest.raises(DataValidationError, match=r"Received: scale.shape=\(3,\)"):
        metrics.mase(Y_TRUE, Y_PRED, scale=[1.0, 2.0, 3.0])
    with pytest.raises(DataValidationError, match="needs more than season=4 values.*Received: 4"):
        metrics.seasonal_naive_scale([1.0, 2.0, 3.0, 4.0], season=4)
    with pytest.raises(DataValidationError, match=r"columns \[0\]\) repeats itself every season=2"):
        metrics.seasonal_naive_scale([1.0, 2.0, 1.0, 2.0, 1.0], season=2)
    with pytest.raises(ConfigError, match="Received: season=0"):
        metrics.seasonal_naive_scale([1.0, 2.0], season=0)
    with pytest.raises(DataValidationError, match=r"first rows: \[1\]"):
        metrics.seasonal_naive_scale([1.0, np.nan, 2.0], season=1)


def test_reference_shape_is_checked_before_work():
    with pytest.raises(
        DataValidationError, match=r"\(N, T\)=\(2, 1\). Received: reference.shape=\(2,\)"
    ):
        metrics.evaluate(Y_TRUE, Y_PRED, directional=True, reference=np.ones(2))
