"""PeepholeLSTMCell against a hand-written numpy reference of the peephole equations."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from forecast.models import PeepholeLSTMCell


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def peephole_reference(x, kernel, recurrent, bias, p_i, p_f, p_o):
    """Numpy peephole LSTM over x (B, L, I): returns all h (B, L, U) and the final c."""
    batch, units = x.shape[0], recurrent.shape[0]
    h, c = np.zeros((batch, units)), np.zeros((batch, units))
    hs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        z_i, z_f, z_c, z_o = np.split(z, 4, axis=-1)
        i = _sigmoid(z_i + p_i * c)  # input gate sees c_{t-1}
        f = _sigmoid(z_f + p_f * c)  # forget gate sees c_{t-1}
        c = f * c + i * np.tanh(z_c)
        o = _sigmoid(z_o + p_o * c)  # output gate sees c_t
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, axis=1), c


def _random_cell_layer(units=4, input_dim=3, seed=0, **cell_kwargs):
    layer = keras.layers.RNN(
        PeepholeLSTMCell(units, **cell_kwargs), return_sequences=True, return_state=True
    )
    layer.build((None, None, input_dim))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-1, 1, w.shape).astype("float32") for w in layer.get_weights()])
    return layer


def test_matches_numpy_reference_of_peephole_equations():
    layer = _random_cell_layer()
    x = np.random.default_rng(1).normal(size=(5, 9, 3)).astype("float32")
    seq, h_last, c_last = (np.asarray(t) for t in layer(x))
    cell = layer.cell
    want_seq, want_c = peephole_reference(
        x.astype("float64"),
        *(
            np.asarray(w, dtype="float64")
            for w in (
                cell.kernel,
                cell.recurrent_kernel,
                cell.bias,
                cell.input_peephole,
                cell.forget_peephole,
                cell.output_peephole,
            )
        ),
    )
    assert np.abs(seq - want_seq).max() < 1e-5
    assert np.abs(h_last - want_seq[:, -1]).max() < 1e-5
    assert np.abs(c_last - want_c).max() < 1e-5


def test_peepholes_change_the_output():
    """Zero peepholes reduce the cell to a plain LSTM; non-zero ones must not."""
    layer = _random_cell_layer()
    x = np.random.default_rng(2).normal(size=(2, 6, 3)).astype("float32")
    plain = keras.layers.RNN(keras.layers.LSTMCell(4), return_sequences=True)
    plain.build((None, None, 3))
    plain.set_weights(layer.get_weights()[:3])
    with_peepholes = np.asarray(layer(x)[0])
    assert np.abs(with_peepholes - np.asarray(plain(x))).max() > 1e-3
    layer.set_weights(layer.get_weights()[:3] + [np.zeros(4, "float32")] * 3)
    assert np.abs(np.asarray(layer(x)[0]) - np.asarray(plain(x))).max() < 1e-6


@pytest.mark.parametrize(("units", "input_dim"), [(4, 3), (7, 1), (1, 5)])
def test_parameter_count_is_lstm_plus_three_peepholes(units, input_dim):
    layer = _random_cell_layer(units, input_dim)
    assert layer.count_params() == 4 * units * (units + input_dim + 1) + 3 * units


def test_config_round_trip_rebuilds_an_equal_cell():
    cell = PeepholeLSTMCell(
        6, peephole_initializer="zeros", dropout=0.25, recurrent_dropout=0.5, unit_forget_bias=False
    )
    clone = PeepholeLSTMCell.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    assert clone.peephole_initializer.__class__.__name__ == "Zeros"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cell))
    assert isinstance(restored, PeepholeLSTMCell) and restored.get_config() == cell.get_config()


def test_dropout_acts_only_in_training():
    layer = _random_cell_layer(dropout=0.5, recurrent_dropout=0.5, seed=3)
    x = np.random.default_rng(4).normal(size=(4, 5, 3)).astype("float32")
    reference, _ = peephole_reference(
        x.astype("float64"), *(np.asarray(w, "float64") for w in layer.get_weights())
    )
    assert np.abs(np.asarray(layer(x, training=False)[0]) - reference).max() < 1e-5
    assert np.abs(np.asarray(layer(x, training=True)[0]) - reference).max() > 1e-3
