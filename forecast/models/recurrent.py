"""The one place recurrent layers and cells are created.

LSTM and GRU layers are `forecast.models.layers.FusedLSTM` / `FusedGRU`: subclasses of the Keras
layers with the same weights and results that run a faster loop on CPU and hand over to
Keras' own implementation everywhere else (see `forecast/models/layers/fused_rnn.py`).

GPU path: with the TensorFlow backend on a GPU, the layers run Keras' fused cuDNN kernel
when activation is tanh, recurrent activation sigmoid, ``recurrent_dropout=0``,
``unroll=False``, ``use_bias=True`` (GRU: ``reset_after=True``), and the mask (if any)
is strictly right-padded with no fully masked row. The layers made here keep those
defaults; these spec options leave the fused path (see docs/models.md):
``cell='peephole_lstm'`` or ``'rnn'``, ``recurrent_dropout > 0``, ``unroll=True``, and
left-padded masks. ``layer_norm`` sits between layers, outside the cells, and keeps the
fused path.
"""

from __future__ import annotations

from typing import Any

import keras

from forecast.config.checks import check_choice
from forecast.config.model import CELLS
from forecast.models.cells import PeepholeLSTMCell
from forecast.models.layers import FusedGRU, FusedLSTM

# Number of state tensors each cell carries: (h, c) for the LSTMs, h for the others.
STATE_COUNT = {"lstm": 2, "peephole_lstm": 2, "gru": 1, "rnn": 1}


def regularizer(l1: float, l2: float) -> keras.regularizers.Regularizer | None:
    """An L1/L2 weight penalty, or None when both are zero."""
    return keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None


def _cell_kwargs(
    units: int,
    *,
    dropout: float,
    recurrent_dropout: float,
    kernel_initializer: str,
    recurrent_initializer: str,
    l1: float,
    l2: float,
) -> dict[str, Any]:
    return {
        "units": units,
        "dropout": dropout,
        "recurrent_dropout": recurrent_dropout,
        "kernel_initializer": kernel_initializer,
        "recurrent_initializer": recurrent_initializer,
        "kernel_regularizer": regularizer(l1, l2),
        "recurrent_regularizer": regularizer(l1, l2),
    }


def make_cell(
    cell: str,
    units: int,
    *,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    kernel_initializer: str = "glorot_uniform",
    recurrent_initializer: str = "orthogonal",
    l1: float = 0.0,
    l2: float = 0.0,
    dtype: Any = None,
    name: str | None = None,
) -> keras.layers.Layer:
    """A single recurrent cell (one time step), as used by the seq2seq decoder.

    Args:
        cell: lstm, gru, rnn or peephole_lstm.
        units: state size.
        dropout: input dropout rate.
        recurrent_dropout: recurrent-state dropout rate.
        kernel_initializer: initializer of the input kernel.
        recurrent_initializer: initializer of the recurrent kernel.
        l1: L1 penalty on both kernels.
        l2: L2 penalty on both kernels.
        dtype: dtype policy (e.g. ``"mixed_bfloat16"``); None for the global one.
        name: layer name.

    Returns:
        A Keras RNN cell: ``call(inputs, states) -> (output, new_states)``.
    """
    check_choice("cell", cell, CELLS)
    kwargs = _cell_kwargs(
        units,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        kernel_initializer=kernel_initializer,
        recurrent_initializer=recurrent_initializer,
        l1=l1,
        l2=l2,
    )
    classes = {
        "lstm": keras.layers.LSTMCell,
        "gru": keras.layers.GRUCell,
        "rnn": keras.layers.SimpleRNNCell,
        "peephole_lstm": PeepholeLSTMCell,
    }
    if cell == "gru":
        kwargs["reset_after"] = True
    return classes[cell](dtype=dtype, name=name, **kwargs)


def make_recurrent_layer(
    cell: str,
    units: int,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    unroll: bool = False,
    stateful: bool = False,
    kernel_initializer: str = "glorot_uniform",
    recurrent_initializer: str = "orthogonal",
    l1: float = 0.0,
    l2: float = 0.0,
    dtype: Any = None,
    name: str | None = None,
) -> keras.layers.Layer:
    """A recurrent layer over a whole sequence: the single factory every model goes through.

    LSTM and GRU use `FusedLSTM` / `FusedGRU` (Keras' layers with a faster CPU loop;
    cuDNN-eligible on a GPU with the defaults, see the module docstring), SimpleRNN the
    Keras `SimpleRNN`, and the peephole LSTM a `keras.layers.RNN` around
    `PeepholeLSTMCell`. Callers pass the mask explicitly: ``layer(x, mask=mask)``.

    Args:
        cell: lstm, gru, rnn or peephole_lstm.
        units: state size.
        return_sequences: return every step (B, L, units) instead of the last (B, units).
        return_state: also return the final states.
        dropout: input dropout rate.
        recurrent_dropout: recurrent-state dropout rate.
        unroll: unroll the loop (needs a fixed time dimension).
        stateful: carry the final states into the next batch (needs a fixed batch size).
        kernel_initializer: initializer of the input kernel.
        recurrent_initializer: initializer of the recurrent kernel.
        l1: L1 penalty on both kernels.
        l2: L2 penalty on both kernels.
        dtype: dtype policy; None for the global one.
        name: layer name.

    Returns:
        A `keras.layers.RNN` subclass instance (`FusedLSTM` / `FusedGRU` for lstm / gru).
    """
    check_choice("cell", cell, CELLS)
    kwargs = _cell_kwargs(
        units,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        kernel_initializer=kernel_initializer,
        recurrent_initializer=recurrent_initializer,
        l1=l1,
        l2=l2,
    )
    loop = {
        "return_sequences": return_sequences,
        "return_state": return_state,
        "unroll": unroll,
        "stateful": stateful,
        "dtype": dtype,
        "name": name,
    }
    if cell == "lstm":
        return FusedLSTM(**kwargs, **loop)
    if cell == "gru":
        return FusedGRU(reset_after=True, **kwargs, **loop)
    if cell == "rnn":
        return keras.layers.SimpleRNN(**kwargs, **loop)
    return keras.layers.RNN(PeepholeLSTMCell(dtype=dtype, **kwargs), **loop)
