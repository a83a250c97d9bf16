"""MLflow's rules for registry names, aliases and local stores, checked when a config loads.

MLflow checks these only when the registry is first written, i.e. after a whole training run
(`mlflow/utils/validation.py`: `_validate_model_name`, `_validate_model_alias_name`,
`_validate_model_alias_name_reserved`). The rules are restated here because `forecast.config`
must not import MLflow (a config error is reported before any heavy import); the tests check
each rule against MLflow's own validators.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError

_ALIAS = re.compile(r"^[\w\-]+$")  # MLflow: alphanumerics, underscores and dashes
_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)  # "@latest", "@v3" mean versions
MAX_ALIAS_LENGTH = 255
MAX_EXPERIMENT_LENGTH = 500
_SQLITE = re.compile(r"^sqlite(\+\w+)?://(?P<rest>.*)$")


def check_alias(name: str, value: Any) -> None:
    """Raise ConfigError unless `value` is an alias MLflow accepts and does not reserve."""
    if not isinstance(value, str) or not _ALIAS.match(value) or len(value) > MAX_ALIAS_LENGTH:
        raise ConfigError(
            f"`{name}` may only contain letters, digits, '_' and '-' (at most "
            f"{MAX_ALIAS_LENGTH} characters; MLflow's alias rule). Received: {name}={value!r}"
        )
    if _RESERVED_ALIAS.match(value):
        raise ConfigError(
            f"`{name}` must not be 'latest' or 'v<number>': MLflow reserves them for versions "
            f"(models:/NAME@latest). Received: {name}={value!r}"
        )


def check_model_name(name: str, value: Any) -> None:
    """Raise ConfigError unless `value` is a registered-model name MLflow accepts."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"`{name}` must be a non-empty model name. Received: {name}={value!r}")
    bad = [c for c in ("/", ":") if c in value]
    if bad:
        raise ConfigError(
            f"`{name}` must not contain {bad} (MLflow refuses '/' and ':' in registered model "
            f"names: they separate the parts of models:/NAME@ALIAS). Received: {name}={value!r}"
        )
    norm = posixpath.normpath(value)
    if norm != value or norm in (".", "..") or norm.startswith(".."):
        raise ConfigError(
            f"`{name}` must not be '.', '..' or change when read as a file path (MLflow stores "
            f"models under their name). Received: {name}={value!r}"
        )


def check_experiment_name(name: str, value: Any) -> None:
    """Raise ConfigError unless `value` is an experiment name MLflow accepts."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_EXPERIMENT_LENGTH:
        raise ConfigError(
            f"`{name}` must be a non-empty string of at most {MAX_EXPERIMENT_LENGTH} "
            f"characters. Received: {value if len(str(value)) < 80 else str(value)[:80] + '...'!r}"
        )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite://`` URI (None for another scheme or in-memory)."""
    match = _SQLITE.match(uri.strip())
    if match is None:
        return None
    rest = match["rest"].split("?", 1)[0]
    # SQLAlchemy: sqlite:///relative.db, sqlite:////absolute.db, sqlite:// is in memory.
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        return None
    return Path(rest[1:])


def check_store_uri(name: str, value: str) -> None:
    """Refuse a local store whose folder does not exist: MLflow would create it, anywhere.

    ``sqlite:////nonexistent_dir/x.db`` makes MLflow create ``/nonexistent_dir`` at the root
    of the file system; a typo in the folder should be an error, not a new folder.
    """
    path = sqlite_path(value)
    if path is None:
        if value.strip().lower().startswith("sqlite:"):
            raise ConfigError(
                f"`{name}` must look like sqlite:///relative/path.db or "
                f"sqlite:////absolute/path.db. Received: {name}={value!r}"
            )
        return
    if path.is_dir():
        raise ConfigError(
            f"`{name}` names a folder, not a database file. Received: {name}={value!r}"
        )
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(
            f"`{name}`: the folder {str(folder)!r} of the SQLite store does not exist; create it "
            f"first (it is not created for you). Received: {name}={value!r}"
        )
