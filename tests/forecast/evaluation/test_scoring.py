"""Scoring a model and the baselines on the same windows: original units, hand-checked metrics."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from forecast.config import ForecastConfig, ModelSpec
from forecast.data import prepare
from forecast.evaluation.scoring import (
    RANDOM_WALK,
    Forecasts,
    _trace_one_window,
    baseline_forecasts,
    is_return_target,
    is_returns,
    model_forecasts,
    per_step,
    predict_windows,
    score,
    score_part,
    wide,
)
from forecast.models import build_model
from forecast.training.fitting import train_model
from pipelines.errors import ConfigError, DataValidationError

H, SEASON, LEVELS = 6, 12, (0.1, 0.5, 0.9)
# Sunspot counts, one series: a level target with a quantile head (trained for one epoch).
LEVELS_CONFIG = {
    "name": "scoring_levels",
    "data": {"dataset": "sunspots", "last_n": 240},
    "window": {"lookback": 24, "horizon": H},
    "model": {"units": [8], "quantiles": list(LEVELS)},
    "training": {"epochs": 1, "verbose": 0},
    "evaluation": {"season": SEASON, "baselines": ["naive", "seasonal_naive"]},
}
# Four stock indices, log returns as the target: a point model.
RETURNS_CONFIG = {
    "name": "scoring_returns",
    "data": {"dataset": "eustockmarkets", "last_n": 200, "features": {"target": "log_return"}},
    "window": {"lookback": 16, "horizon": 3},
    "model": {"units": [8]},
    "training": {"epochs": 1, "verbose": 0},
    "evaluation": {"baselines": ["naive"]},
}


@pytest.fixture(scope="module")
def levels():
    config = ForecastConfig.from_dict(LEVELS_CONFIG)
    prepared = prepare(config)
    return prepared, train_model(config, prepared).model


def _built(config: ForecastConfig, prepared) -> keras.Model:
    """The configured network, untrained: what is checked here does not depend on weights."""
    train = prepared.windows["train"]
    return build_model(
        config.model,
        n_features=train.n_features,
        n_targets=train.n_targets,
        horizon=train.spec.horizon,
        n_future=train.n_future,
        lookback=train.spec.lookback,
    )


@pytest.fixture(scope="module")
def returns():
    config = ForecastConfig.from_dict(RETURNS_CONFIG)
    prepared = prepare(config)
    return prepared, _built(config, prepared)


def _origins(prepared, part: str) -> np.ndarray:
    """Row in `prepared.frame` of each window's last history step (one series, stride 1)."""
    n = len(prepared.windows[part])
    last_origin = len(prepared.frame) - H - 1  # the last test window ends on the last row
    return last_origin - np.arange(n)[::-1]


# ----------------------------------------------------------------------------- predict_windows


