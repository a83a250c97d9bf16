"""Serving: the `Forecaster` (raw history in, forecast rows out), its MLflow pyfunc, batch
prediction and the ``/invocations`` JSON helpers.

`ForecasterModel` stays importable from here: models logged before models from code
pickled it under ``forecast.serving.ForecasterModel``.
"""

from __future__ import annotations

from forecast.serving.batch import load_model, predict_frame
from forecast.serving.forecaster import Forecaster, PipelineState
from forecast.serving.http import forecasts_from_json, request_json
from forecast.serving.pyfunc import ForecasterModel, example_history, log_forecaster

__all__ = [
    "Forecaster",
    "ForecasterModel",
    "PipelineState",
    "example_history",
    "forecasts_from_json",
    "load_model",
    "log_forecaster",
    "predict_frame",
    "request_json",
]
