"""Streaming copies: fed step by step (or in chunks) they reproduce the full-sequence model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from forecast.models import reset_state, to_streaming
from pipelines.errors import ConfigError
from tests.forecast.models.util import make_inputs, max_abs_diff, tiny_model


def _chunk(x, start, stop):
    """The history steps [start, stop) of contract inputs; `future` is per forecast, kept."""
    part = {"past": x["past"][:, start:stop]}
    if "mask" in x:
        part["mask"] = x["mask"][:, start:stop]
    if "future" in x:
        part["future"] = x["future"]
    return part


@pytest.mark.parametrize(
    "spec",
    [
        {"cell": "lstm", "mode": "dynamic"},
        {"cell": "gru", "mode": "dynamic", "head": "seq2seq", "quantiles": (0.1, 0.5, 0.9)},
        {"cell": "rnn", "mode": "dynamic", "layer_norm": True, "future_mode": "per_step"},
        {"cell": "peephole_lstm", "mode": "dynamic", "head": "seq2seq"},
    ],
    ids=lambda s: s["cell"],
)
def test_step_by_step_matches_the_full_model_on_every_prefix(spec):
    model = tiny_model(units=(5, 4), **spec)
    stream = to_streaming(model, batch_size=2)
    x = make_inputs(model, batch=2, lookback=6)
    for t in range(6):
        out = stream(_chunk(x, t, t + 1))
        full = model(_chunk(x, 0, t + 1))
        assert max_abs_diff(out, full) < 1e-5, f"after step {t}"


@pytest.mark.parametrize("head", ["direct", "seq2seq"])
def test_static_model_streams_in_chunks_and_resets(head):
    model = tiny_model(units=(5, 4), head=head, unroll=True)  # static, lookback 6
    stream = to_streaming(model, batch_size=3)
    assert not stream.network.get_layer("encoder_0").unroll
    x = make_inputs(model)
    full = model(x)
    for _ in range(2):  # the second pass checks that reset_state really zeroes the states
        for start, stop in ((0, 1), (1, 4), (4, 6)):
            out = stream(_chunk(x, start, stop))
        assert max_abs_diff(out, full) < 1e-5
        stream.reset_state()
    stream(_chunk(x, 0, 6))
    carried = stream(_chunk(x, 0, 6))  # no reset: the state of the first pass carries over
    assert max_abs_diff(carried, full) > 1e-4


def test_masked_steps_leave_the_carried_state_alone():
    model = tiny_model(mode="dynamic", n_future=0)
    stream = to_streaming(model, batch_size=1)
    x = make_inputs(model, batch=1)
    garbage = np.full((1, 1, 3), 50.0, "float32")
    stream(_chunk(x, 0, 3))
    # A chunk whose last step is padding answers as if the chunk ended before it ...
    padded = {
        "past": np.concatenate([x["past"][:, 3:4], garbage], axis=1),
        "mask": np.array([[True, False]]),
    }
    assert max_abs_diff(stream(padded), model(_chunk(x, 0, 4))) < 1e-5
    # ... and the padding does not leak into what comes next.
    assert max_abs_diff(stream(_chunk(x, 4, 6)), model(x)) < 1e-5


def test_streaming_a_reloaded_model(tmp_path):
    model = tiny_model(cell="peephole_lstm", mode="dynamic")
    model.save(tmp_path / "m.keras")
    stream = to_streaming(keras.saving.load_model(tmp_path / "m.keras"), batch_size=3)
    x = make_inputs(model)
    for t in range(6):
        out = stream(_chunk(x, t, t + 1))
    assert max_abs_diff(out, model(x)) < 1e-5


def test_reset_state_function_reaches_nested_rnn_layers():
    stream = to_streaming(tiny_model(units=(4, 3), n_future=0), batch_size=2)
    x = {"past": np.ones((2, 6, 3), "float32")}
    first = np.asarray(stream(x))
    reset_state(stream)
    assert max_abs_diff(stream(x), first) == 0.0
    rnns = [ly for ly in stream.network.layers if isinstance(ly, keras.layers.RNN)]
    assert len(rnns) == 2 and all(ly.stateful for ly in rnns)


def test_bidirectional_models_cannot_stream():
    with pytest.raises(ConfigError) as err:
        to_streaming(tiny_model(bidirectional=True))
    assert "Streaming needs a unidirectional model" in str(err.value)
    assert "Received: bidirectional=True" in str(err.value)


def test_only_forecast_models_stream():
    with pytest.raises(ConfigError, match="Received: Sequential"):
        to_streaming(keras.Sequential([keras.layers.Dense(1)]))


def test_streaming_needs_a_positive_batch_size():
    with pytest.raises(ConfigError, match="`batch_size` must be an integer >= 1"):
        to_streaming(tiny_model(), batch_size=0)
