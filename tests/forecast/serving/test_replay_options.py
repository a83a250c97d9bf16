"""Serving replays the §2 options (centring, log / Box-Cox, MSTL deseasonalization, residual
head, K-seed ensembles) from the saved model and pipeline state: served forecasts equal the
scored ones to 1e-5."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from forecast.config import ForecastConfig
from forecast.data import load_source, prepare
from forecast.evaluation.scoring import baseline_forecasts, model_forecasts, predict_windows
from forecast.evaluation.seeds import seed_scores, spread_line, spread_metrics
from forecast.models.ensemble import EnsembleModel
from forecast.serving.forecaster import Forecaster
from forecast.training.fitting import train_model
from pipelines import datasets

H = 3
RAW = datasets.load("eustockmarkets").frame  # prices: positive targets
SERIES = ("CAC", "DAX", "FTSE", "SMI")
OPTIONS = {
    "centre_last_boxcox_mstl_residual_ensemble": {
        "target_centre": "last",
        "target_scaling": "window_rms",
        "target_transform": "boxcox",
        "residual": "seasonal_naive",
        "ensemble": 2,
        "head_layers": [8],
        "quantiles": [0.1, 0.5, 0.9],
        "deseasonalize": "mstl",
    },
    "centre_mean_log": {"target_centre": "mean", "target_transform": "log"},
}


def _config(options: dict) -> ForecastConfig:
    return ForecastConfig.from_dict(
        {
            "name": "replay",
            "data": {"dataset": "eustockmarkets", "last_n": 160},
            "window": {"lookback": 12, "horizon": H},
            "model": {"cell": "rnn", "units": [8], **options},
            "training": {"epochs": 1, "verbose": 0},
            "evaluation": {"baselines": ["naive"], "season": 5},
        }
    )


@pytest.fixture(scope="module", params=sorted(OPTIONS))
def trained(request, tmp_path_factory):
    config = _config(OPTIONS[request.param])
    prepared = prepare(config)
    fitted = train_model(config, prepared)
    folder = tmp_path_factory.mktemp(request.param)
    fitted.forecaster.save(folder)
    return config, prepared, fitted, Forecaster.load(folder)


@pytest.mark.slow
def test_served_forecasts_equal_scored_ones_after_save_and_load(trained):
    config, prepared, fitted, loaded = trained
    if config.model.ensemble > 1:
        assert isinstance(loaded.model, EnsembleModel) and len(loaded.model.members) == 2
    scored = model_forecasts(fitted.model, prepared, "test")
    windows = prepared.windows["test"]
    ids = np.asarray(windows.series_ids, dtype=object)[windows.series]
    frame = prepared.frame
    for s in ("CAC", "SMI"):
        mine = np.flatnonzero(ids == s)
        times = frame.loc[frame["series"] == s, "timestamp"].to_numpy()
        for back in (0, len(mine) - 1):
            # The `back`-th window from the end of a series has its origin H + back rows from it.
            i, o = mine[len(mine) - 1 - back], len(times) - H - 1 - back
            history = RAW[(RAW["series"] == s) & (RAW["timestamp"] <= times[o])].tail(40)
            _check_replay(loaded, history, times[o + 1 : o + 1 + H], scored, i)


def _check_replay(loaded, history, future_times, scored, i):
    got = loaded.predict(history.reset_index(drop=True))
    np.testing.assert_array_equal(got["timestamp"].to_numpy(), future_times)
    np.testing.assert_allclose(got["forecast"], scored.point[i, :, 0], rtol=1e-5)
    if scored.quantiles is not None:
        for j, col in enumerate(("p10", "p50", "p90")):
            np.testing.assert_allclose(got[col], scored.quantiles[i, :, 0, j], rtol=1e-5)


@pytest.mark.slow
def test_options_are_in_the_saved_state_and_the_forecasts_are_in_price_units(trained):
    config, prepared, _, loaded = trained
    assert loaded.state.transform.method == config.model.target_transform
    lam = loaded.state.transform.lambda_
    assert lam.shape == (len(SERIES), 1)
    if config.model.target_transform == "log":
        assert (lam == 0).all()
    profile = loaded.state.deseason
    assert profile.method == config.model.deseasonalize
    if profile.active:  # a week of business days; the year (260) has too few rows
        assert profile.periods_ == (5,) and profile.cycles_[5].shape == (len(SERIES), 1, 5)
        np.testing.assert_array_equal(profile.cycles_[5], prepared.deseason.cycles_[5])
    history = RAW[RAW["series"] == "DAX"].tail(40).reset_index(drop=True)
    got = loaded.predict(history)
    last = float(history["value"].iloc[-1])
    # An untrained-ish net around the window's level: forecasts near the last price.
    assert np.all(np.abs(got["forecast"].to_numpy() / last - 1) < 0.5)
    negative = history.assign(value=history["value"].where(history.index != 30, -1.0))
    with pytest.raises(ValueError, match=r"needs positive targets, but column 'value' holds -1"):
        loaded.predict(negative)


@pytest.mark.slow
def test_ensemble_forecasts_are_the_median_of_the_seeds_and_their_spread_is_reported(trained):
    config, prepared, fitted, _ = trained
    if config.model.ensemble == 1:
        assert fitted.members == () and fitted.member_results == ()
        return
    windows = prepared.windows["test"]
    # The median is taken in the model's units, before the inverse Box-Cox (for an even K
    # it is a mean of two, which the non-linear inverse does not commute with).
    _, ensemble = predict_windows(fitted.model, windows)
    median = np.median([predict_windows(m, windows)[1] for m in fitted.members], axis=0)
    np.testing.assert_allclose(ensemble, median, rtol=1e-5, atol=1e-6)
    each = [model_forecasts(m, prepared, "test") for m in fitted.members]
    seeds = seed_scores(fitted.members, prepared, seed=config.training.seed)
    assert seeds["seed"].tolist() == [0, 0, 1, 1]
    assert seeds["part"].tolist() == ["validation", "test"] * 2
    y, scale = prepared.y_true("test"), prepared.scale_for(prepared.windows["test"])
    for k, f in enumerate(each):
        want = np.mean(np.abs(y - f.point) / scale[:, None, :])
        assert seeds.loc[2 * k + 1, "mase"] == pytest.approx(want, rel=1e-9)
    metrics = spread_metrics(seeds)
    test = seeds.loc[seeds["part"] == "test", "mase"]
    assert metrics["test_seed_mase_range"] == pytest.approx(test.max() - test.min())
    assert set(metrics) >= {"val_mase_seed0", "test_mase_seed1", "val_seed_mase_std"}
    line = spread_line(seeds, 0.5)
    assert line.startswith("Ensemble of 2 seeds: test MASE seed 0: ")
    assert line.endswith("the median of the seeds scores 0.500.")


@pytest.mark.slow
def test_deseasonalized_models_are_scored_against_the_same_baselines():
    """The windows hold the remainder, but the baselines still forecast the series: their
    forecasts are those of the same config without `deseasonalize`, and the profile is
    fitted on training rows only (test rows changed: the same profile)."""
    options = {"deseasonalize": "mstl", "target_transform": "log"}
    config = _config(options)
    plain = prepare(_config({"target_transform": "log"}))
    prepared = prepare(config)
    assert not np.allclose(prepared.windows["test"].target, plain.windows["test"].target)
    np.testing.assert_allclose(prepared.y_true("test"), plain.y_true("test"), rtol=1e-6)
    for name, got in baseline_forecasts(prepared, "test", ["naive", "seasonal_naive"]).items():
        np.testing.assert_allclose(got, baseline_forecasts(plain, "test", [name])[name], rtol=1e-5)
    first_test = prepared.split.times[prepared.split.ranges.test.start]
    source = load_source(config.data)
    f = source.frame
    late = f.assign(value=f["value"].where(f["timestamp"] < first_test, 1.0))
    shifted = prepare(config, replace(source, frame=late))
    assert not np.allclose(shifted.y_true("test"), prepared.y_true("test"))
    np.testing.assert_array_equal(shifted.deseason.cycles_[5], prepared.deseason.cycles_[5])
