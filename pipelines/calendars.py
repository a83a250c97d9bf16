"""The calendar a series follows: which timestamps exist, in the past and over the horizon.

A `Calendar` is one of three kinds:

- ``regular``: every step of the data frequency (a fixed grid; the default).
- ``business``: working days (``days``, Monday-Friday by default) less the public holidays
  of a country from the `holidays` package; with ``open``/``close`` the day is a window of
  slots ``[open, close)`` at the data frequency (opening hours, market hours).
- ``exchange``: the sessions of an `exchange-calendars` exchange (``XNYS``, ``XLON``, ...);
  daily data steps from session to session, intraday data through the trading minutes at
  the data frequency, early closes and lunch breaks included.

Validation judges gaps against these timestamps, the training rows are the sessions, and a
served model's horizon is the next sessions/slots after the history. Wall-clock times (the
``open``/``close`` hours, dates) are read in the data's time zone; naive exchange data is
read in the exchange's own zone. All grids here are int64 wall-clock nanoseconds.
"""

from __future__ import annotations

import datetime
import functools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset, Day, Tick

from pipelines.errors import ConfigError, DataValidationError, did_you_mean

__all__ = ["KINDS", "REGULAR", "Calendar", "fixed_step", "infer_sessions"]

KINDS = ("regular", "business", "exchange")
_DAY_NS = 86_400 * 10**9
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_SETS = {"business": (0, 1, 2, 3, 4), "weekdays": (0, 1, 2, 3, 4), "all": tuple(range(7))}
_KEYS = ("days", "holidays", "open", "close", "exchange")
_EXAMPLES = (
    "'regular', 'business', an exchange such as 'XNYS', {days: Mon-Fri, holidays: US} or "
    "{open: '09:30', close: '16:00', days: Mon-Fri, holidays: US}"
)


