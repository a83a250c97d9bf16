"""Reading a saved model's files with one clear error per broken artifact.

A truncated ``model.keras`` made Keras report "File not found", a bit flip could load
silently or fail deep in h5py, and a garbage ``pipeline.json`` ended in a JSON traceback.
Here each file is checked before it is used, and every failure is a `ModelLoadError`
naming the model and the artifact: ``cannot load model models:/m-1: artifact
'forecaster/model.keras' is corrupted (Bad CRC-32 for file 'model.weights.h5')``.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

from pipelines.errors import ForecastError


class ModelLoadError(ForecastError):
    """A model's files are missing, truncated or corrupted (exit code 2 from the CLI).

    Args:
        model: the model URI or folder, as the user named it.
        artifact: the broken file, relative to the model.
        problem: what is wrong with it.
    """

    def __init__(self, model: str, artifact: str, problem: str) -> None:
        self.model, self.artifact, self.problem = model, artifact, problem
        super().__init__(f"cannot load model {model}: artifact {artifact!r} {problem}")

    def for_model(self, model: str, prefix: str = "") -> ModelLoadError:
        """The same error for `model` (a URI) with the artifact under `prefix`."""
        artifact = f"{prefix.rstrip('/')}/{self.artifact}" if prefix else self.artifact
        return ModelLoadError(model, artifact, self.problem)


def read_json(path: Path, *, model: str, artifact: str) -> dict[str, Any]:
    """A JSON object from `path`, or a `ModelLoadError` saying it is missing or broken."""
    if not path.is_file():
        raise ModelLoadError(model, artifact, "is missing")
    try:
        value = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            model, artifact, f"is not valid JSON (truncated or corrupted: {exc})"
        ) from None
    if not isinstance(value, dict):
        raise ModelLoadError(model, artifact, f"holds a {type(value).__name__}, not an object")
    return value


def check_keras_file(path: Path, *, model: str, artifact: str) -> None:
    """Refuse a missing, truncated or bit-flipped ``.keras`` file before Keras reads it.

    A ``.keras`` file is a zip archive; each member carries a CRC-32, so reading them all
    detects a flipped bit anywhere in the weights, which Keras itself might not notice.
    """
    if not path.is_file():
        raise ModelLoadError(model, artifact, "is missing")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        raise ModelLoadError(
            model, artifact, f"is not a readable Keras archive (truncated or corrupted: {exc})"
        ) from None
    if bad is not None:
        raise ModelLoadError(model, artifact, f"is corrupted (bad checksum of {bad!r})")
    missing = {"config.json", "model.weights.h5"} - names
    if missing:
        raise ModelLoadError(model, artifact, f"is incomplete: it lacks {sorted(missing)}")
