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
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(uri)
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


def _artifact_named(message: str) -> str:
    """The model file an MLflow error is about, or ``MLmodel`` (what MLflow reads first)."""
    for name in ("python_model.pkl", "model_code.py", "conda.yaml", "python_env.yaml"):
        if name in message:
            return name
    return "MLmodel"


def predict_frame(model: Any, history: pd.DataFrame) -> pd.DataFrame:
    """Forecast rows for every series in `history`.

    Files read as CSV hold timestamps as text; the model's signature says which columns are
    times, and they are parsed here so the signature check accepts them.
    """
    history = _parse_times(model, history)
    out = model.predict(history)
    return out if isinstance(out, pd.DataFrame) else pd.DataFrame(out)


def _parse_times(model: Any, history: pd.DataFrame) -> pd.DataFrame:
    from mlflow.types import DataType

    from pipelines.errors import DataValidationError
    from pipelines.validate import parse_timestamps

    metadata = getattr(model, "metadata", None)
    schema = metadata.get_input_schema() if metadata is not None else None
    if schema is None:
        return history
    times = [c.name for c in schema.inputs if c.type == DataType.datetime and c.name in history]
    if not times:
        return history
    history = history.copy()
    for col in times:
        parsed = parse_timestamps(history[col])
        bad = parsed.isna() & history[col].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise DataValidationError(
                f"Column '{col}' must hold timestamps; row {row} has {history[col].iloc[row]!r}."
            )
        history[col] = parsed
    return history
