"""Batch prediction: a model from a saved folder or an MLflow URI, run on CSV-like history."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from forecast.config import ForecastConfig
from forecast.data import prepare
from forecast.serving.batch import load_model, predict_frame
from forecast.serving.forecaster import Forecaster
from forecast.serving.pyfunc import log_forecaster
from forecast.training.fitting import train_model
from pipelines import datasets
from pipelines.errors import DataValidationError
from tests.conftest import use_store

CONFIG = {
    "name": "batch",
    "data": {"dataset": "eustockmarkets", "last_n": 120},
    "window": {"lookback": 12, "horizon": 3},
    "model": {"units": [4]},
    "training": {"epochs": 1, "verbose": 0},
    "evaluation": {"baselines": ["naive"]},
}
RAW = datasets.load("eustockmarkets").frame
TOL = 1e-6


@dataclass(frozen=True)
class Saved:
    """One trained forecaster, saved to a folder and logged to an MLflow store."""

    forecaster: Forecaster
    folder: Path
    store: str
    uri: str


@contextlib.contextmanager
def kept_sys_path():
    """Loading a pyfunc model puts its code folder on sys.path: take it off again."""
    before = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = before


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Saved:
    config = ForecastConfig.from_dict(CONFIG)
    forecaster = train_model(config, prepare(config)).forecaster
    root = tmp_path_factory.mktemp("batch")
    folder = forecaster.save(root / "saved")
    store = f"sqlite:///{root / 'mlflow.db'}"
    with contextlib.chdir(root), use_store(store):
        experiment = MlflowClient().create_experiment("batch")
        with mlflow.start_run(experiment_id=experiment) as run:
            log_forecaster(forecaster, name="model")
    return Saved(forecaster, folder, store, f"runs:/{run.info.run_id}/model")


@pytest.fixture(scope="module")
def served(saved) -> mlflow.pyfunc.PyFuncModel:
    with use_store(saved.store), kept_sys_path():
        return load_model(saved.uri)


def history(end: int = 1500, rows: int = 20) -> pd.DataFrame:
    """The last `rows` raw rows of every series up to row `end` of a series."""
    cut = RAW["timestamp"].iloc[end]
    return RAW[RAW["timestamp"] <= cut].groupby("series").tail(rows).reset_index(drop=True)


def as_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` written to CSV and read back: the timestamps come back as text."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)))


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    for col in ("series", "step", "target"):
        assert got[col].tolist() == want[col].tolist()
    assert (pd.to_datetime(got["timestamp"]) == want["timestamp"]).all()
    np.testing.assert_allclose(got["forecast"], want["forecast"], rtol=0, atol=TOL)


# ----------------------------------------------------------------------------- load_model


def test_a_saved_folder_loads_as_a_forecaster(saved):
    model = load_model(str(saved.folder))
    assert isinstance(model, Forecaster)
    assert model.state.to_dict() == saved.forecaster.state.to_dict()
    request = history()
    pd.testing.assert_frame_equal(model.predict(request), saved.forecaster.predict(request))


def test_an_mlflow_uri_loads_the_logged_pyfunc_model(saved, served):
    assert isinstance(served, mlflow.pyfunc.PyFuncModel)
    assert served.metadata.get_input_schema() is None  # the package coerces, not MLflow
    inputs = {c["name"]: c["type"] for c in served.metadata.metadata["forecast_inputs"]}
    assert inputs == {"timestamp": "datetime", "series": "string", "value": "double"}
    request = history(end=900)
    assert_same(predict_frame(served, request), saved.forecaster.predict(request))


def test_a_model_logged_with_other_versions_loads_with_mlflows_warning_from_our_check(
    saved, tmp_path, monkeypatch, caplog
):
    with use_store(saved.store):
        folder = Path(mlflow.artifacts.download_artifacts(saved.uri, dst_path=str(tmp_path)))
    requirements = folder / "requirements.txt"
    pins = requirements.read_text().splitlines()
    assert any(line.startswith("numpy==") for line in pins)
    requirements.write_text(
        "\n".join(["numpy==0.0.1" if p.startswith("numpy==") else p for p in pins])
    )

    def slow_check(*_):  # MLflow's: reads every installed distribution's file list
        raise AssertionError("MLflow's requirement check ran")

    monkeypatch.setattr(mlflow.pyfunc, "warn_dependency_requirement_mismatches", slow_check)
    with kept_sys_path(), caplog.at_level("WARNING", logger="forecast.serving.environment"):
        model = load_model(str(folder))
    assert isinstance(model, mlflow.pyfunc.PyFuncModel)
    numpy = np.__version__
    assert [r.getMessage() for r in caplog.records] == [
        "Detected one or more mismatches between the model's dependencies and the current "
        f"Python environment:\n - numpy (current: {numpy}, required: numpy==0.0.1)\nTo fix "
        "the mismatches, call `mlflow.pyfunc.get_model_dependencies(model_uri)` to fetch the "
        "model's environment and install dependencies using the resulting environment file."
    ]
    request = history(end=900)
    assert_same(predict_frame(model, request), saved.forecaster.predict(request))


def test_a_folder_without_pipeline_json_is_read_as_an_mlflow_model(tmp_path):
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(MlflowException, match=r'Could not find an "MLmodel" configuration file'):
        load_model(str(tmp_path / "not_a_model"))


# ----------------------------------------------------------------------------- predict_frame


def test_a_csv_as_pandas_reads_it_is_forecast_like_the_typed_history(saved, served):
    request = history()
    csv = as_csv(request.assign(value=request["value"].round().astype(np.int64), note="x"))
    assert csv["timestamp"].dtype == object and csv["value"].dtype == np.int64
    want = saved.forecaster.predict(request.assign(value=request["value"].round()))
    for model in (served, saved.forecaster):
        got = predict_frame(model, csv)
        assert isinstance(got, pd.DataFrame)
        assert_same(got, want)
    assert sorted(set(got["series"])) == ["CAC", "DAX", "FTSE", "SMI"]
    assert csv["timestamp"].dtype == object and "note" in csv  # left as given


def test_batch_predict_keeps_the_utc_offset_of_the_history(saved, served):
    request = history(end=1000)
    local = request.assign(timestamp=request["timestamp"].dt.tz_localize("-05:00"))
    got = predict_frame(served, as_csv(local))
    want = saved.forecaster.predict(request)
    assert (got["timestamp"] == want["timestamp"].dt.tz_localize("-05:00")).all()
    np.testing.assert_allclose(got["forecast"], want["forecast"], rtol=0, atol=TOL)


def test_a_forecaster_reads_text_timestamps_itself(saved):
    request = history(end=1200)
    got = predict_frame(saved.forecaster, as_csv(request))
    assert_same(got, saved.forecaster.predict(request))


@pytest.mark.parametrize("row", [0, 7, 79])
def test_a_bad_timestamp_is_named_with_its_row(served, row):
    csv = as_csv(history())
    csv.loc[row, "timestamp"] = "not a date"
    with pytest.raises(DataValidationError) as err:
        predict_frame(served, csv)
    assert str(err.value) == (
        f"Column 'timestamp' must hold a timestamp such as '2020-01-31 12:30' in every row; "
        f"row {row} has 'not a date' (1 such rows)."
    )


def test_timestamps_written_in_two_iso_forms_are_both_read(saved, served):
    request = history(end=1300)
    csv = as_csv(request)
    # One file made of two exports: dates only, then the same kind of dates with a time.
    later = np.arange(len(csv)) >= len(csv) // 2
    csv.loc[later, "timestamp"] = csv.loc[later, "timestamp"] + " 00:00:00"
    assert_same(predict_frame(served, csv), saved.forecaster.predict(request))


def test_forecast_predict_exits_2_naming_the_column_and_row_it_cannot_read(saved, tmp_path, capsys):
    from forecast.cli import main

    csv = as_csv(history())
    csv.loc[5, "value"] = "n/a?"
    csv.to_csv(tmp_path / "history.csv", index=False)
    args = ["predict", "--model", str(saved.folder), "--input", str(tmp_path / "history.csv")]
    assert main([*args, "--output", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "forecast: error: Column 'value' must hold a number in every row; row 5 has 'n/a?' "
        "(1 such rows)."
    )
    assert not (tmp_path / "out.csv").exists()
