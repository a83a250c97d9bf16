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


def forecasts_from_json(body: str | bytes | Mapping[str, Any]) -> pd.DataFrame:
    """Forecast rows from an ``/invocations`` response, with the timestamps parsed."""
    parsed = json.loads(body) if isinstance(body, str | bytes) else body
    frame = pd.DataFrame(parsed["predictions"])
    frame[TIME_COL] = pd.to_datetime(frame[TIME_COL], format="ISO8601").dt.as_unit("ns")
    return frame.astype({STEP_COL: np.int64})
