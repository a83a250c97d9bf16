"""Pinball (quantile) loss over (B, H, T) targets and (B, H, T, Q) quantile forecasts."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def pinball_loss(y_true: Any, y_pred: Any, quantiles: tuple[float, ...] | list[float]) -> Any:
    """Mean pinball loss per sample.

    For level q and error e = y - y_hat the loss is ``max(q * e, (q - 1) * e)``: under-
    forecasts cost q per unit, over-forecasts 1 - q, so its minimizer is the q-quantile.

    Args:
        y_true: targets (B, H, T).
        y_pred: quantile forecasts (B, H, T, Q).
        quantiles: the Q levels, in the order of y_pred's last axis.

    Returns:
        (B, H, T) loss averaged over the quantile levels.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    levels = ops.convert_to_tensor(list(quantiles), dtype=y_pred.dtype)  # (Q,)
    error = ops.expand_dims(ops.cast(y_true, y_pred.dtype), -1) - y_pred  # (B, H, T, Q)
    return ops.mean(ops.maximum(levels * error, (levels - 1.0) * error), axis=-1)


@keras.saving.register_keras_serializable(package="forecast")
class PinballLoss(keras.losses.Loss):
    """Keras loss wrapper of `pinball_loss`.

    Args:
        quantiles: the levels of the model's quantile output, in order.
        name: loss name.
        **kwargs: `keras.losses.Loss` arguments (reduction, dtype).
    """

    def __init__(
        self, quantiles: tuple[float, ...] | list[float], name: str = "pinball", **kwargs: Any
    ):
        super().__init__(name=name, **kwargs)
        self.quantiles = tuple(float(q) for q in quantiles)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return pinball_loss(y_true, y_pred, self.quantiles)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "quantiles": list(self.quantiles)}
