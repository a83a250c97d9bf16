"""The model URIs `forecast predict` accepts, checked before TensorFlow or MLflow load.

MLflow resolves any scheme it has an artifact repository for, and fails late and obscurely
on the rest: ``s3://`` without boto3 is an ImportError, ``http://`` a "not enough values to
unpack". This module says up front what is supported; it imports neither library.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from pipelines.errors import ConfigError

SUPPORTED = (
    "models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-<model id>, runs:/RUN_ID/PATH, "
    "or a local folder (a saved forecaster or an MLflow model)"
)
# Object stores MLflow reads when their client library is installed.
_STORES = {
    "s3": "boto3",
    "gs": "google.cloud.storage",
    "wasbs": "azure.storage.blob",
    "abfss": "azure.storage.filedatalake",
}
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")
_NAME = r"[^/:@\s][^/:@]*"
_MODELS = re.compile(rf"^models:/(m-[0-9a-f]+|{_NAME}@[\w\-]+|{_NAME}/(\d+|latest))$")
_RUNS = re.compile(r"^runs:/[a-zA-Z0-9][\w\-]{0,255}(/[^\s]+)?/?$")


def check_model_uri(uri: str) -> None:
    """Raise ConfigError naming `uri` and what is supported unless it can be loaded here.

    Registry and run URIs are checked for their form only (whether the model exists is the
    tracking store's answer); a local folder must hold ``pipeline.json`` or ``MLmodel``.
    """
    text = uri.strip()
    match = _SCHEME.match(text)
    scheme = match["scheme"].lower() if match and len(match["scheme"]) > 1 else None
    if scheme is None or scheme == "file":
        _check_folder(uri, Path(text[len("file://") :] if scheme == "file" else text))
    elif scheme == "models":
        if not _MODELS.match(text):
            raise ConfigError(f"--model {uri!r} is not a valid models:/ URI; expected {SUPPORTED}.")
    elif scheme == "runs":
        if not _RUNS.match(text):
            raise ConfigError(f"--model {uri!r} is not a valid runs:/ URI; expected {SUPPORTED}.")
    elif scheme in _STORES:
        package = _STORES[scheme]
        if not _installed(package):
            raise ConfigError(
                f"--model {uri!r}: reading models from {scheme}:// needs the {package} package, "
                f"which is not installed; install it, or use {SUPPORTED}."
            )
    else:
        raise ConfigError(
            f"--model {uri!r}: the {scheme}: scheme is not supported; use {SUPPORTED}."
        )


def _check_folder(uri: str, path: Path) -> None:
    if not path.exists():
        raise ConfigError(f"--model {uri!r}: no such folder, and not a URI; expected {SUPPORTED}.")
    if not path.is_dir() or not any((path / f).is_file() for f in ("pipeline.json", "MLmodel")):
        raise ConfigError(
            f"--model {uri!r} is not a model folder: it holds neither pipeline.json (a saved "
            f"forecaster) nor MLmodel (an MLflow model)."
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (google.cloud) is missing
        return False