@dataclass(frozen=True)
class Calendar:
    """Which timestamps a series has (see the module docstring); JSON-safe via `to_dict`.

    Args:
        kind: ``"regular"``, ``"business"`` or ``"exchange"``.
        days: working weekdays, Monday = 0 (business).
        holidays: country code of the `holidays` package, optionally with a subdivision
            (``"US"``, ``"GB-ENG"``, ``"DE-BY"``); None for no holidays (business).
        open: first slot of the day, ``"HH:MM"``; None = midnight (business, intraday).
        close: end of the day's slots (excluded), ``"HH:MM"``; None = midnight (business).
        exchange: `exchange-calendars` name such as ``"XNYS"`` (exchange).
    """

    kind: str = "regular"
    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    holidays: str | None = None
    open: str | None = None
    close: str | None = None
    exchange: str | None = None

    # ------------------------------------------------------------------ parsing
    @classmethod
    def from_spec(cls, spec: Any, name: str = "data.calendar") -> Calendar:
        """A calendar from a config value: None, a name, an exchange or a mapping.

        Raises:
            ConfigError: naming `name`, what was received and what is accepted.
        """
        if spec is None or isinstance(spec, Calendar):
            return spec or REGULAR
        if isinstance(spec, str):
            word = spec.strip()
            if word.lower() == "regular":
                return REGULAR
            if word.lower() in _DAY_SETS:
                return cls(kind="business", days=_DAY_SETS[word.lower()])
            return cls(kind="exchange", exchange=_exchange_name(word, name))
        if not isinstance(spec, dict):
            raise ConfigError(f"`{name}` must be one of {_EXAMPLES}. Received: {name}={spec!r}")
        unknown = sorted(set(map(str, spec)) - set(_KEYS))
        if unknown:
            hint = did_you_mean(unknown[0], _KEYS)
            raise ConfigError(
                f"Unknown keys {unknown} in `{name}`.{hint} Allowed keys: {list(_KEYS)}"
            )
        if spec.get("exchange") is not None:
            if set(spec) - {"exchange"}:
                raise ConfigError(
                    f"`{name}.exchange` sets the sessions itself; drop "
                    f"{sorted(set(spec) - {'exchange'})}. Received: {name}={spec!r}"
                )
            return cls(kind="exchange", exchange=_exchange_name(spec["exchange"], name))
        open_, close = (_clock(spec.get(k), f"{name}.{k}") for k in ("open", "close"))
        if open_ is not None and close is not None and close != "00:00" and close <= open_:
            raise ConfigError(
                f"`{name}.close` must be after `{name}.open` (slots run from open up to, "
                f"not including, close). Received: open={open_!r}, close={close!r}"
            )
        return cls(
            kind="business",
            days=_weekdays(spec.get("days", "business"), f"{name}.days"),
            holidays=_country(spec.get("holidays"), f"{name}.holidays"),
            open=open_,
            close=close,
        )

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "regular":
            return {"kind": "regular"}
        if self.kind == "exchange":
            return {"kind": "exchange", "exchange": self.exchange}
        return {
            "kind": "business",
            "days": list(self.days),
            "holidays": self.holidays,
            "open": self.open,
            "close": self.close,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Calendar:
        """The inverse of `to_dict`; None (a state saved before calendars) is regular."""
        if not d or d.get("kind", "regular") == "regular":
            return REGULAR
        kind = d.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"Unknown calendar kind {kind!r}; expected one of {list(KINDS)}.")
        days = tuple(int(x) for x in d.get("days", (0, 1, 2, 3, 4)))
        fields = {k: d.get(k) for k in ("holidays", "open", "close", "exchange")}
        return cls(kind=kind, days=days, **fields)

    def describe(self) -> str:
        """Short text for messages: ``exchange XNYS``, ``Mon-Fri less US holidays 09:30-16:00``."""
        if self.kind == "regular":
            return "the regular grid"
        if self.kind == "exchange":
            return f"the sessions of exchange {self.exchange}"
        text = self.day_names + (f" less {self.holidays} holidays" if self.holidays else "")
        if self.open is not None or self.close is not None:
            text += f" {self.open or '00:00'}-{self.close or '24:00'}"
        return f"working days {text}"

    @property
    def day_names(self) -> str:
        """The working days as config text: ``Mon-Fri``, ``Mon,Wed``."""
        days = self.days
        if days and list(days) == list(range(days[0], days[-1] + 1)) and len(days) > 2:
            return f"{_DAYS[days[0]]}-{_DAYS[days[-1]]}"
        return ",".join(_DAYS[d] for d in days)

    # ------------------------------------------------------------------ timestamps
    def intraday(self, step: int | None) -> bool:
        """Whether data of `step` nanoseconds (None: a calendar offset) sits in slots of a day."""
        return step is not None and step < _DAY_NS

    def check_step(self, step: int | None, freq: str | None) -> None:
        """Opening hours need intraday data: say so before any grid is built."""
        hours = self.kind == "business" and (self.open is not None or self.close is not None)
        if hours and not self.intraday(step):
            raise ConfigError(
                f"The calendar {self.describe()} has opening hours, so it needs intraday data "
                f"(e.g. freq '5min' or 'h'); the data frequency is {freq!r}. Drop `open`/"
                f"`close` for daily data."
            )

    def grid(self, first: int, last: int, step: int | None, tz: Any) -> np.ndarray:
        """Sorted wall-clock ns of every timestamp from `first` to `last` (inclusive).

        Daily data (`step` None or >= 1 day) gets the midnight of each session date; the
        caller keeps each series' time of day. Intraday data gets each slot's wall time.
        """
        lo, hi = pd.Timestamp(first).normalize(), pd.Timestamp(last).normalize()
        if not self.intraday(step):
            slots = self._dates(lo, hi)
        elif self.kind == "exchange":
            slots = self._trading_index(lo, hi, step, tz)
        else:
            slots = self._slots(self._dates(lo, hi), step)
        return slots[(slots >= first) & (slots <= last)]

    def after(self, last: int, n: int, step: int | None, tz: Any) -> np.ndarray:
        """The next `n` grid timestamps (wall-clock ns) after `last`."""
        span = max(n * (step or _DAY_NS), _DAY_NS) * 2 + 7 * _DAY_NS
        for _ in range(12):  # the span doubles: even long closures are crossed
            g = self.grid(last + 1, last + span, step, tz)
            if len(g) >= n:
                return g[:n]
            span *= 2
        raise DataValidationError(
            f"The calendar {self.describe()} has fewer than {n} timestamps after "
            f"{pd.Timestamp(last)}; check `data.calendar`."
        )

    def next_times(self, last: pd.Timestamp, n: int, freq: str) -> pd.DatetimeIndex:
        """The `n` timestamps after `last` (a served horizon), in `last`'s time zone."""
        offset = to_offset(freq)
        if self.kind == "regular":
            return pd.date_range(last + offset, periods=n, freq=offset)
        return self._from(pd.Timestamp(last), n, fixed_step(offset), after=True)

    def times_from(self, start: pd.Timestamp, n: int, freq: str) -> pd.DatetimeIndex:
        """The first `n` timestamps at or after `start` (an example request's history)."""
        offset = to_offset(freq)
        if self.kind == "regular":
            return pd.date_range(start, periods=n, freq=offset)
        return self._from(pd.Timestamp(start), n, fixed_step(offset), after=False)

    def _from(self, t: pd.Timestamp, n: int, step: int | None, *, after: bool) -> pd.DatetimeIndex:
        tz = t.tz
        wall = (t.tz_localize(None) if tz is not None else t).as_unit("ns").value
        tod = 0 if self.intraday(step) else wall % _DAY_NS
        g = self.after(wall - tod - (0 if after else 1), n, step, tz) + tod
        local = pd.DatetimeIndex(g.view("M8[ns]"))
        if tz is None:
            return local
        return local.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")

    def season(self, step: int | None) -> int | None:
        """Steps in one cycle: slots of a full day for intraday data, working days a week."""
        if self.kind == "regular":
            return None
        if not self.intraday(step):
            return 5 if self.kind == "exchange" else len(self.days)
        # A week of days from a Monday: the most slots of one day (early closes are shorter).
        monday = pd.Timestamp("2024-01-08").value
        g = self.grid(monday, monday + 7 * _DAY_NS - 1, step, None)
        counts = np.unique(g // _DAY_NS, return_counts=True)[1]
        return int(counts.max()) if len(counts) else None

    def _dates(self, lo: pd.Timestamp, hi: pd.Timestamp) -> np.ndarray:
        if self.kind == "exchange":
            cal = _exchange(self.exchange, lo.year, hi.year)
            return cal.sessions_in_range(lo, hi).as_unit("ns").asi8
        days = pd.date_range(lo, hi, freq="D").as_unit("ns")
        keep = np.isin(days.dayofweek, self.days)
        if self.holidays:
            off = _holiday_dates(self.holidays, lo.year, hi.year)
            keep &= ~np.isin(days.asi8, off)
        return days.asi8[keep]

    def _slots(self, dates: np.ndarray, step: int) -> np.ndarray:
        start = _clock_ns(self.open) if self.open else 0
        stop = _clock_ns(self.close) if self.close and self.close != "00:00" else _DAY_NS
        offsets = np.arange(start, stop, step, dtype=np.int64)
        return (dates[:, None] + offsets[None, :]).reshape(-1)

    def _trading_index(self, lo: pd.Timestamp, hi: pd.Timestamp, step: int, tz: Any) -> np.ndarray:
        cal = _exchange(self.exchange, lo.year, hi.year)
        sessions = cal.sessions_in_range(lo - pd.Timedelta(days=1), hi + pd.Timedelta(days=1))
        if len(sessions) == 0:
            return np.array([], dtype=np.int64)
        idx = cal.trading_index(
            sessions[0], sessions[-1], period=pd.Timedelta(step), intervals=False, force=True
        )
        return idx.tz_convert(tz or cal.tz).tz_localize(None).as_unit("ns").asi8


REGULAR = Calendar()


def fixed_step(offset: BaseOffset | None) -> int | None:
    """Nanoseconds of a fixed-duration frequency (h, 30min); None for days and calendar
    offsets, which follow the local wall clock (a DST day is still one day)."""
    if isinstance(offset, Tick) and not isinstance(offset, Day):  # pandas 2: Day is a Tick
        return int(pd.Timedelta(offset).value)
    return None


def infer_sessions(wall: np.ndarray, step: int) -> Calendar | None:
    """A fixed daily window of slots, when intraday wall times cover only part of the day.

    Returns business hours ``[first slot, last slot + step)`` on the weekdays seen, or None
    when the times of day fill the whole day (a regular grid) or there is too little data.
    """
    tod = np.unique(wall % _DAY_NS)
    days, per_day = np.unique(wall // _DAY_NS, return_counts=True)
    if step >= _DAY_NS or len(tod) * step >= _DAY_NS or ((tod - tod[0]) % step).any():
        return None
    open_ns, close_ns = int(tod[0]), int(tod[-1]) + step
    # Evidence, not chance: three days or more, two of them with every slot of the window.
    full = (close_ns - open_ns) // step
    if len(days) < 3 or (per_day >= full).sum() < 2:
        return None
    if close_ns > _DAY_NS:
        return None
    weekdays = tuple(sorted(set(((days + 3) % 7).tolist())))  # 1970-01-01 was a Thursday
    if len(days) < 14:  # under two weeks a missing weekday may be chance: weekend or not
        weekdays = _DAY_SETS["all"] if {5, 6} & set(weekdays) else _DAY_SETS["business"]
    return Calendar(
        kind="business", days=weekdays, open=_clock_text(open_ns), close=_clock_text(close_ns)
    )


# ---------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=16)
def _exchange(name: str, first_year: int, last_year: int) -> Any:
    import exchange_calendars as xcals

    # Whole years, one more after the data for the horizon: a few cached calendars serve
    # validation, training and every served request.
    try:
        return xcals.get_calendar(name, start=f"{first_year}-01-01", end=f"{last_year + 1}-12-31")
    except ValueError as exc:  # outside the years the exchange's calendar covers
        raise DataValidationError(
            f"exchange-calendars has no {name} calendar for {first_year}-{last_year + 1}: {exc}"
        ) from None


@functools.lru_cache(maxsize=64)
def _holiday_dates(code: str, first_year: int, last_year: int) -> np.ndarray:
    import holidays

    country, _, subdiv = code.partition("-")
    found = holidays.country_holidays(
        country, subdiv=subdiv or None, years=range(first_year, last_year + 1)
    )
    return pd.DatetimeIndex(sorted(found)).as_unit("ns").asi8


@functools.lru_cache(maxsize=1)
def _exchange_names() -> tuple[str, ...]:
    import exchange_calendars as xcals

    return tuple(xcals.get_calendar_names(include_aliases=True))


def _exchange_name(value: Any, name: str) -> str:
    names = _exchange_names()
    if isinstance(value, str) and value.strip().upper() in names:
        return value.strip().upper()
    if isinstance(value, str) and value.strip() in names:
        return value.strip()
    hint = did_you_mean(str(value).upper(), [*names, "regular", "business"], cutoff=0.6)
    raise ConfigError(
        f"`{name}` {value!r} is neither 'regular', 'business' nor an exchange of "
        f"exchange-calendars.{hint} Use {_EXAMPLES}."
    )


def _country(value: Any, name: str) -> str | None:
    if value is None:
        return None
    import holidays

    supported = holidays.list_supported_countries()
    code = str(value).strip().upper() if isinstance(value, str) else None
    country, _, subdiv = (code or "").partition("-")
    if country not in supported:
        hint = did_you_mean(str(value).upper(), sorted(supported), cutoff=0.6)
        raise ConfigError(
            f"`{name}` must be a country code of the `holidays` package such as 'US', 'GB' or "
            f"'DE'.{hint} Received: {name}={value!r}"
        )
    if subdiv and subdiv not in supported[country]:
        raise ConfigError(
            f"`{name}`: {country} has no subdivision {subdiv!r}; known: "
            f"{list(supported[country])[:20]}. Received: {name}={value!r}"
        )
    return code


def _weekdays(value: Any, name: str) -> tuple[int, ...]:
    """'business', 'all', 'Mon-Fri', 'Tue-Sun', 'Mon,Wed' or a list of day names."""
    if isinstance(value, str) and value.strip().lower() in _DAY_SETS:
        return _DAY_SETS[value.strip().lower()]
    items = re.split(r"\s*,\s*", value.strip()) if isinstance(value, str) else value
    out: set[int] = set()
    for item in items if isinstance(items, list | tuple) else [None]:
        m = re.fullmatch(r"(\w{3})\w*(?:\s*-\s*(\w{3})\w*)?", str(item).strip())
        ends = [m.group(1).title(), (m.group(2) or m.group(1)).title()] if m else []
        if not m or any(e not in _DAYS for e in ends):
            raise ConfigError(
                f"`{name}` must be 'business', 'all', a range such as 'Mon-Fri' or a list of "
                f"day names such as [Mon, Tue]. Received: {name}={value!r}"
            )
        a, b = (_DAYS.index(e) for e in ends)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(sorted(out))


def _clock(value: Any, name: str) -> str | None:
    """'HH:MM' text (YAML may read 09:30 as a sexagesimal int, 570: accept that too)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    if isinstance(value, datetime.time):
        return value.strftime("%H:%M")
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", str(value))
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ConfigError(
            f"`{name}` must be a time of day 'HH:MM' such as '09:30'. Received: {name}={value!r}"
        )
    return f"{int(m.group(1)):02d}:{m.group(2)}"


def _clock_ns(text: str) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    return (hours * 60 + minutes) * 60 * 10**9


def _clock_text(ns: int) -> str:
    minutes = (ns // (60 * 10**9)) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
