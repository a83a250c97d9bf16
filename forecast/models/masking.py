"""Checks on the explicit (B, L) history mask, done in numpy before the model runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.errors import DataValidationError


def check_mask(mask: Any, *, name: str = "mask") -> np.ndarray:
    """Validate a history mask: (B, L) bool, True = real step, every row with a real step.

    A row with no valid step has no last state to forecast from; on GPU the cuDNN kernel
    asserts on it deep inside TensorFlow, and on CPU it silently yields the initial state.
    Checking in numpy first gives a clear error naming the rows.

    Args:
        mask: the mask, numpy array or anything `np.asarray` accepts.
        name: how the mask is called in messages.

    Returns:
        The mask as a numpy bool array.

    Raises:
        DataValidationError: wrong rank or dtype, or rows without a valid step.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise DataValidationError(
            f"`{name}` must be 2-D (batch, lookback). Received shape {arr.shape}"
        )
    if arr.dtype != np.bool_:
        raise DataValidationError(
            f"`{name}` must be boolean (True = real step). Received dtype {arr.dtype}"
        )
    empty = np.flatnonzero(~arr.any(axis=1))
    if empty.size:
        rows = empty[:10].tolist()
        more = f" (and {empty.size - 10} more)" if empty.size > 10 else ""
        raise DataValidationError(
            f"`{name}` rows {rows}{more} have no valid step; every window needs at least "
            f"one real history step. Received {empty.size} such rows of {arr.shape[0]}"
        )
    return arr


def mask_layout(mask: Any) -> str:
    """How a (B, L) bool mask is padded: ``"none"``, ``"right"``, ``"left"`` or ``"mixed"``.

    Right padding (valid steps first) is the layout cuDNN needs; anything else runs the
    generic loop on GPU.
    """
    arr = check_mask(mask)
    if arr.all():
        return "none"
    as_int = arr.astype(np.int8)
    steps = np.diff(as_int, axis=1)  # +1 where padding ends, -1 where it starts
    if not (steps > 0).any():
        return "right"
    if not (steps < 0).any():
        return "left"
    return "mixed"
