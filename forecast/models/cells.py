"""Peephole LSTM cell (Gers & Schmidhuber, 2000): gates also see the cell state."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="forecast")
class PeepholeLSTMCell(keras.layers.LSTMCell):
    """LSTM cell whose gates see the cell state through diagonal peephole weights.

    With ``z = x W + h_{t-1} U + b`` split into four blocks (input, forget, candidate,
    output) as in `keras.layers.LSTMCell`::

        i_t = sigmoid(z_i + p_i * c_{t-1})
        f_t = sigmoid(z_f + p_f * c_{t-1})
        c_t = f_t * c_{t-1} + i_t * tanh(z_c)
        o_t = sigmoid(z_o + p_o * c_t)
        h_t = o_t * tanh(c_t)

    The three peephole vectors add ``3 * units`` parameters to the plain LSTM's
    ``4 * units * (units + input_dim + 1)``. Keras has no fused kernel for this cell, so
    a layer built on it never takes the cuDNN path. Wrap it in `keras.layers.RNN`.

    Args:
        units: size of the hidden and cell states.
        peephole_initializer: initializer of the three peephole vectors.
        **kwargs: every `keras.layers.LSTMCell` argument (activations, initializers,
            regularizers, dropout, recurrent_dropout, seed, ...).

    Example:
        >>> layer = keras.layers.RNN(PeepholeLSTMCell(8), return_sequences=True)
    """

    def __init__(self, units: int, peephole_initializer: Any = "glorot_uniform", **kwargs: Any):
        super().__init__(units, **kwargs)
        self.peephole_initializer = keras.initializers.get(peephole_initializer)
        # One dropout mask per tensor (not four per gate as LSTMCell's implementation=1
        # uses with recurrent dropout): `call` below applies each mask once.
        self.implementation = 2
        self.dropout_mask_count = None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)
        self.input_peephole, self.forget_peephole, self.output_peephole = (
            self.add_weight(
                shape=(self.units,),
                name=f"{gate}_peephole",
                initializer=self.peephole_initializer,
            )
            for gate in ("input", "forget", "output")
        )

    def call(self, inputs: Any, states: Any, training: bool = False) -> tuple[Any, list[Any]]:
        h_tm1, c_tm1 = states[0], states[1]  # (batch, units) each
        if training and 0.0 < self.dropout < 1.0:
            inputs = inputs * self.get_dropout_mask(inputs)
        if training and 0.0 < self.recurrent_dropout < 1.0:
            h_tm1 = h_tm1 * self.get_recurrent_dropout_mask(h_tm1)
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_tm1, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)  # (batch, units) each
        i = self.recurrent_activation(z_i + self.input_peephole * c_tm1)
        f = self.recurrent_activation(z_f + self.forget_peephole * c_tm1)
        c = f * c_tm1 + i * self.activation(z_c)
        o = self.recurrent_activation(z_o + self.output_peephole * c)
        h = o * self.activation(c)
        return h, [h, c]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["peephole_initializer"] = keras.initializers.serialize(self.peephole_initializer)
        return config
