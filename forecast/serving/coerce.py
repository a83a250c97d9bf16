"""A request as users send it -> the history frame a forecaster reads: the serving edge.

A CSV read with ``pd.read_csv`` and a JSON body parsed by the scoring server hold
timestamps as text (with UTC offsets, sometimes two of them across a DST change),
integer value columns, ids typed differently from training, and columns the model does
not read. The package, not MLflow's schema enforcement, decides what is safely coercible:
`coerce_request` converts it, and refuses the rest naming the column, the first bad row
and its value. The pyfunc model and batch predict both call it, so the served model and
``forecast predict`` accept the same inputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from pipelines.errors import DataValidationError
from pipelines.validate import parse_timestamps

__all__ = ["RequestLayout", "coerce_request"]


@dataclass(frozen=True)
class RequestLayout:
    """The columns a model reads.

    Args:
        time_col: the time column.
        id_col: the series id column (None for a single series).
        value_columns: targets, covariates and feature inputs: numbers.
        integer_ids: the model was fitted on integer series ids (else text ids).
    """

    time_col: str
    id_col: str | None
    value_columns: tuple[str, ...]
    integer_ids: bool = False

    @property
    def columns(self) -> list[str]:
        return [self.time_col, *([self.id_col] if self.id_col else []), *self.value_columns]

    def to_columns(self) -> list[dict[str, str]]:
        """Each column with its kind, as a logged model's metadata records them: ``datetime``
        (time), ``long`` or ``string`` (series id, as fitted), ``double`` (values)."""
        cols = [{"name": self.time_col, "type": "datetime"}]
        if self.id_col is not None:
            cols.append({"name": self.id_col, "type": "long" if self.integer_ids else "string"})
        return cols + [{"name": c, "type": "double"} for c in self.value_columns]

    @classmethod
    def from_columns(cls, cols: list[dict[str, str]]) -> RequestLayout:
        """The layout `to_columns` wrote."""
        kinds = [(c["name"], c["type"]) for c in cols]
        ids = [(n, k) for n, k in kinds if k in ("long", "string")]
        return cls(
            time_col=next(n for n, k in kinds if k == "datetime"),
            id_col=ids[0][0] if ids else None,
            value_columns=tuple(n for n, k in kinds if k == "double"),
            integer_ids=bool(ids) and ids[0][1] == "long",
        )


def coerce_request(frame: Any, layout: RequestLayout) -> Any:
    """The model's columns of `frame`, converted to what the forecaster reads.

    Columns the model does not read are dropped without a warning. Columns that need no
    conversion are not copied: the result may share memory with `frame`. Missing columns are
    left for the forecaster to report (with the list it expects); anything else than a
    DataFrame is returned as is for the same reason.

    - time: datetimes pass; text is parsed (ISO 8601 or the format of the first row);
      a UTC offset is kept, and offsets that differ between rows (a DST change) become UTC.
    - values: numbers of any width become float64; text that reads as a number is converted;
      missing values (``None``, ``NaN``) stay missing (a future row's target).
    - series ids: integer text for a model fitted on integer ids, and integers for a model
      fitted on text ids, are converted to the model's kind.

    Raises:
        DataValidationError: a value is not safely coercible; the message names the
            column, the first bad row (0-based position in the request) and its value.
    """
    if not isinstance(frame, pd.DataFrame):
        return frame
    keep = [c for c in layout.columns if c in frame.columns]
    columns = {c: frame[c] for c in keep}
    if layout.time_col in columns:
        columns[layout.time_col] = _times(columns[layout.time_col], layout.time_col)
    for col in layout.value_columns:
        if col in columns:
            columns[col] = _numbers(columns[col], col)
    if layout.id_col is not None and layout.id_col in columns:
        columns[layout.id_col] = _ids(columns[layout.id_col], layout.id_col, layout.integer_ids)
    # One frame built from the (converted) columns: selecting, then replacing each column
    # of a copy, costs ~0.1 ms a column on a one-series request.
    # numpy arrays where the dtype is numpy's (a dict of Series or pandas arrays goes through
    # a Series per column); pandas arrays (tz-aware times) as they are. Keys are in `keep` order.
    arrays = {
        c: v.to_numpy() if isinstance(v.dtype, np.dtype) else v.array for c, v in columns.items()
    }
    return pd.DataFrame(arrays, index=pd.RangeIndex(len(frame)), copy=False)


def _times(col: pd.Series, name: str) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(col):
        return col
    if ptypes.is_numeric_dtype(col) or ptypes.is_bool_dtype(col):
        return col  # validate says plainly that numbers are not timestamps
    with warnings.catch_warnings():  # mixed offsets: pandas warns, then returns objects
        warnings.simplefilter("ignore", FutureWarning)
        try:
            parsed = parse_timestamps(col)
        except (TypeError, ValueError):
            parsed = pd.Series(pd.NaT, index=col.index)
    if parsed.dtype == object:
        parsed = _mixed_offsets(col, parsed, name)
    missing = parsed.isna().to_numpy()
    if missing.any():  # `notna` of text costs more than parsing it: only where needed
        bad = missing & col.notna().to_numpy()
        _first_bad(col, bad, name, "a timestamp such as '2020-01-31 12:30'")
    return parsed


def _mixed_offsets(col: pd.Series, parsed: pd.Series, name: str) -> pd.Series:
    """Instants written with different UTC offsets, in UTC; naive next to aware is refused."""
    aware = np.array([getattr(v, "tzinfo", None) is not None for v in parsed], dtype=bool)
    valid = parsed.notna().to_numpy()
    if (aware & valid).any() and (~aware & valid).any():
        i, j = int(np.flatnonzero(aware & valid)[0]), int(np.flatnonzero(~aware & valid)[0])
        raise DataValidationError(
            f"Column {name!r} mixes timestamps with and without a UTC offset: row {i} has "
            f"{_shown(col.iloc[i])}, row {j} has {_shown(col.iloc[j])}. Write every "
            "timestamp with its offset, or none."
        )
    return pd.to_datetime(parsed, utc=True, errors="coerce")


def _numbers(col: pd.Series, name: str) -> pd.Series:
    if col.dtype == np.float64:
        return col
    if ptypes.is_bool_dtype(col) or (
        ptypes.is_numeric_dtype(col) and not ptypes.is_complex_dtype(col)
    ):
        return col.astype(np.float64)
    if ptypes.is_datetime64_any_dtype(col) or ptypes.is_timedelta64_dtype(col):
        _first_bad(col, col.notna(), name, "a number")
    conv = pd.to_numeric(col.astype(object), errors="coerce")
    _first_bad(col, conv.isna() & col.notna(), name, "a number")
    return conv.astype(np.float64)


def _ids(col: pd.Series, name: str, integer_ids: bool) -> pd.Series:
    if integer_ids and not ptypes.is_integer_dtype(col):
        conv = pd.to_numeric(col.astype(object), errors="coerce")
        if conv.notna().all() and (conv == np.round(conv)).all():
            return conv.astype(np.int64)
        return col  # validate names missing ids, the scaler the series it does not know
    if not integer_ids and ptypes.is_integer_dtype(col):
        return col.astype(str)
    return col


def _first_bad(col: pd.Series, bad: pd.Series, name: str, expected: str) -> None:
    flags = np.asarray(bad, dtype=bool)
    if flags.any():
        row = int(np.flatnonzero(flags)[0])
        raise DataValidationError(
            f"Column {name!r} must hold {expected} in every row; row {row} has "
            f"{_shown(col.iloc[row])} ({int(flags.sum())} such rows)."
        )


def _shown(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)
