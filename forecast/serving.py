"""MLflow pyfunc for a `Forecaster`: raw history rows in, forecast rows out, loadable anywhere.

The logged model carries the Keras model and the fitted pipeline state (``model.keras`` +
``pipeline.json``, no pickle), a warm-up request, and the ``forecast`` and ``pipelines``
source directories as ``code_paths``, so ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` work where this package is not installed. The pickled
`ForecasterModel` holds no state: everything is loaded in `load_context`.

`request_json` / `forecasts_from_json` build and read ``/invocations`` bodies, and
`ModelServer` runs the real ``mlflow models serve`` on 127.0.0.1 for tests and benchmarks.

Example:
    >>> with mlflow.start_run():
    ...     info = log_forecaster(fitted.forecaster, input_example=history)
    >>> model = mlflow.pyfunc.load_model(info.model_uri)
    >>> model.predict(history)          # same rows as fitted.forecaster.predict(history)
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, Schema

import forecast
import pipelines
from forecast.forecaster import (
    FORECAST_COL,
    SERIES_COL,
    STEP_COL,
    TARGET_COL,
    TIME_COL,
    Forecaster,
    quantile_column,
)
from pipelines.errors import ConfigError, ForecastError

log = logging.getLogger(__name__)

FORECASTER_ARTIFACT = "forecaster"
WARMUP_ARTIFACT = "warmup"
HOST = "127.0.0.1"  # the local server helper listens on loopback only
# Distributions the served model imports, pinned to the versions that trained it.
_REQUIREMENTS = ("keras", "pandas", "numpy", "scikit-learn", "mlflow", "pyyaml", "pyarrow")
_TENSORFLOW = ("tensorflow-cpu", "tensorflow")
_EXAMPLE_START = pd.Timestamp("2000-01-03")  # a Monday: on the grid of "B", "W-MON", "D", ...


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """The pyfunc wrapper: loads the forecaster once, then only computes.

    `predict` reads the loaded forecaster and writes nothing shared, so the scoring server may
    call it from several threads at once.
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        forecaster = Forecaster.load(context.artifacts[FORECASTER_ARTIFACT])
        # The first call traces the Keras predict function; pay for it before traffic arrives.
        forecaster.predict(pd.read_parquet(context.artifacts[WARMUP_ARTIFACT]))
        self._forecaster = forecaster

    @property
    def forecaster(self) -> Forecaster:
        """The loaded forecaster (after `load_context`)."""
        return self._forecaster

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Forecast rows for the history rows in `model_input` (see `Forecaster.predict`).

        Raises:
            MlflowException: ``INVALID_PARAMETER_VALUE`` (HTTP 400 when served) with the
                message of the `ForecastError` that the payload caused.
        """
        try:
            return self._forecaster.predict(model_input)
        except ForecastError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc


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
    """Explicit signature: history columns in, forecast rows out.

    The time column is typed ``datetime``: the scoring server parses ISO strings of a JSON
    request with ``pd.to_datetime`` and in-process callers pass ``datetime64`` columns
    (time-zone-naive). Series ids are ``long`` when the model was fitted on integer ids,
    else ``string``. Value columns are ``double``; a missing target (``null``) marks a
    future row.
    """
    raw = forecaster.state.raw_schema
    inputs = [ColSpec(DataType.datetime, raw.time_col)]
    if raw.id_col is not None:
        inputs.append(ColSpec(_id_type(forecaster), raw.id_col))
    keys = (raw.time_col, raw.id_col)
    inputs += [ColSpec(DataType.double, c) for c in forecaster.required_columns if c not in keys]
    outputs = [
        ColSpec(DataType.string, SERIES_COL),
        ColSpec(DataType.datetime, TIME_COL),
        ColSpec(DataType.long, STEP_COL),
        ColSpec(DataType.string, TARGET_COL),
        ColSpec(DataType.double, FORECAST_COL),
        *(ColSpec(DataType.double, quantile_column(q)) for q in forecaster.state.quantiles),
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


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
    times = pd.date_range(_EXAMPLE_START, periods=n_hist + n_future, freq=freq).as_unit("ns")
    frame = pd.DataFrame({raw.time_col: times})
    if raw.id_col is not None:
        known = [s for s in st.scaler.series_ids_ if s is not None]
        frame[raw.id_col] = known[0] if known else "example"
    for col in forecaster.required_columns:
        if col not in frame.columns:
            frame[col] = 1.0
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
            use `forecast.registry.register_and_promote` for that).

    Returns:
        MLflow's `ModelInfo`; ``model_uri`` is ``models:/m-<id>``.

    Raises:
        ConfigError: no run is active, or `forecaster` is not a `Forecaster`.
        ForecastError: the input example is not a valid request.
    """
    if mlflow.active_run() is None:
        raise ConfigError("`log_forecaster` needs an active MLflow run: call it inside one.")
    if not isinstance(forecaster, Forecaster):
        raise ConfigError(
            f"`forecaster` must be a Forecaster. Received: {type(forecaster).__name__}"
        )
    example = example_history(forecaster) if input_example is None else input_example
    forecaster.predict(example)
    with tempfile.TemporaryDirectory() as tmp:
        saved = forecaster.save(Path(tmp) / FORECASTER_ARTIFACT)
        warmup = Path(tmp) / "warmup.parquet"
        example.to_parquet(warmup, index=False)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ForecasterModel(),
            artifacts={FORECASTER_ARTIFACT: str(saved), WARMUP_ARTIFACT: str(warmup)},
            code_paths=[_package_dir(forecast), _package_dir(pipelines)],
            signature=forecaster_signature(forecaster),
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
        )


