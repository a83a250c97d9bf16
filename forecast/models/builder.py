"""Build a `keras.Model` from a `ModelSpec`, sized from the data's shapes.

The returned `ForecastModel` wraps a functional network and serializes as its spec plus
the data sizes, so a `.keras` file reloads by rebuilding the same network; the streaming
copy (`forecast.models.streaming`) is rebuilt the same way. Inputs and outputs follow
docs/contracts.md; docs/models.md lists the options that leave the cuDNN path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import layers

from forecast.config.model import ModelSpec
from forecast.models.heads import TEACHER_INPUT, NonCrossingQuantiles, Seq2SeqDecoder
from forecast.models.masking import check_mask
from forecast.models.recurrent import STATE_COUNT, make_recurrent_layer, regularizer
from forecast.models.residual import ExpSmoothingBase, SeasonalNaiveBase
from forecast.models.scaling import (
    AddTargets,
    DivideTargets,
    MultiplyTargets,
    SubtractTargets,
    WindowCentre,
    WindowRMS,
)
from pipelines.errors import ConfigError, DataValidationError


def _check_size(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
        raise ConfigError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")


def _check_sizes(spec: ModelSpec, sizes: dict[str, Any], batch_size: int | None) -> None:
    for name in ("n_features", "n_targets", "horizon"):
        _check_size(name, sizes[name], 1)
    _check_size("n_future", sizes["n_future"], 0)
    if batch_size is not None:
        _check_size("batch_size", batch_size, 1)
    if spec.mode == "static":
        if sizes["lookback"] is None:
            raise ConfigError(
                "mode='static' fixes the lookback in the input shape: pass `lookback`. "
                "Received: lookback=None"
            )
        _check_size("lookback", sizes["lookback"], 1)
    elif sizes["lookback"] is not None:
        _check_size("lookback", sizes["lookback"], 1)
    season = spec.residual_season or 1
    if spec.residual != "none" and sizes["lookback"] is not None and season > sizes["lookback"]:
        raise ConfigError(
            f"The residual base ({spec.residual}) starts from a season of the history, so "
            f"`residual_season` must be <= lookback. Received: residual_season={season}, "
            f"lookback={sizes['lookback']}"
        )
    if spec.head == "seq2seq" and sizes["n_targets"] > sizes["n_features"]:
        raise ConfigError(
            "The seq2seq head reads the last observed targets from the first `n_targets` "
            "features of `past`, so n_targets <= n_features. Received: "
            f"n_targets={sizes['n_targets']}, n_features={sizes['n_features']}"
        )


def _encoder(spec: ModelSpec, past: Any, mask: Any, *, stateful: bool) -> tuple[Any, list]:
    """Stacked (bi)directional RNN: returns the final output (B, D) and, for seq2seq, states."""
    seq2seq = spec.head == "seq2seq"
    x, states = past, []
    for i, units in enumerate(spec.units):
        last = i == len(spec.units) - 1
        rnn = make_recurrent_layer(
            spec.cell,
            units,
            return_sequences=not last,
            return_state=last and seq2seq,
            dropout=spec.dropout,
            recurrent_dropout=spec.recurrent_dropout,
            unroll=spec.unroll and not stateful,
            stateful=stateful,
            kernel_initializer=spec.kernel_initializer,
            recurrent_initializer=spec.recurrent_initializer,
            l1=spec.l1,
            l2=spec.l2,
            dtype=spec.precision,
            name=f"encoder_{i}",
        )
        if spec.bidirectional:
            rnn = layers.Bidirectional(
                rnn, merge_mode=spec.merge_mode, dtype=spec.precision, name=f"bidirectional_{i}"
            )
        x = rnn(x, mask=mask)  # (B, L, D_i) below the top layer, (B, D) at the top
        if last and seq2seq:
            x, *states = x
        if spec.layer_norm:
            x = layers.LayerNormalization(dtype=spec.precision, name=f"layer_norm_{i}")(x)
    if spec.bidirectional and states:
        # [fw_h, (fw_c), bw_h, (bw_c)] -> [h, (c)] with both directions side by side.
        n = STATE_COUNT[spec.cell]
        states = [
            layers.Concatenate(dtype=spec.precision, name=f"decoder_state_{k}")(
                [states[k], states[n + k]]
            )
            for k in range(n)
        ]
    return x, states


def _direct_head(spec: ModelSpec, h: Any, future: Any, sizes: dict[str, Any]) -> Any:
    """All H steps at once from the final output h (B, D): raw scores (B, H, T*Q)."""
    horizon, out = sizes["horizon"], sizes["n_targets"] * max(len(spec.quantiles), 1)
    dense = {
        "kernel_initializer": spec.kernel_initializer,
        "kernel_regularizer": regularizer(spec.l1, spec.l2),
    }
    if future is not None and spec.future_mode == "per_step":
        width = spec.units[-1]
        steps = layers.Dense(horizon * width, dtype=spec.precision, name="step_features", **dense)
        steps = layers.Reshape((horizon, width), name="steps")(steps(h))  # (B, H, width)
        z = layers.Concatenate(axis=-1, name="with_future")([steps, future])
        mlp = layers.Dense(width, activation="relu", dtype=spec.precision, name="step_mlp", **dense)
        z = mlp(z)  # (B, H, width)
        return layers.Dense(out, dtype="float32", name="step_output", **dense)(z)  # (B, H, out)
    if future is not None:
        flat = layers.Flatten(name="future_flat")(future)  # (B, H*F_fut)
        h = layers.Concatenate(name="with_future")([h, flat])
    for i, width in enumerate(spec.head_layers):
        hidden = layers.Dense(
            width, activation="relu", dtype=spec.precision, name=f"head_{i}", **dense
        )
        h = hidden(h)  # (B, width)
    raw = layers.Dense(horizon * out, dtype="float32", name="direct", **dense)(h)
    return layers.Reshape((horizon, out), name="direct_steps")(raw)  # (B, H, out)


def _direct_outputs(
    spec: ModelSpec, h: Any, future: Any, sizes: dict[str, Any], base: Any = None
) -> tuple:
    """Forecast (B, H, T) and quantiles (B, H, T, Q), or None for a point model.

    `base` (B, H, T), the residual head's classical forecast, is added to the forecast and
    to every quantile (a shift keeps them from crossing).
    """
    horizon, n_targets = sizes["horizon"], sizes["n_targets"]
    raw = _direct_head(spec, h, future, sizes)  # (B, H, T*Q)
    if not spec.quantiles:
        forecast = layers.Reshape((horizon, n_targets), name="forecast")(raw)  # (B, H, T)
        if base is not None:
            forecast = layers.Add(name="with_base")([forecast, base])
        return forecast, None
    raw = layers.Reshape((horizon, n_targets, len(spec.quantiles)), name="scores")(raw)
    quantiles = NonCrossingQuantiles(spec.quantiles, dtype="float32", name="quantiles")
    quantiles = quantiles(raw)  # (B, H, T, Q)
    if base is not None:
        quantiles = AddTargets(name="with_base")(quantiles, base, per_step=True)
    return quantiles[..., spec.quantiles.index(0.5)], quantiles


def build_network(
    spec: ModelSpec,
    sizes: dict[str, Any],
    *,
    stateful: bool = False,
    batch_size: int | None = None,
) -> keras.Model:
    """The functional network behind `ForecastModel` (see `build_model` for the arguments)."""
    dynamic = spec.mode == "dynamic"
    # Streaming copies take chunks of any length, so their time dimension is free.
    time = sizes["lookback"] if spec.mode == "static" and not stateful else None
    n_features, n_targets, horizon, n_future = (
        sizes[k] for k in ("n_features", "n_targets", "horizon", "n_future")
    )
    inputs = {"past": keras.Input(batch_shape=(batch_size, time, n_features), name="past")}
    if n_future:
        inputs["future"] = keras.Input(batch_shape=(batch_size, horizon, n_future), name="future")
    if dynamic:
        inputs["mask"] = keras.Input(batch_shape=(batch_size, time), dtype="bool", name="mask")
    if spec.head == "seq2seq":
        inputs[TEACHER_INPUT] = keras.Input(
            batch_shape=(batch_size, horizon, n_targets), name=TEACHER_INPUT, optional=True
        )
    mask, future = inputs.get("mask"), inputs.get("future")

    past, scale, centre = inputs["past"], None, None
    if spec.target_centre != "none":
        centre = WindowCentre(n_targets, spec.target_centre, dtype="float32", name="target_centre")
        centre = centre(past, past_mask=mask)  # (B, T)
        past = SubtractTargets(n_targets, dtype="float32", name="centred_past")(
            past, centre, past_mask=mask
        )
    if spec.target_scaling != "none":
        # window_rms: plain mean; ewma_rms: exponentially weighted (halflife set by the spec).
        scale = WindowRMS(
            n_targets, halflife=spec.target_scale_halflife, dtype="float32", name="target_scale"
        )(past, past_mask=mask)
        past = DivideTargets(n_targets, dtype="float32", name="scaled_past")(past, scale)
    h, states = _encoder(spec, past, mask, stateful=stateful)
    if spec.head == "direct":
        base = None
        if spec.residual != "none":
            season = spec.residual_season or 1  # set from the data's season by the trainer
            kind = SeasonalNaiveBase if spec.residual == "seasonal_naive" else ExpSmoothingBase
            base = kind(season, horizon, n_targets, name=spec.residual)
            base = base(past, past_mask=mask)  # (B, H, T), normalized units
        forecast, quantiles = _direct_outputs(spec, h, future, sizes, base)
    else:
        decoder = Seq2SeqDecoder(
            spec.cell,
            int(states[0].shape[-1]),
            n_targets,
            horizon,
            n_future,
            quantiles=spec.quantiles,
            kernel_initializer=spec.kernel_initializer,
            recurrent_initializer=spec.recurrent_initializer,
            l1=spec.l1,
            l2=spec.l2,
            dtype=spec.precision,
            name="decoder",
        )
        out = decoder(
            states,
            past,
            future=future,
            past_mask=mask,
            target_history=inputs[TEACHER_INPUT],
            target_scale=scale,
            target_centre=centre,
        )
        forecast, quantiles = out if spec.quantiles else (out, None)
    if scale is not None:
        # Back to the data's units; the forecast stays the median of the quantiles.
        forecast = MultiplyTargets(dtype="float32", name="forecast_units")(forecast, scale)
        if quantiles is not None:
            quantiles = MultiplyTargets(dtype="float32", name="quantile_units")(quantiles, scale)
    if centre is not None:
        forecast = AddTargets(dtype="float32", name="forecast_level")(forecast, centre)
        if quantiles is not None:
            quantiles = AddTargets(dtype="float32", name="quantile_level")(quantiles, centre)
    outputs = {"forecast": forecast, "quantiles": quantiles} if spec.quantiles else forecast
    return keras.Model(inputs, outputs, name="network")


@keras.saving.register_keras_serializable(package="forecast")
class ForecastModel(keras.Model):
    """A recurrent forecaster: dict inputs ``past`` (+ ``future``, ``mask``) -> forecasts.

    Call it with the contract inputs (docs/contracts.md). Seq2seq models also accept
    ``inputs["target_history"]`` (the true targets (B, H, T)); it is used only when
    ``training=True`` (teacher forcing) and ignored otherwise, so `fit` can pass it while
    `predict` and a reloaded model need only the contract inputs.

    Args:
        spec: the architecture (a `ModelSpec` or its dict).
        n_features: F, features per step of ``past``.
        n_targets: T, targets per step; the first T features of ``past``.
        horizon: H, steps ahead.
        n_future: F_fut, known-future covariates per step in ``future`` (0 for none).
        lookback: L, history steps (required in static mode).
        stateful: streaming copy: RNN states carry over between calls.
        batch_size: fixed batch size (required when stateful).
        **kwargs: `keras.Model` arguments (name, ...).
    """

    def __init__(
        self,
        spec: ModelSpec | dict[str, Any],
        *,
        n_features: int,
        n_targets: int,
        horizon: int,
        n_future: int = 0,
        lookback: int | None = None,
        stateful: bool = False,
        batch_size: int | None = None,
        **kwargs: Any,
    ):
        spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
        sizes = {
            "n_features": n_features,
            "n_targets": n_targets,
            "horizon": horizon,
            "n_future": n_future,
            "lookback": lookback,
        }
        _check_sizes(spec, sizes, batch_size)
        if stateful and batch_size is None:
            raise ConfigError("A stateful model needs a fixed `batch_size`. Received: None")
        kwargs.setdefault("dtype", spec.precision)
        super().__init__(**kwargs)
        self.spec, self.sizes = spec, sizes
        self.stateful, self.batch_size = stateful, batch_size
        self.network = build_network(spec, sizes, stateful=stateful, batch_size=batch_size)
        names = {t.name for t in self.network.inputs}
        self.input_names = [n for n in ("past", "future", "mask") if n in names]
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not isinstance(inputs, Mapping):
            inputs = {"past": inputs}
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise DataValidationError(
                f"Model inputs are missing {missing}: this model reads {self.input_names}. "
                f"Received keys: {sorted(inputs)}"
            )
        x = {name: inputs[name] for name in self.input_names}
        if self.spec.head == "seq2seq":
            x[TEACHER_INPUT] = inputs.get(TEACHER_INPUT) if training else None
        return self.network(x, training=training)

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """`keras.Model.predict`, after checking that every masked row has a valid step."""
        if isinstance(x, Mapping) and x.get("mask") is not None:
            check_mask(np.asarray(x["mask"]))
        return super().predict(x, *args, **kwargs)

    def reset_state(self) -> None:
        """Zero the carried states of a stateful (streaming) model's RNN layers."""
        for layer in self.network.layers:
            if isinstance(layer, layers.RNN) and layer.stateful:
                layer.reset_state()

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "spec": self.spec.to_dict(),
            **self.sizes,
            "stateful": self.stateful,
            "batch_size": self.batch_size,
        }


