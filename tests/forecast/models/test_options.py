"""The §2 model options: centring (RevIN-style), residual heads (seasonal naive and the
Holt-Winters filter), head depth, K-seed ensembles: each one's defining property on real
Keras computations."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.models.ensemble import EnsembleModel
from forecast.models.residual import ExpSmoothingBase, SeasonalNaiveBase
from forecast.models.scaling import WindowCentre
from tests.forecast.models.util import as_numpy, make_inputs, max_abs_diff, tiny_model

QUANTILES = (0.1, 0.5, 0.9)
_MODELS: dict[str, keras.Model] = {}
VARIANTS = {
    "last-rms-quantiles": {
        "target_centre": "last",
        "target_scaling": "window_rms",
        "quantiles": QUANTILES,
    },
    "mean-dynamic": {"target_centre": "mean", "mode": "dynamic", "cell": "rnn"},
    "last-seq2seq": {"target_centre": "last", "head": "seq2seq", "n_targets": 2},
    "mean-residual-head": {
        "target_centre": "mean",
        "residual": "seasonal_naive",
        "residual_season": 2,
        "head_layers": (4, 4),
    },
    "last-rms-holt-winters": {
        "target_centre": "last",
        "target_scaling": "window_rms",
        "residual": "exp_smoothing",
        "residual_season": 2,
        "quantiles": QUANTILES,
    },
}


def _model(name: str) -> keras.Model:
    if name not in _MODELS:
        _MODELS[name] = tiny_model(**VARIANTS[name])
    return _MODELS[name]


@pytest.mark.parametrize("name", sorted(VARIANTS))
@settings(max_examples=12)  # each example runs the model twice
@given(shift=st.floats(-50, 50), seed=st.integers(0, 2**16))
def test_centred_models_are_shift_equivariant(name, shift, seed):
    """A window moved up by c gets its forecast and every quantile moved up by c."""
    model = _model(name)
    x = make_inputs(model, seed=seed)
    t = model.sizes["n_targets"]
    moved = dict(x, past=x["past"].copy())
    moved["past"][..., :t] += np.float32(shift)
    a, b = as_numpy(model.predict_on_batch(x)), as_numpy(model.predict_on_batch(moved))
    if isinstance(a, dict):
        for key in a:
            np.testing.assert_allclose(
                b[key], a[key] + np.float32(shift), atol=2e-3 + 1e-5 * abs(shift)
            )
    else:
        np.testing.assert_allclose(b, a + np.float32(shift), atol=2e-3 + 1e-5 * abs(shift))


def test_mean_centre_ignores_padded_steps_whatever_they_hold():
    past = np.array([[[1.0], [3.0], [1e6]], [[np.nan], [2.0], [4.0]]], "float32")
    mask = np.array([[True, True, False], [False, True, True]])
    mean = np.asarray(WindowCentre(1, "mean")(past, past_mask=mask))
    last = np.asarray(WindowCentre(1, "last")(past, past_mask=mask))
    np.testing.assert_allclose(mean[:, 0], [2.0, 3.0])
    np.testing.assert_allclose(last[:, 0], [3.0, 4.0])


def test_centred_dynamic_model_gives_a_padded_window_the_unpadded_forecast():
    model = _model("mean-dynamic")
    x = make_inputs(model, batch=2, lookback=6, seed=3)
    padded = dict(x, past=np.concatenate([x["past"], np.full((2, 3, 3), 7.0, "float32")], 1))
    padded["mask"] = np.concatenate([x["mask"], np.zeros((2, 3), bool)], axis=1)
    assert max_abs_diff(model.predict_on_batch(x), model.predict_on_batch(padded)) < 1e-5


@settings(max_examples=25)
@given(season=st.integers(1, 5), horizon=st.integers(1, 9), pad=st.integers(0, 3))
def test_seasonal_naive_base_repeats_the_last_valid_season(season, horizon, pad):
    rng = np.random.default_rng(season * 10 + horizon)
    valid = 6
    y = rng.normal(size=(2, valid, 1)).astype("float32")
    past = np.concatenate([y, np.full((2, pad, 1), 99.0, "float32")], axis=1)
    mask = np.concatenate([np.ones((2, valid), bool), np.zeros((2, pad), bool)], axis=1)
    got = np.asarray(SeasonalNaiveBase(season, horizon, 1)(past, past_mask=mask))
    want = np.stack([y[:, valid - season + k % season, 0] for k in range(horizon)], axis=1)
    np.testing.assert_allclose(got[..., 0], want)


def test_residual_head_with_a_zero_correction_is_exactly_seasonal_naive():
    model = tiny_model(
        residual="seasonal_naive",
        residual_season=2,
        target_centre="last",
        target_scaling="window_rms",
        quantiles=QUANTILES,
        horizon=5,
    )
    out = model.network.get_layer("direct")
    out.set_weights([np.zeros_like(w) for w in out.get_weights()])
    x = make_inputs(model, seed=4)
    got = as_numpy(model.predict_on_batch(x))
    y = x["past"][:, :, 0]
    want = np.stack([y[:, 6 - 2 + k % 2] for k in range(5)], axis=1)
    np.testing.assert_allclose(got["forecast"][..., 0], want, rtol=1e-5, atol=1e-5)
    spread = got["quantiles"][..., 0, 2] - got["quantiles"][..., 0, 0]
    assert (spread > 0).all()  # the quantiles still fan out around seasonal naive


def _holt_winters(y: np.ndarray, season: int, horizon: int, par: dict) -> np.ndarray:
    """ETS(A,Ad,A) by the textbook recursion, one float64 series: the layer's reference."""
    a, b, g, phi = (float(par[k]) for k in ("alpha", "beta", "gamma", "phi"))
    level = y[:season].mean()
    trend = (y[season : 2 * season].mean() - level) / season if len(y) >= 2 * season else 0.0
    seasonal = list(y[:season] - level) if season > 1 else [0.0]
    for t in range(season, len(y)):
        j = t % season if season > 1 else 0
        err = y[t] - (level + phi * trend + seasonal[j])
        level, trend = level + phi * trend + a * err, phi * trend + b * err
        if season > 1:
            seasonal[j] += g * err
    out = []
    for k in range(1, horizon + 1):
        damped = sum(phi**i for i in range(1, k + 1))
        out.append(level + damped * trend + seasonal[(len(y) - 1 + k) % season])
    return np.array(out)


