"""Batch prediction: load a model by MLflow URI (or a saved forecaster folder) and run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def load_model(uri: str) -> Any:
    """A `Forecaster` from a saved folder, else an MLflow pyfunc model from `uri`."""
    path = Path(uri)
    if path.is_dir() and (path / "pipeline.json").is_file():
        from forecast.serving.forecaster import Forecaster

        return Forecaster.load(path)
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(uri)


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
