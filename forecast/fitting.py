"""Build, compile and fit the configured model on prepared windows."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass

import keras

from forecast.config import ForecastConfig
from forecast.forecaster import Forecaster, PipelineState
from forecast.models import build_model, compile_model, with_teacher_targets
from forecast.prepare import Prepared
from forecast.train import TrainResult, fit, seed_everything
from pipelines.dataset import to_dataset
from pipelines.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Fitted:
    """A trained model, how training went, and the forecaster that serves it."""

    model: keras.Model
    result: TrainResult
    forecaster: Forecaster


def check_compatible(config: ForecastConfig, prepared: Prepared) -> None:
    """Fail before training when the model spec and the windows disagree."""
    if config.model.mode == "static" and config.window.dynamic:
        raise ConfigError(
            "Dynamic windows (`window.min_lookback` set) need `model.mode: dynamic`; "
            "a static model reads exactly `window.lookback` steps."
        )
    if config.model.mode == "dynamic" and not config.window.dynamic:
        raise ConfigError(
            "`model.mode: dynamic` needs variable-length windows: set `window.min_lookback`."
        )


def train_model(
    config: ForecastConfig,
    prepared: Prepared,
    *,
    callbacks: list[keras.callbacks.Callback] | tuple = (),
    checkpoint_dir: str | None = None,
) -> Fitted:
    """Seed, build the model sized from the training windows, and fit it."""
    check_compatible(config, prepared)
    tc = config.training
    seed_everything(tc.seed, deterministic=tc.deterministic)
    train, val = prepared.windows["train"], prepared.windows["validation"]
    model = build_model(
        config.model,
        n_features=train.n_features,
        n_targets=train.n_targets,
        horizon=train.spec.horizon,
        n_future=train.n_future,
        lookback=train.spec.lookback,
    )
    compile_model(model, config.optimizer)
    bucket = config.window.dynamic
    train_ds = to_dataset(
        train, batch_size=tc.batch_size, shuffle=True, seed=tc.seed, bucket=bucket
    )
    val_ds = to_dataset(val, batch_size=max(tc.batch_size, 512))
    if config.model.head == "seq2seq":
        # Teacher forcing: the decoder sees the true previous targets during training only.
        train_ds = train_ds.map(lambda x, y: (with_teacher_targets(x, y), y))
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(
            model,
            train_ds,
            val_ds,
            config=tc,
            checkpoint_dir=checkpoint_dir or tmp,
            callbacks=list(callbacks),
        )
    state = PipelineState(
        raw_schema=prepared.raw_schema,
        policy=prepared.policy,
        features=config.data.features,
        schema=prepared.schema,
        scaler=prepared.scaler,
        window=config.window,
        freq=prepared.freq,
        quantiles=tuple(config.model.quantiles),
    )
    return Fitted(model=model, result=result, forecaster=Forecaster(model, state))
