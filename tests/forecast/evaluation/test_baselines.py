"""Tests for forecast.evaluation.baselines: hand-computed forecasts, mask handling, registry and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from forecast.evaluation import metrics
from forecast.evaluation.baselines import (
    BASELINES,
    Drift,
    MovingAverage,
    Naive,
    RidgeLags,
    SeasonalNaive,
    make_baseline,
    season_from_freq,
)
from pipelines.errors import ConfigError, DataValidationError

# One window, L=6, two targets and a covariate that baselines must ignore.
PAST = np.stack(
    [
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        [10.0, 20.0, 10.0, 20.0, 10.0, 20.0],
        [99.0] * 6,
    ],
    axis=-1,
)[None]  # (1, 6, 3)


def _fit_predict(model, past, mask=None, horizon=4):
    target = np.zeros((len(past), horizon, model.n_targets))
    return model.fit(past, target, mask).predict(past, mask)


# ---------------------------------------------------------------- fixed values


def test_hand_computed_forecasts():
    naive = _fit_predict(Naive(horizon=4, n_targets=2), PAST)
    np.testing.assert_array_equal(naive[0], [[6.0, 20.0]] * 4)
    seasonal = _fit_predict(SeasonalNaive(horizon=4, n_targets=2, season=3), PAST)
    # Last season: steps 4..6 = (4, 20), (5, 10), (6, 20); then it repeats.
    np.testing.assert_array_equal(seasonal[0, :, 0], [4.0, 5.0, 6.0, 4.0])
    np.testing.assert_array_equal(seasonal[0, :, 1], [20.0, 10.0, 20.0, 20.0])
    drift = _fit_predict(Drift(horizon=4, n_targets=2), PAST)
    np.testing.assert_allclose(drift[0, :, 0], [7.0, 8.0, 9.0, 10.0])
    np.testing.assert_allclose(drift[0, :, 1], 20.0 + 2.0 * np.arange(1, 5))  # slope 10/5
    average = _fit_predict(MovingAverage(horizon=4, n_targets=2, k=4), PAST)
    np.testing.assert_allclose(average[0], [[4.5, 15.0]] * 4)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_last_valid_value_follows_the_mask(padding):
    values = np.array([3.0, 1.0, 4.0, 0.0, 0.0])  # three real steps, two padded
    mask = np.array([True, True, True, False, False])
    if padding == "left":
        values, mask = values[::-1].copy(), mask[::-1].copy()
        values[2:] = [3.0, 1.0, 4.0]
    past = values[None, :, None]
    assert Naive(horizon=2).predict(past, mask[None])[0, :, 0].tolist() == [4.0, 4.0]
    assert Drift(horizon=1).predict(past, mask[None])[0, 0, 0] == pytest.approx(4.5)
    assert MovingAverage(horizon=1, k=2).predict(past, mask[None])[0, 0, 0] == 2.5
    # k larger than the window's real steps: the mean of what it has.
    assert MovingAverage(horizon=1, k=5).predict(past, mask[None])[0, 0, 0] == pytest.approx(8 / 3)


def test_seasonal_naive_on_a_seasonal_series_beats_naive_through_metrics():
    series = np.tile([1.0, 5.0, 2.0, 8.0], 20)
    windows = sliding_window_view(series, 12 + 4)  # lookback 12, horizon 4
    past, target = windows[:, :12, None], windows[:, 12:, None]
    seasonal = SeasonalNaive(horizon=4, season=4).fit(past, target).predict(past)
    naive = Naive(horizon=4).fit(past, target).predict(past)
    assert metrics.mae(target, seasonal) == 0.0
    assert metrics.mae(target, naive) > 1.0


def test_ridge_recovers_a_linear_map_and_a_trend():
    rng = np.random.default_rng(0)
    past = rng.normal(size=(500, 8, 1))
    weights = rng.normal(size=(3, 2))  # last 3 lags -> 2 steps
    target = (past[:, -3:, 0] @ weights)[..., None] + 0.5
    ridge = RidgeLags(horizon=2, n_lags=3, alpha=1e-9, relative=False).fit(past, target)
    np.testing.assert_allclose(ridge.predict(past), target, atol=1e-6)
    # A straight line is continued exactly when regressing changes from the last value.
    t = np.arange(200.0)
    windows = sliding_window_view(3.0 + 0.25 * t, 10 + 3)
    trend = RidgeLags(horizon=3, n_lags=5, alpha=1e-6).fit(
        windows[:100, :10, None], windows[:100, 10:, None]
    )
    np.testing.assert_allclose(
        trend.predict(windows[100:, :10, None]), windows[100:, 10:, None], atol=1e-5
    )


def test_forecasts_keep_the_float32_of_windows():
    past = PAST.astype(np.float32)
    for name, kwargs in [("naive", {}), ("drift", {}), ("ridge", {"n_lags": 2})]:
        model = make_baseline(name, horizon=3, n_targets=2, **kwargs)
        out = model.fit(past, np.zeros((1, 3, 2), np.float32)).predict(past)
        assert out.dtype == np.float32 and out.shape == (1, 3, 2)


@pytest.mark.parametrize(
    ("freq", "season"),
    [
        ("30min", 48),
        ("15min", 96),
        ("h", 24),
        ("H", 24),
        ("2h", 12),
        ("D", 7),
        ("B", 5),
        ("W", 52),
        ("W-SUN", 52),
        ("2W", 26),
        ("MS", 12),
        ("M", 12),
        ("ME", 12),
        ("QS", 4),
        ("YS", 1),
    ],
)
def test_season_from_freq(freq, season):
    assert season_from_freq(freq) == season


# ---------------------------------------------------------------- invariants


@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.integers(1, 5),
    st.integers(8, 20),
    st.integers(1, 6),
)
def test_every_baseline_is_exact_on_a_constant_series(value, n, length, horizon):
    past = np.full((n, length, 1), value)
    target = np.full((n, horizon, 1), value)
    for model in (
        Naive(horizon=horizon),
        SeasonalNaive(horizon=horizon, season=7),
        Drift(horizon=horizon),
        MovingAverage(horizon=horizon, k=5),
    ):
        np.testing.assert_allclose(model.fit(past, target).predict(past), target, rtol=1e-12)


def _padded(
    windows: list[np.ndarray], length: int, layout: str, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Batch variable-length windows into (N, L, F) with garbage in the padded steps."""
    n_feat = windows[0].shape[1]
    past = rng.normal(1e3, 1e3, size=(len(windows), length, n_feat))
    mask = np.zeros((len(windows), length), dtype=bool)
    for i, w in enumerate(windows):
        if layout == "right":
            slots = np.arange(len(w))
        elif layout == "left":
            slots = np.arange(length - len(w), length)
        else:  # holes: real steps scattered over the window, in order
            slots = np.sort(rng.choice(length, size=len(w), replace=False))
        past[i, slots], mask[i, slots] = w, True
    padded = np.argwhere(~mask)
    if len(padded):  # padded steps may hold anything, even NaN: the mask says they do not count
        past[padded[0][0], padded[0][1], 0] = np.nan
    return past, mask


