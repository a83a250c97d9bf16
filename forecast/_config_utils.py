"""Shared checks for config dataclasses: unknown keys get a did-you-mean."""

from __future__ import annotations

import difflib
from dataclasses import fields
from typing import Any

from pipelines.errors import ConfigError


def check_keys(d: Any, cls: type, section: str) -> None:
    """Raise ConfigError when `d` is not a mapping or has keys `cls` does not define."""
    if not isinstance(d, dict):
        raise ConfigError(
            f"`{section}` must be a mapping of settings. Received: {type(d).__name__} {d!r}"
        )
    allowed = [f.name for f in fields(cls)]
    for key in d:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            where = str(key) if section == "config" else f"{section}.{key}"
            raise ConfigError(f"Unknown key '{where}'.{hint} Allowed keys: {sorted(allowed)}")