def test_predict_windows_gives_the_same_outputs_whatever_the_batch_size(levels):
    prepared, model = levels
    windows = prepared.windows["test"]
    point, quantiles = predict_windows(model, windows)
    n = len(windows)
    assert point.shape == (n, H, 1) and quantiles.shape == (n, H, 1, len(LEVELS))
    small_point, small_quantiles = predict_windows(model, windows, batch_size=4)
    np.testing.assert_allclose(small_point, point, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(small_quantiles, quantiles, rtol=1e-6, atol=1e-6)
    # One window a batch runs the trace made for a single window: the same numbers.
    one_point, one_quantiles = predict_windows(model, windows.take(np.arange(n) < 3), batch_size=1)
    np.testing.assert_allclose(one_point, point[:3], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(one_quantiles, quantiles[:3], rtol=1e-6, atol=1e-6)
    # Window by window, as a direct call of the network (the rows stay in window order).
    direct = model({k: v[-1:] for k, v in windows.inputs().items()}, training=False)
    np.testing.assert_allclose(point[-1:], np.asarray(direct["forecast"]), rtol=1e-5, atol=1e-6)


def test_predict_windows_traces_once_per_model_whatever_the_batch_sizes(levels):
    """Parts, a last short chunk and one-window requests share one trace of each model."""
    prepared, trained = levels
    windows = prepared.windows["test"]
    for _ in range(3):  # fresh copies, as a job, MLflow's example check and a server load
        model = keras.models.clone_model(trained)
        model.set_weights(trained.get_weights())
        for n, batch in ((len(windows), 1024), (len(windows), 7), (1, 1024), (5, 1024)):
            predict_windows(model, windows.take(np.arange(len(windows)) < n), batch_size=batch)
        assert model.predict_function.experimental_get_tracing_count() == 1


def _xla(one_window) -> bool:
    return one_window._call.function_def.attr["_XlaMustCompile"].b


def test_one_window_runs_as_one_xla_computation_on_a_cpu_but_not_in_mixed_precision(levels):
    """The one-window call (a one-series request) is XLA-compiled: its results are checked
    against the any-batch trace above; a mixed-precision model keeps the plain trace."""
    prepared, model = levels
    inputs = {k: v[:1] for k, v in prepared.windows["test"].inputs().items()}
    assert _xla(_trace_one_window(model, inputs))
    half = build_model(
        ModelSpec(units=(4,), precision="mixed_bfloat16"), n_features=1, n_targets=1, horizon=2,
        lookback=3,
    )  # fmt: skip
    assert not _xla(_trace_one_window(half, {"past": np.zeros((1, 3, 1), "float32")}))


def test_one_window_call_falls_back_to_the_plain_trace_when_xla_cannot_compile_the_model():
    past = keras.Input((4, 1), name="past")
    host = keras.layers.Lambda(  # numpy_function runs on the host: XLA has no kernel for it
        lambda x: tf.numpy_function(lambda a: 2 * a, [x], tf.float32, stateful=False),
        output_shape=(4, 1),
    )
    model = keras.Model({"past": past}, host(past))
    one = {"past": np.arange(4, dtype="float32").reshape(1, 4, 1)}
    call = _trace_one_window(model, one)
    np.testing.assert_array_equal(np.asarray(call(one)).ravel(), [0, 2, 4, 6])
    assert not _xla(call)
    np.testing.assert_array_equal(np.asarray(call(one)).ravel(), [0, 2, 4, 6])


def test_predict_windows_of_a_point_model_has_no_quantiles(returns):
    prepared, model = returns
    windows = prepared.windows["validation"]
    point, quantiles = predict_windows(model, windows, batch_size=16)
    assert quantiles is None
    assert point.shape == (len(windows), 3, 1)


# ----------------------------------------------------------------------------- model_forecasts


def test_model_forecasts_are_the_network_outputs_in_original_units(levels):
    prepared, model = levels
    forecasts = model_forecasts(model, prepared, "test")
    point, quantiles = predict_windows(model, prepared.windows["test"])
    # A standard scaler fitted on the training rows: original = scaled * std + mean.
    train = prepared.split.train["value"].to_numpy(np.float64)
    mean, std = train.mean(), train.std()
    np.testing.assert_allclose(forecasts.point, point * std + mean, rtol=1e-5)
    np.testing.assert_allclose(forecasts.quantiles, quantiles * std + mean, rtol=1e-5)
    assert forecasts.levels == LEVELS


def test_model_forecasts_refuses_calibration_without_a_quantile_head(returns):
    prepared, model = returns
    with pytest.raises(ConfigError, match=r"`calibration.windows` > 0 needs a quantile head"):
        model_forecasts(model, prepared, "test", calibration=5)


def test_model_forecasts_names_non_finite_outputs(returns):
    prepared, model = returns
    broken = keras.models.clone_model(model)
    weights = [w.copy() for w in model.get_weights()]
    weights[0][:] = np.nan
    broken.set_weights(weights)
    n = len(prepared.windows["test"]) * 3
    with pytest.raises(
        DataValidationError,
        match=rf"^The model produced {n} non-finite forecasts on the test part; training "
        r"diverged \(lower the learning rate\)\.$",
    ):
        model_forecasts(broken, prepared, "test")


# ----------------------------------------------------------------------------- baselines


def test_naive_is_the_last_observed_value_in_original_units(levels):
    prepared, _ = levels
    values = prepared.frame["value"].to_numpy(np.float64)
    origins = _origins(prepared, "test")
    steps = np.arange(1, H + 1)
    # The windows really end where `_origins` says: their targets are the next H values.
    np.testing.assert_allclose(prepared.y_true("test")[..., 0], values[origins[:, None] + steps])
    base = baseline_forecasts(prepared, "test", ["naive", "seasonal_naive"])
    assert list(base) == ["naive", "seasonal_naive"]  # no random walk for a level target
    expected = np.repeat(values[origins][:, None], H, axis=1)
    np.testing.assert_allclose(base["naive"][..., 0], expected, rtol=1e-5)
    # One season back from each step: y[origin + h - season] for h <= season.
    seasonal = values[origins[:, None] + steps - SEASON]
    np.testing.assert_allclose(base["seasonal_naive"][..., 0], seasonal, rtol=1e-5)


def test_return_targets_get_the_random_walk_first(returns):
    prepared, _ = returns
    base = baseline_forecasts(prepared, "test", ["naive"])
    assert list(base) == [RANDOM_WALK, "naive"]
    n = len(prepared.windows["test"])
    assert base[RANDOM_WALK].shape == (n, 3, 1)
    assert not base[RANDOM_WALK].any()  # a zero return: the price stays where it is


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("value_log_return", True),
        ("DAX_return", True),
        ("value", False),
        ("returns", False),
        ("log_return_volatility", False),
    ],
)
def test_is_return_target_reads_the_feature_suffix(name, expected):
    assert is_return_target(name) is expected


