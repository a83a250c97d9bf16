"""Residual head: forecast = seasonal naive (the last season's values) + the network's correction.

With ``ModelSpec(residual="seasonal_naive")`` the direct head's output is added to the
values of the last `season` valid history steps, repeated over the horizon, so an untrained
network already forecasts seasonal naive and training learns only what it gets wrong. The
base is read from the network's (normalized) ``past``, so it is in the units the head works
in and the centring and scaling of `forecast.models.scaling` undo it with the correction.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="forecast")
class SeasonalNaiveBase(keras.layers.Layer):
    """Last season's targets over the horizon: past (B, L, F), mask (B, L) -> (B, H, T).

    Step k (0-based) of the horizon reads the history step ``last - season + 1 + k % season``,
    ``last`` being each row's last valid step, for right, left or no padding alike. The
    caller makes sure every window holds at least `season` valid steps.

    Args:
        season: S, steps per season.
        horizon: H.
        n_targets: T, the targets are the first T features of ``past``.
    """

    def __init__(self, season: int, horizon: int, n_targets: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.season, self.horizon, self.n_targets = int(season), int(horizon), int(n_targets)

    def call(self, past: Any, past_mask: Any = None) -> Any:
        y = ops.cast(past[..., : self.n_targets], "float32")  # (B, L, T)
        length = ops.shape(y)[1]
        if past_mask is None:
            last = ops.full((ops.shape(y)[0],), length - 1, dtype="int32")  # (B,)
        else:
            flipped = ops.flip(ops.cast(past_mask, "int32"), axis=1)
            last = ops.cast(length - 1 - ops.argmax(flipped, axis=1), "int32")  # (B,)
        lag = ops.arange(self.horizon, dtype="int32") % self.season - self.season + 1  # (H,)
        index = ops.expand_dims(last, 1) + ops.expand_dims(lag, 0)  # (B, H)
        index = ops.maximum(index, 0)  # only reached by a window shorter than a season
        index = ops.repeat(ops.expand_dims(index, -1), self.n_targets, axis=-1)  # (B, H, T)
        return ops.take_along_axis(y, index, axis=1)  # (B, H, T)

    def compute_output_shape(self, past_shape: tuple, past_mask_shape: Any = None) -> tuple:
        return (past_shape[0], self.horizon, self.n_targets)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "season": self.season,
            "horizon": self.horizon,
            "n_targets": self.n_targets,
        }
