"""Refuse served history far outside what the scaler saw in training.

A model fitted on demand in MW answers a request in W (values x1e6) with forecasts of the
training scale and no sign that anything is wrong. Every value column is compared in the
scaler's own units, where the training rows lie around 0 with a spread of about 1: a value
more than `MAX_SCALED` of them from the training centre is refused, naming the series, the
column, the row and the training range. 100 spreads is far past any real drift (100 standard
deviations for ``scale.method: standard``, 100 interquartile ranges for ``robust``, 100
training ranges for ``minmax``) and well short of a units mistake (x1000 of a typical series
is thousands).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.errors import DataValidationError
from pipelines.scale import SeriesScaler

MAX_SCALED = 100.0


def check_in_range(
    raw: pd.DataFrame,
    scaled: pd.DataFrame,
    scaler: SeriesScaler,
    ids: np.ndarray,
    *,
    time_col: str,
    limit: float = MAX_SCALED,
) -> None:
    """Raise DataValidationError when a scaled value lies more than `limit` from 0.

    Args:
        raw: the history in original units (same rows as `scaled`).
        scaled: `scaler.transform(raw)`.
        scaler: the fitted scaler (its columns, offsets and scales name the training range).
        ids: (len(raw),) series id of each row.
        time_col: the time column, to name the row.
        limit: the largest distance allowed, in the scaler's units.
    """
    cols = list(scaler.columns_)
    values = np.abs(np.column_stack([scaled[c].to_numpy(dtype=np.float64) for c in cols]))
    far = values > limit  # NaN compares False: missing values are validation's to report
    if not far.any():
        return
    rows, columns = np.nonzero(far)
    row, c = int(rows[0]), int(columns[0])
    col, sid = cols[c], ids[row]
    series = pd.unique(np.asarray(ids, dtype=object)[rows]).tolist()
    k = int(scaler.series_index([sid])[0])
    centre, spread = scaler.offset_[k, c], scaler.scale_[k, c]
    raise DataValidationError(
        f"Series {_plain(sid)!r} is far outside the training range: column {col!r} has "
        f"{_plain(raw[col].iloc[row])!r} at {raw[time_col].iloc[row]}, "
        f"{values[row, c]:.3g} training spreads from the training centre (centre "
        f"{centre:.6g}, spread {spread:.6g}; the limit is {limit:g}). Check the units; the "
        f"forecasts would mean nothing. Series affected: {[_plain(s) for s in series[:5]]}"
        + (" ..." if len(series) > 5 else "")
    )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
