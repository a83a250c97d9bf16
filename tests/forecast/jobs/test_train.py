"""The train job end to end on real data: MLflow run contents, registry, failure status."""

from __future__ import annotations

import sys

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecast.config import ForecastConfig
from forecast.data import prepare
from forecast.evaluation.classical import CLASSICAL
from forecast.evaluation.scoring import model_forecasts
from forecast.jobs.backtest import run_backtest
from forecast.jobs.train import classical_verdict, train_job, verdict
from pipelines import datasets
from pipelines.errors import ConfigError
from tests.conftest import use_store

SMALL = {
    "name": "jobs_sunspots",
    "data": {"dataset": "sunspots", "last_n": 360},
    "split": {"validation": 0.2, "test": 0.2},
    "window": {"lookback": 24, "horizon": 6},
    "model": {"cell": "lstm", "units": [4], "quantiles": [0.1, 0.5, 0.9]},
    "training": {"epochs": 2, "batch_size": 64, "verbose": 0},
    "evaluation": {"season": 12},
    "backtest": {"folds": 2, "test_steps": 12, "min_train": 120},
}
REFIT = {**SMALL["training"], "refit": "full"}  # the train job below also refits


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    # One real training run shared by the assertions below (module scope: trained once).
    root = tmp_path_factory.mktemp("jobs")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = {**SMALL, "training": REFIT, "tracking": {"tracking_uri": uri}}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        result = train_job(ForecastConfig.from_dict(config))
    return result, uri


def test_run_logs_config_metrics_and_baselines(outcome):
    result, uri = outcome
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["window.lookback"] == "24" and params["model.cell"] == "lstm"
    for key in (
        "test_mase",
        "test_mae",
        "test_rmse",
        "test_smape",
        "test_coverage_80",
        "naive_test_mase",
        "seasonal_naive_test_mase",
        "val_mase",
    ):
        assert np.isfinite(metrics[key]), key
    assert tags["forecast.version"]
    history = client.get_metric_history(result.run_id, "loss")
    assert len(history) == result.fitted.result.epochs_run  # one point per epoch
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {
        "config.yaml",
        "scaler.json",
        "model_summary.txt",
        "scores.csv",
        "per_step.csv",
        "forecast_vs_actual.png",
    } <= artifacts
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest


def test_scores_are_in_original_units_and_match_the_table(outcome):
    result, uri = outcome
    y = result.prepared.y_true("test")
    # The last test target is the last observation of the raw data, in sunspot counts.
    assert y[-1, -1, 0] == pytest.approx(datasets.load("sunspots").frame["value"].iloc[-1])
    point = model_forecasts(result.fitted.model, result.prepared, "test").point
    mae = float(np.mean(np.abs(y - point)))
    table = result.table("test")
    assert table.loc["model", "mae"] == pytest.approx(mae, rel=1e-6)
    logged = MlflowClient(uri).get_run(result.run_id).data.metrics
    assert logged["test_mae"] == pytest.approx(mae, rel=1e-6)
    assert logged["naive_test_mase"] == pytest.approx(table.loc["naive", "mase"], rel=1e-6)
    assert "naive" in result.verdict()


def test_every_classical_baseline_is_logged_reported_and_judged(outcome):
    result, uri = outcome
    comparison = result.comparison
    assert comparison is not None and comparison.n_windows == 12  # 72 test steps / H
    ran = [n for n, r in comparison.runs.items() if r.mean is not None]
    assert set(ran) | set(comparison.runs) == set(CLASSICAL)
    run = MlflowClient(uri).get_run(result.run_id)
    metrics, tags = run.data.metrics, run.data.tags
    wide = comparison.wide()
    assert metrics["test_classical_mase"] == pytest.approx(wide.loc["model", "mase"])
    for name in ran:
        assert metrics[f"{name}_test_classical_mase"] == pytest.approx(wide.loc[name, "mase"])
        assert metrics[f"{name}_test_classical_pinball_mean"] > 0  # intervals, quantile model
        assert CLASSICAL[name] in result.report()
    for name, run_ in comparison.runs.items():
        assert tags[f"forecast.classical.{name}"] == (run_.skipped or run_.fitted[0])
    assert "seasonal_naive_test_classical_mase" in metrics
    assert "classical_scores.csv" in {
        a.path for a in MlflowClient(uri).list_artifacts(result.run_id)
    }
    said = result.verdict()
    assert tags["forecast.verdict"] == said
    model = wide.loc["model", "mase"]
    not_beaten = [CLASSICAL[n] for n in ran if model >= wide.loc[n, "mase"]]
    beaten = [CLASSICAL[n] for n in ran if model < wide.loc[n, "mase"]]
    for label in not_beaten:
        assert f"does NOT beat {label} (MASE" in said
    for label in beaten:
        assert f"beats {label} (MASE" in said
    tail = said.rsplit("Not beaten: ", 1)[-1] if "Not beaten: " in said else ""
    assert all(label in tail for label in not_beaten)


