"""Optimizer, schedule, clipping, loss and metrics from a `OptimizerSpec`."""

from __future__ import annotations

from typing import Any

import keras

from forecast.config.model import OptimizerSpec
from forecast.models.losses import PinballLoss

_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "nadam": keras.optimizers.Nadam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}
_LOSSES = {
    "mse": keras.losses.MeanSquaredError,
    "mae": keras.losses.MeanAbsoluteError,
    "huber": keras.losses.Huber,
}
_METRICS = {
    "mae": keras.metrics.MeanAbsoluteError,
    "mse": keras.metrics.MeanSquaredError,
    "rmse": keras.metrics.RootMeanSquaredError,
}


def make_optimizer(training: OptimizerSpec, *, loss_scale: bool = False) -> Any:
    """The optimizer of a `OptimizerSpec`, with its schedule and gradient clipping.

    Args:
        training: the knobs.
        loss_scale: wrap in `keras.optimizers.LossScaleOptimizer` (for mixed_float16,
            whose small gradients underflow without it).

    Returns:
        A `keras.optimizers.Optimizer`.
    """
    lr: Any = training.learning_rate
    if training.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=training.decay_steps)
    elif training.schedule == "exponential":
        lr = keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=training.decay_steps, decay_rate=training.decay_rate
        )
    kwargs: dict[str, Any] = {"learning_rate": lr}
    for name in ("clipnorm", "clipvalue", "weight_decay"):
        if getattr(training, name) is not None:
            kwargs[name] = getattr(training, name)
    optimizer = _OPTIMIZERS[training.optimizer](**kwargs)
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scale else optimizer


def compile_model(
    model: Any, training: OptimizerSpec | dict[str, Any] | None = None, **compile_kwargs: Any
) -> Any:
    """Compile a `ForecastModel` with the optimizer, loss and metrics of a `OptimizerSpec`.

    Point models train `training.loss` on ``forecast``. Quantile models train the pinball
    loss on ``quantiles`` only (the forecast is their median) and report the metrics on
    ``forecast``; `fit` takes the plain (B, H, T) target for both kinds. Models built
    with ``precision='mixed_float16'`` get loss scaling.

    Args:
        model: a model from `build_model`.
        training: the knobs; a dict is validated with `OptimizerSpec.from_dict`; None for
            the defaults.
        **compile_kwargs: passed to `keras.Model.compile` (``run_eagerly``,
            ``steps_per_execution``, ``jit_compile``, ...).

    Returns:
        The same model, compiled.
    """
    if training is None:
        training = OptimizerSpec()
    elif not isinstance(training, OptimizerSpec):
        training = OptimizerSpec.from_dict(training)
    spec = model.spec
    optimizer = make_optimizer(training, loss_scale=spec.precision == "mixed_float16")
    metrics = [_METRICS[m](name=m) for m in training.metrics]
    if spec.quantiles:
        loss: Any = {"quantiles": PinballLoss(spec.quantiles)}
        metrics = {"forecast": metrics}  # type: ignore[assignment]
    else:
        loss = _LOSSES[training.loss]()
    # Loss scaling is chosen above from the spec, not guessed by Keras from the policy.
    compile_kwargs.setdefault("auto_scale_loss", False)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, **compile_kwargs)
    return model
