"""Recurrent forecasting models: a spec in, a `keras.Model` sized from the data out.

Importing this package registers every custom Keras object (cells, layers, loss, model)
so a saved `.keras` file loads with `keras.saving.load_model` in a fresh process.
"""

from __future__ import annotations

from forecast.config.model import ModelSpec, OptimizerSpec
from forecast.models.builder import ForecastModel, build_model
from forecast.models.cells import PeepholeLSTMCell
from forecast.models.compiling import compile_model, make_optimizer
from forecast.models.heads import (
    TEACHER_INPUT,
    NonCrossingQuantiles,
    Seq2SeqDecoder,
    with_teacher_targets,
)
from forecast.models.losses import PinballLoss, pinball_loss
from forecast.models.masking import check_mask, mask_layout
from forecast.models.recurrent import make_cell, make_recurrent_layer
from forecast.models.scaling import DivideTargets, MultiplyTargets, WindowRMS
from forecast.models.streaming import reset_state, to_streaming

__all__ = [
    "TEACHER_INPUT",
    "DivideTargets",
    "ForecastModel",
    "ModelSpec",
    "MultiplyTargets",
    "NonCrossingQuantiles",
    "PeepholeLSTMCell",
    "PinballLoss",
    "Seq2SeqDecoder",
    "WindowRMS",
    "OptimizerSpec",
    "build_model",
    "check_mask",
    "compile_model",
    "make_cell",
    "make_optimizer",
    "make_recurrent_layer",
    "mask_layout",
    "pinball_loss",
    "reset_state",
    "to_streaming",
    "with_teacher_targets",
]
