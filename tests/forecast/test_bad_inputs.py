"""Bad job inputs fail before any training starts, with a message that names the problem."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from forecast.config import ForecastConfig, TrainConfig
from forecast.data import prepare
from forecast.models import build_model, compile_model
from forecast.training.loop import fit
from pipelines.errors import ConfigError, ForecastError

BASE = {
    "name": "bad",
    "data": {"dataset": "sunspots", "last_n": 240},
    "window": {"lookback": 24, "horizon": 6},
    "split": {"validation": 0.2, "test": 0.2},
    "evaluation": {"season": 12},
}


def _config(**sections):
    d = {**BASE}
    for key, value in sections.items():
        d[key] = {**d.get(key, {}), **value}
    return ForecastConfig.from_dict(d)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        # The test part (10 months) is shorter than one forecast (24 months).
        ({"split": {"test": 10}, "window": {"horizon": 24}}, "test"),
        # A season longer than the history a window sees.
        ({"evaluation": {"season": 48}}, "The season (48 steps) must be shorter than"),
        # A season longer than the whole (training) series.
        (
            {"evaluation": {"season": 500}},
            "The season (500 steps) is longer than the training part of the series (144 steps)",
        ),
    ],
)
def test_bad_data_settings_fail_in_prepare(sections, message):
    with pytest.raises(ForecastError) as err:
        prepare(_config(**sections))
    assert message in str(err.value)


def test_horizon_longer_than_test_period_names_both():
    with pytest.raises(ConfigError) as err:
        prepare(_config(split={"test": 10}, window={"horizon": 24}))
    text = str(err.value)
    assert "horizon" in text and "24" in text and "10" in text


@pytest.mark.parametrize(
    ("quantiles", "message"),
    [
        ([0.1, 0.5, 1.2], "strictly increasing levels in (0, 1)"),
        ([0.9, 0.5, 0.1], "strictly increasing levels in (0, 1)"),
        ([0.0, 0.5], "strictly increasing levels in (0, 1)"),
        ([0.1, 0.9], "include 0.5"),
    ],
)
def test_bad_quantiles_fail_when_the_config_loads(quantiles, message):
    with pytest.raises(ConfigError) as err:
        _config(model={"quantiles": quantiles})
    assert message in str(err.value)


def test_model_and_data_with_different_feature_counts():
    model = compile_model(
        build_model({"units": [4]}, n_features=3, n_targets=1, horizon=2, lookback=5)
    )
    x = {"past": np.zeros((8, 5, 5), np.float32)}
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros((8, 2, 1), np.float32))).batch(4)
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(ConfigError) as err:
        fit(model, ds, ds, config=TrainConfig(epochs=1, verbose=0))
    assert "Input 'past' has 5 features per window but the model was built for 3" in str(err.value)
    # Nothing was trained.
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