@given(
    st.sampled_from(["right", "left", "holes"]),
    st.lists(st.integers(6, 16), min_size=1, max_size=6),
    st.integers(0, 2**32 - 1),
)
def test_padded_masked_windows_forecast_like_unpadded_ones(layout, lengths, seed):
    rng = np.random.default_rng(seed)
    windows = [rng.normal(size=(n, 2)) for n in lengths]  # target + covariate
    past, mask = _padded(windows, 16, layout, rng)
    train = rng.normal(size=(40, 6, 2))
    models = [
        Naive(horizon=5),
        SeasonalNaive(horizon=5, season=4),
        Drift(horizon=5),
        MovingAverage(horizon=5, k=6),
        RidgeLags(horizon=5, n_lags=6).fit(train, rng.normal(size=(40, 5, 1))),
    ]
    for model in models:
        batched = model.predict(past, mask)
        for i, w in enumerate(windows):
            np.testing.assert_allclose(
                batched[i], model.predict(w[None])[0], rtol=1e-10, atol=1e-10
            )


# ---------------------------------------------------------------- registry and errors


def test_registry_round_trips_configs():
    assert set(BASELINES) == {"naive", "seasonal_naive", "drift", "moving_average", "ridge", "mean"}
    model = make_baseline("ridge", horizon=6, n_lags=12, alpha=0.5)
    config = model.get_config()
    assert config == {
        "name": "ridge",
        "horizon": 6,
        "n_targets": 1,
        "n_lags": 12,
        "alpha": 0.5,
        "relative": True,
    }
    assert make_baseline(**config).get_config() == config


