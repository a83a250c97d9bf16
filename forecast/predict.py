"""Batch prediction: load a model by MLflow URI (or a saved forecaster folder) and run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def load_model(uri: str) -> Any:
    """A `Forecaster` from a saved folder, else an MLflow pyfunc model from `uri`."""
    path = Path(uri)
    if path.is_dir() and (path / "pipeline.json").is_file():
        from forecast.forecaster import Forecaster

        return Forecaster.load(path)
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(uri)


def predict_frame(model: Any, history: pd.DataFrame) -> pd.DataFrame:
    """Forecast rows for every series in `history`."""
    out = model.predict(history)
    return out if isinstance(out, pd.DataFrame) else pd.DataFrame(out)
