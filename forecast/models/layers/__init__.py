"""Recurrent layers: drop-in replacements for `keras.layers.LSTM` / `GRU`, faster on CPU.

Importing this package registers the layers, so `.keras` files that use them load with
`keras.saving.load_model` in a fresh process.
"""

from __future__ import annotations

from forecast.models.layers.fused_rnn import FusedGRU, FusedLSTM, gpu_visible, uses_fused_path

__all__ = ["FusedGRU", "FusedLSTM", "gpu_visible", "uses_fused_path"]