def test_unknown_names_and_arguments_raise():
    with pytest.raises(
        ConfigError, match="Unknown baseline 'seasonal_naiv'. Did you mean 'seasonal_naive'"
    ):
        make_baseline("seasonal_naiv", horizon=3)
    with pytest.raises(ConfigError, match=r"unknown arguments: \['season'\]"):
        make_baseline("naive", horizon=3, season=7)
    with pytest.raises(ConfigError, match="Received: horizon=0"):
        make_baseline("naive", horizon=0)
    with pytest.raises(ConfigError, match="needs `season` or `freq`"):
        SeasonalNaive(horizon=3)
    with pytest.raises(ConfigError, match="Cannot derive a season from freq='fortnight'"):
        SeasonalNaive(horizon=3, freq="fortnight")
    with pytest.raises(
        ConfigError, match=r"freq='7h' does not divide its season \(a day\) into whole steps"
    ):
        season_from_freq("7h")


def test_season_longer_than_lookback_is_refused_before_work():
    with pytest.raises(
        ConfigError,
        match=r"season=48 \(from freq='30min'\) needs a history of at least 48 steps, but the windows' lookback is L=24",
    ):
        SeasonalNaive(horizon=3, freq="30min").predict(np.zeros((2, 24, 1)))
    with pytest.raises(ConfigError, match="k=10 needs a history of at least 10 steps"):
        MovingAverage(horizon=3, k=10).predict(np.zeros((2, 8, 1)))


def test_short_dynamic_windows_are_named():
    mask = np.ones((4, 10), dtype=bool)
    mask[2, 5:] = mask[3, 3:] = False
    with pytest.raises(
        DataValidationError,
        match=r"2 windows have fewer than 7 valid history steps, which season=7 needs \(first windows: \[2, 3\], fewest: 3\)",
    ):
        SeasonalNaive(horizon=2, season=7).predict(np.zeros((4, 10, 1)), mask)
    mask[3] = False
    with pytest.raises(
        DataValidationError,
        match=r"1 windows have fewer than 1 valid history steps, which Naive needs",
    ):
        Naive(horizon=2).predict(np.zeros((4, 10, 1)), mask)


def test_bad_arrays_raise():
    with pytest.raises(
        DataValidationError, match=r"3-D array \(N, L, F\). Received: past.shape=\(6, 3\)"
    ):
        Naive(horizon=2).predict(PAST[0])
    with pytest.raises(DataValidationError, match="first n_targets=4 features, but it has 3"):
        Naive(horizon=2, n_targets=4).predict(PAST)
    with pytest.raises(DataValidationError, match=r"Received: mask.shape=\(1, 6\), dtype=int64"):
        Naive(horizon=2).predict(PAST, np.ones((1, 6), dtype=np.int64))
    with pytest.raises(DataValidationError, match=r"target.shape=\(1, 3, 1\)"):
        Naive(horizon=2).fit(PAST, np.zeros((1, 3, 1)))
    nan_past = PAST.copy()
    nan_past[0, 2, 0] = np.nan
    with pytest.raises(
        DataValidationError,
        match=r"NaN/inf target values at real steps of 1 windows \(first windows: \[0\]\)",
    ):
        Naive(horizon=2).predict(nan_past)
    nan_past[0, 2, 0] = 0.0
    nan_past[0, 2, 2] = np.nan  # a covariate: baselines do not read it
    assert Naive(horizon=2).predict(nan_past).shape == (1, 2, 1)


def test_ridge_must_be_fitted_and_needs_enough_lags():
    with pytest.raises(ConfigError, match="RidgeLags is not fitted"):
        RidgeLags(horizon=2).predict(PAST)
    with pytest.raises(ConfigError, match="n_lags=8 needs a history of at least 8 steps"):
        RidgeLags(horizon=2, n_lags=8).fit(PAST, np.zeros((1, 2, 1)))
    with pytest.raises(DataValidationError, match=r"`target` holds NaN/inf in 1 windows"):
        RidgeLags(horizon=2, n_lags=3).fit(PAST, np.full((1, 2, 1), np.nan))


def test_mean_baseline_forecasts_the_training_mean():
    rng = np.random.default_rng(3)
    past = rng.normal(size=(50, 8, 2))
    target = rng.normal(loc=[1.0, -2.0], size=(50, 3, 2))
    model = make_baseline("mean", horizon=3, n_targets=2).fit(past, target)
    pred = model.predict(rng.normal(size=(4, 8, 2)))
    np.testing.assert_allclose(pred, np.broadcast_to(target.mean(axis=(0, 1)), (4, 3, 2)))


def test_mean_baseline_must_be_fitted():
    with pytest.raises(ConfigError, match="must be fitted"):
        make_baseline("mean", horizon=2).predict(np.zeros((1, 4, 1)))