def test_is_returns_holds_for_return_targets_only(levels, returns):
    assert not is_returns(levels[0])
    assert is_returns(returns[0])
    assert returns[0].schema.targets == ("value_log_return",)


# ----------------------------------------------------------------------------- score


def _pinball(y: np.ndarray, q_pred: np.ndarray, level: float) -> float:
    diff = y - q_pred
    return float(np.mean(np.where(diff >= 0, level * diff, (level - 1) * diff)))


def test_score_on_hand_made_forecasts_equals_metrics_by_hand(levels):
    prepared, _ = levels
    y = prepared.y_true("test")
    assert (y > 0).all()  # no zero counts here, so MAPE is defined
    train = prepared.split.train["value"].to_numpy(np.float64)
    scale = np.mean(np.abs(train[SEASON:] - train[:-SEASON]))  # in-sample seasonal naive MAE
    offsets = np.array([-3.0, 1.0, 4.0])
    forecasts = Forecasts(point=y + 2.0, quantiles=y[..., None] + offsets, levels=LEVELS)
    under = y - 1.0
    table = score(prepared, "test", forecasts, {"under": under})
    assert list(table.columns) == ["model", "metric", "value"]
    assert list(table["model"].unique()) == ["model", "under"]
    got = table.set_index(["model", "metric"])["value"]
    expected = {
        ("model", "mae"): 2.0,
        ("model", "rmse"): 2.0,
        ("model", "smape"): np.mean(4.0 / (2 * y + 2.0)),
        ("model", "mape"): np.mean(2.0 / y),
        ("model", "mase"): 2.0 / scale,
        ("model", "pinball_p10"): _pinball(y, y - 3.0, 0.1),
        ("model", "pinball_p50"): _pinball(y, y + 1.0, 0.5),
        ("model", "pinball_p90"): _pinball(y, y + 4.0, 0.9),
        ("model", "coverage_80"): 1.0,  # y - 3 <= y <= y + 4 everywhere
        ("model", "width_80"): 7.0,
        ("under", "mae"): 1.0,
        ("under", "rmse"): 1.0,
        ("under", "smape"): np.mean(2.0 / (np.abs(y) + np.abs(under))),
        ("under", "mape"): np.mean(1.0 / y),
        ("under", "mase"): 1.0 / scale,
    }
    expected[("model", "pinball_mean")] = np.mean(
        [expected[("model", f"pinball_p{p}")] for p in (10, 50, 90)]
    )
    assert set(got.index) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


