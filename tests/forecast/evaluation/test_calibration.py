"""Rolling interval recalibration: conformal factors, no look-ahead, and the same corrected
quantiles from evaluation and from a served model given the same history."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.config import CalibrationConfig, ForecastConfig
from forecast.data import prepare
from forecast.evaluation.calibration import quantile_factors, recalibrate
from forecast.evaluation.scoring import model_forecasts
from forecast.serving.forecaster import Forecaster
from forecast.serving.pyfunc import example_history, log_forecaster
from forecast.training.fitting import train_model
from pipelines import datasets
from pipelines.errors import ConfigError, DataValidationError

LEVELS = (0.1, 0.5, 0.9)
Z90 = 1.2815515655446004  # standard normal 0.9 quantile


def test_factors_match_hand_computed_conformal_quantiles():
    median = np.zeros((1, 4, 1))
    quantiles = np.broadcast_to(np.array([-1.0, 0.0, 1.0]), (1, 4, 1, 3)).copy()
    y = np.array([0.5, -2.0, 3.0, 0.2]).reshape(1, 4, 1)
    # p10: ratios y / -1 = [-0.5, 2, -3, -0.2]; p90: y / 1. With n = 4 the 0.9 conformal
    # rank ceil(5 * 0.9) = 5 exceeds n, so both take the largest ratio.
    assert quantile_factors(median, quantiles, y, LEVELS).tolist() == [[2.0, 1.0, 3.0]]


def test_factor_is_the_ceil_n_plus_one_rank():
    n = 19  # rank ceil(20 * 0.9) = 18: the 18th smallest of 19 ratios
    y = np.arange(1.0, n + 1).reshape(n, 1, 1)
    median = np.zeros_like(y)
    quantiles = np.broadcast_to(np.array([-1.0, 0.0, 1.0]), (n, 1, 1, 3)).copy()
    factors = quantile_factors(median, quantiles, y, LEVELS)
    assert factors[0, 2] == 18.0  # p90 ratios are 1..19
    # p10 ratios are -19..-1: the 18th is -2, which would put p10 above the median; a
    # quantile may shrink onto the median but not cross it.
    assert factors[0, 0] == 0.0


def test_too_narrow_intervals_are_widened_to_nominal_coverage():
    """Outcomes twice as spread as the model thinks: factors ~2 and 80% coverage on new data."""
    rng = np.random.default_rng(0)
    k, h = 400, 5
    median = rng.normal(size=(k + 1, h, 1))
    quantiles = median[..., None] + np.array([-Z90, 0.0, Z90])
    y = median + 2.0 * rng.normal(size=median.shape)
    factors = quantile_factors(median[:k], quantiles[:k], y[:k], LEVELS)
    assert np.allclose(factors[0, [0, 2]], 2.0, atol=0.15)
    covered_before = ((y >= quantiles[..., 0]) & (y <= quantiles[..., 2])).mean()
    fresh_median = rng.normal(size=(2000, h, 1))
    fresh_q = fresh_median[..., None] + factors * np.array([-Z90, 0.0, Z90])
    fresh_y = fresh_median + 2.0 * rng.normal(size=fresh_median.shape)
    covered = ((fresh_y >= fresh_q[..., 0]) & (fresh_y <= fresh_q[..., 2])).mean()
    assert covered_before < 0.55
    assert 0.77 <= covered <= 0.83


@st.composite
def histories(draw):
    """Forecasts of two series at consecutive origins, with random quantiles and outcomes."""
    n, h = draw(st.integers(12, 30)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    median = rng.normal(size=(2 * n, h, 2))
    spread = np.exp(rng.normal(size=(2 * n, h, 2, 1))) * np.array([-1.0, 0.0, 1.0])
    quantiles = median[..., None] + spread
    y = median + rng.normal(scale=2.0, size=median.shape)
    series = np.repeat(np.array(["a", "b"], dtype=object), n)
    origin = np.tile(np.arange(n) + 7, 2)
    return quantiles, y, series, origin, h, draw(st.integers(1, 8)), rng


def _recal(quantiles, y, series, origin, h, k):
    return recalibrate(
        quantiles,
        LEVELS,
        series=series,
        origin=origin,
        past_series=series,
        past_origin=origin,
        past_quantiles=quantiles,
        past_y=y,
        horizon=h,
        windows=k,
    )


@settings(max_examples=40, deadline=None)
@given(histories())
def test_a_forecast_reads_only_the_k_outcomes_known_at_its_origin(case):
    quantiles, y, series, origin, h, k, rng = case
    out, used = _recal(quantiles, y, series, origin, h, k)
    i = int(rng.integers(len(origin)))
    t = origin[i]
    same = series == series[i]
    window = same & (origin <= t - h) & (origin > t - h - k)
    assert used[i] == window.sum()
    changed = y.copy()
    changed[~window] += rng.normal(scale=10.0, size=changed[~window].shape)  # other outcomes
    again, _ = _recal(quantiles, changed, series, origin, h, k)
    np.testing.assert_array_equal(again[i], out[i])
    if window.any():  # the outcomes it does read change it
        moved = y.copy()
        moved[window] *= 5.0
        third, _ = _recal(quantiles, moved, series, origin, h, k)
        assert not np.allclose(third[i], out[i])


@settings(max_examples=40, deadline=None)
@given(histories(), st.floats(0.01, 100.0), st.floats(-50.0, 50.0))
def test_quantiles_stay_sorted_median_fixed_and_units_do_not_matter(case, scale, shift):
    quantiles, y, series, origin, h, k, _ = case
    out, _ = _recal(quantiles, y, series, origin, h, k)
    assert (np.diff(out, axis=-1) >= 0).all()
    np.testing.assert_array_equal(out[..., 1], quantiles[..., 1])
    scaled, _ = _recal(quantiles * scale + shift, y * scale + shift, series, origin, h, k)
    np.testing.assert_allclose(scaled, out * scale + shift, rtol=1e-9, atol=1e-9 * scale)


def test_first_forecasts_of_a_history_are_left_as_they_are():
    quantiles = np.array([-1.0, 0.0, 1.0]).reshape(1, 1, 1, 3).repeat(3, axis=0)
    y = np.full((3, 1, 1), 5.0)
    out, used = _recal(quantiles, y, np.zeros(3), np.arange(3), 1, 2)
    assert used.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(out[0], quantiles[0])
    assert out[1, 0, 0, 2] == 5.0  # one outcome at 5x the distance of p90


@pytest.mark.parametrize(
    "windows, message",
    [
        (-1, "`calibration.windows` must be an integer >= 0"),
        (True, "Received: windows=True"),
        (2.5, "Received: windows=2.5"),
    ],
)
def test_bad_windows_are_config_errors(windows, message):
    with pytest.raises(ConfigError, match=message):
        CalibrationConfig(windows=windows)


def test_calibration_needs_a_quantile_head():
    with pytest.raises(ConfigError, match="`calibration.windows` recalibrates a quantile head"):
        ForecastConfig.from_dict({**CONFIG, "model": {"units": [4]}})


def test_calibration_needs_stride_one():
    with pytest.raises(ConfigError, match=r"needs `window.stride: 1`.*stride=3"):
        ForecastConfig.from_dict({**CONFIG, "window": {"lookback": 20, "horizon": H, "stride": 3}})


def test_median_is_required():
    q = np.zeros((1, 1, 1, 2))
    with pytest.raises(ConfigError, match="must include 0.5"):
        recalibrate(
            q,
            (0.1, 0.9),
            series=np.zeros(1),
            origin=np.zeros(1),
            past_series=np.zeros(1),
            past_origin=np.zeros(1),
            past_quantiles=q,
            past_y=np.zeros((1, 1, 1)),
            horizon=1,
            windows=1,
        )


K, H = 25, 5
CONFIG = {
    "name": "stocks-calibrated",
    "data": {
        "dataset": "eustockmarkets",
        "last_n": 420,
        "features": {"target": "log_return", "volatility": [5]},
    },
    "window": {"lookback": 20, "horizon": H},
    "model": {"units": [8], "quantiles": list(LEVELS)},
    "training": {"epochs": 1, "verbose": 0},
    "evaluation": {"baselines": ["naive"]},
    "calibration": {"windows": K},
}
RAW = datasets.load("eustockmarkets").frame


@pytest.fixture(scope="module")
def trained():
    config = ForecastConfig.from_dict(CONFIG)
    prepared = prepare(config)
    return config, prepared, train_model(config, prepared)


def test_evaluation_equals_the_served_forecaster_on_the_same_history(trained, tmp_path):
    """Each of the last test forecasts of every series, recomputed by `Forecaster.predict`
    from raw rows up to its origin only (after a save and load)."""
    config, prepared, fitted = trained
    scored = model_forecasts(fitted.model, prepared, "test", calibration=K)
    plain = model_forecasts(fitted.model, prepared, "test")
    assert not np.allclose(scored.quantiles, plain.quantiles)  # recalibration did something
    # Recalibration leaves the point forecasts alone. The calibrated path predicts every
    # window of the frame, so the test windows sit in other batches; on some CPUs (AMD
    # EPYC, oneDNN's AVX2 kernels) a batch's matmul blocking reorders float32 sums, by
    # 1.4e-7 relative seen. A changed point forecast is orders of magnitude larger.
    np.testing.assert_allclose(scored.point, plain.point, rtol=1e-6, atol=0)
    forecaster = Forecaster.load(fitted.forecaster.save(tmp_path / "model"))
    assert forecaster.state.calibration_windows == K
    windows = prepared.windows["test"]
    frame, time_col = prepared.split.frame, prepared.schema.time_col
    ids = np.asarray(windows.series_ids, dtype=object)[windows.series]
    for sid in ["DAX", "FTSE"]:
        mine = np.flatnonzero(ids == sid)
        times = frame.loc[frame["series"] == sid, time_col].to_numpy()
        for back in range(3):
            i = mine[len(mine) - 1 - back]
            origin = times[len(times) - H - 1 - back]
            raw = RAW[(RAW["series"] == sid) & (RAW[time_col] <= origin)]
            got = forecaster.predict(raw.tail(forecaster.state.min_rows + 3))
            np.testing.assert_allclose(
                got[["p10", "p50", "p90"]].to_numpy(), scored.quantiles[i, :, 0], rtol=1e-5
            )


def test_served_model_needs_history_for_its_k_earlier_forecasts(trained):
    _, _, fitted = trained
    forecaster = fitted.forecaster
    need = forecaster.state.min_rows
    assert need == 20 + 5 + K + H - 1  # window + volatility warm-up + K + H - 1
    raw = RAW[RAW["series"] == "SMI"].tail(need - 1)
    with pytest.raises(DataValidationError, match=rf"needs at least {need} rows per series.*"):
        forecaster.predict(raw)
    with pytest.raises(DataValidationError, match=r"for the 25 earlier forecasts"):
        forecaster.predict(raw)
    assert len(forecaster.predict(RAW[RAW["series"] == "SMI"].tail(need))) == H


def test_calibrated_and_plain_forecasts_share_the_median_and_differ_in_width(trained):
    _, prepared, fitted = trained
    for part in ("validation", "test"):
        scored = model_forecasts(fitted.model, prepared, part, calibration=K)
        plain = model_forecasts(fitted.model, prepared, part)
        np.testing.assert_allclose(scored.quantiles[..., 1], plain.quantiles[..., 1], rtol=1e-6)
        width = scored.quantiles[..., 2] - scored.quantiles[..., 0]
        assert (width > 0).all()
        assert not np.allclose(width, plain.quantiles[..., 2] - plain.quantiles[..., 0])


def test_logged_pyfunc_serves_the_recalibrated_quantiles(trained, tmp_path):
    """The MLflow model (warmed up on its default example) returns what the forecaster does."""
    _, _, fitted = trained
    forecaster = fitted.forecaster
    assert len(example_history(forecaster)) == forecaster.state.min_rows
    request = RAW[RAW["series"].isin(["CAC", "SMI"])].groupby("series").tail(80)
    with contextlib.chdir(tmp_path), mlflow.start_run():
        info = log_forecaster(forecaster, name="stocks")
        path = list(sys.path)  # loading puts the model's code folder on sys.path
        try:
            served = mlflow.pyfunc.load_model(info.model_uri).predict(request)
        finally:
            sys.path[:] = path
    want = forecaster.predict(request)
    cols = ["p10", "p50", "p90", "forecast"]
    np.testing.assert_allclose(served[cols].to_numpy(), want[cols].to_numpy(), rtol=1e-6)
    plain = Forecaster(forecaster.model, replace(forecaster.state, calibration_windows=0))
    assert not np.allclose(plain.predict(request)[cols].to_numpy(), want[cols].to_numpy())


def test_first_training_windows_have_nothing_to_learn_from_and_stay_as_given(trained, caplog):
    _, prepared, fitted = trained
    scored = model_forecasts(fitted.model, prepared, "train", calibration=K)
    plain = model_forecasts(fitted.model, prepared, "train")
    series = prepared.windows["train"].series
    first = np.concatenate([np.flatnonzero(series == s)[:H] for s in np.unique(series)])
    later = np.setdiff1d(np.arange(len(series)), first)
    np.testing.assert_allclose(scored.quantiles[first], plain.quantiles[first], rtol=1e-6)
    assert not np.allclose(scored.quantiles[later], plain.quantiles[later])
    assert "train windows were recalibrated with fewer than 25 earlier forecasts" in caplog.text


def test_served_forecast_right_after_a_gap_is_refused_with_the_reason(tmp_path):
    rng = np.random.default_rng(1)
    times = pd.date_range("2020-01-01", periods=300, freq="D")
    frame = pd.DataFrame({"ts": times, "sid": "A", "y": np.cumsum(rng.normal(size=300))})
    path = tmp_path / "gappy.parquet"
    frame.drop(index=range(262, 265)).to_parquet(path)  # a 3-day gap
    config = ForecastConfig.from_dict(
        {
            "name": "gappy",
            "data": {
                "path": str(path),
                "schema": {"time_col": "ts", "id_col": "sid", "targets": ["y"], "freq": "D"},
                "validation": {"gaps": "segment"},
            },
            "window": {"lookback": 12, "horizon": 4},
            "model": {"units": [4], "quantiles": list(LEVELS)},
            "training": {"epochs": 1, "verbose": 0},
            "evaluation": {"baselines": ["naive"]},
            "calibration": {"windows": 6},
        }
    )
    forecaster = train_model(config, prepare(config)).forecaster
    full = pd.read_parquet(path)
    history = full[full["ts"] <= times[276]]  # 12 rows since the gap: one window only
    for rows in (forecaster.state.min_rows, forecaster.state.min_rows + 10):
        with pytest.raises(
            DataValidationError,
            match=r"Series \['A'\] have no earlier forecast with a known outcome since their "
            r"last gap.*needs at least 4 rows after the gap beyond its window \(9 to use all 6\)",
        ):
            forecaster.predict(history.tail(rows))
    # The window (12) plus H (4) rows since the gap give one earlier forecast; one row less
    # gives none.
    assert len(forecaster.predict(full[full["ts"] <= times[280]].tail(40))) == 4
    with pytest.raises(DataValidationError, match="since their last gap"):
        forecaster.predict(full[full["ts"] <= times[279]].tail(40))


def test_model_forecasts_rejects_a_bad_k_before_predicting(trained):
    _, prepared, fitted = trained
    with pytest.raises(ConfigError, match=r"`calibration.windows` must be an integer >= 0"):
        model_forecasts(fitted.model, prepared, "test", calibration=-3)
