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
import numpy as np
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


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


# Starting smoothing parameters, those of a slowly adapting ETS(A,Ad,A): alpha 0.3,
# beta = 0.1 alpha, gamma = 0.1 (1 - alpha), phi 0.95 (in [0.8, 1], ETS's damping range
# widened to the undamped trend). Training moves them from there.
_START = {"alpha": 0.3, "beta": 0.1, "gamma": 0.1, "phi": 0.75}
_PHI_LOW = 0.8


@keras.saving.register_keras_serializable(package="forecast")
class ExpSmoothingBase(keras.layers.Layer):
    """Additive damped-trend Holt-Winters over each window: past (B, L, F), mask -> (B, H, T).

    The ES-RNN hybrid's classical half (Smyl, M4): an ETS(A,Ad,A) filter runs over every
    window's valid target steps and its H-step forecast is the base the network corrects.
    States start from the window's first valid steps: level = the mean of its first season,
    trend = the change of that mean over the second season (0 when the window holds fewer
    than two), seasonal = the first season minus the level; each later valid step then
    updates them (error-correction form, e = y - (level + phi trend + seasonal)):
    ``level += phi trend + alpha e``, ``trend = phi trend + beta e``, ``seasonal += gamma e``.
    Step k of the horizon is ``level + (phi + ... + phi^k) trend + seasonal`` of its phase.

    The smoothing parameters are weights, one set per target, shared by every series and
    trained with the network: alpha in (0, 1), beta in (0, alpha), gamma in (0, 1 - alpha)
    (ETS's usual region), phi in (0.8, 1). With a season of 1 there is no seasonal state.
    Padded steps (``past_mask`` False) leave the states as they are, so a padded window
    forecasts what the same window unpadded does. A window of exactly one season forecasts
    its seasonal naive. The filter is linear in the targets, so it commutes with the
    window centring and scaling of `forecast.models.scaling`. The caller makes sure every
    window holds at least `season` valid steps.

    Args:
        season: S, steps per season.
        horizon: H.
        n_targets: T, the targets are the first T features of ``past``.
    """

    def __init__(self, season: int, horizon: int, n_targets: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.season, self.horizon, self.n_targets = int(season), int(horizon), int(n_targets)

    def build(self, past_shape: tuple, past_mask_shape: Any = None) -> None:
        start = [_logit(_START[k]) for k in ("alpha", "beta", "gamma", "phi")]
        self.logits = self.add_weight(
            shape=(4, self.n_targets),
            initializer=keras.initializers.Constant(np.repeat([start], self.n_targets, 0).T),
            name="smoothing_logits",
        )

    def smoothing(self) -> dict[str, Any]:
        """alpha, beta, gamma, phi (each (T,)) from the trained logits."""
        a, b, g, p = (ops.sigmoid(self.logits[i]) for i in range(4))
        return {"alpha": a, "beta": a * b, "gamma": (1.0 - a) * g, "phi": _PHI_LOW + 0.2 * p}

    def call(self, past: Any, past_mask: Any = None) -> Any:
        s_len, n_t = self.season, self.n_targets
        y = ops.cast(past[..., :n_t], "float32")  # (B, L, T)
        batch, length = ops.shape(y)[0], ops.shape(y)[1]
        if past_mask is None:
            valid = ops.ones((batch, length), dtype="bool")
        else:
            valid = ops.cast(past_mask, "bool")
        valid_i = ops.cast(valid, "int32")
        first = ops.cast(ops.argmax(valid_i, axis=1), "int32")  # (B,)
        last = ops.cast(length - 1 - ops.argmax(ops.flip(valid_i, axis=1), axis=1), "int32")
        n_valid = ops.sum(valid_i, axis=1)  # (B,)

        # Initial states from the first two seasons of valid steps.
        index = ops.expand_dims(first, 1) + ops.arange(2 * s_len, dtype="int32")  # (B, 2S)
        index = ops.minimum(index, length - 1)  # past the end only when n_valid < 2S
        head = ops.take_along_axis(y, ops.repeat(ops.expand_dims(index, -1), n_t, -1), axis=1)
        first_season = head[:, :s_len]  # (B, S, T)
        level = ops.mean(first_season, axis=1)  # (B, T)
        two = ops.expand_dims(ops.cast(n_valid >= 2 * s_len, "float32"), -1)  # (B, 1)
        trend = two * (ops.mean(head[:, s_len:], axis=1) - level) / s_len  # (B, T)
        seasonal = first_season - ops.expand_dims(level, 1)  # (B, S, T)

        par = self.smoothing()
        alpha, beta, gamma, phi = par["alpha"], par["beta"], par["gamma"], par["phi"]
        steps = ops.arange(length, dtype="int32")  # (L,)
        offset = ops.expand_dims(steps, 0) - ops.expand_dims(first, 1)  # (B, L) t - first
        active = ops.logical_and(valid, offset >= s_len)  # (B, L): after the first season
        phase = ops.mod(offset, s_len)  # (B, L)

        def step(carry: tuple, x: tuple) -> tuple:
            lvl, trd, sea = carry  # (B, T), (B, T), (B, S, T)
            y_t, on, ph = x  # (B, T), (B,), (B,)
            hot = ops.expand_dims(ops.one_hot(ph, s_len, dtype="float32"), -1)  # (B, S, 1)
            s_t = ops.sum(sea * hot, axis=1) if s_len > 1 else ops.zeros_like(lvl)
            err = y_t - (lvl + phi * trd + s_t)  # (B, T)
            on = ops.expand_dims(on, -1)  # (B, 1)
            new_lvl = ops.where(on, lvl + phi * trd + alpha * err, lvl)
            new_trd = ops.where(on, phi * trd + beta * err, trd)
            if s_len > 1:
                gain = ops.expand_dims(ops.cast(on, "float32") * gamma * err, 1)  # (B, 1, T)
                sea = sea + gain * hot
            return (new_lvl, new_trd, sea), None

        time_major = (
            ops.transpose(y, (1, 0, 2)),
            ops.transpose(active, (1, 0)),
            ops.transpose(phase, (1, 0)),
        )
        (level, trend, seasonal), _ = ops.scan(step, (level, trend, seasonal), time_major)

        k = ops.arange(1, self.horizon + 1, dtype="float32")  # (H,)
        damp = ops.cumsum(ops.expand_dims(phi, 0) ** ops.expand_dims(k, 1), axis=0)  # (H, T)
        out = ops.expand_dims(level, 1) + ops.expand_dims(damp, 0) * ops.expand_dims(trend, 1)
        if s_len > 1:
            ahead = ops.expand_dims(last - first, 1) + ops.arange(1, self.horizon + 1)  # (B, H)
            ahead = ops.repeat(ops.expand_dims(ops.mod(ahead, s_len), -1), n_t, -1)
            out = out + ops.take_along_axis(seasonal, ahead, axis=1)  # (B, H, T)
        return out

    def compute_output_shape(self, past_shape: tuple, past_mask_shape: Any = None) -> tuple:
        return (past_shape[0], self.horizon, self.n_targets)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "season": self.season,
            "horizon": self.horizon,
            "n_targets": self.n_targets,
        }
