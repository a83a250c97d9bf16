"""Batch forecasts on a real local[2] Spark: the same rows as in-process `predict_frame` for 500
series (quantiles and timestamps included), error rows for bad series, Parquet in and out."""

from __future__ import annotations

import contextlib

import mlflow  # noqa: E402
import numpy as np
import pandas as pd
import pytest
from pyspark.errors import PythonException  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql import types as T  # noqa: E402

from forecast.cli import main  # noqa: E402
from forecast.config import ForecastConfig  # noqa: E402
from forecast.data import Source, prepare  # noqa: E402
from forecast.serving.batch import load_model, predict_frame  # noqa: E402
from forecast.serving.pyfunc import log_forecaster  # noqa: E402
from forecast.serving.spark import (  # noqa: E402
    ERROR_COL,
    predict_parquet,
    spark_forecast,
    spark_session,
)
from forecast.tracking.registry import register_and_promote  # noqa: E402
from forecast.training.fitting import train_model  # noqa: E402
from pipelines import datasets  # noqa: E402
from pipelines.errors import ConfigError, DataValidationError  # noqa: E402
from tests.conftest import use_store  # noqa: E402

pytestmark = [  # PySpark 4.3 on pandas 3
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

COPIES = 125  # x 4 indices = 500 series
KEYS = ["series", "step", "target"]
# Relative: the float32 network rounds differently in batches of other sizes (groups of ~128
# series on Spark, all 500 at once in-process); seen: 7e-9 of levels near 17,000 (1e-4 absolute).
RTOL = 1e-6
CONFIG = {  # tiny: one epoch of 4 units checks the plumbing, not accuracy
    "name": "spark-test",
    "data": {"dataset": "eustockmarkets", "features": {"calendar": ["weekday"]}},
    "window": {"lookback": 16, "horizon": 4},
    "model": {"units": [4], "quantiles": [0.1, 0.5, 0.9]},
    "training": {"epochs": 1, "verbose": 0, "batch_size": 512},
    "evaluation": {"baselines": ["naive"]},
}


def many_series(copies: int = COPIES, rows: int = 160) -> pd.DataFrame:
    """eustockmarkets' 4 indices, each copied `copies` times with its own id and level."""
    parts = [
        g.iloc[-rows:].assign(series=f"{s}-{k:03d}", value=g["value"].iloc[-rows:] * (1 + k / 100))
        for s, g in datasets.load("eustockmarkets").frame.groupby("series")
        for k in range(copies)
    ]
    return pd.concat(parts, ignore_index=True)


def requests(frame: pd.DataFrame) -> pd.DataFrame:
    """16..29 rows of each series, ending 0..6 rows before its last: many forecast dates."""
    parts = []
    for i, (_, g) in enumerate(frame.groupby("series", sort=False)):
        end = len(g) - i % 7
        parts.append(g.iloc[end - 16 - i % 14 : end])
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", "forecast-tests")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict[str, str]:
    """One tiny model on 500 series: saved as a folder and registered as @champion."""
    root = tmp_path_factory.mktemp("spark-model")
    config = ForecastConfig.from_dict(CONFIG)
    ds = datasets.load("eustockmarkets")
    source = Source(many_series(), ds.schema, ds.policy, "500 copies", "eustockmarkets")
    forecaster = train_model(config, prepare(config, source)).forecaster
    folder = forecaster.save(root / "forecaster")
    store = f"sqlite:///{root / 'mlflow.db'}"
    with contextlib.chdir(root), use_store(store):
        with mlflow.start_run(experiment_id=mlflow.create_experiment("spark")):
            info = log_forecaster(forecaster, name="spark-test")
        assert register_and_promote(
            info.model_uri, name="spark-test", candidate_metric=1.0
        ).promoted
    return {"folder": str(folder), "store": store, "uri": "models:/spark-test@champion"}


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return requests(many_series())


def collect(rows) -> pd.DataFrame:
    """Spark's rows as pandas: Spark keeps microseconds, predict_frame gives nanoseconds."""
    out = rows.toPandas()
    assert out["timestamp"].dtype.kind == "M"  # datetime64[us] with pandas 3, [ns] with 2
    return out.astype({"timestamp": "datetime64[ns]"})  # exact: every us is a whole ns


def in_process(model: dict[str, str], frame: pd.DataFrame) -> pd.DataFrame:
    with use_store(model["store"]):
        return predict_frame(load_model(model["uri"]), frame)


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Row for row after sorting by (series, step, target); values to 1e-6 relative, exact times."""
    got = got.sort_values(KEYS, ignore_index=True)
    want = want.sort_values(KEYS, ignore_index=True)
    assert len(got) == len(want) > 0
    for col in ("series", "target"):
        assert got[col].astype(str).tolist() == want[col].astype(str).tolist()
    assert got["step"].dtype == want["step"].dtype and (got["step"] == want["step"]).all()
    assert got["timestamp"].dtype == want["timestamp"].dtype == "datetime64[ns]"
    assert (got["timestamp"] == want["timestamp"]).all()
    values = ["forecast", "p10", "p50", "p90"]
    np.testing.assert_allclose(got[values], want[values], rtol=RTOL, atol=0)


@pytest.mark.slow
def test_500_series_equal_in_process_predict(spark, model, history):
    sdf = spark.createDataFrame(history)
    with use_store(model["store"]):  # the executors get the driver's MLflow URIs
        rows = spark_forecast(sdf, model["uri"], id_col="series", group_size=128)
    assert rows.schema["timestamp"].dataType == sdf.schema["timestamp"].dataType
    got = collect(rows)
    assert got[ERROR_COL].isna().all()
    assert got["series"].nunique() == 500 and len(got) == 500 * 4  # series x horizon x targets
    assert_same_rows(got.drop(columns=[ERROR_COL]), in_process(model, history))


def bad_history(history: pd.DataFrame) -> pd.DataFrame:
    """60 series, of which one is too short, one has a NaN inside, one is unknown."""
    keep = history[history["series"].str[-3:].astype(int) < 15].copy()  # 15 per index
    short = keep.index[keep["series"] == "CAC-001"][:-5]
    keep = keep.drop(index=short)
    nan_row = keep.index[keep["series"] == "DAX-002"][5]
    keep.loc[nan_row, "value"] = np.nan
    unknown = keep[keep["series"] == "FTSE-003"].assign(series="ZZZ-999")
    return pd.concat([keep, unknown], ignore_index=True)


EXPECTED_ERRORS = {
    "CAC-001": "History too short: 'CAC-001' has 5 rows. This static model needs at least 16 "
    "rows per series (16 for the window, 0 for feature warm-up).",
    "DAX-002": "Column 'value' has 1 NaN/inf values; series 'DAX-002' at",
    "ZZZ-999": "Series ['ZZZ-999'] were not seen when the scaler was fitted (it knows 500 series",
}


@pytest.mark.slow
def test_bad_series_get_error_rows_and_the_others_are_forecast(spark, model, history):
    frame = bad_history(history)
    # TIMESTAMP_NTZ input: the output time column follows it, values unchanged.
    sdf = spark.createDataFrame(frame).withColumn(
        "timestamp", F.col("timestamp").cast("timestamp_ntz")
    )
    rows = spark_forecast(sdf, model["folder"], id_col="series", group_size=20)
    assert rows.schema["timestamp"].dataType == T.TimestampNTZType()
    got = collect(rows)
    errors = got[got[ERROR_COL].notna()].set_index("series")
    assert sorted(errors.index) == sorted(EXPECTED_ERRORS)
    for sid, text in EXPECTED_ERRORS.items():
        assert errors.loc[sid, ERROR_COL].startswith(text), errors.loc[sid, ERROR_COL]
    others = errors.drop(columns=[ERROR_COL])
    assert others.isna().all().all()  # every other column of an error row is null
    good = frame[~frame["series"].isin(list(EXPECTED_ERRORS))]
    assert got["series"].nunique() == 61  # 58 good + 2 bad of the 60 kept + the unknown one
    want = predict_frame(load_model(model["folder"]), good)
    ok = got[got[ERROR_COL].isna()].drop(columns=[ERROR_COL])
    ok["step"] = ok["step"].astype("int64")
    assert_same_rows(ok, want)


@pytest.mark.slow
def test_a_group_of_bad_series_only_gives_error_rows(spark, model, history):
    frame = history[history["series"] == "SMI-007"].assign(series="QQQ-1")
    got = collect(spark_forecast(spark.createDataFrame(frame), model["folder"], id_col="series"))
    assert got["series"].tolist() == ["QQQ-1"]
    assert got[ERROR_COL].iloc[0].startswith("Series ['QQQ-1'] were not seen when the scaler")
    assert got.drop(columns=["series", ERROR_COL]).isna().all().all()


@pytest.mark.slow
def test_on_error_raise_fails_the_job_with_the_message(spark, model, history):
    sdf = spark.createDataFrame(bad_history(history))
    rows = spark_forecast(sdf, model["folder"], id_col="series", on_error="raise")
    with pytest.raises(PythonException, match="History too short: 'CAC-001' has 5 rows"):
        rows.collect()


def test_arguments_and_missing_columns_are_refused_before_any_job(spark, model, history):
    sdf = spark.createDataFrame(history.head(40))
    with pytest.raises(ConfigError, match="`on_error` must be 'rows' or 'raise'. Received: "):
        spark_forecast(sdf, model["folder"], id_col="series", on_error="skip")
    with pytest.raises(ConfigError, match="`group_size` must be an integer >= 1. Received: "):
        spark_forecast(sdf, model["folder"], id_col="series", group_size=0)
    with pytest.raises(DataValidationError, match=r"columns are missing: \['value'\]"):
        spark_forecast(sdf.drop("value"), model["folder"], id_col="series")


@pytest.mark.slow
def test_predict_parquet_end_to_end_and_refuses_an_existing_output(spark, model, history, tmp_path):
    frame = history[history["series"].isin(pd.unique(history["series"])[::5])]
    source = tmp_path / "history.parquet"
    frame.to_parquet(source, index=False)  # pandas writes nanosecond times
    out = tmp_path / "forecasts"
    with use_store(model["store"]):  # the driver's own settings reach the executors
        summary = predict_parquet(model["uri"], str(source), str(out), spark=spark)
    assert (summary.rows, summary.series, summary.failed_series) == (400, 100, 0)
    got = pd.read_parquet(out).astype({"timestamp": "datetime64[ns]"})
    assert got[ERROR_COL].isna().all()
    assert_same_rows(got.drop(columns=[ERROR_COL]), in_process(model, frame))
    with pytest.raises(FileExistsError, match="forecasts' exists; pass overwrite=True to replace"):
        predict_parquet(model["folder"], str(source), str(out), spark=spark)
    again = predict_parquet(model["folder"], str(source), str(out), spark=spark, overwrite=True)
    assert again.rows == 400


def test_the_cli_runs_batch_predict_on_spark(spark, model, history, tmp_path, monkeypatch, capsys):
    """In this process: the CLI uses the running session (and leaves it running)."""
    frame = history[history["series"].isin(pd.unique(history["series"])[:8])]
    frame.to_parquet(tmp_path / "history.parquet", index=False)
    (tmp_path / "taken").mkdir()
    monkeypatch.chdir(tmp_path)
    args = ["predict", "--engine", "spark", "--model", model["folder"]]
    args += ["--input", "history.parquet", "--output"]
    assert main([*args, "taken"]) == 2
    assert capsys.readouterr().err == (
        "forecast: error: 'taken' exists; pass --overwrite to replace it\n"
    )
    assert main([*args, "out"]) == 0
    assert f"wrote 32 forecast rows for 8 series to {tmp_path / 'out'}" in capsys.readouterr().out
    got = pd.read_parquet(tmp_path / "out").astype({"timestamp": "datetime64[ns]"})
    want = predict_frame(load_model(model["folder"]), frame)
    assert_same_rows(got.drop(columns=[ERROR_COL]), want)
    assert spark.range(1).count() == 1  # still running for the other tests
