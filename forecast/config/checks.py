"""Shared checks for config dataclasses: unknown keys, choices, numbers, booleans."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from pipelines.errors import ConfigError, did_you_mean


def check_keys(d: Any, cls: type, section: str) -> None:
    """Raise ConfigError when `d` is not a mapping or has keys `cls` does not define."""
    if not isinstance(d, dict):
        raise ConfigError(
            f"`{section}` must be a mapping of settings. Received: {type(d).__name__} {d!r}"
        )
    allowed = [f.name for f in fields(cls)]
    for key in d:
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            where = str(key) if section == "config" else f"{section}.{key}"
            raise ConfigError(f"Unknown key '{where}'.{hint} Allowed keys: {sorted(allowed)}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ConfigError naming the field, the allowed values and what was received."""
    if value not in choices:
        raise ConfigError(
            f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}."
            + did_you_mean(value, choices)
        )


def check_number(name: str, value: Any, *, low: float, high: float = math.inf) -> None:
    """Raise ConfigError unless `value` is a real number (not a bool, not NaN) in [low, high]."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (low <= value <= high) or math.isnan(value):
        bound = f"in [{low}, {high}]" if math.isfinite(high) else f">= {low}"
        raise ConfigError(f"`{name}` must be a number {bound}. Received: {name}={value!r}")


def check_bool(name: str, value: Any) -> None:
    """Raise ConfigError unless `value` is true or false (YAML's `maybe` or `nope` are text)."""
    if not isinstance(value, bool):
        raise ConfigError(f"`{name}` must be true or false. Received: {name}={value!r}")
