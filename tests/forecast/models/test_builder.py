"""build_model: contract shapes, textbook parameter counts, knobs and size errors."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from forecast.models import ModelSpec, build_model
from pipelines.errors import ConfigError, DataValidationError
from tests.forecast.models.util import make_inputs, max_abs_diff, randomize, tiny_model

CELLS = ("lstm", "gru", "rnn", "peephole_lstm")
# Every head x mode x quantile combination; each cell appears once per direction.
GRID = [
    (CELLS[i % 4], bool((i + i // 4) % 2), head, mode, quantiles)
    for i, (head, mode, quantiles) in enumerate(
        itertools.product(("direct", "seq2seq"), ("static", "dynamic"), ((), (0.1, 0.5, 0.9)))
    )
]


@pytest.mark.parametrize(("cell", "bidirectional", "head", "mode", "quantiles"), GRID)
@pytest.mark.parametrize("n_future", [0, 2])
def test_outputs_follow_the_contract(cell, bidirectional, head, mode, quantiles, n_future):
    model = tiny_model(
        cell=cell,
        bidirectional=bidirectional,
        head=head,
        mode=mode,
        quantiles=quantiles,
        units=(5, 4),
        n_targets=2,
        n_future=n_future,
    )
    names = {t.name: tuple(t.shape) for t in model.network.inputs}
    time = 6 if mode == "static" else None
    assert names["past"] == (None, time, 3)
    assert ("mask" in names) == (mode == "dynamic")
    assert ("future" in names) == bool(n_future)
    assert model.input_names == [n for n in ("past", "future", "mask") if n in names]

    out = model(make_inputs(model, batch=4))
    if quantiles:
        assert set(out) == {"forecast", "quantiles"}
        assert tuple(out["quantiles"].shape) == (4, 3, 2, 3)
        q = np.asarray(out["quantiles"])
        assert (np.diff(q, axis=-1) > 0).all()  # non-crossing
        assert np.array_equal(np.asarray(out["forecast"]), q[..., 1])  # median
        forecast = out["forecast"]
    else:
        forecast = out
    assert tuple(forecast.shape) == (4, 3, 2)
    assert forecast.dtype == "float32"


def _rnn_params(cell: str, units: int, inputs: int) -> int:
    """Textbook parameter counts of one recurrent layer."""
    return {
        "lstm": 4 * units * (units + inputs + 1),
        "gru": 3 * units * (units + inputs + 2),  # reset_after: two bias vectors
        "rnn": units * (units + inputs + 1),
        "peephole_lstm": 4 * units * (units + inputs + 1) + 3 * units,
    }[cell]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_encoder_parameter_counts_match_textbook_formulas(cell, bidirectional):
    units, n_features = (5, 3), 2
    model = build_model(
        ModelSpec(cell=cell, units=units, bidirectional=bidirectional),
        n_features=n_features,
        n_targets=1,
        horizon=2,
        lookback=4,
    )
    directions = 2 if bidirectional else 1
    inputs = n_features
    for i, u in enumerate(units):
        layer = model.network.get_layer(f"bidirectional_{i}" if bidirectional else f"encoder_{i}")
        assert layer.count_params() == directions * _rnn_params(cell, u, inputs)
        inputs = directions * u  # concat merge feeds both directions to the next layer
    head = model.network.get_layer("direct")
    assert head.count_params() == (directions * units[-1] + 1) * 2


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_default_recurrent_layers_meet_the_cudnn_conditions(cell):
    model = tiny_model(cell=cell, units=(4, 4), mode="dynamic", bidirectional=True)
    rnns = [
        layer
        for wrapper in model.network.layers
        if isinstance(wrapper, keras.layers.Bidirectional)
        for layer in (wrapper.forward_layer, wrapper.backward_layer)
    ]
    assert len(rnns) == 4
    for layer in rnns:
        assert isinstance(layer, keras.layers.LSTM if cell == "lstm" else keras.layers.GRU)
        cell_ = layer.cell
        assert cell_.activation is keras.activations.tanh
        assert cell_.recurrent_activation is keras.activations.sigmoid
        assert cell_.recurrent_dropout == 0 and not layer.unroll and cell_.use_bias
        assert layer.use_cudnn == "auto"
        if cell == "gru":
            assert cell_.reset_after


def test_recurrent_initializers_and_regularization():
    rnn = build_model(
        ModelSpec(cell="rnn", units=(4,), recurrent_initializer="identity", l2=0.01),
        n_features=2,
        n_targets=1,
        horizon=2,
        lookback=3,
    )
    kernel = np.asarray(rnn.network.get_layer("encoder_0").cell.recurrent_kernel)
    assert np.array_equal(kernel, np.eye(4, dtype="float32"))
    assert len(rnn.losses) >= 3  # input kernel, recurrent kernel, dense head
    lstm = build_model(ModelSpec(units=(4,)), n_features=2, n_targets=1, horizon=2, lookback=3)
    kernel = np.asarray(lstm.network.get_layer("encoder_0").cell.recurrent_kernel)  # (4, 16)
    assert np.abs(kernel @ kernel.T - np.eye(4)).max() < 1e-5  # orthogonal rows
    assert lstm.losses == []


def test_layer_norm_adds_one_normalization_per_layer():
    model = tiny_model(units=(4, 3, 2), layer_norm=True, mode="dynamic")
    norms = [ly for ly in model.network.layers if isinstance(ly, keras.layers.LayerNormalization)]
    assert [n.name for n in norms] == ["layer_norm_0", "layer_norm_1", "layer_norm_2"]


def test_unroll_gives_the_same_outputs_as_the_loop():
    looped = tiny_model(cell="gru", units=(4, 3))
    unrolled = tiny_model(cell="gru", units=(4, 3), unroll=True)
    assert unrolled.network.get_layer("encoder_0").unroll
    unrolled.set_weights(looped.get_weights())
    x = make_inputs(looped)
    assert max_abs_diff(looped(x), unrolled(x)) < 1e-6


def _future_effect(model, step):
    """Which forecast steps move when only the future covariates of `step` change."""
    x = make_inputs(model)
    moved = dict(x, future=x["future"].copy())
    moved["future"][:, step] += 1.0
    delta = np.abs(np.asarray(model(moved)) - np.asarray(model(x))).max(axis=(0, 2))  # (H,)
    return delta > 1e-6


def test_per_step_future_covariates_only_touch_their_own_step():
    model = tiny_model(future_mode="per_step", horizon=4)
    assert _future_effect(model, 2).tolist() == [False, False, True, False]


def test_flattened_future_covariates_reach_every_step():
    model = tiny_model(future_mode="flatten", horizon=4)
    assert _future_effect(model, 2).all()


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_in_half_and_outputs_float32(precision):
    model = tiny_model(precision=precision, mode="dynamic", head="seq2seq", quantiles=(0.2, 0.5))
    assert model.network.get_layer("encoder_0").compute_dtype == precision.split("_")[1]
    out = model(make_inputs(model))
    assert out["forecast"].dtype == "float32" and out["quantiles"].dtype == "float32"
    assert np.isfinite(np.asarray(out["quantiles"])).all()


@pytest.mark.parametrize(
    ("spec", "sizes", "message"),
    [
        ({}, {"lookback": None}, "mode='static' fixes the lookback in the input shape"),
        ({}, {"n_features": 0}, "`n_features` must be an integer >= 1. Received: n_features=0"),
        ({}, {"horizon": 2.5}, "`horizon` must be an integer >= 1. Received: horizon=2.5"),
        ({}, {"n_future": -1}, "`n_future` must be an integer >= 0. Received: n_future=-1"),
        ({"mode": "dynamic"}, {"lookback": 0}, "Received: lookback=0"),
        (
            {"head": "seq2seq"},
            {"n_targets": 4},
            "so n_targets <= n_features. Received: n_targets=4, n_features=3",
        ),
        ({"unit": 4}, {}, "Unknown ModelSpec keys ['unit']"),
    ],
)
def test_bad_sizes_fail_before_building(spec, sizes, message):
    kwargs = {"n_features": 3, "n_targets": 1, "horizon": 2, "lookback": 5, **sizes}
    with pytest.raises(ConfigError) as err:
        build_model(spec, **kwargs)
    assert message in str(err.value)


def test_dynamic_mode_needs_no_lookback_and_takes_any_length():
    model = build_model(ModelSpec(mode="dynamic", units=(4,)), n_features=2, n_targets=1, horizon=2)
    randomize(model)
    for length in (1, 5, 12):
        x = {"past": np.ones((2, length, 2), "float32"), "mask": np.ones((2, length), bool)}
        assert tuple(model(x).shape) == (2, 2, 1)


def test_missing_input_is_named():
    model = tiny_model(mode="dynamic")
    x = make_inputs(model)
    del x["mask"]
    with pytest.raises(DataValidationError) as err:
        model(x)
    assert "Model inputs are missing ['mask']" in str(err.value)
    assert "this model reads ['past', 'future', 'mask']" in str(err.value)


def test_bare_tensor_is_taken_as_past():
    model = tiny_model(n_future=0)
    x = make_inputs(model)
    assert max_abs_diff(model(x["past"]), model(x)) == 0.0
