"""``/invocations`` bodies of the MLflow scoring server: history frames in, forecast rows out."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from forecast.serving.forecaster import STEP_COL, TIME_COL
from pipelines.errors import ConfigError


def request_json(frame: pd.DataFrame, *, orient: str = "split") -> str:
    """The ``/invocations`` body for `frame`: ``dataframe_split`` or ``dataframe_records``.

    Times become ISO 8601 strings and missing values ``null``.
    """
    if orient not in ("split", "records"):
        raise ConfigError(f"`orient` must be 'split' or 'records'. Received: orient={orient!r}")
    body = json.loads(frame.to_json(orient=orient, index=False, date_format="iso"))
    return json.dumps({f"dataframe_{orient}": body})


def served_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with each timestamp column replaced by the text MLflow's server writes for it.

    The scoring server writes a pyfunc's frame with ``json.dump(..., cls=NumpyEncoder)``
    (`mlflow.pyfunc.scoring_server.predictions_to_json`): a stream, so the pure-Python
    encoder, and every ``pd.Timestamp`` of ``to_dict("records")`` goes through
    ``NumpyEncoder.default``, which writes ``Timestamp.isoformat()``. Giving it that text
    instead writes the same bytes (1,000 rows: 19.7 -> 12.2 ms, benchmarks/RESULTS.md,
    "Serving (issue 16)").
    """
    text = {col: _time_text(rows[col]) for col, d in rows.dtypes.items() if d.kind == "M"}
    if not text:
        return rows
    out = rows.copy(deep=False)  # the caller's frame keeps its timestamps
    for col, values in text.items():
        out[col] = values
    return out


def served_records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """`served_rows` as the list of row dicts the scoring server writes: the same bytes, sooner.

    `predictions_to_json` turns a frame into ``frame.to_dict(orient="records")`` before
    writing it, which boxes every value through pandas (1,000 rows of 5 columns: ~3 ms of a
    100-series answer, benchmarks/RESULTS.md, "Serving (issue 16)"); a list of dicts it
    writes as it is. Column lists zipped into dicts hold the same Python values (``int``,
    ``float``, the text of `served_rows`), in the same column order. The caller's frame is
    not copied.
    """
    columns = [str(c) for c in rows.columns]
    values = [
        _time_text(rows[c]) if d.kind == "M" else rows[c].tolist() for c, d in rows.dtypes.items()
    ]
    # map(dict, map(zip, ...)) runs in C: a third faster than a comprehension of dict(zip()).
    return list(map(dict, map(zip, itertools.repeat(columns), zip(*values, strict=True))))


def _time_text(col: pd.Series) -> list[str]:
    """``Timestamp.isoformat()`` of each value (``NaT`` for a missing one). Whole seconds
    without a timezone, the usual case, are formatted in one numpy call; anything else
    (fractions, UTC offsets, NaT) value by value."""
    if not isinstance(col.dtype, pd.DatetimeTZDtype):
        ns = col.to_numpy("datetime64[ns]")
        if not (ns.view(np.int64) % 10**9).any():  # NaT is not a whole second either
            return np.datetime_as_string(ns, unit="s").tolist()
    return [t.isoformat() for t in col]


def forecasts_from_json(body: str | bytes | Mapping[str, Any]) -> pd.DataFrame:
    """Forecast rows from an ``/invocations`` response, with the timestamps parsed."""
    parsed = json.loads(body) if isinstance(body, str | bytes) else body
    frame = pd.DataFrame(parsed["predictions"])
    frame[TIME_COL] = pd.to_datetime(frame[TIME_COL], format="ISO8601").dt.as_unit("ns")
    return frame.astype({STEP_COL: np.int64})
