"""FusedLSTM / FusedGRU give Keras' LSTM / GRU results (outputs, states, gradients) on CPU."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from forecast.models.layers import FusedGRU, FusedLSTM, uses_fused_path
from forecast.models.layers import fused_rnn as fused_module
from pipelines.errors import ConfigError

PAIRS = {"lstm": (keras.layers.LSTM, FusedLSTM), "gru": (keras.layers.GRU, FusedGRU)}
B, T, F, U = 6, 7, 3, 4
TOL = 1e-5


@pytest.fixture(autouse=True)
def _keras_seed():
    keras.utils.set_random_seed(0)
    yield


def _pair(cell: str, features: int = F, **kwargs):
    """A Keras layer with non-zero biases and our layer with the same weights."""
    keras_cls, fused_cls = PAIRS[cell]
    theirs = keras_cls(U, bias_initializer="random_normal", **kwargs)
    theirs.build((None, None, features))
    ours = fused_cls(U, **kwargs)
    ours.build((None, None, features))
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def _run(layer, x, mask=None, training=True, **call_kwargs):
    """Outputs, then gradients of a scalar loss w.r.t. the input and every weight."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, mask=mask, training=training, **call_kwargs)
        out = list(out) if isinstance(out, list | tuple) else [out]
        loss = tf.reduce_mean(out[0] ** 2) + sum(tf.reduce_mean(tf.sin(s)) for s in out[1:])
    return [o.numpy() for o in out] + [g.numpy() for g in tape.gradient(loss, [x, *layer.weights])]


def _assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL)


def _masks(rng):
    lengths = np.array([7, 3, 5, 1, 0, 6])
    right = np.arange(T)[None, :] < lengths[:, None]
    return {
        "none": None,
        "right": right,
        "left": right[:, ::-1].copy(),
        "mixed": rng.random((B, T)) > 0.4,
    }


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("layout", ["none", "right", "left", "mixed"])
def test_matches_keras_outputs_states_and_gradients(cell, go_backwards, layout):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, F)).astype("float32")
    theirs, ours = _pair(cell, return_sequences=True, return_state=True, go_backwards=go_backwards)
    mask = _masks(rng)[layout]
    assert uses_fused_path(ours)
    _assert_same(_run(ours, x, mask), _run(theirs, x, mask))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_path_and_last_output_match_keras(cell):
    # training=False runs the forward loop without keeping states for the backward pass;
    # a gradient taken anyway recomputes them.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, F)).astype("float32")
    theirs, ours = _pair(cell, use_bias=False)
    theirs.zero_output_for_mask = ours.zero_output_for_mask = True
    mask = _masks(rng)["mixed"]
    _assert_same(_run(ours, x, mask, training=False), _run(theirs, x, mask, training=False))


@settings(max_examples=25, deadline=None)
@given(
    mask=arrays(np.bool_, (B, T)),
    scale=st.floats(0.1, 3.0),
    zero_output=st.booleans(),
)
def test_any_mask_matches_keras(mask, scale, zero_output):
    x = (scale * np.random.default_rng(3).standard_normal((B, T, F))).astype("float32")
    for cell in PAIRS:
        theirs, ours = _pair(cell, return_sequences=True, return_state=True)
        theirs.zero_output_for_mask = ours.zero_output_for_mask = zero_output
        _assert_same(_run(ours, x, mask), _run(theirs, x, mask))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_batch_split_in_sorted_groups_matches_keras(cell):
    # 70 rows make two groups; with a mask, rows are sorted by length before splitting.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((70, 5, 2)).astype("float32")
    mask = np.arange(5)[None, :] < rng.integers(0, 6, 70)[:, None]
    theirs, ours = _pair(cell, features=2, return_sequences=True, return_state=True)
    _assert_same(_run(ours, x, mask), _run(theirs, x, mask))
    _assert_same(_run(ours, x), _run(theirs, x))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layers_of_many_sizes_in_one_process_match_keras(cell):
    # The XLA loops are traced with `reduce_retracing`: after a few sizes the shared trace
    # has no static shapes, which once broke every later layer of a new size.
    rng = np.random.default_rng(6)
    keras_cls, fused_cls = PAIRS[cell]
    for units, features, steps in [(4, 3, 5), (3, 2, 6), (5, 4, 4), (2, 5, 7), (6, 1, 3)]:
        theirs = keras_cls(units, bias_initializer="random_normal", return_sequences=True)
        theirs.build((None, None, features))
        ours = fused_cls(units, return_sequences=True)
        ours.build((None, None, features))
        ours.set_weights(theirs.get_weights())
        x = rng.standard_normal((3, steps, features)).astype("float32")
        _assert_same(_run(ours, x), _run(theirs, x))
        # Traced with unknown axes, the output still says its units (LayerNorm needs them).
        traced = tf.function(ours).get_concrete_function(tf.TensorSpec((None, None, features)))
        assert traced.structured_outputs.shape[-1] == units


