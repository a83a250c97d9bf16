"""Per-window target scaling: the network sees each window's targets in units of their RMS.

With ``ModelSpec(target_scaling="window_rms")`` the model divides the target channels of
``past`` (its first T features, docs/contracts.md) by their root mean square over the
window's valid steps, and multiplies the forecast and every quantile by the same number on
the way out. ``target_scaling="ewma_rms"`` does the same with an exponentially weighted RMS
(RiskMetrics-style: the latest steps weigh most, halving every ``target_scale_halflife``
valid steps back), which follows a change of volatility faster than the plain mean. The model is then scale-equivariant in the targets: a window whose targets are
twice as large gets forecasts and intervals twice as wide, so a quieter or wilder regime
than the training data's moves the interval with it (the per-window scaling of DeepAR and
RevIN).

``target_centre="last"`` or ``"mean"`` also centres (RevIN-style): each window's last valid
target, or its mean over the valid steps, is subtracted before the network (and before the
RMS is taken) and added back to the forecast and every quantile, so the model is also
shift-equivariant: a window moved up by c gets forecasts moved up by c. Returns keep the
default ``none``: the window mean of daily returns is mostly noise.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# Floor of the scale, in the units the pipeline's scaler gives the targets (about 1). A
# floor rather than an added epsilon keeps the model exactly scale-equivariant above it.
EPSILON = 1e-4


@keras.saving.register_keras_serializable(package="forecast")
class WindowRMS(keras.layers.Layer):
    """Root mean square of each target over a window's valid steps: past (B, L, F) -> (B, T).

    With `halflife` None every valid step weighs the same. With a half-life h the mean is
    exponentially weighted: step t weighs ``0.5 ** (k_t / h)``, k_t being the number of
    *valid* steps after t (the last valid step weighs 1), and the weights are normalised
    over the valid steps. Padded steps (``past_mask`` False) weigh nothing, whatever they
    hold and wherever they are, so a padded and masked window has the scale of the same
    window unpadded. The result is at least `epsilon`, so an all-zero window gives a finite
    scale.

    Args:
        n_targets: T, the targets are the first T features of ``past``.
        epsilon: the smallest scale returned.
        halflife: None for the plain mean, else the half-life of the weights in steps (> 0).
    """

    def __init__(
        self,
        n_targets: int,
        epsilon: float = EPSILON,
        halflife: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.n_targets, self.epsilon = int(n_targets), float(epsilon)
        if halflife is not None and not halflife > 0:
            raise ValueError(f"`halflife` must be > 0 or None. Received: halflife={halflife!r}")
        self.halflife = None if halflife is None else float(halflife)

    def call(self, past: Any, past_mask: Any = None) -> Any:
        y = ops.cast(past[..., : self.n_targets], "float32")  # (B, L, T)
        if past_mask is None:
            valid = ops.ones_like(y[..., :1], dtype="bool")  # (B, L, 1)
        else:
            valid = ops.expand_dims(ops.cast(past_mask, "bool"), -1)  # (B, L, 1)
        weight = ops.cast(valid, "float32")  # (B, L, 1)
        if self.halflife is not None:
            # Valid steps after each step: all valid steps minus those up to it.
            after = ops.sum(weight, axis=1, keepdims=True) - ops.cumsum(weight, axis=1)
            weight = weight * ops.power(0.5, after / self.halflife)  # (B, L, 1)
        # where, not a product: a padded step may hold inf or NaN.
        total = ops.sum(ops.where(valid, weight * ops.square(y), 0.0), axis=1)  # (B, T)
        # The weights of a window with a valid step sum to >= 1 (its last one weighs 1).
        mean_square = total / ops.maximum(ops.sum(weight, axis=1), 1.0)  # (B, T)
        # The floor goes inside the root: sqrt has an infinite slope at 0.
        return ops.sqrt(ops.maximum(mean_square, self.epsilon**2))  # (B, T)

    def compute_output_shape(self, past_shape: tuple, past_mask_shape: Any = None) -> tuple:
        return (past_shape[0], self.n_targets)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_targets": self.n_targets,
            "epsilon": self.epsilon,
            "halflife": self.halflife,
        }


def last_valid(past: Any, n_targets: int, mask: Any = None) -> Any:
    """Targets at each row's last valid step: past (B, L, F) and mask (B, L) -> (B, T).

    The targets are the first `n_targets` features of `past` (docs/contracts.md).
    """
    if mask is None:
        return past[:, -1, :n_targets]
    length = ops.shape(mask)[1]
    # Index of the last True per row, for right, left or mixed padding alike.
    last = length - 1 - ops.argmax(ops.flip(ops.cast(mask, "int32"), axis=1), axis=1)  # (B,)
    index = ops.reshape(ops.cast(last, "int32"), (-1, 1, 1))
    return ops.take_along_axis(past[:, :, :n_targets], index, axis=1)[:, 0, :]


@keras.saving.register_keras_serializable(package="forecast")
class WindowCentre(keras.layers.Layer):
    """Centre of each target over a window's valid steps: past (B, L, F) -> (B, T).

    Args:
        n_targets: T, the targets are the first T features of ``past``.
        how: ``last`` (the last valid step's value) or ``mean`` (the mean over valid steps).
    """

    def __init__(self, n_targets: int, how: str = "last", **kwargs: Any):
        super().__init__(**kwargs)
        if how not in ("last", "mean"):
            raise ValueError(f"`how` must be 'last' or 'mean'. Received: how={how!r}")
        self.n_targets, self.how = int(n_targets), how

    def call(self, past: Any, past_mask: Any = None) -> Any:
        y = ops.cast(past[..., : self.n_targets], "float32")  # (B, L, T)
        if self.how == "last":
            return last_valid(y, self.n_targets, past_mask)  # (B, T)
        if past_mask is None:
            return ops.mean(y, axis=1)
        valid = ops.expand_dims(ops.cast(past_mask, "bool"), -1)  # (B, L, 1)
        total = ops.sum(ops.where(valid, y, 0.0), axis=1)  # (B, T)
        return total / ops.maximum(ops.sum(ops.cast(valid, "float32"), axis=1), 1.0)

    def compute_output_shape(self, past_shape: tuple, past_mask_shape: Any = None) -> tuple:
        return (past_shape[0], self.n_targets)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_targets": self.n_targets, "how": self.how}


@keras.saving.register_keras_serializable(package="forecast")
class SubtractTargets(keras.layers.Layer):
    """First T features of x (B, steps, F) minus centre (B, T); padded steps stay 0.

    Args:
        n_targets: T.
    """

    def __init__(self, n_targets: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_targets = int(n_targets)

    def call(self, x: Any, centre: Any, past_mask: Any = None) -> Any:
        x = ops.cast(x, "float32")
        targets = x[..., : self.n_targets] - _per_target(centre, 3)  # (B, steps, T)
        if past_mask is not None:  # the contract: padded steps hold 0 (and are masked)
            targets = ops.where(ops.expand_dims(ops.cast(past_mask, "bool"), -1), targets, 0.0)
        if x.shape[-1] == self.n_targets:
            return targets
        return ops.concatenate([targets, x[..., self.n_targets :]], axis=-1)  # (B, steps, F)

    def compute_output_shape(self, x_shape: tuple, *_: Any) -> tuple:
        return tuple(x_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_targets": self.n_targets}


@keras.saving.register_keras_serializable(package="forecast")
class AddTargets(keras.layers.Layer):
    """Back to the window's level: y (B, H, T) or (B, H, T, Q) plus centre (B, T).

    With ``per_step=True`` the centre is (B, H, T), one value per horizon step.
    """

    def call(self, y: Any, centre: Any, per_step: bool = False) -> Any:
        y = ops.cast(y, "float32")
        if per_step:
            return y + (ops.expand_dims(centre, -1) if len(y.shape) == 4 else centre)
        return y + _per_target(centre, len(y.shape))

    def compute_output_shape(self, y_shape: tuple, centre_shape: Any = None) -> tuple:
        return tuple(y_shape)


def _per_target(scale: Any, rank: int) -> Any:
    """Scale (B, T) shaped to broadcast against (B, H, T) (rank 3) or (B, H, T, Q) (rank 4)."""
    scale = ops.expand_dims(scale, 1)  # (B, 1, T)
    return ops.expand_dims(scale, -1) if rank == 4 else scale


@keras.saving.register_keras_serializable(package="forecast")
class DivideTargets(keras.layers.Layer):
    """Divide the first T features of x (B, steps, F) by scale (B, T); other features pass.

    Args:
        n_targets: T.
    """

    def __init__(self, n_targets: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_targets = int(n_targets)

    def call(self, x: Any, scale: Any) -> Any:
        return divide_targets(x, scale, self.n_targets)

    def compute_output_shape(self, x_shape: tuple, scale_shape: Any = None) -> tuple:
        return tuple(x_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_targets": self.n_targets}


def divide_targets(x: Any, scale: Any, n_targets: int) -> Any:
    """x (B, steps, F) with its first `n_targets` features divided by scale (B, T)."""
    x = ops.cast(x, "float32")
    targets = x[..., :n_targets] / _per_target(scale, 3)  # (B, steps, T)
    if x.shape[-1] == n_targets:
        return targets
    return ops.concatenate([targets, x[..., n_targets:]], axis=-1)  # (B, steps, F)


@keras.saving.register_keras_serializable(package="forecast")
class MultiplyTargets(keras.layers.Layer):
    """Back to the data's units: y (B, H, T) or (B, H, T, Q) times scale (B, T)."""

    def call(self, y: Any, scale: Any) -> Any:
        return ops.cast(y, "float32") * _per_target(scale, len(y.shape))

    def compute_output_shape(self, y_shape: tuple, scale_shape: Any = None) -> tuple:
        return tuple(y_shape)
