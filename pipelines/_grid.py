"""Rows sorted by (series, time) and the time grid they sit on: frequency, positions, fills.

Private helpers of `pipelines.validate`; all work on int64 UTC nanoseconds in numpy.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset

from pipelines.calendars import REGULAR, Calendar, fixed_step
from pipelines.errors import DataValidationError
from pipelines.schema import SeriesSchema

SHOW = 5  # offending values, rows or timestamps quoted in one message
_DAY_NS = 86_400 * 10**9


class Rows:
    """Rows sorted by (series, time): series code, UTC ns time and input label of each."""

    def __init__(
        self,
        codes: np.ndarray,
        times: np.ndarray,
        rows: np.ndarray,
        labels: list[Any],
        tz: Any,
        time_col: str,
        order: np.ndarray | None = None,
    ) -> None:
        self.codes, self.times, self.rows = codes, times, rows
        self.labels, self.tz, self.time_col = labels, tz, time_col
        self.order = np.arange(len(codes)) if order is None else order  # input positions
        change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        self.starts = np.concatenate(([0], change))
        self.ends = np.append(change - 1, len(codes) - 1)
        self.lengths = self.ends - self.starts + 1
        # Local wall clock: calendar frequencies (D, B, MS) follow it, not UTC.
        self.wall = times if tz is None else to_times(times, tz).tz_localize(None).asi8

    def take(self, idx: np.ndarray) -> Rows:
        c, t, rw, o = self.codes[idx], self.times[idx], self.rows[idx], self.order[idx]
        return Rows(c, t, rw, self.labels, self.tz, self.time_col, o)

    def per_row(self, per_series: np.ndarray) -> np.ndarray:
        return np.repeat(per_series, self.lengths)

    def ts(self, ns: Any) -> str:
        t = pd.Timestamp(int(ns))
        return str(t if self.tz is None else t.tz_localize("UTC").tz_convert(self.tz))

    def where(self, idx: np.ndarray) -> str:
        """'series 'a' at [t1, ...] (rows [...])' for the first few offending series."""
        parts = []
        for c in pd.unique(self.codes[idx])[:3]:
            mine = idx[self.codes[idx] == c]
            stamps = [self.ts(t) for t in self.times[mine[:SHOW]]]
            parts.append(f"series {self.labels[c]!r} at {stamps} (rows {first(self.rows[mine])})")
        return "; ".join(parts)


def fill(v: np.ndarray, holes: np.ndarray, r: Rows, method: str, col: str) -> np.ndarray:
    """Fill `v[holes]` from the previous (and to interpolate, the next) row of its series."""
    n, pos = len(v), np.arange(len(v))
    prev = np.maximum.accumulate(np.where(holes, -1, pos))
    orphan = holes & (prev < r.per_row(r.starts))
    if orphan.any():
        i = int(np.flatnonzero(orphan)[0])
        raise DataValidationError(
            f"Column {col!r}: series {r.labels[r.codes[i]]!r} starts with NaN/inf at "
            f"{r.ts(r.times[i])}, so there is no earlier value to fill from. Drop those "
            f"leading rows first."
        )
    filled = v[prev]
    if method == "interpolate":
        nxt = np.minimum.accumulate(np.where(holes, n, pos)[::-1])[::-1]
        inner = holes & (nxt <= r.per_row(r.ends))  # trailing holes keep the last value
        nx = np.where(inner, nxt, prev)
        w = np.where(inner, (pos - prev) / np.maximum(nx - prev, 1), 0.0)
        filled = filled + w * (v[nx] - filled)
    return np.where(holes, filled, v)


def infer_offset(r: Rows) -> BaseOffset:
    """One frequency for the frame: `pd.infer_freq` on each series' wall-clock times, else
    the smallest step when every step is a whole multiple of it (regular data with gaps)."""
    found: dict[str, tuple[BaseOffset, Any]] = {}
    for s, e in zip(r.starts, r.ends, strict=True):
        if e - s >= 2:
            with warnings.catch_warnings():  # pandas 3: infer_freq will return an offset
                warnings.simplefilter("ignore")
                f = pd.infer_freq(pd.DatetimeIndex(r.wall[s : e + 1].view("M8[ns]")))
            if f is not None:
                found.setdefault(to_offset(f).freqstr, (to_offset(f), r.labels[r.codes[s]]))
    if len(found) > 1:
        seen = ", ".join(f"series {lab!r} is {k!r}" for k, (_, lab) in list(found.items())[:3])
        raise DataValidationError(
            f"Column {r.time_col!r}: series disagree on frequency ({seen}). Pass one "
            f"frequency explicitly, e.g. SeriesSchema(freq='h')."
        )
    if found:
        return next(iter(found.values()))[0]
    # Days step on the wall clock; hours in absolute time (a DST day of a tz-aware series
    # repeats or skips a wall-clock hour, its UTC steps stay even).
    for clock in [r.wall] + ([r.times] if r.tz is not None else []):
        d = np.diff(clock)[r.codes[1:] == r.codes[:-1]]
        step = int(d.min()) if len(d) else 0
        if step > 0 and not (d % step).any():
            weekday = ((r.wall // _DAY_NS + 3) % 7) < 5  # 1970-01-01 was a Thursday
            if step == _DAY_NS and weekday.all() and (d == 3 * _DAY_NS).any():
                return to_offset("B")  # weekdays only, with Friday -> Monday steps
            whole_days = step % _DAY_NS == 0
            return to_offset(f"{step // _DAY_NS}D" if whole_days else pd.Timedelta(step))
    first = [r.ts(t) for t in r.times[: min(r.ends[0] + 1, 4)]]
    raise DataValidationError(
        f"Column {r.time_col!r}: cannot infer the frequency. pd.infer_freq found no regular "
        f"series and the steps are not multiples of one step (series {r.labels[r.codes[0]]!r} "
        f"starts {first}). Pass it explicitly: SeriesSchema(freq='D') (any pandas alias: 'B', "
        f"'h', '30min', 'MS', ...), or use ValidationPolicy(calendar='observed')."
    )


class Grid:
    """Grid position `k` of every row, `off` where a row is not on the grid, and `times_at`."""

    def __init__(
        self, r: Rows, offset: BaseOffset | None, calendar: str, cal: Calendar = REGULAR
    ) -> None:
        self.tz, self.g, self.name = r.tz, None, "the observed calendar"
        if cal.kind != "regular":
            self._sessions(r, offset, cal)
            return
        if calendar == "observed":
            self.g, self.tod = np.unique(r.times), np.zeros(len(r.times), np.int64)
            self.k, self.off, self.tz = np.searchsorted(self.g, r.times), self.tod != 0, None
            return
        self.name = f"freq {offset.freqstr!r}" if offset is not None else "one step"
        if offset is None or fixed_step(offset):  # fixed step from each series' start
            self.step = 1 if offset is None else int(pd.Timedelta(offset).value)
            self.anchor = r.per_row(r.times[r.starts])
            self.k, rem = np.divmod(r.times - self.anchor, self.step)
            self.off = rem != 0
            return
        # Calendar offsets (B, MS, W-SUN; D in pandas 3) are on-offset by date: the grid
        # holds dates and each series keeps the time of day of its first row (B at 16:00).
        day = r.wall if _sub_daily(offset) else r.wall - r.wall % _DAY_NS
        self.tod = r.per_row((r.wall - day)[r.starts])
        self.g = _offset_grid(int(day.min()), int(day.max()), offset)
        self.k = np.searchsorted(self.g, day)
        hit = self.g[np.minimum(self.k, len(self.g) - 1)] == day
        self.off = (self.k >= len(self.g)) | ~hit | (r.wall - day != self.tod)

    def _sessions(self, r: Rows, offset: BaseOffset | None, cal: Calendar) -> None:
        """The grid of a calendar: its session dates (daily data, each series keeping the
        time of day of its first row) or its slots (intraday data), in wall-clock time."""
        step = fixed_step(offset)
        self.name = cal.describe() + (f" at freq {offset.freqstr!r}" if step else "")
        day = r.wall if cal.intraday(step) else r.wall - r.wall % _DAY_NS
        self.tod = r.per_row((r.wall - day)[r.starts])
        self.g = cal.grid(int(day.min()), int(day.max()), step, self.tz)
        self.k = np.searchsorted(self.g, day)
        hit = np.zeros(len(day), bool)
        if len(self.g):
            hit = self.g[np.minimum(self.k, len(self.g) - 1)] == day
        self.off = (self.k >= len(self.g)) | ~hit | (r.wall - day != self.tod)

    def times_at(self, k: np.ndarray, row: np.ndarray) -> np.ndarray:
        """UTC nanoseconds of grid positions `k`, each in the series of sorted row `row`."""
        if self.g is None:
            return self.anchor[row] + k * self.step
        wall = self.g[k] + self.tod[row]
        if self.tz is None:
            return wall
        local = pd.DatetimeIndex(wall.view("M8[ns]"))
        return local.tz_localize(self.tz, ambiguous="NaT", nonexistent="shift_forward").asi8


@functools.lru_cache(maxsize=64)
def _sub_daily(offset: BaseOffset) -> bool:
    """Whether a calendar offset steps within a day (business hours: no date/time split)."""
    probe = pd.date_range("2000-01-03", periods=3, freq=offset).as_unit("ns").asi8
    return bool((np.diff(probe) < _DAY_NS).any())


@functools.lru_cache(maxsize=64)  # a few ranges repeat (served requests, tuning trials)
def _offset_grid(lo: int, hi: int, offset: BaseOffset) -> np.ndarray:
    """Wall-clock ns of `offset`'s dates from `lo` to `hi`, read-only (cached: shared).

    `pd.date_range` of a calendar offset steps in Python, one date at a time (~0.5 ms for a
    few months of business days): most of validating a served request, which keeps asking
    for the same few ranges.
    """
    g = pd.date_range(pd.Timestamp(lo), pd.Timestamp(hi), freq=offset).as_unit("ns").asi8
    g = g.copy()
    g.flags.writeable = False
    return g


def fill_gaps(out, grid: Grid, r: Rows, schema: SeriesSchema, method: str) -> pd.DataFrame:
    """Insert the missing grid rows; they copy (or interpolate) the rows around them."""
    k0 = grid.k[r.starts]
    length = grid.k[r.ends] - k0 + 1
    base = np.concatenate(([0], np.cumsum(length)[:-1]))  # first full row of each series
    series = r.per_row(np.arange(len(r.starts)))
    src = np.full(int(length.sum()), -1)
    src[base[series] + grid.k - k0[series]] = np.arange(len(grid.k))
    prev = np.maximum.accumulate(src)  # the first row of every series is observed
    full = out.take(prev)
    full_times = grid.times_at(np.arange(len(src)) - np.repeat(base - k0, length), prev)
    if method == "interpolate":
        f = r.take(prev)  # same series layout as the full grid, for `fill`
        for col in full.columns:
            numeric = ptypes.is_numeric_dtype(full[col]) and not ptypes.is_bool_dtype(full[col])
            if numeric and col not in (schema.time_col, schema.id_col):
                v = full[col].to_numpy(dtype=np.float64, na_value=np.nan)
                full[col] = fill(v, src < 0, f, "interpolate", col)
    full[schema.time_col] = to_times(full_times, r.tz)
    return full.reset_index(drop=True)


def to_times(ns: np.ndarray, tz: Any) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("M8[ns]"))
    return idx if tz is None else idx.tz_localize("UTC").tz_convert(tz)


def first(values: Any, limit: int | None = SHOW) -> list[Any]:
    """Plain Python values (no numpy scalar reprs) for messages."""
    items = list(values) if limit is None else list(values)[:limit]
    return [v.item() if isinstance(v, np.generic) else v for v in items]
