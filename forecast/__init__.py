"""Recurrent forecasting models, training, evaluation, MLflow tracking and serving."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("tensorflow") is None:  # pragma: no cover - install-time problem
    raise ImportError(
        "TensorFlow is not installed. Install exactly one flavour: "
        "`pip install 'rnn-forecast[cpu]'` (tensorflow-cpu) or `pip install 'rnn-forecast[gpu]'` "
        "(tensorflow with CUDA)."
    )

__version__ = "0.1.0"
__all__ = ["__version__"]
