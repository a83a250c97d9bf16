"""Training: early stopping, learning-rate schedule on plateau, checkpoints, resume, seeds."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from forecast.config import TrainConfig
from forecast.training.checkpoint import EpochCheckpoint, skip_epochs
from pipelines.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a fit produced: the per-epoch history and where it stopped."""

    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    best_val_loss: float


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed every generator a training run touches, and ask TF for deterministic kernels."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        # Global and sticky for the process; it costs little on CPU and makes reruns equal.
        tf.config.experimental.enable_op_determinism()


def _model_inputs(model: keras.Model) -> dict[str, tuple]:
    network = getattr(model, "network", model)  # ForecastModel wraps a functional network
    try:
        inputs = network.inputs
    except (AttributeError, ValueError):  # subclassed models have no symbolic inputs
        return {}
    return {t.name.split(":")[0]: tuple(t.shape) for t in inputs}


def check_data_fits_model(model: keras.Model, data: tf.data.Dataset) -> None:
    """Fail before training when the batches' feature counts differ from the model's inputs."""
    expected = _model_inputs(model)
    spec = data.element_spec
    x_spec = spec[0] if isinstance(spec, tuple) else spec
    if not expected or not isinstance(x_spec, dict):
        return
    for name, shape in expected.items():
        if name not in x_spec:
            continue
        got = tuple(x_spec[name].shape)
        if len(got) != len(shape):
            raise ConfigError(
                f"Input '{name}' has {len(got) - 1} dimensions per window but the model expects "
                f"{len(shape) - 1}. Received shape {got}, model input {shape}."
            )
        for axis, (g, e) in enumerate(zip(got, shape, strict=True)):
            if axis and g is not None and e is not None and g != e:
                what = "features" if axis == len(shape) - 1 else "steps"
                raise ConfigError(
                    f"Input '{name}' has {g} {what} per window but the model was built for "
                    f"{e} (axis {axis}). Rebuild the model from the data's shapes "
                    f"(`build_model(..., n_features=...)`) or check the feature columns."
                )


def _verbosity(verbose: str | int) -> int:
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 0
    return int(verbose)


def _distributed(model: keras.Model) -> bool:
    """Whether `model` trains under a `tf.distribute` strategy (it was built in one's scope,
    or `fit` runs inside one). Keras 3.15's multi-batch train loop (``steps_per_execution``
    > 1) fails under MirroredStrategy ("You must feed a value for placeholder tensor" in
    its `has_next` check), so a distributed fit runs one batch a call."""
    return (
        tf.distribute.has_strategy()
        or model.distribute_strategy is not tf.distribute.get_strategy()
    )


def fit(
    model: keras.Model,
    train_data: tf.data.Dataset,
    val_data: tf.data.Dataset | None,
    *,
    config: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    callbacks: list[keras.callbacks.Callback] | tuple = (),
) -> TrainResult:
    """Fit a compiled model with early stopping, LR reduction, checkpoints and resume.

    When `checkpoint_dir` is given, everything training needs to continue is saved there
    after every epoch (`forecast.training.checkpoint.EpochCheckpoint`: weights, optimizer
    state, the early-stopping and learning-rate schedules' counters, the history). A
    `fit` called again with the same directory, on a model built and compiled the same
    way, continues after the last finished epoch and ends with the weights an
    uninterrupted fit would have had (same seed, deterministic kernels; models with
    dropout draw other masks after a resume). The checkpoint stays when `fit` returns;
    the caller removes it once the trained model is safe (`remove_checkpoint`).

    Args:
        model: a compiled `keras.Model`.
        train_data: batches of `(inputs, target)`.
        val_data: validation batches, used for early stopping and checkpoints; None fits
            exactly ``config.epochs`` epochs (a refit on all rows).
        config: epochs, patience, seed, verbosity and the batches run per call
            (``steps_per_execution``, which replaces the one the model was compiled with).
        checkpoint_dir: where the resume checkpoint lives; None for none.
        callbacks: extra callbacks, such as an MLflow logger.

    Returns:
        The history (of every epoch, those before a resume included) and the epoch whose
        weights were restored.
    """
    if getattr(model, "optimizer", None) is None or not model.compiled:
        raise ConfigError("`model` must be compiled before `fit`. Received an uncompiled model.")
    check_data_fits_model(model, train_data)
    steps = config.steps_per_execution if not _distributed(model) else 1
    if model.steps_per_execution != steps:
        model.steps_per_execution = steps
        model.train_function = model.test_function = None  # rebuilt with the new loop
    early = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True
    )
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss",
        factor=config.reduce_lr_factor,
        patience=config.reduce_lr_patience,
        min_lr=config.min_lr,
    )
    # Without validation data (a refit on all rows) nothing is watched: exactly `epochs` run
    watched = [early, plateau] if val_data is not None else []
    if not watched:  # the checkpoint still saves their counters: set them as a fit would
        early.on_train_begin()
        plateau.on_train_begin()
    cbs: list[keras.callbacks.Callback] = [*watched, keras.callbacks.TerminateOnNaN()]
    checkpoint = None
    initial_epoch = 0
    if checkpoint_dir is not None:
        # After the schedules: it restores their counters once their on_train_begin reset
        # them, and saves them once their on_epoch_end updated them.
        checkpoint = EpochCheckpoint(checkpoint_dir, early_stopping=early, plateau=plateau)
        initial_epoch = checkpoint.restore_weights(model, epochs=config.epochs)
        if initial_epoch:
            log.info("Resuming training after epoch %d from %s.", initial_epoch, checkpoint_dir)
            skip_epochs(train_data, initial_epoch)
        cbs.append(checkpoint)
    cbs += list(callbacks)
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        callbacks=cbs,
        verbose=_verbosity(config.verbose),
        shuffle=False,  # datasets arrive shuffled with their own seed
    )
    if checkpoint is not None:
        hist = checkpoint.history
    else:
        hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    val = hist.get("val_loss", [])
    if any(v != v for v in val):  # NaN
        raise FloatingPointError(
            "Validation loss became NaN during training; lower the learning rate or "
            "check the scaled inputs for extreme values."
        )
    best = int(min(range(len(val)), key=val.__getitem__)) if val else len(hist.get("loss", [])) - 1
    return TrainResult(
        history=hist,
        epochs_run=len(hist.get("loss", [])),
        best_epoch=best,
        best_val_loss=float(val[best]) if val else float("nan"),
    )