def test_verdict_names_the_classical_baselines_it_does_not_beat_and_the_skipped_ones():
    wide = pd.DataFrame(
        {"mase": [0.9, 1.2, 0.8, 1.0], "pinball_mean": [2.0, np.nan, 2.5, 1.5]},
        index=["model", "seasonal_naive", "mstl", "auto_ets"],
    )
    text, lost = classical_verdict(wide, "the 4 test windows", {"AutoARIMA": "did not finish"})
    assert lost == ["MSTL"]
    assert "the model beats AutoETS (MASE 0.900 vs 1.000)" in text
    assert "does NOT beat MSTL (MASE 0.900 vs 0.800)" in text
    assert "NOT lower than AutoETS's 1.5" in text and "lower than MSTL's 2.5" in text
    assert "AutoARIMA is not compared: did not finish." in text


def test_registered_and_promoted(outcome):
    result, uri = outcome
    assert result.promotion is not None and result.promotion.promoted
    client = MlflowClient(uri, registry_uri=uri)
    version = client.get_model_version_by_alias("jobs_sunspots", "champion")
    assert int(version.version) == result.promotion.version


def test_refit_on_all_rows_is_registered_and_linked_to_the_evaluated_run(outcome):
    result, uri = outcome
    client = MlflowClient(uri, registry_uri=uri)
    parent = client.get_run(result.run_id)
    metrics = parent.data.metrics
    child = client.get_run(result.refit_run_id)
    assert child.data.tags["mlflow.parentRunId"] == result.run_id
    assert child.data.tags["forecast.evaluated_run"] == result.run_id
    assert parent.data.tags["forecast.refit_run"] == result.refit_run_id
    assert "Registered: the refit on all rows" in result.report()
    # The evaluated run's best epoch count, with the learning rates those epochs had.
    assert result.refit.result.epochs_run == result.fitted.result.best_epoch + 1
    lrs = result.fitted.result.history["learning_rate"][: result.refit.result.epochs_run]
    refit_lr = keras.ops.convert_to_numpy(result.refit.model.optimizer.learning_rate)
    assert float(refit_lr) == pytest.approx(lrs[-1])  # the schedule replayed to its last epoch
    # The champion is the refit, carrying the evaluated run's validation score.
    version = client.get_model_version_by_alias("jobs_sunspots", "champion")
    assert version.run_id == result.refit_run_id
    assert version.tags["forecast.evaluated_run"] == result.run_id
    assert float(version.tags["val_mase"]) == pytest.approx(metrics["val_mase"])
    # Its scaler saw every row, the held-out ones included; the evaluated one only training rows.
    values = datasets.load("sunspots").frame["value"].iloc[-360:]
    refit_scaler = result.refit.forecaster.state.scaler
    assert refit_scaler.offset_[0, 0] == pytest.approx(values.mean())
    train_rows = len(result.prepared.split.train)
    evaluated_scaler = result.fitted.forecaster.state.scaler
    assert evaluated_scaler.offset_[0, 0] == pytest.approx(values.iloc[:train_rows].mean())
    # Served, it forecasts the steps after the last row of the data.
    with use_store(uri), pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "path", list(sys.path))  # the model's code/ folder is put on it
        served = mlflow.pyfunc.load_model("models:/jobs_sunspots@champion")
    history = datasets.load("sunspots").frame.iloc[-60:]
    got = served.predict(history)
    want = result.refit.forecaster.predict(history)
    np.testing.assert_allclose(got["forecast"], want["forecast"], rtol=0, atol=1e-5)
    assert got["timestamp"].iloc[0] > history["timestamp"].iloc[-1]


