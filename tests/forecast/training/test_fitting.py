"""Fitting the configured model: what `Fitted` holds, and the checks that run before training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from forecast.config import ForecastConfig
from forecast.data import prepare
from forecast.evaluation.scoring import predict_windows
from forecast.serving.forecaster import Forecaster
from forecast.training.fitting import Fitted, check_compatible, train_model
from pipelines.errors import ConfigError, DataValidationError

EPOCHS = 2
SMALL = {
    "name": "fitting",
    "data": {"dataset": "sunspots", "last_n": 160},
    "window": {"lookback": 12, "horizon": 3},
    "model": {"units": [4], "quantiles": [0.1, 0.5, 0.9]},
    "training": {"epochs": EPOCHS, "patience": 5, "verbose": 0},
    "evaluation": {"season": 6, "baselines": ["naive"]},
}


class Recorder(keras.callbacks.Callback):
    """Remembers which training events reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def on_train_begin(self, logs=None) -> None:
        self.events.append("train_begin")

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.events.append(f"epoch_end {epoch}")


def _config(**sections) -> ForecastConfig:
    return ForecastConfig.from_dict({**SMALL, **sections})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    config = _config()
    prepared = prepare(config)
    recorder = Recorder()
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    out = train_model(config, prepared, callbacks=[recorder], checkpoint_dir=str(checkpoints))
    return config, prepared, out, recorder, checkpoints


def test_fitted_holds_the_model_its_history_and_a_forecaster_of_it(fitted):
    _, _, out, _, _ = fitted
    assert isinstance(out, Fitted)
    assert isinstance(out.forecaster, Forecaster)
    assert out.forecaster.model is out.model
    result = out.result
    assert result.epochs_run == EPOCHS == len(result.history["loss"])
    val = result.history["val_loss"]
    assert len(val) == EPOCHS
    assert result.best_epoch == int(np.argmin(val))
    assert result.best_val_loss == min(val)


def test_extra_callbacks_see_every_epoch_and_checkpoints_land_in_the_given_folder(fitted):
    _, _, _, recorder, checkpoints = fitted
    assert recorder.events == ["train_begin"] + [f"epoch_end {k}" for k in range(EPOCHS)]
    assert (checkpoints / "latest").read_text() == f"epoch-{EPOCHS:04d}"
    assert (checkpoints / f"epoch-{EPOCHS:04d}" / "weights.weights.h5").is_file()


def test_the_model_is_sized_from_the_training_windows(fitted):
    _, prepared, out, _, _ = fitted
    train = prepared.windows["train"]
    point, quantiles = predict_windows(out.model, train)
    assert point.shape == (len(train), 3, 1)
    assert quantiles.shape == (len(train), 3, 1, 3)
    assert np.isfinite(point).all()
    assert train.past.shape[1:] == (12, train.n_features)


def test_the_forecaster_ships_the_fitted_pipeline_state(fitted):
    config, prepared, out, _, _ = fitted
    state = out.forecaster.state
    assert state.window == config.window
    assert state.features == config.data.features
    assert state.quantiles == (0.1, 0.5, 0.9)
    assert state.calibration_windows == config.calibration.windows == 0
    assert state.scaler is prepared.scaler  # fitted on training rows only, not refitted
    assert state.schema == prepared.schema and state.raw_schema == prepared.raw_schema
    assert state.policy == prepared.policy
    assert state.freq == prepared.freq == "MS"


# ----------------------------------------------------------------------------- before training


def test_static_model_with_dynamic_windows_is_refused_before_training(fitted):
    _, prepared, _, _, _ = fitted
    config = _config(window={"lookback": 12, "horizon": 3, "min_lookback": 4})
    assert config.model.mode == "static"
    recorder = Recorder()
    message = (
        "Dynamic windows (`window.min_lookback` set) need `model.mode: dynamic`; "
        "a static model reads exactly `window.lookback` steps."
    )
    with pytest.raises(ConfigError) as err:
        train_model(config, prepared, callbacks=[recorder])
    assert str(err.value) == message
    assert recorder.events == []
    with pytest.raises(ConfigError, match=r"need `model.mode: dynamic`"):
        check_compatible(config, prepared)


def test_dynamic_model_with_static_windows_is_refused_before_training(fitted):
    _, prepared, _, _, _ = fitted
    config = _config(model={"units": [4], "mode": "dynamic"})
    recorder = Recorder()
    with pytest.raises(ConfigError) as err:
        train_model(config, prepared, callbacks=[recorder])
    assert str(err.value) == (
        "`model.mode: dynamic` needs variable-length windows: set `window.min_lookback`."
    )
    assert recorder.events == []


def test_matching_specs_pass_the_check(fitted):
    config, prepared, _, _, _ = fitted
    assert check_compatible(config, prepared) is None


def test_a_lookback_longer_than_the_data_is_named_before_training():
    config = _config(window={"lookback": 400, "horizon": 3})
    with pytest.raises(
        DataValidationError,
        match=r"^1 of 1 series too short for the requested windows: 'series_0' has 160 rows.*"
        r"Static windows with lookback=400 and horizon=3 need at least 403 consecutive rows",
    ):
        train_model(config, prepare(config))


def test_a_config_whose_lookback_differs_from_the_prepared_windows_is_refused(fitted):
    _, prepared, _, _, _ = fitted
    config = _config(window={"lookback": 30, "horizon": 3})
    recorder = Recorder()
    with pytest.raises(ConfigError, match=r"`window.lookback`") as err:
        train_model(config, prepared, callbacks=[recorder])
    assert "30" in str(err.value) and "12" in str(err.value)
    assert recorder.events == []
