"""Quantile head and seq2seq decoder: non-crossing, teacher forcing vs autoregressive decoding."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from forecast.models import TEACHER_INPUT, NonCrossingQuantiles, Seq2SeqDecoder
from tests.forecast.models.util import as_numpy, make_inputs, max_abs_diff, tiny_model

LEVELS = [(0.5,), (0.5, 0.9), (0.1, 0.5), (0.05, 0.25, 0.5, 0.75, 0.95)]


@given(
    st.sampled_from(LEVELS).flatmap(
        lambda qs: st.tuples(
            st.just(qs),
            hnp.arrays(
                "float32",
                st.tuples(st.integers(1, 4), st.integers(1, 3), st.just(len(qs))),
                elements=st.floats(-8, 8, width=32),
            ),
        )
    )
)
def test_quantiles_never_cross_and_keep_the_median(case):
    levels, raw = case
    out = np.asarray(NonCrossingQuantiles(levels)(raw))
    assert out.shape == raw.shape
    assert (np.diff(out, axis=-1) > 0).all()
    m = levels.index(0.5)
    assert np.array_equal(out[..., m], raw[..., m])


def test_quantile_increments_are_softplus_outwards_from_the_median():
    raw = np.array([[0.0, 1.0, 0.5, -1.0]], "float32")  # levels 0.1, 0.3, 0.5, 0.9
    out = np.asarray(NonCrossingQuantiles((0.1, 0.3, 0.5, 0.9))(raw))[0]

    def softplus(v):
        return np.log1p(np.exp(v))

    expected = [0.5 - softplus(1.0) - softplus(0.0), 0.5 - softplus(1.0), 0.5, 0.5 + softplus(-1.0)]
    assert np.allclose(out, expected, atol=1e-6)


def _seq2seq(**spec):
    spec = {"mode": "dynamic", "head": "seq2seq", "units": (5, 4), **spec}
    return tiny_model(**spec)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole_lstm"])
@pytest.mark.parametrize("quantiles", [(), (0.1, 0.5, 0.9)])
def test_teacher_forcing_with_own_predictions_reproduces_autoregressive_decoding(cell, quantiles):
    """Fed its own point forecasts as the true targets, teacher forcing must agree exactly."""
    model = _seq2seq(cell=cell, quantiles=quantiles, bidirectional=cell == "gru")
    x = make_inputs(model)
    free = as_numpy(model(x))
    point = free["forecast"] if quantiles else free
    forced = model({**x, TEACHER_INPUT: point}, training=True)
    assert max_abs_diff(forced, free) < 1e-5


def test_teacher_forcing_uses_only_earlier_true_targets():
    model = _seq2seq()
    x = make_inputs(model)
    teacher = np.random.default_rng(5).normal(size=(3, 3, 1)).astype("float32")
    base = np.asarray(model({**x, TEACHER_INPUT: teacher}, training=True))
    moved = teacher.copy()
    moved[:, 1] += 1.0
    after = np.asarray(model({**x, TEACHER_INPUT: moved}, training=True))
    changed = np.abs(after - base).max(axis=(0, 2)) > 1e-6  # (H,)
    # y_1 is fed at step 2 only: steps 0 and 1 cannot see it.
    assert changed.tolist() == [False, False, True]


def test_inference_ignores_true_targets_and_needs_only_contract_inputs():
    model = _seq2seq(quantiles=(0.2, 0.5, 0.8))
    x = make_inputs(model)
    teacher = np.full((3, 3, 1), 7.0, "float32")
    free = model(x)
    assert max_abs_diff(model({**x, TEACHER_INPUT: teacher}), free) == 0.0
    assert max_abs_diff(model({**x, TEACHER_INPUT: teacher}, training=False), free) == 0.0
    # No true targets while training means free-running decoding as well.
    assert max_abs_diff(model(x, training=True), free) < 1e-6
    forced = model({**x, TEACHER_INPUT: teacher}, training=True)
    assert max_abs_diff(forced, free) > 1e-3


def test_decoder_starts_from_the_last_observed_target():
    model = _seq2seq(n_future=0)
    x = make_inputs(model)
    bumped = {k: v.copy() for k, v in x.items()}
    bumped["past"][:, -1, 0] += 1.0  # the last target only
    assert max_abs_diff(model(x), model(bumped)) > 1e-4
    bumped = {k: v.copy() for k, v in x.items()}
    bumped["mask"][:, -1] = False  # the same step, now padding, is not read
    bumped["past"][:, -1] += 100.0
    short = {"past": x["past"][:, :-1], "mask": x["mask"][:, :-1]}
    assert max_abs_diff(model(bumped), model(short)) < 1e-5


def test_decoder_config_round_trip_rebuilds_the_same_layer():
    decoder = Seq2SeqDecoder(
        "peephole_lstm", 6, 2, 4, n_future=3, quantiles=(0.1, 0.5, 0.9), l2=0.01, name="dec"
    )
    clone = Seq2SeqDecoder.from_config(decoder.get_config())
    assert clone.get_config() == decoder.get_config()
    states = [np.ones((2, 6), "float32")] * 2
    past = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    future = np.zeros((2, 4, 3), "float32")
    out = decoder(states, past, future=future)
    clone(states, past, future=future)
    clone.set_weights(decoder.get_weights())
    assert (
        max_abs_diff(
            dict(zip(("f", "q"), out, strict=True)),
            dict(zip(("f", "q"), clone(states, past, future=future), strict=True)),
        )
        == 0.0
    )
    assert tuple(out[0].shape) == (2, 4, 2) and tuple(out[1].shape) == (2, 4, 2, 3)


def test_quantile_layer_config_round_trip():
    layer = NonCrossingQuantiles((0.1, 0.5, 0.9), name="q")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, NonCrossingQuantiles)
    assert restored.get_config() == layer.get_config() and restored.median_index == 1