def test_a_split_without_a_test_part_scores_on_validation():
    config = ForecastConfig.from_dict({**SMALL, "split": {"validation": 0.2, "test": 0}})
    prepared = prepare(config)
    assert sorted(prepared.windows) == ["train", "validation"]
    described = prepared.split.describe()
    assert described["test"]["steps"] == 0 and described["validation"]["steps"] == 72
    last = prepared.split.frame["timestamp"].iloc[-1]
    assert str(last) == described["validation"]["end"]  # validation runs to the last row
    with pytest.raises(ConfigError, match="`split.validation: 0` leaves no validation part"):
        ForecastConfig.from_dict({**SMALL, "split": {"validation": 0, "test": 0.2}})


def test_failed_run_is_marked_failed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    bad = {
        **SMALL,
        "name": "jobs_fail",
        "window": {"lookback": 400, "horizon": 6},
        "tracking": {"tracking_uri": uri},
    }
    config = ForecastConfig.from_dict(bad)
    with pytest.raises(Exception) as err:
        train_job(config)
    runs = mlflow.search_runs(experiment_names=["jobs_fail"])
    assert list(runs["status"]) == ["FAILED"]
    assert str(err.value)[:40] in runs["tags.error"].iloc[0]


def test_verdict_says_plainly_when_the_model_loses():
    table = pd.DataFrame(
        {"mase": [1.10, 1.05, 1.00, 1.30]},
        index=["model", "random_walk", "naive", "seasonal_naive"],
    )
    text = verdict(table, returns=True)
    assert "does NOT beat the random walk (zero return) (MASE 1.100 vs 1.050)" in text
    assert "does NOT beat naive (MASE 1.100 vs 1.000)" in text
    assert "beats seasonal-naive" in text
    assert "4.8% higher; it does not beat a random walk." in text
    levels = verdict(table.drop(index="random_walk"), returns=False)
    assert "random walk" not in levels and "does NOT beat naive" in levels


@pytest.mark.slow
def test_backtest_refits_per_fold_with_nested_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # The classical comparison of a backtest is tested in test_backtest.py.
    evaluation = {**SMALL["evaluation"], "classical": []}
    config = ForecastConfig.from_dict(
        {**SMALL, "name": "jobs_bt", "evaluation": evaluation, "tracking": {"tracking_uri": uri}}
    )
    result = run_backtest(config)
    assert result.classical is None
    assert sorted(result.folds["fold"].unique()) == [0, 1]
    runs = mlflow.search_runs(experiment_names=["jobs_bt"])
    children = runs[runs["tags.mlflow.parentRunId"] == result.run_id]
    assert len(children) == 2 and set(runs["status"]) == {"FINISHED"}
    # Folds and the summary use the train job's metric names.
    assert children["metrics.test_mase"].notna().all()
    assert children["metrics.naive_test_mase"].notna().all()
    parent = runs[runs["run_id"] == result.run_id].iloc[0]
    mean_mase = result.folds.query("model == 'model' and metric == 'mase'")["value"].mean()
    assert parent["metrics.backtest_mase"] == pytest.approx(mean_mase)
    assert np.isfinite(parent["metrics.naive_backtest_mase"])
    # Each fold's origin is later than the previous one; its scaler saw only its own training rows.
    origins = result.folds.drop_duplicates("fold")["origin"].tolist()
    assert origins == sorted(origins)


def test_backtest_rejects_folds_that_do_not_fit():
    config = ForecastConfig.from_dict(
        {**SMALL, "backtest": {"folds": 50, "test_steps": 12, "min_train": 120}}
    )
    with pytest.raises(ConfigError, match="need at least"):
        run_backtest(config)


def test_dataset_is_real():
    assert len(datasets.load("sunspots").frame) == 2820
