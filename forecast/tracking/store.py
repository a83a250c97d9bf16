"""The tracking store a job writes to: reachable, created once, safe for concurrent jobs.

`open_store` runs before any data is read or model built: an HTTP store is probed with a
short, bounded retry (a dead server is a one-line error in seconds, not after MLflow's
four minutes of back-off), and a SQLite store is created under a file lock next to the
database, because two processes migrating one new file race in MLflow's alembic scripts.
`retry_busy` retries the writes SQLite refuses while another job holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from pipelines.errors import ConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The probe's own bounds, used unless the user set MLflow's variables for them
# (mlflow/environment_variables.py: MLFLOW_HTTP_REQUEST_MAX_RETRIES defaults to 7 with a
# back-off factor 2 and a 120 s timeout, about 250 s against a closed port).
PROBE_MAX_RETRIES = 2
PROBE_BACKOFF_FACTOR = 1
PROBE_TIMEOUT_S = 10
_RETRY_ENV = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)

# What SQLite or MLflow report when another process wrote first (seen with two jobs on one
# store): retrying the call finds the row or the schema the other process created.
BUSY_MARKERS = (
    "database is locked",
    "database table is locked",
    "table experiments already exists",
    "duplicate column name",
    "UNIQUE constraint failed: datasets",
    "UNIQUE constraint failed: inputs",
    "UNIQUE constraint failed: input_tags",
    # Two jobs setting a new alias at once (seen through an mlflow server's sqlite backend):
    # the retry finds the alias and moves it.
    "UNIQUE constraint failed: registered_model_aliases",
)
BUSY_ATTEMPTS = 8
BUSY_FIRST_WAIT_S = 0.1


# MLflow's default store when neither the config nor the environment names one
# (mlflow/tracking/_tracking_service/utils.py); relative, so it lives in the working directory.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(config_uri: str | None) -> str:
    """Pick the tracking store: the config value, then `MLFLOW_TRACKING_URI`, then the default.

    Set it with ``mlflow.set_tracking_uri(resolve_tracking_uri(cfg.tracking_uri))``.

    Args:
        config_uri: the URI from the user's config, or None when it names none.

    Returns:
        The URI to use; ``"sqlite:///mlflow.db"`` (in the working directory) when nothing names one.
    """
    if config_uri is not None and config_uri.strip():
        return config_uri.strip()
    env_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return env_uri or DEFAULT_TRACKING_URI


class StoreUnavailableError(ConfigError):
    """The tracking store cannot be reached or opened (exit code 2 from the CLI)."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for every other store."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<db>.lock`` next to a SQLite store; no-op for others.

    The lock is `fcntl.flock` on an open file: the kernel releases it when the holder
    dies, so a killed job never leaves the store locked.
    """
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    lock = db.with_name(db.name + ".lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retry_busy(call: Callable[[], T], *, what: str) -> T:
    """Run ``call``; retry with back-off while the store reports a concurrent writer.

    Args:
        call: the store operation.
        what: what it does, for the log line (``"log the dataset"``).

    Returns:
        What ``call`` returned.
    """
    wait = BUSY_FIRST_WAIT_S
    for attempt in range(1, BUSY_ATTEMPTS + 1):
        try:
            return call()
        except Exception as exc:  # MlflowException or SQLAlchemy's OperationalError/IntegrityError
            if attempt == BUSY_ATTEMPTS or not is_busy(exc):
                raise
            logger.info("Store busy (%s); retrying to %s in %.1f s.", _first_line(exc), what, wait)
            time.sleep(wait)
            wait = min(wait * 2, 2.0)
    raise AssertionError("unreachable")  # pragma: no cover


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it wraps) is a concurrent-writer error of SQLite."""
    seen: BaseException | None = exc
    while seen is not None:
        if any(marker in str(seen) for marker in BUSY_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def open_store(uri: str) -> None:
    """Check the tracking store before a job starts: reachable, and its tables created.

    HTTP(S) stores answer one search request within the probe's bounds (MLflow's
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_BACKOFF_FACTOR`` / ``_TIMEOUT`` override
    them when set). SQLite stores are created (tracking and registry tables) under
    `store_lock`, so concurrent first jobs on one new file do not race.

    Raises:
        StoreUnavailableError: the server does not answer, or the store cannot be opened.
    """
    if uri.startswith(("http://", "https://")):
        _probe_http(uri)
        return
    from mlflow import MlflowClient

    started = time.monotonic()
    with store_lock(uri):
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        except Exception as exc:
            raise StoreUnavailableError(
                f"tracking store {uri} could not be opened: {_first_line(exc)}"
            ) from None
    logger.debug("Opened tracking store %s in %.2f s.", uri, time.monotonic() - started)


def _probe_http(uri: str) -> None:
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    def bound(name: str, default: int) -> int:
        value = os.environ.get(name, "").strip()
        return int(value) if value.isdigit() else default

    retries = bound(_RETRY_ENV[0], PROBE_MAX_RETRIES)
    backoff = bound(_RETRY_ENV[1], PROBE_BACKOFF_FACTOR)
    timeout = bound(_RETRY_ENV[2], PROBE_TIMEOUT_S)
    started = time.monotonic()
    # urllib3 logs a WARNING per retry; the one error below says it all.
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/search",
            "POST",
            json={"max_results": 1},
            max_retries=retries,
            backoff_factor=backoff,
            backoff_jitter=0.0,
            timeout=timeout,
        )
    except Exception as exc:
        elapsed = time.monotonic() - started
        raise StoreUnavailableError(
            f"tracking server {uri} is not reachable after {retries + 1} tries in "
            f"{elapsed:.0f} s ({_cause(exc)}); start it, or point tracking.tracking_uri / "
            f"MLFLOW_TRACKING_URI at a running one (retries: {', '.join(_RETRY_ENV)})"
        ) from None
    finally:
        pool_log.setLevel(level)
    if response.status_code != 200:
        raise StoreUnavailableError(
            f"tracking server {uri} answered HTTP {response.status_code} to a search "
            f"request: {response.text[:200]!r}; is it an MLflow tracking server?"
        )


def _cause(exc: BaseException) -> str:
    """The innermost reason of a connection failure, e.g. 'Connection refused'."""
    text = str(exc)
    for reason in ("Connection refused", "timed out", "Name or service not known"):
        if reason in text:
            return reason
    return _first_line(exc)[:200]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
