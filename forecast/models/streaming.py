"""Stateful copies of trained models that read one step (or chunk) at a time."""

from __future__ import annotations

from typing import Any

import keras

from forecast.models.builder import ForecastModel
from pipelines.errors import ConfigError


def to_streaming(model: ForecastModel, *, batch_size: int = 1) -> ForecastModel:
    """A stateful copy of a trained unidirectional model, fed one step or chunk per call.

    The copy has the same weights, a fixed batch size and a free time dimension; its RNN
    states carry over between calls, so after feeding a history step by step (or in
    chunks) its forecast equals the full model's on that whole history. Inputs are the
    same dict as the full model's, with ``past`` (batch_size, chunk, F) and, in dynamic
    mode, ``mask`` (batch_size, chunk). Call `reset_state` before a new history.

    Args:
        model: a model from `build_model` (or loaded from a `.keras` file).
        batch_size: number of series streamed side by side.

    Returns:
        The stateful `ForecastModel`, its states zeroed.

    Raises:
        ConfigError: the model is bidirectional (its backward pass needs the whole
            sequence), scales its targets per window (the scale needs the whole
            history too), is not a `ForecastModel`, or `batch_size` < 1.
    """
    if not isinstance(model, ForecastModel):
        raise ConfigError(
            "`to_streaming` needs a model from `forecast.models.build_model`. "
            f"Received: {type(model).__name__}"
        )
    if model.spec.bidirectional:
        raise ConfigError(
            "Streaming needs a unidirectional model: a bidirectional encoder reads each "
            "history backwards from its end, which a step-by-step stream does not have. "
            "Received: bidirectional=True"
        )
    if model.spec.target_scaling != "none":
        raise ConfigError(
            "Streaming needs target_scaling='none': the window's target scale is a mean over "
            "the whole history, which a step-by-step stream does not have until its end. "
            f"Received: target_scaling={model.spec.target_scaling!r}"
        )
    for name in ("target_centre", "residual"):
        if getattr(model.spec, name) != "none":
            raise ConfigError(
                f"Streaming needs {name}='none': it reads the window's last steps (its level "
                "or its last season), which a chunk-by-chunk stream does not keep. "
                f"Received: {name}={getattr(model.spec, name)!r}"
            )
    stream = ForecastModel(
        model.spec,
        **model.sizes,
        stateful=True,
        batch_size=batch_size,
        name=f"{model.name}_streaming",
    )
    # The carried states are not weights, so both models list the same weights in order.
    stream.set_weights(model.get_weights())
    stream.reset_state()
    return stream


def reset_state(model: keras.Model) -> None:
    """Zero the carried states of every stateful RNN layer in `model`, however nested.

    Keras 3 models have no ``reset_states()``; each RNN layer has ``reset_state()``.
    """
    for layer in _walk(model):
        if isinstance(layer, keras.layers.RNN) and layer.stateful:
            layer.reset_state()


def _walk(layer: Any) -> list[Any]:
    found = [layer]
    for child in getattr(layer, "layers", []) or []:
        found.extend(_walk(child))
    for name in ("network", "forward_layer", "backward_layer"):
        child = getattr(layer, name, None)
        if child is not None:
            found.extend(_walk(child))
    return found
