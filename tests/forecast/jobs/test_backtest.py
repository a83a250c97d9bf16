"""Rolling-origin backtests: where the folds fall, and what one real backtest logs per fold."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecast.config import ForecastConfig
from forecast.data import featurize, load_source
from forecast.jobs.backtest import fold_splits, run_backtest
from pipelines.errors import ConfigError

H, TEST, VAL = 3, 6, 6
SMALL = {
    "name": "backtest_sunspots",
    "data": {"dataset": "sunspots", "last_n": 160},
    "window": {"lookback": 12, "horizon": H},
    "model": {"units": [4]},
    "training": {"epochs": 1, "verbose": 0},
    # The two quickest classical models: the classical path is tested, in a second or two.
    "evaluation": {"season": 6, "baselines": ["naive"], "classical": ["auto_theta", "mstl"]},
    "backtest": {"folds": 3, "test_steps": TEST, "validation_steps": VAL, "min_train": 60},
}
TRIM = 10  # rows cut from the end of the data handed to `run_backtest` as its `source`


def _config(**backtest) -> ForecastConfig:
    return ForecastConfig.from_dict({**SMALL, "backtest": {**SMALL["backtest"], **backtest}})


def _featurized(config: ForecastConfig, trim: int = 0):
    source = load_source(config.data)
    frame = source.frame.iloc[: len(source.frame) - trim]
    frame, schema, _ = featurize(frame, source.schema, source.policy, config.data.features)
    return frame, schema


# ----------------------------------------------------------------------------- fold_splits


@pytest.mark.parametrize("step", [None, 2, 5])
def test_origins_advance_by_step_and_the_last_test_part_ends_the_data(step):
    config = _config(folds=4, step=step)
    frame, schema = _featurized(config)
    splits = fold_splits(frame, schema, config)
    assert len(splits) == 4
    origins = [s.ranges.test.start for s in splits]
    assert np.diff(origins).tolist() == [step or TEST] * 3
    last = splits[-1]
    assert last.ranges.test.stop == len(last.times)
    assert last.times[-1] == frame["timestamp"].max()


@pytest.mark.parametrize("window", ["expanding", "sliding"])
def test_each_fold_trains_on_the_past_validates_just_before_its_origin_and_tests_after(window):
    config = _config(folds=3, step=4, window=window)
    frame, schema = _featurized(config)
    for split in fold_splits(frame, schema, config):
        r = split.ranges
        origin = r.test.start
        assert len(r.test) == TEST and len(r.validation) == VAL
        assert r.validation == range(origin - VAL, origin)
        assert r.train.stop == r.validation.start  # contiguous, no gap, no overlap
        if window == "sliding":
            assert len(r.train) == 60
        else:
            assert r.train.start == 0
        train, test = split.train["timestamp"], split.test["timestamp"]
        assert train.max() < split.validation["timestamp"].min()
        assert split.validation["timestamp"].max() < test.min()
        assert len(test) == TEST and not set(train) & set(test)


def test_unset_sizes_default_to_four_horizons_and_a_third_of_the_data():
    config = ForecastConfig.from_dict({**SMALL, "backtest": {"folds": 2}})
    frame, schema = _featurized(config)
    splits = fold_splits(frame, schema, config)
    for split in splits:
        assert len(split.ranges.test) == len(split.ranges.validation) == 4 * H
    assert splits[1].ranges.test.start - splits[0].ranges.test.start == 4 * H
    assert len(splits[0].ranges.train) >= len(frame) // 3


def test_a_test_part_shorter_than_a_horizon_is_refused():
    config = _config(test_steps=2)
    frame, schema = _featurized(config)
    with pytest.raises(ConfigError) as err:
        fold_splits(frame, schema, config)
    assert str(err.value) == (
        "`backtest.test_steps` (2) and `backtest.validation_steps` (6) must each hold at least "
        "one horizon (3 steps)."
    )


def test_folds_that_do_not_fit_say_how_many_steps_they_need():
    config = _config(folds=20)
    frame, schema = _featurized(config)
    need = 60 + VAL + TEST + 19 * TEST
    with pytest.raises(
        ConfigError,
        match=rf"^20 folds with horizon={TEST}, step={TEST} and min_train={60 + VAL} need at "
        rf"least {need} steps; the data has {len(frame)}\.$",
    ):
        fold_splits(frame, schema, config)


def test_series_share_one_calendar():
    config = ForecastConfig.from_dict(
        {**SMALL, "data": {"dataset": "eustockmarkets", "last_n": 120}}
    )
    frame, schema = _featurized(config)
    for split in fold_splits(frame, schema, config):
        assert sorted(split.test["series"].unique()) == ["CAC", "DAX", "FTSE", "SMI"]
        assert split.test.groupby("series").size().tolist() == [TEST] * 4


# ----------------------------------------------------------------------------- run_backtest


@pytest.fixture(scope="module")
def backtest(tmp_path_factory):
    """One real two-fold backtest (the config asks for 3) on data handed in as `source`."""
    root = tmp_path_factory.mktemp("backtest")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = ForecastConfig.from_dict({**SMALL, "tracking": {"tracking_uri": uri}})
    source = load_source(config.data)
    source = replace(source, frame=source.frame.iloc[:-TRIM].reset_index(drop=True))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        result = run_backtest(config, folds=2, source=source)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(SMALL["name"])
    runs = client.search_runs([experiment.experiment_id])
    return config, result, client, runs, root


@pytest.mark.slow
def test_each_fold_is_a_nested_run_at_the_origin_of_its_split(backtest):
    config, result, _, runs, _ = backtest
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.run_id]
    assert len(runs) == 3 and len(children) == 2
    assert {r.info.status for r in runs} == {"FINISHED"}
    frame, schema = _featurized(config, trim=TRIM)
    splits = fold_splits(frame, schema, replace(config, backtest=replace(config.backtest, folds=2)))
    # Origins of the data handed in (the configured data runs TRIM steps further).
    want = [str(pd.Timestamp(s.times[s.ranges.test.start])) for s in splits]
    got = sorted((r.data.params["fold"], r.data.params["origin"]) for r in children)
    assert got == [("0", want[0]), ("1", want[1])]
    assert result.folds.drop_duplicates("fold")["origin"].tolist() == want


@pytest.mark.slow
def test_the_fold_table_has_one_row_per_fold_model_and_metric(backtest):
    _, result, _, _, _ = backtest
    folds = result.folds
    assert list(folds.columns) == ["fold", "origin", "model", "metric", "value"]
    assert not folds.duplicated(["fold", "model", "metric"]).any()
    per_fold = [set(zip(g["model"], g["metric"], strict=True)) for _, g in folds.groupby("fold")]
    assert len(per_fold) == 2 and per_fold[0] == per_fold[1]
    assert {m for m, _ in per_fold[0]} == {"model", "naive"}
    assert {"mae", "rmse", "mase"} <= {k for _, k in per_fold[0]}
    assert np.isfinite(folds["value"]).all()


@pytest.mark.slow
def test_each_fold_scores_the_naive_baseline_on_its_own_test_part(backtest):
    config, result, _, _, _ = backtest
    frame, schema = _featurized(config, trim=TRIM)
    splits = fold_splits(frame, schema, replace(config, backtest=replace(config.backtest, folds=2)))
    values = frame["value"].to_numpy(np.float64)
    for k, split in enumerate(splits):
        start = split.ranges.test.start
        origins = np.arange(start - 1, start + TEST - H)  # horizons inside the test part
        steps = np.arange(1, H + 1)
        mae = np.mean(np.abs(values[origins[:, None] + steps] - values[origins][:, None]))
        folds = result.folds.set_index(["fold", "model", "metric"])["value"]
        assert folds[(k, "naive", "mae")] == pytest.approx(mae, rel=1e-6)


@pytest.mark.slow
def test_fold_and_summary_metrics_are_logged(backtest):
    _, result, client, runs, root = backtest
    children = {
        int(r.data.params["fold"]): r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == result.run_id
    }
    folds = result.folds.set_index(["fold", "model", "metric"])["value"]
    for k, run in children.items():
        assert run.data.metrics["test_mae"] == pytest.approx(folds[(k, "model", "mae")])
        assert run.data.metrics["naive_test_mase"] == pytest.approx(folds[(k, "naive", "mase")])
    means = result.folds.groupby(["model", "metric"])["value"].mean()
    stds = result.folds.groupby(["model", "metric"])["value"].std()
    assert result.table("mean").loc["naive", "mae"] == pytest.approx(means[("naive", "mae")])
    assert result.table("std").loc["model", "rmse"] == pytest.approx(stds[("model", "rmse")])
    parent = client.get_run(result.run_id)
    assert parent.data.metrics["backtest_mae"] == pytest.approx(means[("model", "mae")])
    assert parent.data.tags["forecast.job"] == "backtest"
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"backtest_folds.csv", "backtest_summary.csv"} <= names
    local = mlflow.artifacts.download_artifacts(
        run_id=result.run_id,
        artifact_path="backtest_folds.csv",
        dst_path=str(root / "downloaded"),
        tracking_uri=client.tracking_uri,
    )
    logged = pd.read_csv(Path(local))
    pd.testing.assert_frame_equal(
        logged.drop(columns="origin"), result.folds.drop(columns="origin"), check_dtype=False
    )


@pytest.mark.slow
def test_each_fold_compares_the_model_with_the_classical_baselines(backtest):
    _, result, client, runs, _ = backtest
    classical = result.classical
    assert list(classical.columns) == [
        "fold",
        "origin",
        "scope",
        "series",
        "model",
        "metric",
        "value",
    ]
    assert set(classical["model"]) == {"model", "seasonal_naive", "auto_theta", "mstl"}
    # Origins every horizon (3 steps) of each 6-step test part: 2 windows per fold.
    per_fold = classical.query("model == 'model' and metric == 'mase'")
    assert len(per_fold) == 2
    table = result.classical_table()
    means = classical.groupby(["model", "metric"])["value"].mean()
    assert table.loc["mstl", "mase"] == pytest.approx(means[("mstl", "mase")])
    parent = client.get_run(result.run_id).data.metrics
    assert parent["auto_theta_backtest_classical_mase"] == pytest.approx(
        means[("auto_theta", "mase")]
    )
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.run_id]
    for run in children:
        assert np.isfinite(run.data.metrics["mstl_test_classical_mase"])
    report = result.report()
    assert "Against the classical baselines" in report and "AutoTheta" in report
    assert report.splitlines()[0] == f"Backtest over 2 folds, run {result.run_id}:"
