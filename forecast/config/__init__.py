"""Every config dataclass of a job, validated once at the edge; importing it loads no TensorFlow.

Example:
    >>> from forecast.config import load_config
    >>> config = load_config("configs/sp500.yaml", ("training.epochs=3",))
    >>> config.window.horizon
    5
"""

from __future__ import annotations

from forecast.config.job import ForecastConfig, apply_overrides, load_config
from forecast.config.model import ModelSpec, OptimizerSpec
from forecast.config.sections import (
    PROMOTE_METRICS,
    BacktestConfig,
    CalibrationConfig,
    DataConfig,
    EvaluationConfig,
    ScaleConfig,
    SplitConfig,
    TrackingConfig,
)
from forecast.config.training import STRATEGIES, TrainConfig
from forecast.config.tuning import TuningConfig

__all__ = [
    "PROMOTE_METRICS",
    "STRATEGIES",
    "BacktestConfig",
    "CalibrationConfig",
    "DataConfig",
    "EvaluationConfig",
    "ForecastConfig",
    "ModelSpec",
    "OptimizerSpec",
    "ScaleConfig",
    "SplitConfig",
    "TrackingConfig",
    "TrainConfig",
    "TuningConfig",
    "apply_overrides",
    "load_config",
]
