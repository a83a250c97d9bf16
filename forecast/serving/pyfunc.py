"""MLflow pyfunc for a `Forecaster`: raw history rows in, forecast rows out, loadable anywhere.

The model is logged from code (MLflow's models from code): the code file
`forecast/serving/model_code.py` names `ForecasterModel`, and the Keras model and the fitted
pipeline state (``model.keras`` + ``pipeline.json``) and a warm-up request are artifacts
that `load_context` reads. Nothing is pickled. The ``forecast`` and ``pipelines`` source
directories ship as ``code_paths``, so ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` work where this package is not installed.

Example:
    >>> with mlflow.start_run():
    ...     info = log_forecaster(fitted.forecaster, input_example=history)
    >>> model = mlflow.pyfunc.load_model(info.model_uri)
    >>> model.predict(history)          # same rows as fitted.forecaster.predict(history)
"""

from __future__ import annotations

import gc
import importlib.metadata
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT as _IN_SERVER
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, Schema

import forecast
import pipelines
from forecast.serving.artifacts import ModelLoadError
from forecast.serving.coerce import RequestLayout, coerce_request
from forecast.serving.forecaster import (
    SERIES_COL,
    STEP_COL,
    TARGET_COL,
    TIME_COL,
    Forecaster,
)
from forecast.serving.http import served_records
from forecast.serving.threads import under_uvicorn
from pipelines.errors import ConfigError, DiskFullError, ForecastError, is_disk_full
from pipelines.sources import read_parquet

_log = logging.getLogger(__name__)
FORECASTER_ARTIFACT = "forecaster"
# MLmodel metadata key listing the input columns and their kinds (the signature has none).
INPUTS_METADATA = "forecast_inputs"
WARMUP_ARTIFACT = "warmup"
# The models-from-code file MLflow copies into every logged model and runs at load time.
MODEL_CODE = Path(__file__).with_name("model_code.py")
# Distributions the served model imports, pinned to the versions that trained it.
_REQUIREMENTS = ("keras", "pandas", "numpy", "scikit-learn", "mlflow", "pyyaml", "pyarrow")
_TENSORFLOW = ("tensorflow-cpu", "tensorflow")
_EXAMPLE_START = pd.Timestamp("2000-01-03")  # a Monday: on the grid of "B", "W-MON", "D", ...


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """The pyfunc wrapper: loads the forecaster once, then only computes.

    Models logged before models from code pickled an instance of this class as
    ``forecast.serving.ForecasterModel``; `forecast.serving` still exports it under that
    name, so they keep loading.

    `predict` reads the loaded forecaster and writes nothing shared, so the scoring server may
    call it from several threads at once.
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the forecaster and warm it up.

        Raises:
            ModelLoadError: an artifact is missing, truncated or corrupted; the message
                names the model (``models:/m-...``) and the artifact, and is what a scoring
                server prints as it fails to start.
        """
        folder = Path(context.artifacts[FORECASTER_ARTIFACT])
        try:
            forecaster = Forecaster.load(folder)
        except ModelLoadError as exc:
            raise exc.for_model(_model_uri(folder), f"artifacts/{FORECASTER_ARTIFACT}") from None
        warmup = Path(context.artifacts[WARMUP_ARTIFACT])
        try:
            request = read_parquet(warmup)
        except Exception as exc:  # pyarrow reports a truncated file in many ways
            raise ModelLoadError(
                _model_uri(folder), f"artifacts/{warmup.name}", f"cannot be read ({exc})"
            ) from None
        # The first call traces the Keras predict function; pay for it before traffic arrives.
        forecaster.predict(request)
        self._forecaster = forecaster
        self._layout = request_layout(forecaster)
        if under_uvicorn():
            freeze_loaded_objects()

    @property
    def forecaster(self) -> Forecaster:
        """The loaded forecaster (after `load_context`)."""
        return self._forecaster

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame | list[dict[str, Any]]:
        """Forecast rows for the history rows in `model_input` (see `Forecaster.predict`).

        The request is first coerced by `forecast.serving.coerce.coerce_request`: text
        timestamps, UTC offsets, integer values and extra columns are accepted. In a scoring
        server (MLflow's serving environment variable set) the rows are returned as the list
        of row dicts it writes, timestamps as their ISO 8601 text
        (`forecast.serving.http.served_records`); elsewhere as a frame.

        Raises:
            MlflowException: ``INVALID_PARAMETER_VALUE`` (HTTP 400 when served) with the
                message of the `ForecastError` that the payload caused.
        """
        try:
            rows = self._forecaster.predict(coerce_request(model_input, self._layout))
        except ForecastError as exc:
            raise RequestError(str(exc)) from exc
        # Under a scoring server the rows are written as JSON next: the records and the
        # timestamp text it would make of them, the same bytes, written faster.
        return served_records(rows) if _IN_SERVER.get() else rows


