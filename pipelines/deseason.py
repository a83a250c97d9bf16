"""Seasonal decomposition (MSTL) fitted on training rows, replayed at any timestamp from JSON.

`Deseasonalizer` fits statsforecast's MSTL (`statsforecast.mstl.mstl`, STL per season,
iterated) on each (series, target) of the training rows and keeps, per season, the *last
full cycle* of that seasonal component: ``cycle[p - 1]`` is its value at the series' last
training timestamp (the anchor) and the value ``d`` grid steps from the anchor is
``cycle[(p - 1 + d) mod p]``. Every row, in training, evaluation or a served request, and
every horizon step is then deseasonalized with the same fixed profile, a function of its
timestamp only: the network reads and forecasts the remainder (target minus the profile)
and the profile at the horizon's timestamps is added back to the forecast and every quantile.

It runs after the target transform (so ``log`` + MSTL is a multiplicative seasonality) and
before the scaler. Grid steps are counted on the regular grid of the data frequency: fixed
steps (``h``, ``30min``) in absolute time, calendar offsets (``D``, ``MS``, ``QS``) by date on
the wall clock; calendars with sessions or holidays are refused (`check_calendar`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from pipelines._frames import fitted_series_codes, require_columns, series_blocks
from pipelines.calendars import Calendar, fixed_step
from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema

__all__ = ["DESEASONALIZE", "Deseasonalizer", "check_calendar"]

log = logging.getLogger(__name__)

DESEASONALIZE = ("none", "mstl")
_FORMAT = 1
_DAY_NS = 86_400 * 10**9


def check_calendar(method: str, calendar: Calendar) -> None:
    """Refuse a calendar with sessions or holidays: its grid steps are not a fixed cycle."""
    if method != "none" and calendar.kind != "regular":
        raise ConfigError(
            f"`model.deseasonalize: {method}` needs a regular grid (`data.calendar: regular`, "
            f"every step of the frequency); the data follow {calendar.describe()}, whose "
            "holidays and closures would shift the seasonal cycle. Use `residual: "
            "seasonal_naive` for such series, or leave `model.deseasonalize` at 'none'."
        )


class Deseasonalizer:
    """MSTL seasonal profiles, one per (series, target), subtracted from the targets.

    Args:
        method: ``none`` or ``mstl``.
        seasons: the seasons in steps (one or several); those without two full cycles in
            the shortest training series are dropped.

    Attributes:
        targets_: the target columns.
        id_col_: the id column (None for one series).
        series_ids_: series seen in `fit`, one anchor each.
        periods_: the seasons kept, ascending.
        anchor_: (S,) int64 ns of each series' last training timestamp (UTC if tz-aware).
        cycles_: per period, (S, T, p) float64 last full cycle of that seasonal component.
        freq_, tz_: the grid's frequency and the time zone of the timestamps.
    """

    def __init__(self, *, method: str = "none", seasons: tuple[int, ...] = ()) -> None:
        if method not in DESEASONALIZE:
            raise ConfigError(
                f"`deseasonalize` must be one of {list(DESEASONALIZE)}. Received: {method!r}"
            )
        self.method = method
        self.seasons = tuple(sorted({int(s) for s in seasons if int(s) > 1}))
        if method != "none" and not self.seasons:
            raise ConfigError(
                f"`model.deseasonalize: {method}` needs a season longer than one step; the "
                f"data's seasons are {list(seasons)}. Set `evaluation.season` or "
                "`evaluation.seasons`, or leave `model.deseasonalize` at 'none'."
            )

    @property
    def active(self) -> bool:
        return self.method != "none"

    def fit(self, frame: pd.DataFrame, schema: SeriesSchema, *, freq: str) -> Deseasonalizer:
        """Decompose each (series, target) of `frame`, which must hold training rows only."""
        if not self.active:
            return self
        require_columns(frame, [schema.time_col, *schema.targets])
        ids, starts = series_blocks(frame, schema)
        stops = np.append(starts[1:], len(frame))
        shortest = int((stops - starts).min())
        periods = tuple(p for p in self.seasons if 2 * p <= shortest)
        if not periods:
            who = f"series {ids[int(np.argmin(stops - starts))]!r}"
            raise DataValidationError(
                f"`model.deseasonalize: {self.method}` needs two full cycles of a season in "
                f"the training rows; {who} has {shortest} rows and the seasons are "
                f"{list(self.seasons)}. Use more training data or a shorter season."
            )
        if periods != self.seasons:
            log.warning("Deseasonalizing with seasons %s (too few rows for the others)", periods)
        from statsforecast.mstl import mstl

        times = pd.DatetimeIndex(frame[schema.time_col])
        self.targets_, self.id_col_ = list(schema.targets), schema.id_col
        self.time_col = schema.time_col
        self.series_ids_ = [s.item() if isinstance(s, np.generic) else s for s in ids]
        self.periods_, self.freq_ = periods, str(freq)
        self.tz_ = None if times.tz is None else str(times.tz)
        self.anchor_ = times.asi8[stops - 1].astype(np.int64)
        values = frame[self.targets_].to_numpy(np.float64)
        cycles = {p: np.empty((len(ids), len(self.targets_), p)) for p in periods}
        for s, (a, b) in enumerate(zip(starts, stops, strict=True)):
            for t in range(len(self.targets_)):
                parts = mstl(values[a:b, t], list(periods))
                for p in periods:
                    name = "seasonal" if len(periods) == 1 else f"seasonal{p}"
                    cycles[p][s, t] = parts[name].to_numpy()[-p:]
        self.cycles_ = cycles
        return self

    def seasonal(self, times_ns: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """(R, T) profile at timestamps `times_ns` (int64 ns) of series `codes` (positions
        in `series_ids_`)."""
        self._check_fitted()
        codes = np.asarray(codes, np.int64)
        d = self._steps(np.asarray(times_ns, np.int64), self.anchor_[codes])  # (R,)
        out = np.zeros((len(codes), len(self.targets_)))
        for p, cycle in self.cycles_.items():
            out += cycle[codes, :, np.mod(p - 1 + d, p)]  # (R, T)
        return out

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of `frame` with the profile subtracted from its targets."""
        if not self.active:
            return frame
        self._check_fitted()
        times = pd.DatetimeIndex(frame[self.time_col])
        seas = self.seasonal(times.asi8, self._rows(frame))
        out = frame.copy()
        for t, col in enumerate(self.targets_):
            out[col] = frame[col].to_numpy(np.float64) - seas[:, t]
        return out

    def series_index(self, labels: list[Any]) -> np.ndarray:
        """Positions in `series_ids_` of `labels`; raises naming unseen series."""
        return fitted_series_codes(
            self.series_ids_, labels, "the seasonal profile (`model.deseasonalize`)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Parameters and learned state as plain JSON types (no pickle)."""
        d: dict[str, Any] = {
            "format": _FORMAT,
            "method": self.method,
            "seasons": list(self.seasons),
        }
        if self.active:
            self._check_fitted()
            d.update(
                targets=self.targets_,
                id_col=self.id_col_,
                time_col=self.time_col,
                series_ids=self.series_ids_,
                periods=list(self.periods_),
                freq=self.freq_,
                tz=self.tz_,
                anchor=self.anchor_.tolist(),
                cycles={str(p): c.tolist() for p, c in self.cycles_.items()},
            )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Deseasonalizer:
        """Rebuild a fitted decomposition from `to_dict` output."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ConfigError(f"Unknown seasonal profile state; this code reads format {_FORMAT}.")
        out = cls(method=d["method"], seasons=tuple(d["seasons"]))
        if out.active:
            out.targets_, out.id_col_ = list(d["targets"]), d["id_col"]
            out.time_col, out.series_ids_ = d["time_col"], list(d["series_ids"])
            out.periods_, out.freq_, out.tz_ = tuple(d["periods"]), d["freq"], d["tz"]
            out.anchor_ = np.asarray(d["anchor"], dtype=np.int64)
            out.cycles_ = {int(p): np.asarray(c, np.float64) for p, c in d["cycles"].items()}
        return out

    # ------------------------------------------------------------------ internals
    def _steps(self, times_ns: np.ndarray, anchor_ns: np.ndarray) -> np.ndarray:
        """Signed grid steps from each anchor to each timestamp."""
        offset = to_offset(self.freq_)
        step = fixed_step(offset)
        if step is not None:  # absolute time: a DST day has 46 or 50 half-hours
            return np.rint((times_ns - anchor_ns) / step).astype(np.int64)
        # Days, months, quarters: count grid dates on the wall clock (a DST day is one day).
        day, anchor_day = self._wall_day(times_ns), self._wall_day(anchor_ns)
        lo, hi = min(day.min(), anchor_day.min()), max(day.max(), anchor_day.max())
        grid = pd.date_range(pd.Timestamp(lo), pd.Timestamp(hi), freq=offset).as_unit("ns").asi8
        return np.searchsorted(grid, day) - np.searchsorted(grid, anchor_day)

    def _wall_day(self, ns: np.ndarray) -> np.ndarray:
        if self.tz_ is not None:
            local = pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC").tz_convert(self.tz_)
            ns = local.tz_localize(None).as_unit("ns").asi8
        return ns - ns % _DAY_NS

    def _rows(self, frame: pd.DataFrame) -> np.ndarray:
        if self.id_col_ is None:
            return np.zeros(len(frame), np.int64)
        return self.series_index(frame[self.id_col_].tolist())

    def _check_fitted(self) -> None:
        if not hasattr(self, "cycles_"):
            raise ConfigError("This Deseasonalizer is not fitted yet: call fit(train, schema).")
