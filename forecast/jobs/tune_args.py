"""The checks of `forecast tune`'s arguments, importable without TensorFlow, Optuna or MLflow."""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import ConfigError


def check_arguments(trials: int, timeout: float | None, output: str, overwrite: bool) -> Path:
    """Refuse bad `forecast tune` arguments before any data is read."""
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ConfigError(f"--trials must be an integer >= 1. Received: {trials!r}")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise ConfigError(f"--timeout must be a number of seconds > 0. Received: {timeout!r}")
    out = Path(output)
    if out.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--output must be a .yaml or .yml file. Received: {output!r}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{output!r} exists; pass --overwrite to replace it")
    if not out.parent.exists():
        raise ConfigError(f"output folder {str(out.parent)!r} does not exist")
    return out
