"""MLflow's scoring server with a guard in front: what ``forecast serve`` runs.

``mlflow models serve`` answers three kinds of request badly, before the model is called, in
code a model cannot reach (`mlflow.pyfunc.scoring_server`):

- a JSON body nested ~1,000 levels deep raises RecursionError in ``json.loads``, which
  MLflow does not catch: HTTP 500;
- a ``text/csv`` body is read with ``dtype=`` from the signature, which pandas refuses for a
  datetime column: a 400 that quotes pandas and carries a Python traceback;
- every error of a predict call is reported as ``Failed to predict data '<the whole input
  frame>'. Error: ...``, so the first thing a client reads is a frame repr.

`ScoringGuard` is a plain ASGI middleware around MLflow's own app (`scoring_server.init`,
the same FastAPI routes, parsing, schema enforcement and model): it answers a body nested
too deeply with a one-line 400, turns a CSV body into the equivalent ``dataframe_split``
JSON (so the time column is parsed as with JSON), and removes the frame repr and the
``stack_trace`` field from error bodies (the traceback is logged by the server instead).
Every other request and response passes through unchanged.

Run it with ``forecast serve --model URI`` (uvicorn with `create_app` as the app factory).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MODEL_ENV = "FORECAST_SERVE_MODEL"  # the local model folder `create_app` loads
_Send = Callable[[dict[str, Any]], Awaitable[None]]
_PREFIX = "Failed to predict data '"
_CAUSE = "\nError: "
_SCHEMA_PREFIX = "Failed to enforce schema of data '"  # mlflow.pyfunc._validate_prediction_input
_WITH_SCHEMA = "' with schema '"
_SCHEMA_CAUSE = "'. Error: "
_NESTED = (
    "The JSON body is nested too deeply to parse (Python's JSON parser stops near 1,000 "
    'levels); send {"dataframe_split": {"columns": [...], "data": [[...], ...]}} or '
    '{"dataframe_records": [{...}, ...]}.'
)


class ScoringGuard:
    """ASGI middleware in front of MLflow's scoring app (see the module docstring).

    Args:
        app: the ASGI app of `mlflow.pyfunc.scoring_server.init`.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: _Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/invocations":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        headers = dict(scope.get("headers") or [])
        mime = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if mime == b"application/json" and _too_deep(body):
            await _reply(send, 400, "BAD_REQUEST", _NESTED)
            return
        if mime == b"text/csv":
            try:
                body = csv_to_json(body)
            except ValueError as err:
                await _reply(send, 400, "BAD_REQUEST", str(err))
                return
            headers[b"content-type"] = b"application/json"
            headers[b"content-length"] = str(len(body)).encode()
            scope = {**scope, "headers": list(headers.items())}
        await self.app(scope, _replay(body), _CleanErrors(send))


_SHALLOW = 500  # json's C scanner recurses once per level; Python's limit is near 1,000
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'[]{}"')  # every byte but these five


def _too_deep(body: bytes) -> bool:
    """Whether ``json.loads`` would hit Python's recursion limit on `body`."""
    # Parsing is the only sure test, and it costs as much as MLflow's own parse (4.7 ms on a
    # 283 KiB, 100-series body); nesting far below the limit is ruled out first, cheaply.
    if body.count(b"[") + body.count(b"{") < _SHALLOW or nesting_depth(body) < _SHALLOW:
        return False
    try:
        json.loads(body)
    except RecursionError:
        return True
    except ValueError:  # MLflow reports malformed JSON itself
        return False
    return False


def nesting_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON `body`, brackets in strings not counted.

    Exact for valid JSON; for invalid JSON at least the depth ``json.loads`` reaches before
    its first error (it reads strings and escapes the same way up to there).
    """
    if b"\\" in body:
        # Escapes first, left to right as JSON reads them: an escaped backslash, then an
        # escaped quote; every quote left opens or closes a string.
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    codes = np.frombuffer(body.translate(None, _NOT_STRUCTURE), dtype=np.uint8)
    if not codes.size:
        return 0
    quote = codes == ord('"')
    outside = (np.cumsum(quote) % 2 == 0) & ~quote  # an odd count of quotes so far: in a string
    opens = outside & ((codes == ord("[")) | (codes == ord("{")))
    closes = outside & ((codes == ord("]")) | (codes == ord("}")))
    return max(int(np.cumsum(opens.astype(np.int64) - closes).max()), 0)


def csv_to_json(body: bytes) -> bytes:
    """A CSV body (header row first) as the ``dataframe_split`` JSON of the same rows.

    Values keep pandas' inferred types; timestamps stay text, which the scoring server parses
    for the signature's datetime column exactly as it does for JSON.

    Raises:
        ValueError: the body is not UTF-8 CSV with a header row; one line saying so.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(body), encoding="utf-8")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"The text/csv body could not be read as CSV with a header row ({first}); send a "
            'header row of column names, or JSON: {"dataframe_split": {...}}.'
        ) from None
    split = json.loads(frame.to_json(orient="split", index=False, date_format="iso"))
    return json.dumps({"dataframe_split": split}).encode()


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _reply(send: _Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error_code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _CleanErrors:
    """Wraps `send`: JSON error bodies lose MLflow's frame-repr prefix and the stack trace."""

    def __init__(self, send: _Send) -> None:
        self.send = send
        self.start: dict[str, Any] | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self.start = message  # held back until the whole body is known
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = clean_error_body(b"".join(self.chunks))
        headers = [(k, v) for k, v in self.start.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def clean_error_body(body: bytes) -> bytes:
    """An MLflow error body with the message's frame repr and the ``stack_trace`` removed."""
    try:
        error = json.loads(body)
    except ValueError:
        return body
    if not isinstance(error, dict):
        return body
    trace = error.pop("stack_trace", None)
    if trace:
        log.warning("Request failed with a server-side error:\n%s", trace)
    message = error.get("message")
    if isinstance(message, str):
        error["message"] = clean_message(message)
    return json.dumps(error).encode()


def clean_message(message: str) -> str:
    """MLflow's message without the frame reprs it puts first: the cause, then the schema.

    ``Failed to predict data '<frame>'. \nError: <cause>`` becomes ``<cause>``, and ``Failed
    to enforce schema of data '<frame>' with schema '<schema>'. Error: <cause>`` becomes
    ``<cause> (the model's input schema: <schema>)``.
    """
    if message.startswith(_PREFIX) and _CAUSE in message:
        message = message.split(_CAUSE, 1)[1]
    if message.startswith(_SCHEMA_PREFIX) and _WITH_SCHEMA in message:
        at = message.index(_WITH_SCHEMA) + len(_WITH_SCHEMA)
        end = message.find(_SCHEMA_CAUSE, at)
        if end >= 0:
            schema, cause = message[at:end], message[end + len(_SCHEMA_CAUSE) :]
            message = f"{cause} (the model's input schema: {schema})"
    return message


def create_app() -> ScoringGuard:
    """The guarded app for uvicorn's ``--factory``: MLflow's app for the model in `MODEL_ENV`."""
    from mlflow.pyfunc import scoring_server

    from forecast.serving.batch import load_model

    path = os.environ.get(MODEL_ENV)
    if not path:
        raise RuntimeError(f"Set {MODEL_ENV} to a local MLflow model folder (forecast serve does).")
    # The package's loader: MLflow's environment warnings at a fraction of their cost, in
    # every worker's start (`forecast.serving.environment`).
    model = load_model(path)
    return ScoringGuard(scoring_server.init(model))