def _package_dir(module: Any) -> str:
    return str(Path(module.__file__).resolve().parent)


# ---------------------------------------------------------------------- HTTP requests


def request_json(frame: pd.DataFrame, *, orient: str = "split") -> str:
    """The ``/invocations`` body for `frame`: ``dataframe_split`` or ``dataframe_records``.

    Times become ISO 8601 strings and missing values ``null``.
    """
    if orient not in ("split", "records"):
        raise ConfigError(f"`orient` must be 'split' or 'records'. Received: orient={orient!r}")
    body = json.loads(frame.to_json(orient=orient, index=False, date_format="iso"))
    return json.dumps({f"dataframe_{orient}": body})


def forecasts_from_json(body: str | bytes | Mapping[str, Any]) -> pd.DataFrame:
    """Forecast rows from an ``/invocations`` response, with the timestamps parsed."""
    parsed = json.loads(body) if isinstance(body, str | bytes) else body
    frame = pd.DataFrame(parsed["predictions"])
    frame[TIME_COL] = pd.to_datetime(frame[TIME_COL], format="ISO8601").dt.as_unit("ns")
    return frame.astype({STEP_COL: np.int64})


# ---------------------------------------------------------------------- local server


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ModelServer:
    """``mlflow models serve`` on 127.0.0.1, as a context manager; for checks and benchmarks.

    The server is the real one (uvicorn, ``--env-manager local``). It runs in its own process
    group, which `stop` terminates (then kills) so that no worker outlives it. `start` only
    launches it, so several servers can boot at once before `wait_ready`.

    Args:
        model_uri: ``runs:/...``, ``models:/NAME@ALIAS``, ``models:/m-...`` or a path.
        port: the port; None picks a free one.
        env: environment of the server (e.g. ``MLFLOW_TRACKING_URI``); None inherits ours.
        cwd: working directory of the server.
        workers: uvicorn worker processes.

    Example:
        >>> with ModelServer("models:/elec@champion") as server:
        ...     requests.post(f"{server.url}/invocations", data=request_json(history),
        ...                   headers={"Content-Type": "application/json"})
    """

    def __init__(
        self,
        model_uri: str,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        workers: int = 1,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
        self.cmd += ["--env-manager", "local", "-h", HOST, "-p", str(self.port)]
        self.cmd += ["-w", str(workers)]
        self.env = dict(os.environ if env is None else env)
        # The CLI starts `uvicorn` through the shell: find it next to this interpreter.
        bindir = str(Path(sys.executable).parent)
        self.env["PATH"] = os.pathsep.join([bindir, self.env.get("PATH", os.defpath)])
        self.cwd = cwd
        self.pid: int | None = None  # of the CLI, leader of the server's process group
        self._proc: subprocess.Popen | None = None
        self._log: Any = None

    def start(self) -> ModelServer:
        """Launch the server process (returns at once)."""
        self._log = tempfile.TemporaryFile("a+")  # O_APPEND: reading never moves its writes
        self._proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # uvicorn is a child of the CLI: stop the whole group
        )
        self.pid = self._proc.pid
        return self

    @property
    def alive(self) -> bool:
        """Whether any process of the server (CLI or uvicorn) is still running."""
        return self.pid is not None and _group_alive(self.pid)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until ``/ping`` answers 200.

        Raises:
            ConfigError: `start` was not called.
            RuntimeError: the server exited or did not answer within `timeout` seconds; the
                message holds the end of its log.
        """
        if self._proc is None:
            raise ConfigError("The model server is not running: call `start()` first.")
        deadline = time.monotonic() + timeout
        while self._proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        code = self._proc.poll()
        why = f"exited with code {code}" if code is not None else f"gave no /ping in {timeout:g} s"
        raise RuntimeError(f"The model server at {self.url} {why}:\n{self.log_tail()}")

    def terminate(self) -> None:
        """Send SIGTERM to the server's process group without waiting (see `stop`)."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)

    def stop(self, grace: float = 15.0) -> None:
        """Terminate the server's process group; kill what is left after `grace` seconds."""
        if self._proc is not None:
            _stop(self._proc, grace)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's combined stdout and stderr."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-chars:]

    def __enter__(self) -> ModelServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the server's process group, SIGKILL whatever is left after `grace` seconds."""
    group = proc.pid  # start_new_session made the CLI the leader of its own group
    for sig, seconds in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if sig == signal.SIGKILL:
            log.warning("The model server did not stop on SIGTERM within %g s; killing it.", grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        deadline = time.monotonic() + seconds
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)  # uvicorn may outlive the CLI for a moment
        if not _group_alive(group):
            break
    proc.wait()


def _group_alive(group: int) -> bool:
    """Whether a process other than a zombie is left in the process group."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    if not Path("/proc").is_dir():
        return True
    # Zombies answer signal 0 until reaped; orphans wait on PID 1, which may never reap them.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(pgrp) == group and state != "Z":
            return True
    return False