def test_time_axis_unknown_when_tracing_is_padded_and_matches_keras():
    rng = np.random.default_rng(5)
    theirs, ours = _pair("lstm", features=2, return_sequences=True)
    spec = (tf.TensorSpec((None, None, 2)), tf.TensorSpec((None, None), tf.bool))
    run_ours = tf.function(lambda x, m: ours(x, mask=m, training=True), input_signature=spec)
    run_theirs = tf.function(lambda x, m: theirs(x, mask=m), input_signature=spec)
    for steps in (5, 7):  # both padded to 8 steps inside, one compiled loop
        x = rng.standard_normal((3, steps, 2)).astype("float32")
        mask = np.arange(steps)[None, :] < np.array([[steps], [2], [4]])
        np.testing.assert_allclose(run_ours(x, mask), run_theirs(x, mask), rtol=TOL, atol=TOL)
        assert run_ours(x, mask).shape == (3, steps, U)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("masked", [False, True])
def test_batch_unknown_when_tracing_is_padded_and_matches_keras(cell, masked):
    # Batches of 5, 7 and 13 rows share compiled loops (padded to 8, 8 and 16 rows);
    # the padding rows must not leak into outputs, final states or gradients.
    rng = np.random.default_rng(15)
    theirs, ours = _pair(cell, features=2, return_sequences=True, return_state=True)

    def outputs_and_grads(layer, x, mask, h0):
        with tf.GradientTape() as tape:
            tape.watch([x, *h0])
            out = layer(x, mask=mask, initial_state=h0, training=True)
            loss = tf.reduce_mean(out[0] ** 2) + sum(tf.reduce_mean(tf.sin(s)) for s in out[1:])
        return [*out, *tape.gradient(loss, [x, *h0, *layer.weights])]

    n_states = 2 if cell == "lstm" else 1
    spec = [tf.TensorSpec((None, 5, 2)), tf.TensorSpec((None, 5), tf.bool)]
    spec.append([tf.TensorSpec((None, U))] * n_states)
    run_ours = tf.function(lambda x, m, h0: outputs_and_grads(ours, x, m, h0), input_signature=spec)
    for batch in (5, 7, 13):
        x = tf.constant(rng.standard_normal((batch, 5, 2)).astype("float32"))
        mask = np.arange(5)[None, :] < rng.integers(1 if masked else 5, 6, batch)[:, None]
        h0 = [tf.constant(rng.standard_normal((batch, U)), tf.float32) for _ in range(n_states)]
        ours_out = [t.numpy() for t in run_ours(x, tf.constant(mask), h0)]
        theirs_out = [t.numpy() for t in outputs_and_grads(theirs, x, mask, h0)]
        assert ours_out[0].shape == (batch, 5, U)
        _assert_same(ours_out, theirs_out)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_batch_smaller_than_the_groups_matches_keras(cell):
    # With the batch size unknown when tracing, the batch is always split in groups;
    # a single window leaves the other groups empty.
    theirs, ours = _pair(cell, features=2, return_sequences=True)
    spec = (tf.TensorSpec((None, 5, 2)), tf.TensorSpec((None, 5), tf.bool))
    run_ours = tf.function(lambda x, m: ours(x, mask=m), input_signature=spec)
    x = np.random.default_rng(14).standard_normal((1, 5, 2)).astype("float32")
    for mask in (np.ones((1, 5), bool), np.array([[True, True, False, False, False]])):
        np.testing.assert_allclose(run_ours(x, mask), theirs(x, mask=mask), rtol=TOL, atol=TOL)
    unmasked = tf.function(lambda x: ours(x), input_signature=spec[:1])
    np.testing.assert_allclose(unmasked(x), theirs(x), rtol=TOL, atol=TOL)


