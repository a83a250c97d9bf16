"""Errors raised for bad data and bad configuration, before any work is done."""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable


class ForecastError(ValueError):
    """Base class for errors a user can fix by changing their input."""


class DataValidationError(ForecastError):
    """The data does not meet what the pipeline needs.

    The message names the column, the series and the first offending rows or
    timestamps, and says what was expected.
    """


class ConfigError(ForecastError):
    """A configuration value or function argument is out of its allowed range.

    The message names the field and the allowed values, and echoes what was
    received, in the style of Keras: ``"`lookback` must be >= 1. Received: lookback=0"``.
    """


class DiskFullError(ForecastError):
    """The disk filled up while writing; nothing partial was left behind."""

    def __init__(self, target: object) -> None:
        self.target = str(target)
        super().__init__(f"no space left on device writing {self.target}")


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` is the OS saying the disk (or the user's quota) is full.

    pyarrow reports it as an `OSError` without `errno`, so the text is checked too.
    """
    if not isinstance(exc, OSError):
        return False
    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc)


def did_you_mean(word: object, choices: Iterable[object], *, cutoff: float = 0.6) -> str:
    """``" Did you mean 'x'?"`` for the choice closest to `word`, or ``""`` when none is close.

    The one suggestion helper of the package: config keys, choices, baselines, datasets.
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" Did you mean {close[0]!r}?" if close else ""
