"""Forecast heads: non-crossing quantiles and the seq2seq decoder with teacher forcing."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from forecast.models.recurrent import make_cell, regularizer
from forecast.models.scaling import divide_targets, last_valid

# Name of the optional input that carries the true targets over the horizon, (B, H, T),
# for teacher forcing. Only `training=True` calls read it; inference never needs it.
TEACHER_INPUT = "target_history"


def with_teacher_targets(inputs: dict[str, Any], target: Any) -> dict[str, Any]:
    """Training inputs for teacher forcing: the contract inputs plus the true targets.

    Example:
        >>> train_ds = train_ds.map(lambda x, y: (with_teacher_targets(x, y), y))
    """
    return {**inputs, TEACHER_INPUT: target}


@keras.saving.register_keras_serializable(package="forecast")
class NonCrossingQuantiles(keras.layers.Layer):
    """Turn raw scores (..., Q) into quantiles that cannot cross.

    The score at the median's index is the median; the others become positive
    increments (softplus) accumulated outwards from it, upwards for the levels above
    0.5 and downwards for those below, so quantile k+1 is strictly above quantile k.

    Args:
        quantiles: strictly increasing levels in (0, 1) that include 0.5.
    """

    def __init__(self, quantiles: tuple[float, ...] | list[float], **kwargs: Any):
        super().__init__(**kwargs)
        self.quantiles = tuple(float(q) for q in quantiles)
        self.median_index = self.quantiles.index(0.5)

    def call(self, raw: Any) -> Any:
        m = self.median_index
        median = raw[..., m : m + 1]  # (..., 1)
        parts = [median]
        if m + 1 < len(self.quantiles):
            parts.append(median + ops.cumsum(ops.softplus(raw[..., m + 1 :]), axis=-1))
        if m > 0:
            # Accumulate from the median outwards, then flip back to increasing order.
            below = ops.cumsum(ops.flip(ops.softplus(raw[..., :m]), axis=-1), axis=-1)
            parts.insert(0, median - ops.flip(below, axis=-1))
        return ops.concatenate(parts, axis=-1)  # (..., Q)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "quantiles": list(self.quantiles)}


def last_observed(past: Any, n_targets: int, mask: Any = None) -> Any:
    """Targets at each row's last valid step: past (B, L, F) and mask (B, L) -> (B, T)."""
    return last_valid(past, n_targets, mask)


@keras.saving.register_keras_serializable(package="forecast")
class Seq2SeqDecoder(keras.layers.Layer):
    """Decoder RNN started from the encoder's final states; one step per horizon step.

    Step t reads ``[y_{t-1}, future_t]``: y_{-1} is the last observed target, and later
    y values are the true targets when teacher forcing (``training=True`` and a
    `target_history` tensor given) or the decoder's own point forecasts otherwise
    (autoregressive decoding). A saved model therefore decodes autoregressively at
    inference and needs only the contract inputs. Its cell has no dropout, so the
    teacher-forced and the free-running paths share exactly the same computation. With
    target scaling, `past` arrives already divided by ``target_scale`` (B, T) (and centred
    on ``target_centre``) and the true targets are transformed here the same way, so the
    decoder works in normalized units throughout.

    Args:
        cell: lstm, gru, rnn or peephole_lstm.
        units: state size; equals the encoder's final state size (twice it when the
            encoder is bidirectional: both directions' states are concatenated).
        n_targets: T, targets per step.
        horizon: H, steps to decode.
        n_future: F_fut, known-future covariates per step (0 for none).
        quantiles: quantile levels (empty for a point forecast).
        kernel_initializer: initializer of the cell's input kernel and the projection.
        recurrent_initializer: initializer of the cell's recurrent kernel.
        l1: L1 weight penalty.
        l2: L2 weight penalty.
    """

    def __init__(
        self,
        cell: str,
        units: int,
        n_targets: int,
        horizon: int,
        n_future: int = 0,
        quantiles: tuple[float, ...] | list[float] = (),
        kernel_initializer: str = "glorot_uniform",
        recurrent_initializer: str = "orthogonal",
        l1: float = 0.0,
        l2: float = 0.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.cell_name, self.units = cell, units
        self.n_targets, self.horizon, self.n_future = n_targets, horizon, n_future
        self.quantiles = tuple(float(q) for q in quantiles)
        self.kernel_initializer, self.recurrent_initializer = (
            kernel_initializer,
            recurrent_initializer,
        )
        self.l1, self.l2 = l1, l2
        self.cell = make_cell(
            cell,
            units,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            l1=l1,
            l2=l2,
            dtype=self.dtype_policy,
            name="cell",
        )
        n_q = max(len(self.quantiles), 1)
        self.projection = keras.layers.Dense(
            n_targets * n_q,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=regularizer(l1, l2),
            dtype="float32",  # forecasts stay float32 under mixed precision
            name="projection",
        )
        self.quantile_layer = (
            NonCrossingQuantiles(self.quantiles, dtype="float32", name="quantiles")
            if self.quantiles
            else None
        )

    def build(self, states_shape: Any, past_shape: Any = None, **_: Any) -> None:
        self.cell.build((None, self.n_targets + self.n_future))
        self.projection.build((None, self.units))
        self.built = True

    def call(
        self,
        states: list[Any],
        past: Any,
        future: Any = None,
        past_mask: Any = None,
        target_history: Any = None,
        target_scale: Any = None,
        target_centre: Any = None,
        training: bool | None = None,
    ) -> Any:
        teacher = target_history if training else None
        if teacher is not None and target_centre is not None:
            # `past` arrives centred on the window's level (B, T); so must the true targets.
            teacher = ops.cast(teacher, "float32") - ops.expand_dims(target_centre, 1)
        if teacher is not None and target_scale is not None:
            # `past` arrives divided by the window's scale (B, T); so must the true targets.
            teacher = divide_targets(teacher, target_scale, self.n_targets)  # (B, H, T)
        y_prev = ops.cast(last_observed(past, self.n_targets, past_mask), "float32")  # (B, T)
        states = list(states)
        points, quantiles = [], []
        for t in range(self.horizon):
            step = [y_prev] if future is None else [y_prev, ops.cast(future[:, t, :], "float32")]
            x_t = ops.cast(ops.concatenate(step, axis=-1), self.compute_dtype)  # (B, T+F_fut)
            h, states = self.cell(x_t, states, training=training)
            states = list(states) if isinstance(states, list | tuple) else [states]
            raw = self.projection(h)  # (B, T*Q) or (B, T)
            if self.quantile_layer is None:
                point = raw
            else:
                q = self.quantile_layer(ops.reshape(raw, (-1, self.n_targets, len(self.quantiles))))
                quantiles.append(q)  # (B, T, Q)
                point = q[..., self.quantile_layer.median_index]
            points.append(point)
            y_prev = point if teacher is None else ops.cast(teacher[:, t, :], "float32")
        forecast = ops.stack(points, axis=1)  # (B, H, T)
        if self.quantile_layer is None:
            return forecast
        return forecast, ops.stack(quantiles, axis=1)  # (B, H, T), (B, H, T, Q)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "cell": self.cell_name,
            "units": self.units,
            "n_targets": self.n_targets,
            "horizon": self.horizon,
            "n_future": self.n_future,
            "quantiles": list(self.quantiles),
            "kernel_initializer": self.kernel_initializer,
            "recurrent_initializer": self.recurrent_initializer,
            "l1": self.l1,
            "l2": self.l2,
        }