def freeze_loaded_objects() -> None:
    """Move every object alive now out of the cyclic collector's reach.

    A served model's process holds ~720,000 tracked objects (TensorFlow, Keras, MLflow, the
    model) that live as long as it does; every full collection walks them all, and a
    100-series request allocates enough to set one off now and then: its p99 was 405 ms
    against a p50 of 36 ms in process, 43 ms with the objects frozen (benchmarks/RESULTS.md,
    "Session 16"). `gc.freeze` after loading is what CPython offers servers for this.
    `load_context` calls it in a uvicorn server's process only (`under_uvicorn`): not in a
    notebook, nor where MLflow imitates its server to check an input example at logging
    (that sets the serving variable too). A frozen object is still freed when its last
    reference goes; only cycles among them stay.
    """
    gc.collect()  # the loading's and the warm-up's garbage is not kept
    gc.freeze()


class RequestError(MlflowException):
    """A bad request (HTTP 400) whose message stays ours when MLflow's server reports it.

    The scoring server rewrites the message of a failed predict to ``Failed to predict data
    '<the whole input frame>'. Error: <message>`` (`mlflow.pyfunc.scoring_server.invocations`),
    so a client's first line is a frame repr. The message is set once, in ``__init__``; the
    rewrite is logged at debug level and dropped.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if hasattr(self, "_message"):
            _log.debug("Kept the request error's message; MLflow's was %.200s", value)
            return
        self._message = value


def pip_requirements() -> list[str]:
    """The serving environment: TensorFlow (the flavour installed), Keras, pandas, ... pinned."""
    reqs = []
    for dist in _TENSORFLOW:
        try:
            reqs.append(f"{dist}=={importlib.metadata.version(dist)}")
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    else:
        raise ConfigError("Neither tensorflow-cpu nor tensorflow is installed.")
    reqs += [f"{dist}=={importlib.metadata.version(dist)}" for dist in _REQUIREMENTS]
    return reqs


def forecaster_signature(forecaster: Forecaster) -> ModelSignature:
    """Explicit signature: forecast rows out; no input schema, on purpose.

    MLflow's schema enforcement refuses what a CSV read by pandas holds (integer value
    columns, timestamps as text, UTC offsets) and warns on every request with an extra
    column. The package decides instead: `ForecasterModel.predict` coerces the request
    (`forecast.serving.coerce`) and answers 400 naming the column and row of what it cannot
    read. The input columns and their kinds are recorded in the model's metadata
    (`input_columns`).
    """
    types = {SERIES_COL: DataType.string, TIME_COL: DataType.datetime, STEP_COL: DataType.long}
    types[TARGET_COL] = DataType.string
    outputs = [
        ColSpec(types.get(col, DataType.double), col) for col in forecaster.state.output_columns
    ]
    return ModelSignature(inputs=None, outputs=Schema(outputs))


def input_columns(forecaster: Forecaster) -> list[dict[str, str]]:
    """The history columns of a request, in order, each with its kind (model metadata)."""
    return request_layout(forecaster).to_columns()


def request_layout(forecaster: Forecaster) -> RequestLayout:
    """What `coerce_request` needs to know of `forecaster`'s inputs."""
    raw = forecaster.state.raw_schema
    keys = (raw.time_col, raw.id_col)
    return RequestLayout(
        time_col=raw.time_col,
        id_col=raw.id_col,
        value_columns=tuple(c for c in forecaster.required_columns if c not in keys),
        integer_ids=_id_type(forecaster) == DataType.long,
    )


def _id_type(forecaster: Forecaster) -> DataType:
    ids = [s for s in forecaster.state.scaler.series_ids_ if s is not None]
    integer = bool(ids) and all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) for s in ids
    )
    return DataType.long if integer else DataType.string


def example_history(forecaster: Forecaster, *, rows: int | None = None) -> pd.DataFrame:
    """A valid request for `forecaster`: one series of constant values on its time grid.

    It has `rows` history rows (default: the full lookback plus feature warm-up, plus the
    rows of the earlier forecasts that recalibrate a calibrated model's quantiles) and, when
    the model reads known-future covariates, `horizon` future rows with the target empty.
    The numbers mean nothing; it is the warm-up request and the default input example.

    Raises:
        ConfigError: the model has no frequency (it could not extend the timeline either).
    """
    st = forecaster.state
    raw = st.raw_schema
    freq = st.freq or raw.freq
    if freq is None:
        raise ConfigError("The model has no data frequency; cannot build an example request.")
    full = st.window.lookback + st.features.warmup + st.calibration_rows
    n_hist = rows if rows is not None else full
    n_future = st.window.horizon if raw.future_covariates else 0
    # On the model's calendar: a sessions model refuses timestamps outside its sessions.
    times = st.calendar.times_from(pd.Timestamp(_EXAMPLE_START), n_hist + n_future, freq)
    times = times.as_unit("ns")
    frame = pd.DataFrame({raw.time_col: times})
    if raw.id_col is not None:
        known = [s for s in st.scaler.series_ids_ if s is not None]
        frame[raw.id_col] = known[0] if known else "example"
    scaler = st.scaler
    for col in forecaster.required_columns:
        if col not in frame.columns:
            # The training centre where the scaler knows the column: in range for any model.
            known = col in scaler.columns_
            frame[col] = float(scaler.offset_[0, scaler.columns_.index(col)]) if known else 1.0
    tr = st.transform
    if tr.method != "none" and set(tr.targets_) <= set(frame.columns):
        # The scaler's centre is in transformed units (log, Box-Cox): invert it, or the
        # example would be transformed twice and refused as far outside the training range.
        centre = frame[tr.targets_].to_numpy(np.float64)[:1, None, :]  # (1, 1, T)
        back = tr.inverse_target(centre, np.zeros(1, np.int64), series_ids=tr.series_ids_[:1])
        for t, col in enumerate(tr.targets_):
            frame[col] = float(back[0, 0, t])
    if n_future:
        frame.loc[n_hist:, list(raw.targets)] = np.nan
    return frame


