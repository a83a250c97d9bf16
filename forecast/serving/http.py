"""``/invocations`` bodies of the MLflow scoring server: history frames in, forecast rows out."""

from __future__ import annotations

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
    "Serving (issue 16)"). Whole seconds without a timezone, the usual case, are formatted
    in one numpy call; anything else (fractions, UTC offsets, NaT) value by value.
    """
    text = {}
    for col, dtype in rows.dtypes.items():
        if dtype.kind != "M":  # datetime64 and DatetimeTZDtype
            continue
        if not isinstance(dtype, pd.DatetimeTZDtype):
            ns = rows[col].to_numpy("datetime64[ns]")
            if not (ns.view(np.int64) % 10**9).any():  # NaT is not a whole second either
                text[col] = np.datetime_as_string(ns, unit="s").astype(object)
                continue
        text[col] = np.array([t.isoformat() for t in rows[col]], dtype=object)
    if not text:
        return rows
    out = rows.copy(deep=False)  # the caller's frame keeps its timestamps
    for col, values in text.items():
        out[col] = values
    return out


def forecasts_from_json(body: str | bytes | Mapping[str, Any]) -> pd.DataFrame:
    """Forecast rows from an ``/invocations`` response, with the timestamps parsed."""
    parsed = json.loads(body) if isinstance(body, str | bytes) else body
    frame = pd.DataFrame(parsed["predictions"])
    frame[TIME_COL] = pd.to_datetime(frame[TIME_COL], format="ISO8601").dt.as_unit("ns")
    return frame.astype({STEP_COL: np.int64})
