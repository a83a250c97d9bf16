"""Batch prediction: load a model by MLflow URI (or a saved forecaster folder) and run it."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pandas as pd
import yaml


def load_model(uri: str) -> Any:
    """A `Forecaster` from a saved folder, else an MLflow pyfunc model from `uri`.

    Raises:
        ModelLoadError: a file of the model is missing, truncated or corrupted; the message
            names `uri` and the file.
        MlflowException: `uri` names no model (``RESOURCE_DOES_NOT_EXIST``).
    """
    from forecast.serving.artifacts import ModelLoadError

    path = Path(uri)
    if path.is_dir() and (path / "model.keras").exists() and not (path / "MLmodel").exists():
        from forecast.serving.forecaster import Forecaster

        try:
            return Forecaster.load(path)
        except ModelLoadError as exc:
            raise exc.for_model(uri) from None
    import mlflow.artifacts
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from forecast.serving.environment import warn_mismatches

    try:
        # Found (a local store) or downloaded first, so that the environment check runs here:
        # MLflow's own reads every installed distribution's file list (`environment`).
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        model = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
    except ModelLoadError as exc:
        raise ModelLoadError(uri, exc.artifact, exc.problem) from None
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            raise  # a name that exists nowhere: the CLI reports MLflow's message
        raise ModelLoadError(
            uri, _artifact_named(str(exc)), f"cannot be read: {exc.message}"
        ) from None
    except (pickle.UnpicklingError, EOFError) as exc:
        # Models logged by versions before models-from-code pickle their python model.
        raise ModelLoadError(
            uri, "python_model.pkl", f"is truncated or corrupted ({exc})"
        ) from None
    except (OSError, SyntaxError, ValueError, yaml.YAMLError) as exc:
        raise ModelLoadError(
            uri, _artifact_named(str(exc)), f"cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    warn_mismatches(local, model.metadata.flavors)
    return model


def _artifact_named(message: str) -> str:
    """The model file an MLflow error is about, or ``MLmodel`` (what MLflow reads first)."""
    for name in ("python_model.pkl", "model_code.py", "conda.yaml", "python_env.yaml"):
        if name in message:
            return name
    return "MLmodel"


def predict_frame(model: Any, history: pd.DataFrame) -> pd.DataFrame:
    """Forecast rows for every series in `history`.

    `history` may be a file as pandas reads it: timestamps as text (UTC offsets kept),
    integer value columns, extra columns (ignored). A `Forecaster` gets it coerced here by
    `forecast.serving.coerce`; a pyfunc model logged by this package coerces it itself.
    A model logged before that declares column types that MLflow enforces: its timestamps
    are parsed and integer values widened here so that the check accepts them.
    """
    history = _coerced(model, history)
    out = model.predict(history)
    return out if isinstance(out, pd.DataFrame) else pd.DataFrame(out)


def _coerced(model: Any, history: pd.DataFrame) -> pd.DataFrame:
    from forecast.serving.coerce import coerce_request
    from forecast.serving.forecaster import Forecaster

    if isinstance(model, Forecaster):
        from forecast.serving.pyfunc import request_layout

        return coerce_request(history, request_layout(model))
    from forecast.serving.coerce import RequestLayout
    from forecast.serving.pyfunc import INPUTS_METADATA

    metadata = getattr(model, "metadata", None)
    if metadata is None:
        return history
    columns = (metadata.metadata or {}).get(INPUTS_METADATA)
    if columns is not None:  # the model coerces too; here errors stay DataValidationErrors
        return coerce_request(history, RequestLayout.from_columns(columns))
    schema = metadata.get_input_schema()
    return history if schema is None else _legacy_request(schema, history)


def _legacy_request(schema: Any, history: pd.DataFrame) -> pd.DataFrame:
    """`history` in the types an older model's signature declares (datetime, double)."""
    from mlflow.types import DataType

    from forecast.serving.coerce import RequestLayout, coerce_request
    from pipelines.errors import DataValidationError

    times = [c.name for c in schema.inputs if c.type == DataType.datetime and c.name in history]
    doubles = [c.name for c in schema.inputs if c.type == DataType.double and c.name in history]
    if not times:
        return history
    layout = RequestLayout(time_col=times[0], id_col=None, value_columns=tuple(doubles))
    coerced = coerce_request(history.reset_index(drop=True), layout)
    history = history.reset_index(drop=True).copy()
    for col in coerced.columns:
        history[col] = coerced[col]
    time = history[times[0]]
    if getattr(time.dtype, "tz", None) is not None:
        raise DataValidationError(
            f"Column {times[0]!r} holds timestamps with a UTC offset ({time.iloc[0]}); this "
            "model was logged by an earlier version of the package, whose signature takes "
            "time-zone-naive timestamps only. Convert them (e.g. tz_convert(None)) or retrain."
        )
    return history