def build_model(
    spec: ModelSpec | dict[str, Any],
    *,
    n_features: int,
    n_targets: int,
    horizon: int,
    n_future: int = 0,
    lookback: int | None = None,
) -> ForecastModel:
    """Build an untrained forecaster sized from the data's shapes.

    Args:
        spec: the architecture; a dict is validated with `ModelSpec.from_dict`.
        n_features: F, features per history step (targets first, then covariates).
        n_targets: T, targets per forecast step.
        horizon: H, steps ahead.
        n_future: F_fut, known-future covariates per horizon step (0: no ``future`` input).
        lookback: L, history length; required for mode='static', ignored for 'dynamic'.

    Returns:
        A `ForecastModel`: inputs ``past`` (B, L, F), ``future`` (B, H, F_fut) when
        n_future > 0, ``mask`` (B, L) bool in dynamic mode; output ``forecast`` (B, H, T),
        or ``{"forecast", "quantiles": (B, H, T, Q)}`` for quantile specs.

    Raises:
        ConfigError: a spec field or size is out of range (the message names it).

    Example:
        >>> model = build_model(ModelSpec(units=(8,)), n_features=3, n_targets=1,
        ...                     horizon=4, lookback=12)
    """
    return ForecastModel(
        spec,
        n_features=n_features,
        n_targets=n_targets,
        horizon=horizon,
        n_future=n_future,
        lookback=lookback,
    )
