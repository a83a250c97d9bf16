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
import os
from typing import Any

# TensorFlow's C++ start-up lines (oneDNN, cpu_feature_guard, XLA service) tell a user of the
# CLI or of a served model nothing they can act on: hide INFO and WARNING before TensorFlow
# loads, unless the environment asks for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
    "prepare": "forecast.data",
    "load_source": "forecast.data",
    "Prepared": "forecast.data",
    "train_model": "forecast.training.fitting",
    "train_job": "forecast.jobs.train",
    "TrainOutcome": "forecast.jobs.train",
    "verdict": "forecast.jobs.train",
    "run_backtest": "forecast.jobs.backtest",
    "BacktestResult": "forecast.jobs.backtest",
    "tune_job": "forecast.jobs.tune",
    "TuneResult": "forecast.jobs.tune",
    "Forecaster": "forecast.serving.forecaster",
    "PipelineState": "forecast.serving.forecaster",
    "model_forecasts": "forecast.evaluation.scoring",
    "baseline_forecasts": "forecast.evaluation.scoring",
    "score": "forecast.evaluation.scoring",
    "score_part": "forecast.evaluation.scoring",
    "per_step": "forecast.evaluation.scoring",
    "ModelSpec": "forecast.config",
    "OptimizerSpec": "forecast.config",
    "build_model": "forecast.models",
    "compile_model": "forecast.models",
    "to_streaming": "forecast.models",
    "TrainConfig": "forecast.config",
    "fit": "forecast.training.loop",
    "make_strategy": "forecast.training.distribute",
    "evaluate": "forecast.evaluation.metrics",
    "evaluate_by_step": "forecast.evaluation.metrics",
    "log_forecaster": "forecast.serving.pyfunc",
    "request_json": "forecast.serving.http",
    "forecasts_from_json": "forecast.serving.http",
    "load_model": "forecast.serving.batch",
    "predict_frame": "forecast.serving.batch",
    "make_baseline": "forecast.evaluation.baselines",
    "register_and_promote": "forecast.tracking.registry",
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
