"""statsforecast baselines: fitted on training rows only, forecast from the scored origins,
stopped at their time budget."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from statsforecast.models import MSTL, AutoTheta

from forecast.config import ForecastConfig
from forecast.data import load_source, prepare
from forecast.evaluation import classical
from forecast.evaluation.classical import (
    SeriesJob,
    make_model,
    mstl_seasons,
    quantile_levels,
    run_classical,
)
from forecast.evaluation.comparison import classical_windows, compare_classical
from forecast.evaluation.scoring import Forecasts, baseline_forecasts

H = 6
CONFIG = {
    "name": "classical",
    "data": {"dataset": "sunspots", "last_n": 240},
    "split": {"validation": 0.2, "test": 0.2},
    "window": {"lookback": 24, "horizon": H},
    "evaluation": {"season": 12, "classical": ["auto_theta", "mstl"], "classical_step": 3},
}
LEVELS = (0.1, 0.5, 0.9)


def _naive_forecasts(prepared) -> Forecasts:
    # A stand-in for the network: any forecasts of the right shape are scored the same way.
    point = baseline_forecasts(prepared, "test", ["naive"])["naive"]
    return Forecasts(
        point=point, quantiles=np.stack([point - 9, point, point + 9], -1), levels=LEVELS
    )


def _compare(source=None):
    config = ForecastConfig.from_dict(CONFIG)
    prepared = prepare(config, source)
    return prepared, compare_classical(
        prepared, "test", _naive_forecasts(prepared), config.evaluation
    )


@pytest.fixture(scope="module")
def compared():
    return _compare()


def _positions(y: np.ndarray, targets: np.ndarray) -> list[int]:
    """The origin of each window found from its targets alone: y[p + 1 : p + 1 + H] == them."""
    out = []
    for t in targets:
        hits = [p for p in range(len(y) - H) if np.allclose(y[p + 1 : p + 1 + H], t, rtol=1e-6)]
        assert len(hits) == 1
        out.append(hits[0])
    return out


def test_forecasts_equal_statsforecast_fitted_on_training_rows_and_run_from_each_origin(compared):
    prepared, comparison = compared
    y = load_source(ForecastConfig.from_dict(CONFIG).data).frame["value"].to_numpy(np.float64)
    validation_start = prepared.split.times[prepared.split.ranges.validation.start]
    n_train = int(
        (
            load_source(ForecastConfig.from_dict(CONFIG).data).frame["timestamp"] < validation_start
        ).sum()
    )
    index = classical_windows(prepared, "test", 3)
    origins = _positions(y, prepared.y_true("test")[index, :, 0])
    assert np.diff(origins).tolist() == [3] * (len(origins) - 1)  # every classical_step steps
    theta = AutoTheta(season_length=12).fit(y[:n_train])
    mstl = MSTL(season_length=[12]).fit(y[:n_train])
    run_theta, run_mstl = comparison.runs["auto_theta"], comparison.runs["mstl"]
    for i, p in enumerate(origins):
        direct = theta.forward(y=y[: p + 1], h=H, level=[80])
        np.testing.assert_allclose(run_theta.mean[0][i], direct["mean"], rtol=1e-10)
        np.testing.assert_allclose(run_theta.quantiles[0][i, :, 0], direct["lo-80"], rtol=1e-10)
        np.testing.assert_allclose(run_theta.quantiles[0][i, :, 2], direct["hi-80"], rtol=1e-10)
        np.testing.assert_allclose(
            run_mstl.mean[0][i], mstl.forward(y=y[: p + 1], h=H)["mean"], rtol=1e-10
        )
    # The comparison scores them on exactly those windows, next to the model.
    wide = comparison.wide()
    truth = prepared.y_true("test")[index, :, 0]
    mae = np.abs(truth - np.stack(run_theta.mean[0])).mean()
    assert wide.loc["auto_theta", "mae"] == pytest.approx(mae, rel=1e-5)
    assert {"model", "seasonal_naive", "auto_theta", "mstl"} <= set(wide.index)
    assert np.isfinite(wide.loc["auto_theta", ["coverage_80", "pinball_mean"]].to_numpy()).all()


def test_changing_test_rows_leaves_the_fit_alone(compared):
    prepared, comparison = compared
    source = load_source(ForecastConfig.from_dict(CONFIG).data)
    test_start = prepared.split.times[prepared.split.ranges.test.start]
    frame = source.frame.copy()
    later = frame["timestamp"] >= test_start
    rng = np.random.default_rng(0)
    frame.loc[later, "value"] = frame.loc[later, "value"] * rng.uniform(0.2, 3.0, later.sum()) + 50
    _, changed = _compare(replace(source, frame=frame))
    for name in ("auto_theta", "mstl"):
        before, after = comparison.runs[name], changed.runs[name]
        assert before.fitted == after.fitted
        # The first origin's history ends before the test rows: its forecast cannot move...
        np.testing.assert_allclose(before.mean[0][0], after.mean[0][0], rtol=1e-12)
        # ...later origins read the changed rows as history, as the served model would.
        assert not np.allclose(before.mean[0][-1], after.mean[0][-1])


def test_a_model_over_its_time_budget_is_stopped_and_named():
    y = np.sin(np.arange(400) * 2 * np.pi / 12) * 10 + np.arange(400) * 0.1 + 50
    job = SeriesJob(y=y, n_train=300, origins=np.arange(300, 394, 6))
    kwargs = {"horizon": 6, "season": 12, "seasons": (12,)}
    runs = run_classical(["auto_arima"], [job], timeout=0.05, **kwargs)
    assert runs["auto_arima"].mean is None and runs["auto_arima"].seconds < 5
    assert runs["auto_arima"].skipped.startswith(
        "did not finish within the time budget of 0.05 s (1 series, 16 origins;"
    )
    # Its worker was stopped; the next model gets a fresh one (not tested here: seconds).
    assert classical._WORKER is None


def test_seasons_come_from_the_frequency():
    assert mstl_seasons(48, "30min") == (48, 336)
    assert mstl_seasons(24, "h") == (24, 168)
    assert mstl_seasons(7, "D") == (7, 365)
    assert mstl_seasons(5, "B") == (5, 260)
    assert mstl_seasons(12, "MS") == (12,)
    assert mstl_seasons(4, None) == (4,)


def test_models_that_cannot_run_say_why():
    with pytest.raises(
        ValueError,
        match=r"MSTL needs two full periods of a season in the training rows \(seasons \[48, 336\], 90 training rows\)",
    ):
        make_model("mstl", season=48, seasons=(48, 336), n_train=90)
    with pytest.raises(
        ValueError, match="AutoARIMA's seasonal search does not finish with a season of 48 steps"
    ):
        make_model("auto_arima", season=48, seasons=(48,), n_train=5000)
    assert make_model("mstl", season=48, seasons=(48, 336), n_train=200).season_length == [48]


def test_quantiles_map_to_central_interval_levels():
    assert quantile_levels([0.1, 0.5, 0.9]) == [80]
    assert quantile_levels([0.05, 0.25, 0.5, 0.75, 0.95]) == [50, 90]
    assert quantile_levels([0.025, 0.975]) == [95]


def test_a_series_named_all_keeps_its_own_scores_apart_from_the_overall_ones():
    config = ForecastConfig.from_dict(
        CONFIG
        | {
            "data": {"dataset": "eustockmarkets", "last_n": 200},
            "evaluation": {"season": 5, "classical": ["auto_theta"], "classical_step": 3},
        }
    )
    source = load_source(config.data)
    id_col = source.schema.id_col
    renamed = source.frame.assign(**{id_col: source.frame[id_col].replace({"DAX": "all"})})
    prepared = prepare(config, replace(source, frame=renamed))
    comparison = compare_classical(prepared, "test", _naive_forecasts(prepared), config.evaluation)
    index = classical_windows(prepared, "test", 3)
    w = prepared.windows["test"]
    error = np.abs(prepared.y_true("test")[index] - _naive_forecasts(prepared).point[index])
    mine = np.asarray(w.series_ids)[w.series[index]] == "all"
    assert comparison.wide().loc["model", "mae"] == pytest.approx(error.mean(), rel=1e-6)
    assert comparison.wide("all").loc["model", "mae"] == pytest.approx(error[mine].mean(), rel=1e-6)
    assert comparison.wide("SMI").shape == comparison.wide().shape
    metrics = comparison.metrics("test")
    assert metrics["test_classical_mase"] == pytest.approx(comparison.wide().loc["model", "mase"])
    assert metrics["test_classical_mase.all"] == pytest.approx(
        comparison.wide("all").loc["model", "mase"]
    )