def test_score_adds_directional_accuracy_to_every_row_when_asked(levels):
    prepared, _ = levels
    y = prepared.y_true("test")
    point = np.where(np.arange(y.size).reshape(y.shape) % 4 == 0, -y, y)  # a quarter flipped
    forecasts = Forecasts(point=point, quantiles=None, levels=())
    table = score(prepared, "test", forecasts, {"flat": np.zeros_like(y)}, directional=True)
    got = table.set_index(["model", "metric"])["value"]
    assert got[("model", "directional_accuracy")] == pytest.approx(np.mean(point > 0))
    assert got[("flat", "directional_accuracy")] == 0.0  # a zero forecast has no direction
    plain = score(prepared, "test", forecasts, {"flat": np.zeros_like(y)})
    assert "directional_accuracy" not in set(plain["metric"])


# ----------------------------------------------------------------------------- score_part


def test_score_part_of_a_level_model(levels):
    prepared, model = levels
    table, forecasts = score_part(model, prepared, "test", baselines=["naive"])
    assert list(table["model"].unique()) == ["model", "naive"]
    assert "directional_accuracy" not in set(table["metric"])
    got = table.set_index(["model", "metric"])["value"]
    y = prepared.y_true("test")
    assert got[("model", "mae")] == pytest.approx(np.mean(np.abs(y - forecasts.point)))
    np.testing.assert_array_equal(forecasts.point, model_forecasts(model, prepared, "test").point)


def test_score_part_of_a_return_model_adds_the_random_walk_and_directions(returns):
    prepared, model = returns
    table, forecasts = score_part(model, prepared, "validation", baselines=["naive"])
    assert list(table["model"].unique()) == ["model", RANDOM_WALK, "naive"]
    for name in ("model", RANDOM_WALK, "naive"):
        metrics = set(table.loc[table["model"] == name, "metric"])
        assert "directional_accuracy" in metrics, name
    got = table.set_index(["model", "metric"])["value"]
    y = prepared.y_true("validation")
    assert got[(RANDOM_WALK, "mae")] == pytest.approx(np.mean(np.abs(y)))
    assert got[(RANDOM_WALK, "directional_accuracy")] == 0.0
    hits = np.sign(forecasts.point) == np.sign(y)
    assert got[("model", "directional_accuracy")] == pytest.approx(hits[y != 0].mean())


# ----------------------------------------------------------------------------- tables


def test_per_step_scores_each_horizon_step_alone(levels):
    prepared, model = levels
    forecasts = model_forecasts(model, prepared, "test")
    table = per_step(prepared, "test", forecasts)
    assert list(table.index) == list(range(1, H + 1))
    assert {"mae", "rmse", "mase"} <= set(table.columns)
    errors = np.abs(prepared.y_true("test") - forecasts.point)[..., 0]  # (N, H)
    np.testing.assert_allclose(table["mae"].to_numpy(), errors.mean(axis=0), rtol=1e-9)
    rmse = np.sqrt((errors**2).mean(axis=0))
    np.testing.assert_allclose(table["rmse"].to_numpy(), rmse, rtol=1e-9)


def test_wide_puts_the_model_first_and_keeps_every_value():
    tidy = pd.DataFrame(
        {
            "model": ["model", "model", "zeta", "zeta", "alpha", "alpha"],
            "metric": ["mae", "mase", "mae", "mase", "mae", "mase"],
            "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    table = wide(tidy)
    assert list(table.index) == ["model", "alpha", "zeta"]
    assert list(table.columns) == ["mae", "mase"]
    for model, metric, value in tidy.itertuples(index=False):
        assert table.loc[model, metric] == value
