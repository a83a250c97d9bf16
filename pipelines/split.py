"""Chronological train/validation/test splits and rolling-origin folds on one calendar.

Every series is cut at the same timestamps, so no target timestamp belongs to two parts and
no part sees the future of another series. A later part may still read earlier rows as
model *input*: `with_history` returns those rows together with a mask of the rows that may
be targets, for `pipelines.window.make_windows(..., target_rows=...)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from pipelines._frames import require_columns, series_blocks
from pipelines.errors import ConfigError
from pipelines.schema import SeriesSchema
from pipelines.validate import data_timestamp

__all__ = ["FrameSplit", "SplitRanges", "rolling_origins", "split_by_time"]

PARTS = ("train", "validation", "test")
_DATE_TYPES = (str, pd.Timestamp, np.datetime64)


@dataclass(frozen=True)
class SplitRanges:
    """Positions ``[start, stop)`` of each part on one time axis (array rows or calendar steps)."""

    train: range
    validation: range
    test: range

    def part(self, name: str) -> range:
        """The positions of part `name` (``"train"``, ``"validation"`` or ``"test"``)."""
        if name not in PARTS:
            raise ConfigError(f"`part` must be one of {list(PARTS)}. Received: part={name!r}")
        return getattr(self, name)

    def with_history(self, name: str, lookback: int) -> tuple[range, np.ndarray]:
        """Positions a windowing step may read for part `name`, and which may be targets.

        Returns:
            ``(rows, targets)``: `rows` adds up to `lookback` positions before the part as
            history; `targets` is a bool array over `rows`, True inside the part.
        """
        part = self.part(name)
        _check_lookback(lookback)
        rows = range(max(0, part.start - lookback), part.stop)
        return rows, np.arange(rows.start, rows.stop) >= part.start

    def to_dict(self) -> dict[str, list[int]]:
        return {name: [self.part(name).start, self.part(name).stop] for name in PARTS}


@dataclass(frozen=True, eq=False)
class FrameSplit:
    """A long frame cut into parts on its calendar (the sorted distinct timestamps).

    Attributes:
        frame: the whole frame, sorted by (id, time).
        schema: its column roles.
        times: the calendar: sorted distinct timestamps of `frame`.
        ranges: positions of each part on `times`.
    """

    frame: pd.DataFrame
    schema: SeriesSchema
    times: np.ndarray
    ranges: SplitRanges

    @cached_property
    def _steps(self) -> np.ndarray:
        return np.searchsorted(self.times, self.frame[self.schema.time_col].to_numpy())

    def rows(self, name: str) -> np.ndarray:
        """(R,) bool: the rows of `frame` whose timestamp lies in part `name`."""
        part = self.ranges.part(name)
        return (self._steps >= part.start) & (self._steps < part.stop)

    @property
    def train(self) -> pd.DataFrame:
        return self._take(self.rows("train"))

    @property
    def validation(self) -> pd.DataFrame:
        return self._take(self.rows("validation"))

    @property
    def test(self) -> pd.DataFrame:
        return self._take(self.rows("test"))

    def _take(self, keep: np.ndarray) -> pd.DataFrame:
        return self.frame.loc[keep].reset_index(drop=True)

    def with_history(self, name: str, lookback: int) -> tuple[pd.DataFrame, np.ndarray]:
        """Rows windowing may read for part `name`: the part plus `lookback` rows before it.

        Per series, the `lookback` rows just before its first row in the part are added as
        history; series without rows in the part are left out.

        Returns:
            ``(frame, targets)``: the rows in (id, time) order, and a bool array over them,
            True where a row lies in the part (pass it as ``target_rows``).
        """
        _check_lookback(lookback)
        in_part = self.rows(name)
        _, starts = series_blocks(self.frame, self.schema)
        n = len(self.frame)
        sizes = np.diff(np.append(starts, n))
        pos = np.arange(n) - np.repeat(starts, sizes)  # position within the series
        first = np.where(in_part, pos, np.iinfo(np.int64).max)
        first_in_part = np.minimum.reduceat(first, starts)  # per series
        lead = np.repeat(first_in_part, sizes) - pos  # rows until the part starts
        keep = in_part | ((lead > 0) & (lead <= lookback))
        return self._take(keep), in_part[keep]

    def describe(self) -> dict[str, dict[str, Any]]:
        """First/last timestamp and steps of each part, e.g. to log as run parameters."""
        out = {}
        for name in PARTS:
            part = self.ranges.part(name)
            span = self.times[part.start : part.stop]
            out[name] = {
                "start": str(pd.Timestamp(span[0])) if len(span) else None,
                "end": str(pd.Timestamp(span[-1])) if len(span) else None,
                "steps": len(span),
            }
        return out


def split_by_time(
    data: int | pd.DataFrame,
    schema: SeriesSchema | None = None,
    *,
    validation: float | int | str | pd.Timestamp | None = 0.15,
    test: float | int | str | pd.Timestamp | None = 0.15,
    horizon: int | None = None,
) -> SplitRanges | FrameSplit:
    """Split chronologically into train, validation and test, in that order.

    Args:
        data: a long frame (with `schema`) or the number of observations of an array.
        schema: column roles; required for a frame.
        validation: size of the validation part: a fraction in [0, 1) of the calendar, a
            number of steps (int), or the timestamp where it starts (frames only); 0 or
            None for no validation part.
        test: size or start of the test part, likewise.
        horizon: when given, a non-empty validation or test part must span at least
            `horizon` steps so that it holds a whole forecast.

    Returns:
        `SplitRanges` for an int, `FrameSplit` for a frame (every series cut at the same
        timestamps).

    Raises:
        ConfigError: fractions summing to 1 or more, parts out of order, an empty part,
            or a part shorter than `horizon`.

    Example:
        >>> split = split_by_time(frame, schema, validation=0.1, test="2024-01-01")
        >>> scaler = SeriesScaler().fit(split.train, schema)
    """
    times, n = _calendar(data, schema)
    test_start = n - _steps("test", test, n, times, from_end=True)
    val_start = test_start - _steps("validation", validation, n, times, before=test_start)
    fractions = [v for v in (validation, test) if isinstance(v, float)]
    if sum(fractions) >= 1:
        raise ConfigError(
            f"The validation and test fractions must sum to less than 1 so that training keeps "
            f"rows. Received: validation={validation!r}, test={test!r}"
        )
    if val_start > test_start:
        raise ConfigError(
            f"The validation part must start before the test part. Received: "
            f"validation={validation!r} (step {val_start}), test={test!r} (step {test_start})"
        )
    ranges = SplitRanges(range(0, val_start), range(val_start, test_start), range(test_start, n))
    for name, asked in (("train", True), ("validation", validation), ("test", test)):
        part = ranges.part(name)
        if asked not in (None, 0) and len(part) == 0:
            raise ConfigError(
                f"The {name} part is empty: {_why(name, ranges, n, validation, test, times)}."
            )
        if horizon is not None and name != "train" and 0 < len(part) < horizon:
            raise ConfigError(
                f"horizon={horizon} is longer than the {name} period ({len(part)} steps); "
                f"make the {name} part at least {horizon} steps or shorten the horizon."
            )
    if times is None:
        return ranges
    return FrameSplit(frame=data, schema=schema, times=times, ranges=ranges)


def rolling_origins(
    data: int | pd.DataFrame,
    schema: SeriesSchema | None = None,
    *,
    n_folds: int,
    horizon: int,
    step: int | None = None,
    min_train: int = 1,
    window: str = "expanding",
) -> list[SplitRanges] | list[FrameSplit]:
    """Rolling-origin folds: train on the past, test on the next `horizon` steps.

    The last fold's test period ends at the last step; earlier folds move back by `step`.

    Args:
        data: a long frame (with `schema`) or the number of observations of an array.
        schema: column roles; required for a frame.
        n_folds: number of folds.
        horizon: test steps per fold.
        step: steps between consecutive origins; defaults to `horizon` (test periods tile).
        min_train: fewest training steps of any fold; with ``window="sliding"`` every fold
            trains on exactly `min_train` steps.
        window: ``"expanding"`` (train from the first step) or ``"sliding"``.

    Returns:
        One split per fold, oldest first, each with an empty validation part.

    Raises:
        ConfigError: bad arguments, or folds that do not fit in the data.
    """
    for name, value in (("n_folds", n_folds), ("horizon", horizon), ("min_train", min_train)):
        _check_positive(name, value)
    step = horizon if step is None else step
    _check_positive("step", step)
    if window not in ("expanding", "sliding"):
        raise ConfigError(f"`window` must be 'expanding' or 'sliding'. Received: window={window!r}")
    times, n = _calendar(data, schema)
    first_origin = n - horizon - (n_folds - 1) * step
    if first_origin < min_train:
        raise ConfigError(
            f"{n_folds} folds with horizon={horizon}, step={step} and min_train={min_train} need "
            f"at least {min_train + horizon + (n_folds - 1) * step} steps; the data has {n}."
        )
    folds = []
    for k in range(n_folds):
        origin = first_origin + k * step
        start = 0 if window == "expanding" else origin - min_train
        ranges = SplitRanges(
            range(start, origin), range(origin, origin), range(origin, origin + horizon)
        )
        folds.append(ranges if times is None else FrameSplit(data, schema, times, ranges))
    return folds


def _calendar(data: Any, schema: SeriesSchema | None) -> tuple[np.ndarray | None, int]:
    if isinstance(data, pd.DataFrame):
        if not isinstance(schema, SeriesSchema):
            raise ConfigError("Splitting a frame needs its `schema` (a SeriesSchema).")
        require_columns(data, [schema.time_col])
        series_blocks(data, schema)  # sorted by (id, time), or a clear error
        times = np.unique(data[schema.time_col].to_numpy())
        return times, len(times)
    if isinstance(data, bool) or not isinstance(data, int | np.integer) or data < 1:
        raise ConfigError(
            f"`data` must be a long frame or a number of observations >= 1. Received: {data!r}"
        )
    return None, int(data)


def _steps(name, value, n, times, *, from_end=False, before=None) -> int:
    """Steps of part `name` given as a fraction, a count or a start timestamp."""
    if value is None:
        return 0
    if isinstance(value, _DATE_TYPES) or hasattr(value, "isoformat"):
        if times is None:
            raise ConfigError(
                f"`{name}` as a date needs a frame to split. Received: {name}={value!r}"
            )
        # tz-aware time columns hold Timestamps: compare in their zone (naive values read in it).
        tz = getattr(times[0], "tz", None) if len(times) else None
        at = data_timestamp(value, tz, name)
        start = int(np.searchsorted(times, at if tz is not None else at.to_datetime64()))
        return (n if from_end else before) - start
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(
            f"`{name}` must be a fraction, a number of steps or a date. Received: {name}={value!r}"
        )
    if isinstance(value, float | np.floating):
        if not 0 <= value < 1 or math.isnan(value):
            raise ConfigError(f"`{name}` as a fraction must be in [0, 1). Received: {name}={value}")
        return round(value * n)
    if value < 0 or value > n:
        raise ConfigError(f"`{name}` must be between 0 and {n} steps. Received: {name}={value}")
    return int(value)


def _why(name, ranges, n, validation, test, times) -> str:
    asked = {"validation": validation, "test": test}.get(name)
    if name == "train":
        start = ranges.validation.start if len(ranges.validation) else ranges.test.start
        return (
            f"the validation/test parts start at step {start} of {n} "
            f"(validation={validation!r}, test={test!r}), leaving no earlier step"
        )
    if isinstance(asked, float):
        return f"{name}={asked} of {n} steps rounds to 0 steps"
    if times is not None and not isinstance(asked, int):
        return f"{name}={asked!r} leaves no timestamp in it (calendar {times[0]} .. {times[-1]})"
    return f"{name}={asked!r} leaves no step in it"


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")


def _check_lookback(lookback: Any) -> None:
    if isinstance(lookback, bool) or not isinstance(lookback, int | np.integer) or lookback < 0:
        raise ConfigError(f"`lookback` must be an integer >= 0. Received: lookback={lookback!r}")
