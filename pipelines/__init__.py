"""Data pipelines: load, validate, featurize, split, scale and window time series."""

from __future__ import annotations

from pipelines.errors import ConfigError, DataValidationError, ForecastError
from pipelines.schema import SeriesSchema

__all__ = ["ConfigError", "DataValidationError", "ForecastError", "SeriesSchema"]
