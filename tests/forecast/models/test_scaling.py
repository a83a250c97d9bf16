"""Per-window target scaling: scale equivariance, masks, the floor, the spec option."""

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
}
_MODELS: dict[str, keras.Model] = {}


def _model(name: str) -> keras.Model:
    """A randomized scaled model per variant, built once (hypothesis reruns the test body)."""
    if name not in _MODELS:
        _MODELS[name] = tiny_model(target_scaling="window_rms", **VARIANTS[name])
    return _MODELS[name]


def _with_targets_times(x: dict[str, np.ndarray], c: float, n_targets: int) -> dict:
    past = x["past"].copy()
    past[..., :n_targets] *= c
    return {**x, "past": past}


def _right_padded_mask(lengths: list[int], lookback: int) -> np.ndarray:
    return np.arange(lookback)[None, :] < np.asarray(lengths)[:, None]


@settings(max_examples=25)
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


@pytest.mark.parametrize("layer", [WindowRMS(3, epsilon=1e-3), DivideTargets(2), MultiplyTargets()])
def test_layers_round_trip_their_config(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("padding", ["right", "left"])
def test_padded_masked_windows_match_the_unpadded_ones(padding):
    """Garbage in masked steps must not move the scale (nor the forecast)."""
    model = _model("seq2seq-dynamic")
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
    scale = WindowRMS(2)
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
    scale = np.asarray(WindowRMS(model.sizes["n_targets"])(x["past"]))
    np.testing.assert_allclose(scale, EPSILON, rtol=1e-6)


def test_teacher_forcing_divides_the_true_targets_by_the_same_scale():
    """Fed its own forecasts (data units) as the true targets, training=True must agree."""
    model = _model("seq2seq-dynamic")
    x = make_inputs(model, batch=3, seed=11)
    x["past"][..., :2] *= 40.0  # far from scale 1, so a missing division would show
    free = as_numpy(model(x))
    forced = model({**x, TEACHER_INPUT: free["forecast"]}, training=True)
    assert max_abs_diff(forced, free) < 1e-4 * float(np.abs(free["quantiles"]).max())


def test_default_builds_no_scaling_layers():
    names = {layer.name for layer in tiny_model().network.layers}
    assert not names & {"target_scale", "scaled_past", "forecast_units", "quantile_units"}
    scaled = {layer.name for layer in _model("direct-quantiles").network.layers}
    assert {"target_scale", "scaled_past", "forecast_units", "quantile_units"} <= scaled


def test_spec_option_round_trips_and_defaults_to_none():
    spec = ModelSpec(target_scaling="window_rms", quantiles=QUANTILES)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_dict(yaml.safe_load(spec.to_yaml())["model"]) == spec
    assert "target_scaling: window_rms" in spec.to_yaml()
    # Specs logged before the option existed load unchanged.
    old = {k: v for k, v in ModelSpec().to_dict().items() if k != "target_scaling"}
    assert ModelSpec.from_dict(old).target_scaling == "none"


@pytest.mark.parametrize(
    ("value", "hint"),
    [("window_rsm", " Did you mean 'window_rms'?"), (None, " Did you mean 'none'?"), ("rms", "")],
)
def test_unknown_target_scaling_is_a_config_error_naming_the_key(value, hint):
    with pytest.raises(ConfigError) as err:
        ModelSpec(target_scaling=value)
    assert str(err.value) == (
        f"`target_scaling` must be one of ['none', 'window_rms']. "
        f"Received: target_scaling={value!r}." + hint
    )


def test_streaming_refuses_a_scaled_model():
    with pytest.raises(ConfigError, match="target_scaling='none'.*Received: target_scaling="):
        to_streaming(tiny_model(target_scaling="window_rms"))
