"""Recurrent forecasting models, training, evaluation, MLflow tracking and serving.

The public API is re-exported here; heavy modules load on first use, so the command
line starts fast.

Example:
    >>> from forecast import load_config, train_job
    >>> outcome = train_job(load_config("configs/elecdemand.yaml"))
    >>> outcome.table("test")          # model next to naive and seasonal-naive baselines
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

if importlib.util.find_spec("tensorflow") is None:  # pragma: no cover - install-time problem
    raise ImportError(
        "TensorFlow is not installed. Install exactly one flavour: "
        "`pip install 'rnn-forecast[cpu]'` (tensorflow-cpu) or `pip install 'rnn-forecast[gpu]'` "
        "(tensorflow with CUDA)."
    )

__version__ = "0.1.0"

_EXPORTS = {
    "ForecastConfig": "forecast.config",
    "load_config": "forecast.config",
    "apply_overrides": "forecast.config",
    "prepare": "forecast.prepare",
    "load_source": "forecast.prepare",
    "Prepared": "forecast.prepare",
    "train_model": "forecast.fitting",
    "train_job": "forecast.jobs",
    "TrainOutcome": "forecast.jobs",
    "verdict": "forecast.jobs",
    "run_backtest": "forecast.backtest",
    "BacktestResult": "forecast.backtest",
    "Forecaster": "forecast.forecaster",
    "PipelineState": "forecast.forecaster",
    "model_forecasts": "forecast.evaluate",
    "baseline_forecasts": "forecast.evaluate",
    "score": "forecast.evaluate",
    "per_step": "forecast.evaluate",
    "ModelSpec": "forecast.models",
    "OptimizerSpec": "forecast.models",
    "build_model": "forecast.models",
    "compile_model": "forecast.models",
    "to_streaming": "forecast.models",
    "TrainConfig": "forecast.train",
    "fit": "forecast.train",
    "make_strategy": "forecast.distribute",
    "evaluate": "forecast.metrics",
    "evaluate_by_step": "forecast.metrics",
    "log_forecaster": "forecast.serving",
    "ModelServer": "forecast.serving",
    "request_json": "forecast.serving",
    "forecasts_from_json": "forecast.serving",
    "make_baseline": "forecast.baselines",
    "register_and_promote": "forecast.registry",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'forecast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