def log_forecaster(
    forecaster: Forecaster,
    *,
    name: str = "model",
    input_example: pd.DataFrame | None = None,
    registered_model_name: str | None = None,
) -> ModelInfo:
    """Log `forecaster` as a pyfunc model of the active MLflow run.

    The input example (default `example_history`) is predicted once here, so a model whose
    example fails is never logged; it is also the warm-up request of `load_context`.

    Args:
        forecaster: the trained forecaster.
        name: the model's name within the run.
        input_example: a history frame the model accepts, shown in the UI and used to warm up.
        registered_model_name: also register a version under this name (no alias is moved:
            use `forecast.tracking.registry.register_and_promote` for that).

    Returns:
        MLflow's `ModelInfo`; ``model_uri`` is ``models:/m-<id>``.

    Raises:
        ConfigError: no run is active, or `forecaster` is not a `Forecaster`.
        ForecastError: the input example is not a valid request.
        DiskFullError: the disk filled up; the half-written model was deleted.
    """
    if mlflow.active_run() is None:
        raise ConfigError("`log_forecaster` needs an active MLflow run: call it inside one.")
    if not isinstance(forecaster, Forecaster):
        raise ConfigError(
            f"`forecaster` must be a Forecaster. Received: {type(forecaster).__name__}"
        )
    example = example_history(forecaster) if input_example is None else input_example
    forecaster.predict(example)
    before = _last_model_id()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            saved = forecaster.save(Path(tmp) / FORECASTER_ARTIFACT)
            warmup = Path(tmp) / "warmup.parquet"
            example.to_parquet(warmup, index=False)
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=str(MODEL_CODE),
                artifacts={FORECASTER_ARTIFACT: str(saved), WARMUP_ARTIFACT: str(warmup)},
                code_paths=[_package_dir(forecast), _package_dir(pipelines)],
                signature=forecaster_signature(forecaster),
                metadata={INPUTS_METADATA: input_columns(forecaster)},
                input_example=example,
                pip_requirements=pip_requirements(),
                registered_model_name=registered_model_name,
            )
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        where = _discard_partial_model(before)
        raise DiskFullError(
            f"model {name!r} of run {mlflow.active_run().info.run_id}{where}"
        ) from None


def _last_model_id() -> str | None:
    """The id of the model this process logged last, if it is in the current store.

    MLflow keeps that id per process; a model logged to another store is not found here.
    """
    try:
        model = mlflow.last_logged_model()
    except MlflowException:
        return None
    return model.model_id if model is not None else None


def _discard_partial_model(before: str | None) -> str:
    """Delete the files and the entry of a logged model whose upload failed half-way.

    Returns:
        `` (<artifact location>)`` of the model it deleted, or "" when none was created.
    """
    created_id = _last_model_id()
    if created_id is None or created_id == before:
        return ""
    created = mlflow.MlflowClient().get_logged_model(created_id)
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import is_local_uri

    location = created.artifact_location
    if is_local_uri(location, is_tracking_or_registry_uri=False):
        shutil.rmtree(local_file_uri_to_path(location), ignore_errors=True)
    try:
        mlflow.MlflowClient().delete_logged_model(created.model_id)
    except Exception:  # the store may be unwritable too; the files are gone either way
        pass
    return f" ({location})"


def _model_uri(artifact: Path) -> str:
    """The URI of the MLflow model holding a downloaded artifact, from its ``MLmodel`` file."""
    root = artifact.parent.parent  # <model>/artifacts/<name>
    try:
        meta = yaml.safe_load((root / "MLmodel").read_text())
    except (OSError, yaml.YAMLError):
        return str(root)
    if isinstance(meta, dict) and meta.get("model_id"):
        return f"models:/{meta['model_id']}"
    if isinstance(meta, dict) and meta.get("run_id") and meta.get("artifact_path"):
        return f"runs:/{meta['run_id']}/{meta['artifact_path']}"
    return str(root)


def _package_dir(module: Any) -> str:
    return str(Path(module.__file__).resolve().parent)
