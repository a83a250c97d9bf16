"""Refit on all history (`training.refit: full`): the model a production train job registers.

The evaluated run scores a model trained on the training part only; its validation and
test rows, the most recent history, never reach it. The refit trains the same config on
every row: the scaler is fitted on all rows, and training runs the evaluated run's best
epoch count (the epochs whose weights early stopping kept) with the learning rate each
of those epochs had, since with no held-out part there is nothing to stop or schedule on.
Its run is a child of the evaluated run, tagged with it, and the registered version
carries the evaluated run's scores.
"""

from __future__ import annotations

from dataclasses import replace

import keras

from forecast.config import ForecastConfig
from forecast.data import Prepared, Source, featurize, prepare_split
from forecast.training.fitting import Fitted, train_model
from pipelines.split import split_by_time

# Tags that link the two runs (and the registered version to the scores it stands on).
EVALUATED_RUN_TAG = "forecast.evaluated_run"
REFIT_RUN_TAG = "forecast.refit_run"


def all_rows(config: ForecastConfig, source: Source) -> Prepared:
    """The data path of `config` with every row in the training part (no validation or test)."""
    frame, schema, freq = featurize(
        source.frame, source.schema, source.policy, config.data.features, source.calendar
    )
    split = split_by_time(frame, schema, validation=0, test=0)
    return prepare_split(config, source, frame, schema, freq, split)


def refit_epochs(evaluated: Fitted) -> tuple[int, list[float] | None]:
    """The evaluated run's best epoch count and the learning rate of each of those epochs."""
    epochs = evaluated.result.best_epoch + 1
    rates = evaluated.result.history.get("learning_rate")
    return epochs, (list(rates[:epochs]) if rates and len(rates) >= epochs else None)


def refit_full(
    config: ForecastConfig,
    source: Source,
    evaluated: Fitted,
    *,
    callbacks: list[keras.callbacks.Callback] | tuple = (),
) -> tuple[Fitted, Prepared]:
    """Train `config`'s model again on all rows of `source`, as `evaluated` was trained.

    Returns:
        The refit and the data it was trained on (``windows`` holds ``"train"`` only).
    """
    prepared = all_rows(config, source)
    epochs, rates = refit_epochs(evaluated)
    fixed = replace(config, training=replace(config.training, epochs=epochs))
    schedule = []
    if rates is not None:
        schedule.append(keras.callbacks.LearningRateScheduler(lambda epoch, _: rates[epoch]))
    return train_model(fixed, prepared, callbacks=[*schedule, *callbacks]), prepared