@settings(max_examples=25, deadline=None)
@given(
    season=st.integers(1, 5),
    extra=st.integers(0, 9),
    horizon=st.integers(1, 8),
    pad=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_holt_winters_base_is_the_ets_recursion_over_the_valid_steps(
    season, extra, horizon, pad, seed
):
    """Left-padded row 0, right-padded row 1, pads full of garbage: both forecast what the
    recursion does on the valid steps alone, with the layer's (random) smoothing."""
    rng = np.random.default_rng(seed)
    n = season + extra
    y = rng.normal(size=(2, n)).astype("float32")
    past = np.full((2, n + pad, 1), 1e3, "float32")
    mask = np.zeros((2, n + pad), bool)
    past[0, pad:, 0], mask[0, pad:] = y[0], True
    past[1, :n, 0], mask[1, :n] = y[1], True
    layer = ExpSmoothingBase(season, horizon, 1)
    layer.build(past.shape)
    layer.logits.assign(rng.normal(size=(4, 1)).astype("float32"))
    got = np.asarray(layer(past, past_mask=mask))[..., 0]
    par = {k: np.asarray(v)[0] for k, v in layer.smoothing().items()}
    assert 0 < par["beta"] < par["alpha"] < 1 and 0 < par["gamma"] < 1 - par["alpha"]
    assert 0.8 < par["phi"] < 1
    for row in range(2):
        want = _holt_winters(y[row].astype(np.float64), season, horizon, par)
        np.testing.assert_allclose(got[row], want, rtol=1e-4, atol=1e-4)


def test_holt_winters_over_exactly_one_season_is_seasonal_naive():
    y = np.random.default_rng(7).normal(size=(3, 4, 1)).astype("float32")
    hw = np.asarray(ExpSmoothingBase(4, 9, 1)(y))
    naive = np.asarray(SeasonalNaiveBase(4, 9, 1)(y))
    np.testing.assert_allclose(hw, naive, atol=1e-6)


def test_holt_winters_head_with_a_zero_correction_forecasts_holt_winters_in_data_units():
    """The filter runs on the centred and scaled window; undone on the way out it is the
    filter on the window as given (it is linear), whatever the window's level and scale."""
    model = _model("last-rms-holt-winters")
    out = model.network.get_layer("direct")
    saved = out.get_weights()
    out.set_weights([np.zeros_like(w) for w in saved])
    try:
        x = make_inputs(model, seed=6)
        x["past"][..., 0] = 40.0 + 8.0 * x["past"][..., 0]
        got = as_numpy(model.predict_on_batch(x))
    finally:
        out.set_weights(saved)
    layer = model.network.get_layer("exp_smoothing")
    par = {k: np.asarray(v)[0] for k, v in layer.smoothing().items()}
    for row in range(len(x["past"])):
        want = _holt_winters(x["past"][row, :, 0].astype(np.float64), 2, 3, par)
        np.testing.assert_allclose(got["forecast"][row, :, 0], want, rtol=1e-4, atol=1e-3)


def test_holt_winters_smoothing_is_trained_and_round_trips(tmp_path):
    model = tiny_model(residual="exp_smoothing", residual_season=2, seed=3)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mae")
    x = make_inputs(model, batch=16, seed=8)
    y = np.random.default_rng(9).normal(size=(16, 3, 1)).astype("float32")
    before = model.network.get_layer("exp_smoothing").get_weights()[0].copy()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    after = model.network.get_layer("exp_smoothing").get_weights()[0]
    assert np.abs(after - before).min() > 0  # every smoothing parameter moved
    model.save(tmp_path / "hw.keras")
    back = keras.saving.load_model(tmp_path / "hw.keras", compile=False)
    assert max_abs_diff(back.predict_on_batch(x), model.predict_on_batch(x)) < 1e-6


def test_head_layers_are_dense_relu_layers_of_the_given_widths():
    model = _model("mean-residual-head")
    layers = [model.network.get_layer(f"head_{i}") for i in range(2)]
    assert [layer.units for layer in layers] == [4, 4]
    assert all(layer.activation.__name__ == "relu" for layer in layers)


def test_ensemble_is_the_median_of_its_members_per_quantile_and_round_trips(tmp_path):
    members = [tiny_model(seed=k, cell="rnn", quantiles=QUANTILES) for k in range(3)]
    ensemble = EnsembleModel(members)
    x = make_inputs(members[0], batch=4, seed=5)
    each = [as_numpy(m.predict_on_batch(x)) for m in members]
    got = as_numpy(ensemble.predict_on_batch(x))
    for key in ("forecast", "quantiles"):
        np.testing.assert_allclose(got[key], np.median([e[key] for e in each], axis=0), rtol=1e-6)
    assert (np.diff(got["quantiles"], axis=-1) > 0).all()
    assert ensemble.spec.quantiles == QUANTILES
    ensemble.save(tmp_path / "e.keras")
    back = keras.saving.load_model(tmp_path / "e.keras", compile=False)
    assert isinstance(back, EnsembleModel) and len(back.members) == 3
    assert max_abs_diff(back.predict_on_batch(x), got) < 1e-6
