"""Does this Python environment match the one a logged model was saved in? Warn if not.

`mlflow.pyfunc.load_model` runs this check itself, and every cold start pays for it: to map
each pinned distribution to its module it reads the file list of
every installed distribution (``importlib_metadata.packages_distributions``): 1.0 s of a 17 s
cold start on a slow 2-core VM (``benchmarks/RESULTS.md``, "Serving (issue 16)"). The loader
of the package (`forecast.serving.batch.load_model`) skips it (``suppress_warnings=True``)
and runs this one, which asks for the pinned distributions by name, and logs MLflow's two
warnings in MLflow's words.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

_log = logging.getLogger(__name__)
# One module, two distributions: a GPU install's `tensorflow` serves a model logged on
# `tensorflow-cpu` (and back), as MLflow's own check accepts.
_SAME_MODULE = {"tensorflow-cpu": "tensorflow", "tensorflow": "tensorflow-cpu"}


def requirement_mismatches(model_dir: Path) -> list[str]:
    """``name (current: X, required: line)`` for each unmet line of ``requirements.txt``.

    Lines that are no requirement (comments, ``-r``/``-c`` options, paths, URLs) and
    requirements whose environment marker excludes this platform are skipped, as MLflow does.
    """
    path = model_dir / "requirements.txt"
    if not path.is_file():
        return []
    unmet = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        installed = _installed_version(req.name)
        if installed is None or not req.specifier.contains(installed, prereleases=True):
            unmet.append(f"{req.name} (current: {installed or 'uninstalled'}, required: {line})")
    return unmet


def python_mismatch(flavors: dict[str, Any]) -> str | None:
    """MLflow's warning when the model's Python differs in major.minor from this one."""
    saved = (flavors.get("python_function") or {}).get("python_version")
    running = platform.python_version()
    if saved is None:
        return (
            "The specified model does not have a specified Python version. It may be "
            f"incompatible with the version of Python that is currently running: Python {running}"
        )
    if saved.split(".")[:2] != running.split(".")[:2]:
        return (
            f"The version of Python that the model was saved in, `Python {saved}`, differs "
            f"from the version of Python that is currently running, `Python {running}`, and "
            "may be incompatible"
        )
    return None


def warn_mismatches(model_dir: Path, flavors: dict[str, Any]) -> None:
    """Log MLflow's warnings for the model in `model_dir` (its MLmodel's `flavors`)."""
    unmet = requirement_mismatches(model_dir)
    if unmet:
        _log.warning(
            "Detected one or more mismatches between the model's dependencies and the current "
            "Python environment:\n - %s\nTo fix the mismatches, call "
            "`mlflow.pyfunc.get_model_dependencies(model_uri)` to fetch the model's environment "
            "and install dependencies using the resulting environment file.",
            "\n - ".join(unmet),
        )
    message = python_mismatch(flavors)
    if message:
        _log.warning(message)


def _installed_version(name: str) -> str | None:
    for dist in (name, _SAME_MODULE.get(name.lower())):
        if dist is None:
            continue
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
