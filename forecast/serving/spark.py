"""Batch forecasts for many series on Spark: the in-process `predict_frame`, a group per task.

Series are bucketed by a stable hash of their id (``xxhash64``: the same on every machine and
run), so a series is never split; ``groupBy(bucket).applyInPandas`` hands a bucket's rows to
a Python worker, which loads the model once (cached by URI) and runs `predict_frame` on them.

Bad input (``on_error="rows"``, the default): a series that is too short, has a NaN in its
history, is unknown to the model, ... gets one row: its id in ``series``, the model's message
in ``error``, every other column null; the other series are still forecast (``error`` null).
``on_error="raise"`` fails the job instead.

Timestamps: Spark keeps microseconds. `spark_session` sets ``spark.sql.session.timeZone=UTC``,
so naive pandas times pass ``TIMESTAMP`` columns unchanged (``TIMESTAMP_NTZ`` needs no zone);
the output time column has the type of the input one. ``toPandas`` gives ``datetime64[us]`` (pandas 3) or ``[ns]`` (pandas 2).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

import forecast
from forecast.serving.batch import load_model, predict_frame
from forecast.serving.coerce import RequestLayout
from forecast.serving.forecaster import SERIES_COL, STEP_COL, TARGET_COL, TIME_COL, Forecaster
from forecast.serving.pyfunc import INPUTS_METADATA, forecaster_signature, input_columns
from pipelines.errors import ConfigError, DataValidationError, ForecastError

log = logging.getLogger(__name__)

ERROR_COL = "error"
DEFAULT_GROUP_SIZE = 2000  # series per group: each predict call has a fixed cost (~0.5 s)
_BUCKET = "_forecast_bucket"
_INPUT_ERRORS = (ForecastError, MlflowException)  # the pyfunc wraps ForecastError in the latter
_TIME_TYPES = (T.TimestampType, T.TimestampNTZType, T.DateType, T.StringType)
_MODELS: dict[tuple[str, Any], Any] = {}  # per Python worker: (uri, stores) -> model


def spark_session(
    master: str = "local[2]", app_name: str = "forecast", *, driver_memory: str = "1g"
) -> SparkSession:
    """A Spark session for forecasting; ``local[...]`` masters bind to 127.0.0.1 only.

    Sets ``spark.sql.session.timeZone=UTC`` (naive times round-trip exactly) and
    ``spark.sql.legacy.parquet.nanosAsLong`` (Spark refuses pandas' nanosecond Parquet times
    otherwise; see `read_history`). Local workers run this interpreter and this package copy,
    with TensorFlow threads = cores / parallel tasks."""
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # read when the context starts
        root = str(Path(forecast.__file__).resolve().parent.parent)
        n = master[6:-1].split(",")[0] if master.startswith("local[") else "1"
        tasks = (os.cpu_count() or 1) if n == "*" else int(n)  # TensorFlow in each: share cores
        conf |= {
            "spark.executorEnv.TF_NUM_INTRAOP_THREADS": str(max(1, (os.cpu_count() or 1) // tasks)),
            "spark.driver.host": "127.0.0.1",  # loopback only: nothing listens outside
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.driver.memory": driver_memory,
            "spark.executorEnv.PYTHONPATH": os.pathsep.join(
                p for p in (root, os.environ.get("PYTHONPATH")) if p
            ),
        }
    return SparkSession.builder.master(master).appName(app_name).config(map=conf).getOrCreate()


# What the driver knows of a model: time and id columns, input names, (output name, type).
_Layout = namedtuple("_Layout", ["time_col", "id_col", "inputs", "outputs"])


def model_layout(model_uri: str) -> _Layout:
    """Columns in and out, from the signature of an MLflow model (only ``MLmodel`` is read) or
    of a forecaster folder."""
    if Path(model_uri).is_dir():  # the signature and inputs `log_forecaster` would give it
        forecaster = Forecaster.load(model_uri)
        signature, inputs = forecaster_signature(forecaster), input_columns(forecaster)
    else:
        info = mlflow.models.get_model_info(model_uri)
        signature, inputs = info.signature, (info.metadata or {}).get(INPUTS_METADATA)
    if signature is None or signature.outputs is None:
        raise ConfigError(f"Model {model_uri!r} has no output signature; log it with one.")
    if inputs is None:  # logged before the inputs moved to metadata: typed in the signature
        inputs = [{"name": c.name, "type": c.type.name} for c in signature.inputs.inputs]
    layout = RequestLayout.from_columns(inputs)
    outputs = tuple((c.name, c.type.name) for c in signature.outputs.inputs)
    return _Layout(layout.time_col, layout.id_col, tuple(layout.columns), outputs)


def spark_forecast(
    history_sdf: DataFrame,
    model_uri: str,
    *,
    id_col: str,
    group_size: int = DEFAULT_GROUP_SIZE,
    on_error: str = "rows",
) -> DataFrame:
    """Forecast rows for every series of a long-format history frame, computed on Spark.

    Args:
        history_sdf: history rows (time, id, targets, covariates) of many series.
        model_uri: a forecaster folder that the executors can read, or an MLflow URI
            (``models:/NAME@alias``, ``runs:/...``): the executors resolve it with this
            process's tracking and registry URIs.
        id_col: the series id column.
        group_size: series per group (one `predict_frame` call, in one worker's memory).
        on_error: ``"rows"``: an error row per bad series; ``"raise"``: fail the job.

    Returns:
        A lazy DataFrame: the columns of `predict_frame` plus ``error``.

    Raises:
        ConfigError: a bad argument.
        DataValidationError: a column is missing, or the time column holds no times.
    """
    if on_error not in ("rows", "raise"):
        raise ConfigError(f"`on_error` must be 'rows' or 'raise'. Received: on_error={on_error!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ConfigError(f"`group_size` must be an integer >= 1. Received: {group_size=!r}")
    local = Path(model_uri).is_dir()
    uri = str(Path(model_uri).resolve()) if local else model_uri
    layout = model_layout(uri)
    missing = sorted({c for c in (*layout.inputs, id_col) if c not in history_sdf.columns})
    if missing:
        raise DataValidationError(
            f"The following columns are missing: {missing}. Expected columns: {list(layout.inputs)}"
        )
    time_type = history_sdf.schema[layout.time_col].dataType
    if not isinstance(time_type, _TIME_TYPES):
        raise DataValidationError(
            f"Column {layout.time_col!r} must hold timestamps. Received: {time_type.simpleString()}"
            " (nanosecond Parquet times read as longs: use `read_history`)"
        )
    if not isinstance(time_type, T.TimestampType):
        time_type = T.TimestampNTZType()
    elif history_sdf.sparkSession.conf.get("spark.sql.session.timeZone") != "UTC":
        log.warning("Session time zone is not UTC: TIMESTAMP values may shift around DST.")
    # Approximate: one pass, no shuffle of the ids; buckets are approximately full anyway.
    n_series = history_sdf.select(F.approx_count_distinct(id_col, rsd=0.05)).first()[0]
    buckets = max(1, math.ceil(n_series / group_size))
    log.info("Forecasting ~%d series in %d groups with %s", n_series, buckets, uri)
    # MLflow's registry client reads only process-wide URIs: hand this process's over.
    stores = None if local else (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    job = _Job(uri, stores, id_col, on_error, tuple(n for n, _ in layout.outputs))

    def forecast_group(pdf: pd.DataFrame) -> pd.DataFrame:  # a plain function: Spark reads hints
        return job.forecast(pdf.drop(columns=[_BUCKET]))

    bucket = F.pmod(F.xxhash64(F.col(id_col)), F.lit(buckets))
    # About one bucket per partition and task (hash partitioning of the few bucket numbers
    # often puts two on one task, leaving a core idle); groupBy reuses this partitioning.
    bucketed = history_sdf.withColumn(_BUCKET, bucket).repartitionByRange(buckets, _BUCKET)
    types = {"string": T.StringType(), "long": T.LongType(), "double": T.DoubleType()}
    fields = [T.StructField(n, types.get(t, time_type)) for n, t in layout.outputs]
    schema = T.StructType([*fields, T.StructField(ERROR_COL, T.StringType())])  # all nullable
    return bucketed.groupBy(_BUCKET).applyInPandas(forecast_group, schema)


@dataclass(frozen=True)
class _Job:  # what a Python worker needs: pickled into the closure, so nothing heavy
    uri: str
    stores: tuple[str, str] | None  # (tracking, registry) URIs for MLflow model URIs
    id_col: str
    on_error: str
    columns: tuple[str, ...]

    def model(self) -> Any:
        """The model, loaded once per Python worker (workers are reused across tasks)."""
        key = (self.uri, self.stores)
        if key not in _MODELS:
            if self.stores is not None:  # the worker process is ours alone: set its store
                mlflow.set_tracking_uri(self.stores[0])
                mlflow.set_registry_uri(self.stores[1])
            _MODELS[key] = load_model(self.uri)
        return _MODELS[key]

    def forecast(self, history: pd.DataFrame) -> pd.DataFrame:
        """Forecast rows and error rows of one group's series."""
        model = self.model()
        parts = self._predict_or_split(model, history)
        out = pd.concat(parts, ignore_index=True).reindex(columns=[*self.columns, ERROR_COL])
        _check_rows(model, history[self.id_col], out)
        out[STEP_COL] = out[STEP_COL].astype("Int64")  # null in error rows
        out[TIME_COL] = pd.to_datetime(out[TIME_COL])  # all NaN (float) if every series failed
        for col in (SERIES_COL, TARGET_COL, ERROR_COL):  # PySpark 4.3 rejects pandas 3 str
            out[col] = out[col].astype(object).where(out[col].notna(), None)
        return out

    def _predict_or_split(self, model: Any, history: pd.DataFrame) -> list[pd.DataFrame]:
        """Predict all series at once; on bad input, halve until each bad series is alone
        (one bad series costs about 2 log2(group_size) more calls, not one per series)."""
        try:
            return [predict_frame(model, history)]
        except _INPUT_ERRORS as exc:
            if self.on_error == "raise":
                raise
            ids = pd.unique(history[self.id_col])
            if len(ids) == 1:
                message = getattr(exc, "message", None) or str(exc)
                return [pd.DataFrame({SERIES_COL: [str(ids[0])], ERROR_COL: [str(message)]})]
            first = history[self.id_col].isin(ids[: len(ids) // 2])
            halves = (history[first], history[~first])
            return [part for half in halves for part in self._predict_or_split(model, half)]


def _check_rows(model: Any, ids: pd.Series, out: pd.DataFrame) -> None:
    """Every series in has an error row or exactly horizon x targets forecast rows."""
    st = model.state if hasattr(model, "state") else model.unwrap_python_model().forecaster.state
    want = st.window.horizon * len(st.schema.targets)
    counts = out[out[ERROR_COL].isna()].groupby(SERIES_COL).size()
    lost = sorted({str(s) for s in pd.unique(ids)} - set(out[SERIES_COL]))
    if (counts != want).any() or lost:
        raise RuntimeError(
            f"Forecast rows do not match the series sent: {want} per series expected (horizon "
            f"x targets), got {counts[counts != want].head(5).to_dict()}; none for {lost[:5]}"
        )


@dataclass(frozen=True)
class PredictSummary:  # what `predict_parquet` wrote
    output_path: str
    rows: int
    series: int
    failed_series: int


def predict_parquet(
    model_uri: str,
    input_path: str,
    output_path: str,
    *,
    master: str = "local[2]",
    id_col: str | None = None,
    group_size: int = DEFAULT_GROUP_SIZE,
    on_error: str = "rows",
    overwrite: bool = False,
    spark: SparkSession | None = None,
) -> PredictSummary:
    """Read history from Parquet, forecast it on Spark, write the rows as Parquet.

    Args:
        model_uri, group_size, on_error: as in `spark_forecast`.
        input_path: Parquet file or folder of history rows (any Hadoop file system).
        output_path: folder the forecast rows are written to by Spark.
        master: Spark master URL of the session created here (ignored with `spark`).
        id_col: the series id column; default: the model's.
        overwrite: replace an existing `output_path`.
        spark: use this session (left running); default: the active session of this
            process if there is one (left running), else one created here and stopped.

    Raises:
        FileExistsError: `output_path` exists and `overwrite` is False (checked first).
        ConfigError: the model has no series id column and `id_col` is not given.
    """
    # Local paths as absolute ones: the JVM resolves relative paths against its own working
    # directory, which is not this process's once the session was started elsewhere.
    input_path, output_path = (
        p if "://" in str(p) else str(Path(p).resolve()) for p in (input_path, output_path)
    )
    active = SparkSession.getActiveSession()
    own = spark is None and active is None  # a session already running here is left running
    spark = spark or active or spark_session(master, "forecast-predict")
    try:
        out = spark._jvm.org.apache.hadoop.fs.Path(str(output_path))  # any Hadoop file system
        if not overwrite and out.getFileSystem(spark._jsc.hadoopConfiguration()).exists(out):
            raise FileExistsError(f"{output_path!r} exists; pass overwrite=True to replace it")
        layout = model_layout(model_uri)
        id_col = id_col or layout.id_col
        if id_col is None:
            raise ConfigError("The model has no series id column; pass `id_col`.")
        history = read_history(spark, str(input_path), layout.time_col)
        options = {"id_col": id_col, "group_size": group_size, "on_error": on_error}
        rows = spark_forecast(history, model_uri, **options)
        rows.write.mode("overwrite" if overwrite else "errorifexists").parquet(str(output_path))
        bad = F.when(F.col(ERROR_COL).isNotNull(), F.col(SERIES_COL))
        counts = F.count("*"), F.countDistinct(SERIES_COL), F.countDistinct(bad)
        n_rows, series, failed = spark.read.parquet(str(output_path)).agg(*counts).first()
        if failed:
            log.warning("%d of %d series could not be forecast: see `error`", failed, series)
        return PredictSummary(str(output_path), n_rows, series, failed)
    finally:
        if own:
            spark.stop()


def read_history(spark: SparkSession, path: str, time_col: str) -> DataFrame:
    """History rows from Parquet; pandas' nanosecond times, read as longs (nanoseconds since
    the epoch), become microsecond ``TIMESTAMP`` values (unchanged in a UTC session)."""
    history = spark.read.parquet(path)
    if isinstance(history.schema[time_col].dataType, T.LongType):
        history = history.withColumn(time_col, F.expr(f"timestamp_micros(`{time_col}` div 1000)"))
    return history
