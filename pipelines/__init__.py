"""Data pipelines: load, validate, featurize, split, scale and window time series.

Example:
    >>> from pipelines import datasets, validate, make_windows, WindowSpec
    >>> ds = datasets.load("elecdemand")
    >>> frame = validate(ds.frame, ds.schema, policy=ds.policy)
    >>> windows = make_windows(frame, ds.schema, WindowSpec(lookback=96, horizon=48))
"""

from __future__ import annotations

import importlib
from typing import Any

from pipelines import datasets
from pipelines.calendars import Calendar
from pipelines.errors import ConfigError, DataValidationError, ForecastError
from pipelines.features import FeatureSpec, add_features, calendar_features, future_features
from pipelines.scale import SeriesScaler
from pipelines.schema import SeriesSchema
from pipelines.sources import long_to_wide, read_frame, wide_to_long
from pipelines.split import FrameSplit, rolling_origins, split_by_time
from pipelines.validate import SEGMENT_COL, ValidationPolicy, validate
from pipelines.window import Windows, WindowSpec, inference_windows, make_windows

# tf.data needs TensorFlow; load it only when asked for.
_LAZY = {"to_dataset": "pipelines.dataset"}

__all__ = [
    "SEGMENT_COL",
    "Calendar",
    "ConfigError",
    "DataValidationError",
    "FeatureSpec",
    "ForecastError",
    "FrameSplit",
    "SeriesScaler",
    "SeriesSchema",
    "ValidationPolicy",
    "WindowSpec",
    "Windows",
    "add_features",
    "calendar_features",
    "datasets",
    "future_features",
    "inference_windows",
    "long_to_wide",
    "make_windows",
    "read_frame",
    "rolling_origins",
    "split_by_time",
    "to_dataset",
    "validate",
    "wide_to_long",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