@pytest.mark.parametrize(
    ("steps", "padded"),
    [(1, 1), (2, 2), (5, 6), (7, 8), (8, 8), (9, 12), (13, 16), (64, 64), (336, 384)],
)
def test_padded_steps_are_two_per_octave(steps, padded):
    assert int(fused_module._padded_size(tf.constant(steps))) == padded


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_initial_state_reaches_states_and_gradients(cell):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((B, T, F)).astype("float32")
    n_states = 2 if cell == "lstm" else 1
    init = [tf.constant(rng.standard_normal((B, U)).astype("float32")) for _ in range(n_states)]
    theirs, ours = _pair(cell, return_state=True)

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch(init)
            out = layer(x, initial_state=init, training=True)
            loss = sum(tf.reduce_mean(tf.sin(o)) for o in out)
        return [o.numpy() for o in out] + [g.numpy() for g in tape.gradient(loss, init)]

    _assert_same(run(ours), run(theirs))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_input_dropout_uses_keras_mask(cell):
    x = np.random.default_rng(7).standard_normal((B, T, F)).astype("float32")
    theirs, ours = _pair(cell, dropout=0.5, seed=3, return_sequences=True)
    _assert_same(_run(ours, x), _run(theirs, x))
    dropped = ours(x, training=True).numpy()
    assert not np.allclose(dropped, ours(x, training=False).numpy())


def test_bidirectional_with_mask_matches_keras():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((B, T, F)).astype("float32")
    mask = _masks(rng)["right"]
    theirs = keras.layers.Bidirectional(
        keras.layers.LSTM(U, return_sequences=True, bias_initializer="random_normal")
    )
    ours = keras.layers.Bidirectional(FusedLSTM(U, return_sequences=True))
    theirs.build((None, T, F))
    ours.build((None, T, F))
    ours.set_weights(theirs.get_weights())
    assert isinstance(ours.backward_layer, FusedLSTM) and ours.backward_layer.go_backwards
    _assert_same(_run(ours, x, mask), _run(theirs, x, mask))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weights_have_keras_names_shapes_and_move_both_ways(cell):
    theirs, ours = _pair(cell)
    assert [(w.path.split("/")[-1], w.shape) for w in ours.weights] == [
        (w.path.split("/")[-1], w.shape) for w in theirs.weights
    ]
    fresh_keras = PAIRS[cell][0](U)
    fresh_keras.build((None, None, F))
    fresh_keras.set_weights(ours.get_weights())
    x = np.random.default_rng(9).standard_normal((B, T, F)).astype("float32")
    np.testing.assert_allclose(fresh_keras(x), ours(x), rtol=TOL, atol=TOL)


