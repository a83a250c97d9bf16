"""Ensembles of K seeds: one Keras model whose forecast and quantiles are the members' medians.

The members are `ForecastModel`s of one spec trained with different seeds
(`forecast.training.fitting.train_model`). The ensemble saves to one ``.keras`` file and
answers the same inputs and outputs (docs/contracts.md), so evaluation and serving run it
like any single model. The median of each quantile level over the members keeps the levels
in order (an order statistic of ordered values is ordered), and the forecast stays the
median quantile. The median is taken in the model's units, before the scaler and the target
transform are undone: for an odd K it is also the median in the data's units (those inverses
are increasing), for an even K the mean of the middle two is taken before them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="forecast")
class EnsembleModel(keras.Model):
    """The median of K trained forecasters of the same inputs and outputs.

    Args:
        members: the trained models (or their serialized configs, when loading).
        **kwargs: `keras.Model` arguments (name, ...).
    """

    def __init__(self, members: list[Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.members = [
            m if isinstance(m, keras.Model) else keras.saving.deserialize_keras_object(m)
            for m in members
        ]
        if not self.members:
            raise ValueError("An ensemble needs at least one member. Received: members=[]")
        self.input_names = list(getattr(self.members[0], "input_names", ["past"]))
        self.built = True

    @property
    def spec(self) -> Any:
        """The members' `ModelSpec` (read by evaluation for the quantile levels)."""
        return self.members[0].spec

    @property
    def network(self) -> keras.Model:
        """The first member's functional network (for summaries)."""
        return self.members[0].network

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        outs = [m(inputs, training=training) for m in self.members]
        if not isinstance(outs[0], Mapping):
            return ops.median(ops.stack(outs, axis=0), axis=0)  # (B, H, T)
        return {
            key: ops.median(ops.stack([o[key] for o in outs], axis=0), axis=0)
            for key in outs[0]  # forecast (B, H, T), quantiles (B, H, T, Q)
        }

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "members": [keras.saving.serialize_keras_object(m) for m in self.members],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EnsembleModel:
        return cls(**config)
