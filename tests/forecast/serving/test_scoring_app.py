"""`forecast serve`: MLflow's scoring server behind `ScoringGuard`, one real server on
127.0.0.1 for the module. Hostile bodies get a 4xx whose first line is ours (issue 17), a
hypothesis fuzz of payloads finds no 5xx and no traceback, and a good request is still
answered with the in-process forecasts afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecast.serving.http import forecasts_from_json, request_json
from forecast.serving.local_server import HOST, ModelServer
from forecast.serving.pyfunc import RequestError, log_forecaster
from forecast.serving.scoring_app import (
    _too_deep,
    clean_error_body,
    clean_message,
    csv_to_json,
    nesting_depth,
)
from forecast.tracking.registry import register_and_promote
from tests.conftest import REPO_ROOT, use_store
from tests.forecast.serving.test_pyfunc import (
    assert_same_forecasts,
    elec_request,
    new_run,
    trained_forecaster,
)

JSON = "application/json"


class Guarded:
    def __init__(self, server: ModelServer, forecaster) -> None:
        self.server, self.forecaster = server, forecaster

    def post(self, body: bytes | str, content_type: str = JSON) -> requests.Response:
        return requests.post(
            f"{self.server.url}/invocations",
            data=body,
            headers={"Content-Type": content_type},
            timeout=60,
        )


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """`forecast serve --model models:/elec@champion`, started once; always stopped after."""
    elec = trained_forecaster("elec", tmp_path_factory)
    root = tmp_path_factory.mktemp("guarded-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with contextlib.chdir(root), use_store(uri):
        with new_run():
            info = log_forecaster(elec, name="elec", input_example=elec_request())
        assert register_and_promote(info.model_uri, name="elec", candidate_metric=1.0).promoted
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "PYTHONPATH": str(REPO_ROOT)}
    server = ModelServer("models:/elec@champion", env=env, cwd=root)
    server.cmd = [sys.executable, "-m", "forecast", "serve", "--model", "models:/elec@champion"]
    server.cmd += ["--host", HOST, "--port", str(server.port)]
    with server:
        yield Guarded(server, elec)
    assert not server.alive


def _first_line(response: requests.Response) -> str:
    body = response.json()
    assert "stack_trace" not in body and "Traceback" not in response.text, response.text[:2000]
    return body["message"].splitlines()[0]


# ----------------------------------------------------------------------------- the guard itself


def test_error_bodies_lose_the_frame_repr_and_the_stack_trace():
    body = json.dumps(
        {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "Failed to predict data '   timestamp  Demand\n0  2014-01-01 ...'. \n"
            "Error: History too short: 'series_0' has 40 rows.",
            "stack_trace": "Traceback (most recent call last): ...",
        }
    ).encode()
    assert json.loads(clean_error_body(body)) == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "History too short: 'series_0' has 40 rows.",
    }
    assert clean_error_body(b"not json") == b"not json"
    schema_error = (
        "Failed to predict data '   timestamp\n0 ...'. \nError: Failed to enforce schema of data "
        "'   timestamp\n0 ...' with schema '['timestamp': datetime (required)]'. Error: Failed "
        "to convert column Demand to type 'float64'. Error: 'ValueError(\"abc\")'"
    )
    assert clean_message(schema_error) == (
        "Failed to convert column Demand to type 'float64'. Error: 'ValueError(\"abc\")' "
        "(the model's input schema: ['timestamp': datetime (required)])"
    )


def test_request_error_keeps_its_message_when_mlflow_rewrites_it():
    # mlflow.pyfunc.scoring_server.invocations does exactly this assignment.
    err = RequestError("History too short: 'series_0' has 40 rows.")
    err.message = f"Failed to predict data '{'x' * 500}'. \nError: {err.message}"
    assert json.loads(err.serialize_as_json())["message"] == (
        "History too short: 'series_0' has 40 rows."
    )
    assert err.get_http_status_code() == 400


def test_csv_becomes_the_same_dataframe_split():
    frame = elec_request()
    body = json.loads(csv_to_json(frame.to_csv(index=False).encode()))["dataframe_split"]
    assert body["columns"] == list(frame.columns)
    assert pd.to_datetime([row[0] for row in body["data"]]).equals(
        pd.DatetimeIndex(frame.iloc[:, 0])
    )
    with pytest.raises(
        ValueError, match="The text/csv body could not be read as CSV with a header"
    ):
        csv_to_json(b"")


# ----------------------------------------------------------------------------- the real server


def _scaled(column: str, factor: float):
    def make(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(**{column: frame[column] * factor})

    return make


HOSTILE = [
    ("nested [ x100000", b"[" * 100_000, JSON, "The JSON body is nested too deeply to parse"),
    ("nested { x100000", b'{"a":' * 100_000, JSON, "The JSON body is nested too deeply to parse"),
    (
        "nested inside dataframe_split",
        b'{"dataframe_split": {"data": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
        JSON,
        "The JSON body is nested too deeply to parse",
    ),
    ("CSV, no header", b"", "text/csv", "The text/csv body could not be read as CSV"),
    ("not JSON", b"{not json", JSON, "Invalid input. Ensure that input is a valid JSON formatted"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("label", "body", "content_type", "message"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_hostile_bodies_get_a_one_line_400(guarded, label, body, content_type, message):
    response = guarded.post(body, content_type)
    assert response.status_code == 400, response.text[:500]
    assert _first_line(response).startswith(message)


BAD_HISTORY = [
    ("history x1e6", _scaled("Demand", 1e6), "Series 'series_0' is far outside the training range"),
    (
        "Temperature x1e6",
        _scaled("Temperature", 1e6),
        "Series 'series_0' is far outside the training range: column 'Temperature' has",
    ),
    (
        "too short",
        lambda f: f.iloc[60:],
        "History too short: 'series_0' has 40 rows. This static model needs at least 64 rows",
    ),
    (
        "missing column",
        lambda f: f.drop(columns="Temperature"),
        "The following columns are missing: ['Temperature']",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("label", "make", "message"), BAD_HISTORY, ids=[b[0] for b in BAD_HISTORY])
def test_error_bodies_start_with_our_message(guarded, label, make, message):
    response = guarded.post(request_json(make(elec_request())))
    assert response.status_code == 400, response.text[:500]
    assert _first_line(response).startswith(message)


@pytest.mark.slow
def test_a_valid_payload_as_csv_gets_the_json_forecasts(guarded):
    request = elec_request(end=1250)
    response = guarded.post(request.to_csv(index=False), "text/csv")
    assert response.status_code == 200, response.text[:2000]
    assert_same_forecasts(forecasts_from_json(response.text), guarded.forecaster.predict(request))


# ----------------------------------------------------------------------------- the fuzz

COLUMNS = ["timestamp", "Demand", "Temperature", "WorkDay", "extra"]
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.sampled_from(["2014-01-22T00:00:00", "2014-01-22", "NaT", "nan", "Infinity", "1e309"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


@st.composite
def payloads(draw) -> tuple[bytes, str]:
    """A body built from real history, then broken: columns, dtypes, NaN, order, size, nesting."""
    frame = elec_request(end=draw(st.integers(200, 1400)), history=draw(st.integers(0, 120)))
    cols = draw(st.lists(st.sampled_from(COLUMNS), unique=True, max_size=5))
    frame = frame.assign(extra=0.0)[cols] if cols else frame
    frame = frame.astype(object)
    for _ in range(draw(st.integers(0, 4))):
        if len(frame) and len(frame.columns):
            row = draw(st.integers(0, len(frame) - 1))
            frame.iat[row, draw(st.integers(0, len(frame.columns) - 1))] = draw(VALUES)
    if draw(st.booleans()) and len(frame):
        frame = frame.sample(frac=1.0, random_state=draw(st.integers(0, 9)))
    kind = draw(st.sampled_from(["split", "records", "csv", "nested", "raw"]))
    if kind == "csv":
        return frame.to_csv(index=False).encode(), "text/csv"
    if kind == "raw":
        return draw(st.binary(max_size=64)), draw(st.sampled_from([JSON, "text/csv"]))
    rows = json.loads(
        frame.to_json(orient="split", index=False, date_format="iso", default_handler=str)
    )
    if kind == "nested":
        depth = draw(st.integers(1, 3000))
        return ("[" * depth + json.dumps(rows) + "]" * depth).encode(), JSON
    if kind == "records":
        return json.dumps(
            {"dataframe_records": frame.to_dict(orient="records")}, default=str
        ).encode(), JSON
    return json.dumps({"dataframe_split": rows}).encode(), JSON


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=payloads())
def test_fuzzed_payloads_get_no_5xx_and_no_traceback(guarded, payload):
    body, content_type = payload
    response = guarded.post(body, content_type)
    assert response.status_code < 500, (response.status_code, response.text[:1000], body[:300])
    assert "Traceback" not in response.text and "stack_trace" not in response.text, response.text[
        :2000
    ]
    if response.status_code >= 400:
        assert not _first_line(response).startswith("Failed to predict data"), response.text[:500]
    else:
        assert "predictions" in response.json()


@pytest.mark.slow
def test_a_good_request_is_answered_correctly_after_the_fuzz(guarded):
    assert guarded.server.alive
    request = elec_request(end=1333)
    response = guarded.post(request_json(request))
    assert response.status_code == 200, response.text[:2000]
    assert_same_forecasts(forecasts_from_json(response.text), guarded.forecaster.predict(request))
    assert np.isfinite(forecasts_from_json(response.text)["forecast"]).all()


# ----------------------------------------------------------------------------- nesting depth
# Text that JSON escapes or that looks like structure: brackets, quotes, backslashes.
_TRICKY = st.text(alphabet=st.sampled_from('[]{}"\\ab,:\n'), max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
    max_leaves=25,
)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(_JSON, st.booleans())
def test_nesting_depth_counts_structure_only_never_brackets_in_strings(value, ascii_only):
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert nesting_depth(body) == _depth(value)


def test_brackets_in_a_string_cannot_hide_a_deep_body():
    closes = json.dumps("]" * 5_000 + '\\"]]')  # quotes and backslashes escaped inside
    body = f"[{closes}, {'[' * 2_000}1{']' * 2_000}]".encode()
    assert nesting_depth(body) == 2_001
    assert _too_deep(body)
    shallow = f"[{json.dumps('[' * 5_000)}, [[1]]]".encode()  # 5,000 brackets, depth 3
    assert nesting_depth(shallow) == 3
    assert not _too_deep(shallow)