def test_model_saved_as_keras_file_loads_with_same_predictions(tmp_path):
    inputs = keras.Input((T, F))
    mask = keras.Input((T,), dtype="bool")
    h = FusedLSTM(U, return_sequences=True, dropout=0.1)(inputs, mask=mask)
    h = keras.layers.Bidirectional(FusedGRU(U))(h, mask=mask)
    model = keras.Model([inputs, mask], keras.layers.Dense(1)(h))
    rng = np.random.default_rng(10)
    data = [rng.standard_normal((B, T, F)).astype("float32"), _masks(rng)["right"]]
    data[1][4, 0] = True  # a valid step in every row
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[2], FusedLSTM) and loaded.layers[2].fused
    np.testing.assert_allclose(loaded.predict(data, verbose=0), model.predict(data, verbose=0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recurrent_dropout": 0.1},
        {"activation": "relu"},
        {"unroll": True},
        {"fused": False},
        {"dtype": "mixed_bfloat16"},
    ],
)
def test_unsupported_options_run_keras_loop(kwargs):
    assert not uses_fused_path(FusedLSTM(U, **kwargs))


def test_gru_reset_before_runs_keras_loop_with_keras_results():
    theirs, ours = _pair("gru", reset_after=False, return_sequences=True)
    assert not uses_fused_path(ours)
    x = np.random.default_rng(11).standard_normal((B, T, F)).astype("float32")
    _assert_same(_run(ours, x), _run(theirs, x))


def test_visible_gpu_hands_the_loop_to_keras(monkeypatch):
    # On a GPU, Keras' own inner loop (which picks cuDNN) must run, not ours.
    monkeypatch.setattr(fused_module, "gpu_visible", lambda: True)
    monkeypatch.setattr(fused_module, "fused_inner_loop", _fail)
    theirs, ours = _pair("lstm")
    assert not uses_fused_path(ours)
    x = np.random.default_rng(12).standard_normal((B, T, F)).astype("float32")
    np.testing.assert_allclose(ours(x), theirs(x), rtol=TOL, atol=TOL)


def _fail(*args, **kwargs):
    raise AssertionError("the fused loop ran")


def test_stateful_layer_carries_state_like_keras():
    x = np.random.default_rng(13).standard_normal((B, T, F)).astype("float32")
    theirs = keras.layers.LSTM(U, stateful=True, bias_initializer="random_normal")
    ours = FusedLSTM(U, stateful=True)
    for layer in (theirs, ours):
        layer.build((B, None, F))
    ours.set_weights(theirs.get_weights())
    for layer in (theirs, ours):
        layer(x[:, :3])
    np.testing.assert_allclose(ours(x[:, 3:]), theirs(x[:, 3:]), rtol=TOL, atol=TOL)
    ours.reset_state()
    theirs.reset_state()
    np.testing.assert_allclose(ours(x), theirs(x), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("fused", ["yes", 1, None])
def test_fused_must_be_a_bool(fused):
    with pytest.raises(
        ConfigError, match=f"`fused` must be True or False. Received: fused={fused!r}"
    ):
        FusedGRU(U, fused=fused)


def _recurrent_layers(layer):
    for sub in getattr(layer, "_flatten_layers", lambda **_: [])(include_self=True):
        if isinstance(sub, keras.layers.RNN):
            yield sub


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_builder_default_layers_are_fused_and_give_keras_results(cell, bidirectional):
    # build_model's encoders are our layers on the fused path; turning `fused` off (Keras'
    # own loop) must not change the model's outputs or gradients.
    from tests.forecast.models.util import make_inputs, tiny_model

    model = tiny_model(cell=cell, units=(5, 3), mode="dynamic", bidirectional=bidirectional)
    encoders = list(_recurrent_layers(model))
    assert len(encoders) == (4 if bidirectional else 2)
    assert all(isinstance(layer, FusedLSTM | FusedGRU) for layer in encoders)
    assert all(uses_fused_path(layer) for layer in encoders)
    mask = np.arange(6)[None, :] < np.array([[6], [2], [4]])
    x = {k: tf.constant(v) for k, v in make_inputs(model, mask=mask).items()}

    def outputs_and_grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x, training=True) ** 2)
        return [loss.numpy()] + [g.numpy() for g in tape.gradient(loss, model.trainable_weights)]

    fused = outputs_and_grads()
    for layer in encoders:
        layer.fused = False
    assert not any(uses_fused_path(layer) for layer in encoders)
    _assert_same(fused, outputs_and_grads())
