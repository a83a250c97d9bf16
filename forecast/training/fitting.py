"""Build, compile and fit the configured model on prepared windows."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any

import keras

from forecast.config import ForecastConfig, TrainConfig
from forecast.config.model import ModelSpec
from forecast.data import Prepared
from forecast.models import build_model, compile_model, with_teacher_targets
from forecast.models.ensemble import EnsembleModel
from forecast.serving.forecaster import Forecaster, PipelineState
from forecast.training.distribute import even_batch_size, make_strategy
from forecast.training.loop import TrainResult, fit, seed_everything
from pipelines.dataset import to_dataset
from pipelines.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Fitted:
    """A trained model, how training went, and the forecaster that serves it."""

    model: keras.Model
    result: TrainResult
    forecaster: Forecaster
    members: tuple[keras.Model, ...] = ()  # the K seeds' models of an ensemble, else empty
    member_results: tuple[TrainResult, ...] = field(default=())


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
    prepared_spec = prepared.windows["train"].spec
    if prepared_spec != config.window:
        # The network is sized from the prepared windows and the saved state from the config:
        # a mismatch would only show at serving time, as a Keras shape error.
        raise ConfigError(
            f"`window` of the config ({config.window.to_dict()}) differs from the windows the "
            f"data was prepared with ({prepared_spec.to_dict()}); prepare the data with this "
            f"config (`window.lookback` {config.window.lookback} vs {prepared_spec.lookback})."
        )
    season = member_spec(config, prepared).residual_season
    if season is not None and season > config.window.min_history:
        which = "min_lookback" if config.window.dynamic else "lookback"
        raise ConfigError(
            f"`model.residual: {config.model.residual}` starts from the first or last "
            f"season ({season} steps) of every history, so `window.{which}` "
            f"({config.window.min_history}) must be at least one season: raise it or set "
            "`model.residual_season`."
        )


def member_spec(config: ForecastConfig, prepared: Prepared) -> ModelSpec:
    """The spec each model is built from: one member, the residual season from the data."""
    spec = replace(config.model, ensemble=1)
    if spec.residual != "none" and spec.residual_season is None:
        spec = replace(spec, residual_season=prepared.season)
    return spec


def _compiled_model(config: ForecastConfig, prepared: Prepared) -> keras.Model:
    """The configured model, sized from the training windows and compiled."""
    train = prepared.windows["train"]
    model = build_model(
        member_spec(config, prepared),
        n_features=train.n_features,
        n_targets=train.n_targets,
        horizon=train.spec.horizon,
        n_future=train.n_future,
        lookback=train.spec.lookback,
    )
    return compile_model(model, config.optimizer)


def train_model(
    config: ForecastConfig,
    prepared: Prepared,
    *,
    callbacks: list[keras.callbacks.Callback] | tuple = (),
    checkpoint_dir: str | None = None,
) -> Fitted:
    """Seed, build the model sized from the training windows, and fit it.

    The model and its optimizer are created inside the scope of `training.strategy`
    (`forecast.training.distribute.make_strategy`), so one code path trains on one device, on
    every local GPU, or on the workers of TF_CONFIG; the datasets stay as they are and
    Keras splits each global batch across the replicas.
    """
    check_compatible(config, prepared)
    tc = config.training
    strategy = make_strategy(tc.strategy)
    replicas = strategy.num_replicas_in_sync
    if tc.batch_size % replicas:
        raise ConfigError(
            f"`training.batch_size` is the global batch, split evenly across the {replicas} "
            f"replicas of `training.strategy: {tc.strategy}`: use a multiple of {replicas}. "
            f"Received: batch_size={tc.batch_size}"
        )
    if replicas > 1 and config.window.dynamic:
        # Keras 3.15 averages the first batch over the replicas to build the metrics, and
        # TensorFlow cannot add up the boolean `mask` input of variable-length windows.
        raise ConfigError(
            f"`model.mode: dynamic` (masked, variable-length windows) cannot train on the "
            f"{replicas} replicas of `training.strategy: {tc.strategy}` with Keras "
            f"{keras.__version__}: use static windows, or `training.strategy: none`."
        )
    members, results = [], []
    for k in range(config.model.ensemble):
        # Each member its own seed (weights and shuffle order) and checkpoint folder.
        member_tc = replace(tc, seed=tc.seed + k)
        where = None if checkpoint_dir is None else _member_dir(checkpoint_dir, k, config)
        model, result = _fit_one(config, prepared, member_tc, strategy, callbacks, where)
        members.append(model)
        results.append(result)
    if len(members) == 1:
        model, ensemble = members[0], ()
    else:
        model, ensemble = EnsembleModel(members, name="ensemble"), tuple(members)
    state = PipelineState(
        raw_schema=prepared.raw_schema,
        policy=prepared.policy,
        features=config.data.features,
        schema=prepared.schema,
        scaler=prepared.scaler,
        window=config.window,
        freq=prepared.freq,
        quantiles=tuple(config.model.quantiles),
        calibration_windows=config.calibration.windows,
        transform=prepared.transform,
        calendar=prepared.calendar,
        deseason=prepared.deseason,
    )
    return Fitted(
        model=model,
        result=results[0],
        forecaster=Forecaster(model, state),
        members=ensemble,
        member_results=tuple(results) if ensemble else (),
    )


def _member_dir(checkpoint_dir: str, k: int, config: ForecastConfig) -> str:
    return checkpoint_dir if config.model.ensemble == 1 else f"{checkpoint_dir}/member{k}"


def _fit_one(
    config: ForecastConfig,
    prepared: Prepared,
    tc: TrainConfig,
    strategy: Any,
    callbacks: Any,
    checkpoint_dir: str | None,
) -> tuple[keras.Model, TrainResult]:
    """Seed, build and fit one model with the seed of `tc`."""
    replicas = strategy.num_replicas_in_sync
    seed_everything(tc.seed, deterministic=tc.deterministic)
    # No validation part only for a refit on all rows (`forecast.jobs.refit`).
    train, val = prepared.windows["train"], prepared.windows.get("validation")
    with strategy.scope():  # variables (weights, optimizer slots) mirror across replicas
        model = _compiled_model(config, prepared)
    bucket = config.window.dynamic
    train_ds = to_dataset(
        train,
        batch_size=even_batch_size(tc.batch_size, len(train), replicas),
        shuffle=True,
        seed=tc.seed,
        bucket=bucket,
    )
    val_batch = max(tc.batch_size, 512 - 512 % replicas)  # a multiple of the replicas
    val_ds = (
        None
        if val is None
        else to_dataset(val, batch_size=even_batch_size(val_batch, len(val), replicas))
    )
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
    if tc.strategy != "none":
        # A model built in a strategy's scope keeps it: its `predict_on_batch` (used by
        # evaluation and serving) runs the whole batch on every replica and returns the
        # outputs of all of them, one after the other. Evaluate, save and serve a plain
        # copy with the trained weights (its optimizer state starts fresh).
        plain = _compiled_model(config, prepared)
        plain.set_weights(model.get_weights())
        model = plain
    return model, result
