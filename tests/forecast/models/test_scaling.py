"""Per-window target scaling: scale equivariance, masks, the floor, the spec options."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.models import (
    TEACHER_INPUT,
    DivideTargets,
    ModelSpec,
    MultiplyTargets,
    WindowRMS,
    to_streaming,
)
from forecast.models.scaling import EPSILON
from pipelines.errors import ConfigError
from tests.forecast.models.util import as_numpy, make_inputs, max_abs_diff, tiny_model

QUANTILES = (0.1, 0.5, 0.9)
# One model per head and output kind; two targets where the decoder reads them back.
# Scaled by window_rms unless the variant names another scaling.
EWMA = {"target_scaling": "ewma_rms", "target_scale_halflife": 2}
VARIANTS = {
    "direct-quantiles": {"quantiles": QUANTILES},
    "direct-per-step": {"future_mode": "per_step", "n_targets": 2},
    "seq2seq-dynamic": {
        "head": "seq2seq",
        "mode": "dynamic",
        "cell": "gru",
        "n_targets": 2,
        "quantiles": QUANTILES,
    },
    "direct-quantiles-ewma": {"quantiles": QUANTILES, **EWMA},
    "seq2seq-dynamic-ewma": {
        "head": "seq2seq",
        "mode": "dynamic",
        "cell": "gru",
        "n_targets": 2,
        "quantiles": QUANTILES,
        **EWMA,
    },
}
_MODELS: dict[str, keras.Model] = {}


def _model(name: str) -> keras.Model:
    """A randomized scaled model per variant, built once (hypothesis reruns the test body)."""
    if name not in _MODELS:
        _MODELS[name] = tiny_model(**{"target_scaling": "window_rms", **VARIANTS[name]})
    return _MODELS[name]


def _with_targets_times(x: dict[str, np.ndarray], c: float, n_targets: int) -> dict:
    past = x["past"].copy()
    past[..., :n_targets] *= c
    return {**x, "past": past}


def _right_padded_mask(lengths: list[int], lookback: int) -> np.ndarray:
    return np.arange(lookback)[None, :] < np.asarray(lengths)[:, None]


@settings(max_examples=40)
@given(
    name=st.sampled_from(sorted(VARIANTS)),
    c=st.floats(0.01, 100.0),
    seed=st.integers(0, 2**16),
)
def test_scaling_the_targets_of_past_scales_forecast_and_quantiles(name, c, seed):
    model = _model(name)
    n_targets = model.sizes["n_targets"]
    x = make_inputs(model, batch=4, seed=seed)  # lookback 6
    if "mask" in x:
        x["mask"] = _right_padded_mask([6, 4, 1, 3], 6)
    out = as_numpy(model(x))
    scaled = as_numpy(model(_with_targets_times(x, c, n_targets)))
    out, scaled = (out, scaled) if isinstance(out, dict) else ({"f": out}, {"f": scaled})
    for key in out:
        want = c * out[key]
        tol = 1e-5 * max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(scaled[key], want, rtol=1e-5, atol=tol, err_msg=key)


def test_scale_is_the_rms_of_the_valid_steps_of_each_target():
    past = np.zeros((2, 4, 3), "float32")
    past[0, :, 0] = [3.0, -4.0, 0.0, 0.0]
    past[0, :, 1] = [1.0, 1.0, 1.0, 1.0]
    past[1, :, 0] = [6.0, 8.0, 1e6, -1e6]  # garbage after the valid steps
    past[1, :, 1] = [2.0, 2.0, np.nan, np.nan]
    past[..., 2] = 1e3  # a covariate: never part of the scale
    mask = np.array([[True, True, True, True], [True, True, False, False]])
    scale = np.asarray(WindowRMS(2)(past, past_mask=mask))
    np.testing.assert_allclose(scale, [[np.sqrt(25 / 4), 1.0], [np.sqrt(50), 2.0]], rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(WindowRMS(2)(past[:1])), [[np.sqrt(25 / 4), 1.0]], rtol=1e-6
    )


def test_ewma_scale_weighs_the_later_valid_steps_more():
    past = np.zeros((1, 4, 2), "float32")
    past[0, :, 0] = [4.0, 2.0, 1.0, 3.0]
    past[0, :, 1] = 1e3  # a covariate
    # Half-life 1: weights 1/8, 1/4, 1/2, 1 (oldest first), summing to 15/8.
    want = np.sqrt((16 / 8 + 4 / 4 + 1 / 2 + 9) / (15 / 8))
    scale = np.asarray(WindowRMS(1, halflife=1)(past))
    np.testing.assert_allclose(scale, [[want]], rtol=1e-6)
    # Half-life 2, a hole at step 1: the valid steps after step 0 are 2, so it weighs 1/2.
    mask = np.array([[True, False, True, True]])
    past[0, 1, 0] = np.nan  # garbage in the masked step
    want = np.sqrt((16 * 0.5 + 1 * 0.5**0.5 + 9) / (0.5 + 0.5**0.5 + 1))
    scale = np.asarray(WindowRMS(1, halflife=2)(past, past_mask=mask))
    np.testing.assert_allclose(scale, [[want]], rtol=1e-6)


def test_a_long_halflife_tends_to_the_plain_rms():
    past = np.random.default_rng(0).normal(size=(3, 8, 2)).astype("float32")
    plain = np.asarray(WindowRMS(2)(past))
    np.testing.assert_allclose(np.asarray(WindowRMS(2, halflife=1e6)(past)), plain, rtol=1e-5)
    assert np.abs(np.asarray(WindowRMS(2, halflife=1)(past)) - plain).max() > 1e-2


@pytest.mark.parametrize("halflife", [None, 1, 3])
def test_scale_of_a_window_with_holes_is_that_of_its_valid_steps(halflife):
    """Left, right or inner padding: only the valid steps, in order, decide the scale."""
    rng = np.random.default_rng(3)
    short = rng.normal(size=(1, 5, 2)).astype("float32")
    layouts = [
        [1, 1, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 1, 1],
        [0, 1, 1, 0, 1, 0, 1, 1],
    ]
    layer = WindowRMS(2, halflife=halflife)
    want = np.asarray(layer(short))
    for layout in layouts:
        mask = np.array([layout], bool)
        long = np.full((1, 8, 2), 1e4, "float32")  # loud garbage in the padded steps
        long[0, mask[0]] = short[0]
        got = np.asarray(layer(long, past_mask=mask))
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=str(layout))


def test_a_halflife_must_be_positive():
    with pytest.raises(ValueError, match=r"Received: halflife=0"):
        WindowRMS(1, halflife=0)


def test_divide_and_multiply_touch_only_the_targets():
    x = np.arange(1, 13, dtype="float32").reshape(1, 2, 6)  # (B, steps, F)
    scale = np.array([[2.0, 4.0]], "float32")  # (B, T)
    divided = np.asarray(DivideTargets(2)(x, scale))
    np.testing.assert_array_equal(divided[..., 2:], x[..., 2:])
    np.testing.assert_allclose(divided[..., :2], x[..., :2] / [2.0, 4.0])
    quantiles = np.ones((1, 3, 2, 5), "float32")  # (B, H, T, Q)
    back = np.asarray(MultiplyTargets()(quantiles, scale))
    np.testing.assert_array_equal(back[0, :, 0], 2.0)
    np.testing.assert_array_equal(back[0, :, 1], 4.0)


@pytest.mark.parametrize(
    "layer",
    [WindowRMS(3, epsilon=1e-3), WindowRMS(2, halflife=7), DivideTargets(2), MultiplyTargets()],
)
def test_layers_round_trip_their_config(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    if isinstance(layer, WindowRMS):
        past = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
        np.testing.assert_array_equal(np.asarray(clone(past)), np.asarray(layer(past)))


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("name", ["seq2seq-dynamic", "seq2seq-dynamic-ewma"])
def test_padded_masked_windows_match_the_unpadded_ones(padding, name):
    """Garbage in masked steps must not move the scale (nor the forecast)."""
    model = _model(name)
    short = make_inputs(model, batch=3, seed=7)  # (3, 6, F), every step valid
    pad = np.full((3, 4, short["past"].shape[-1]), 50.0, "float32")  # loud garbage
    parts = [short["past"], pad] if padding == "right" else [pad, short["past"]]
    valid = [np.ones((3, 6), bool), np.zeros((3, 4), bool)]
    long = {
        **short,
        "past": np.concatenate(parts, axis=1),
        "mask": np.concatenate(valid if padding == "right" else valid[::-1], axis=1),
    }
    assert max_abs_diff(model(long), model(short)) < 1e-5
    scale = WindowRMS(2, halflife=model.spec.target_scale_halflife)
    np.testing.assert_allclose(
        np.asarray(scale(long["past"], past_mask=long["mask"])),
        np.asarray(scale(short["past"])),
        rtol=1e-6,
    )


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_an_all_zero_target_window_gives_finite_forecasts(name):
    model = _model(name)
    x = make_inputs(model, batch=2)
    x["past"][..., : model.sizes["n_targets"]] = 0.0
    out = as_numpy(model(x))
    for value in out.values() if isinstance(out, dict) else [out]:
        assert np.isfinite(value).all()
    layer = WindowRMS(model.sizes["n_targets"], halflife=model.spec.target_scale_halflife)
    np.testing.assert_allclose(np.asarray(layer(x["past"])), EPSILON, rtol=1e-6)
    if "mask" in x:  # no valid step at all: still the floor
        scale = layer(x["past"], past_mask=np.zeros_like(x["mask"]))
        np.testing.assert_allclose(np.asarray(scale), EPSILON, rtol=1e-6)


@pytest.mark.parametrize("name", ["seq2seq-dynamic", "seq2seq-dynamic-ewma"])
def test_teacher_forcing_divides_the_true_targets_by_the_same_scale(name):
    """Fed its own forecasts (data units) as the true targets, training=True must agree."""
    model = _model(name)
    x = make_inputs(model, batch=3, seed=11)
    x["past"][..., :2] *= 40.0  # far from scale 1, so a missing division would show
    free = as_numpy(model(x))
    forced = model({**x, TEACHER_INPUT: free["forecast"]}, training=True)
    assert max_abs_diff(forced, free) < 1e-4 * float(np.abs(free["quantiles"]).max())


def test_default_builds_no_scaling_layers():
    names = {layer.name for layer in tiny_model().network.layers}
    assert not names & {"target_scale", "scaled_past", "forecast_units", "quantile_units"}
    for name in ("direct-quantiles", "direct-quantiles-ewma"):
        layers = {layer.name: layer for layer in _model(name).network.layers}
        assert {"target_scale", "scaled_past", "forecast_units", "quantile_units"} <= set(layers)
        assert layers["target_scale"].halflife == _model(name).spec.target_scale_halflife


def test_spec_option_round_trips_and_defaults_to_none():
    spec = ModelSpec(target_scaling="window_rms", quantiles=QUANTILES)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_dict(yaml.safe_load(spec.to_yaml())["model"]) == spec
    assert "target_scaling: window_rms" in spec.to_yaml()
    # Specs logged before the option existed load unchanged.
    old = {
        k: v
        for k, v in ModelSpec().to_dict().items()
        if k not in ("target_scaling", "target_scale_halflife")
    }
    assert ModelSpec.from_dict(old).target_scaling == "none"
    assert ModelSpec.from_dict(old).target_scale_halflife is None


def test_ewma_option_round_trips_with_its_halflife_and_defaults_it_to_10():
    spec = ModelSpec(target_scaling="ewma_rms", target_scale_halflife=5)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_dict(yaml.safe_load(spec.to_yaml())["model"]) == spec
    assert "target_scale_halflife: 5" in spec.to_yaml()
    default = ModelSpec(target_scaling="ewma_rms")
    assert default.target_scale_halflife == 10
    assert ModelSpec.from_dict(default.to_dict()) == default


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "10"])
def test_a_bad_halflife_is_a_config_error_naming_the_key(value):
    with pytest.raises(ConfigError) as err:
        ModelSpec(target_scaling="ewma_rms", target_scale_halflife=value)
    assert str(err.value) == (
        "`target_scale_halflife` must be an integer >= 1 (steps). "
        f"Received: target_scale_halflife={value!r}"
    )


@pytest.mark.parametrize("scaling", ["none", "window_rms"])
def test_a_halflife_without_ewma_rms_is_a_config_error(scaling):
    """Refused rather than ignored: a config that sets it expects it to act."""
    with pytest.raises(ConfigError) as err:
        ModelSpec(target_scaling=scaling, target_scale_halflife=10)
    assert str(err.value) == (
        "`target_scale_halflife` applies only with target_scaling='ewma_rms'; leave it unset "
        f"otherwise. Received: target_scale_halflife=10, target_scaling={scaling!r}"
    )


@pytest.mark.parametrize(
    ("value", "hint"),
    [("window_rsm", " Did you mean 'window_rms'?"), (None, " Did you mean 'none'?"), ("rms", "")],
)
def test_unknown_target_scaling_is_a_config_error_naming_the_key(value, hint):
    with pytest.raises(ConfigError) as err:
        ModelSpec(target_scaling=value)
    assert str(err.value) == (
        f"`target_scaling` must be one of ['none', 'window_rms', 'ewma_rms']. "
        f"Received: target_scaling={value!r}." + hint
    )


@pytest.mark.parametrize("scaling", ["window_rms", "ewma_rms"])
def test_streaming_refuses_a_scaled_model(scaling):
    with pytest.raises(ConfigError, match="target_scaling='none'.*Received: target_scaling="):
        to_streaming(tiny_model(target_scaling=scaling))
