"""Features from past values only (returns, ranges, volatility, lags) and from timestamps.

Every per-series feature at row t reads rows <= t of the same series (and of the same
gap-free segment when the frame carries `pipelines.validate.SEGMENT_COL`), so changing a
later value never changes an earlier feature. Rows of each series must be in time order, as
`validate` leaves them. Calendar features depend on the timestamp alone, so they can be
computed for any future timestamp and serve as known-future covariates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema
from pipelines.validate import SEGMENT_COL

__all__ = [
    "CALENDAR_FEATURES",
    "FeatureSpec",
    "add_features",
    "calendar_features",
    "future_features",
    "lags",
    "log_returns",
    "ohlc_features",
    "rolling_volatility",
    "simple_returns",
]

CALENDAR_FEATURES = ("minute", "hour", "weekday", "day_of_month", "day_of_year", "month")
_TARGETS = {"log_return": "_log_return", "simple_return": "_return"}


def _phase(t: pd.DatetimeIndex, name: str) -> np.ndarray:
    """Position within the cycle, in [0, 1): the fraction fed to sin/cos."""
    if name == "minute":
        return (t.minute + t.second / 60) / 60
    if name == "hour":
        return (t.hour + t.minute / 60) / 24
    if name == "weekday":
        return t.day_of_week / 7
    if name == "day_of_month":
        return (t.day - 1) / t.days_in_month
    if name == "day_of_year":
        return (t.day_of_year - 1) / np.where(t.is_leap_year, 366, 365)
    return (t.month - 1) / 12


def calendar_features(
    times: Any, features: Sequence[str] = ("hour", "weekday", "month")
) -> pd.DataFrame:
    """Sin/cos encodings of calendar cycles, computable for any (future) timestamp.

    Args:
        times: timestamps (Series, DatetimeIndex or array-like).
        features: cycles among `CALENDAR_FEATURES`; each gives ``<name>_sin``, ``<name>_cos``.

    Returns:
        Float64 frame, indexed like `times` when it is a Series.

    Example:
        >>> calendar_features(pd.date_range("2024-01-01", periods=3, freq="h"), ["hour"])
    """
    features = _names(features, "features", CALENDAR_FEATURES)
    index = times.index if isinstance(times, pd.Series) else None
    try:
        t = pd.DatetimeIndex(times)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"Calendar features need timestamps; {exc}") from None
    if t.isna().any():
        raise DataValidationError(
            f"Calendar features need timestamps on every row; {int(t.isna().sum())} are missing."
        )
    out = {}
    for name in features:
        angle = 2 * np.pi * np.asarray(_phase(t, name), dtype=np.float64)
        out[f"{name}_sin"], out[f"{name}_cos"] = np.sin(angle), np.cos(angle)
    return pd.DataFrame(out, index=index if index is not None else pd.RangeIndex(len(t)))


def log_returns(
    frame: pd.DataFrame, columns: Iterable[str], *, id_col: str | None = None
) -> pd.DataFrame:
    """``log(x_t / x_{t-1})`` per series as ``<col>_log_return``; NaN on each series' first row.

    Raises:
        DataValidationError: a value is not strictly positive (the row and series are named).
    """
    columns = _present(frame, columns, "columns")
    for c in columns:
        bad = ~(frame[c].to_numpy(dtype=np.float64) > 0)
        if bad.any():
            raise DataValidationError(
                f"Log returns need positive values; column {c!r} has {int(bad.sum())} values "
                f"<= 0 or NaN, first {_rows(frame, bad, id_col)}."
            )
    logs = pd.DataFrame(
        {c: np.log(frame[c].to_numpy(dtype=np.float64)) for c in columns}, index=frame.index
    )
    return (logs - _shift(logs, 1, frame, id_col)).add_suffix("_log_return")


def simple_returns(
    frame: pd.DataFrame, columns: Iterable[str], *, id_col: str | None = None
) -> pd.DataFrame:
    """``x_t / x_{t-1} - 1`` per series as ``<col>_return``; NaN on each series' first row.

    Raises:
        DataValidationError: a previous value is 0 (the return would be infinite).
    """
    columns = _present(frame, columns, "columns")
    vals = frame[columns].astype(np.float64)
    prev = _shift(vals, 1, frame, id_col)
    zero = (prev == 0).to_numpy()
    if zero.any():
        row = zero.any(axis=1)
        raise DataValidationError(
            f"Simple returns divide by the previous value; it is 0 for columns "
            f"{[c for c, z in zip(columns, zero.any(axis=0), strict=True) if z]} before "
            f"{_rows(frame, row, id_col)}. Use log returns or shift the series."
        )
    return (vals / prev - 1).add_suffix("_return")


def ohlc_features(
    frame: pd.DataFrame,
    *,
    open: str = "open",
    high: str = "high",
    low: str = "low",
    close: str = "close",
) -> pd.DataFrame:
    """Same-row bar features: ``log_range`` = log(high/low), ``body`` = (close - open) / open.

    Raises:
        DataValidationError: low or open not positive, or high < low.
    """
    o, h, lo, c = (
        frame[x].to_numpy(dtype=np.float64)
        for x in _present(frame, [open, high, low, close], "ohlc")
    )
    bad = ~((lo > 0) & (o > 0) & (h >= lo))
    if bad.any():
        raise DataValidationError(
            f"OHLC features need open > 0, low > 0 and high >= low; columns {[open, high, low]} "
            f"break this on {int(bad.sum())} rows, first {_rows(frame, bad, None)}."
        )
    return pd.DataFrame({"log_range": np.log(h / lo), "body": (c - o) / o}, index=frame.index)


def rolling_volatility(
    frame: pd.DataFrame, columns: Iterable[str], window: int, *, id_col: str | None = None
) -> pd.DataFrame:
    """Sample std of the last `window` log returns (rows t-window+1..t) as ``<col>_vol<window>``.

    NaN on the first `window` rows of each series (its first log return is undefined).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ConfigError(f"`window` must be an int >= 2. Received: window={window!r}")
    rets = log_returns(frame, columns, id_col=id_col)
    order, pos = _layout(frame, id_col)
    out = {}
    for col, name in zip(rets.columns, _present(frame, columns, "columns"), strict=True):
        s = _window_std(rets[col].to_numpy()[order], window)
        s[pos < window] = np.nan  # a window reaching into the previous series
        out[f"{name}_vol{window}"] = _unsort(s, order)
    return pd.DataFrame(out, index=frame.index)


def _window_std(x: np.ndarray, window: int, chunk: int = 1 << 16) -> np.ndarray:
    """Trailing sample std computed from each window alone.

    pandas' rolling std carries running sums along the array, so the same window gives
    results that differ in the last bits depending on how much history came before it;
    serving sees a shorter history than training and must get identical features.
    """
    out = np.full(len(x), np.nan)
    if len(x) < window:
        return out
    views = np.lib.stride_tricks.sliding_window_view(x, window)  # (n - window + 1, window)
    for lo in range(0, len(views), chunk):  # bounded temporaries for long windows
        out[window - 1 + lo : window - 1 + lo + chunk] = views[lo : lo + chunk].std(axis=1, ddof=1)
    return out


def lags(
    frame: pd.DataFrame, columns: Iterable[str], lags: Iterable[int], *, id_col: str | None = None
) -> pd.DataFrame:
    """Values `k` rows earlier in the same series as ``<col>_lag<k>``; NaN where none."""
    columns = _present(frame, columns, "columns")
    lags = _ints(lags, "lags", 1)
    vals = frame[columns].astype(np.float64)
    parts = [_shift(vals, k, frame, id_col).add_suffix(f"_lag{k}") for k in lags]
    return pd.concat(parts, axis=1) if parts else _no_columns(frame)


@dataclass(frozen=True)
class FeatureSpec:
    """Which features `add_features` appends; JSON-safe, so it ships inside a served model.

    Args:
        log_returns: columns whose log returns become past covariates.
        simple_returns: columns whose simple returns become past covariates.
        ohlc: ``(open, high, low, close)`` column names for ``log_range`` and ``body``; or ().
        volatility: windows of rolling volatility over every log-return column.
        calendar: cycles among `CALENDAR_FEATURES`; future covariates.
        lags: lag steps; past covariates.
        lag_columns: columns to lag; () lags the (new) targets.
        target: None keeps the targets; ``"log_return"`` or ``"simple_return"`` replaces each
            target column by its return (the price columns stay in the frame, out of roles).
    """

    log_returns: tuple[str, ...] = ()
    simple_returns: tuple[str, ...] = ()
    ohlc: tuple[str, ...] = ()
    volatility: tuple[int, ...] = ()
    calendar: tuple[str, ...] = ()
    lags: tuple[int, ...] = ()
    lag_columns: tuple[str, ...] = ()
    target: str | None = None

    def __post_init__(self) -> None:
        for name in ("log_returns", "simple_returns", "ohlc", "lag_columns"):
            object.__setattr__(self, name, _names(getattr(self, name), name))
        object.__setattr__(self, "calendar", _names(self.calendar, "calendar", CALENDAR_FEATURES))
        object.__setattr__(self, "volatility", _ints(self.volatility, "volatility", 2))
        object.__setattr__(self, "lags", _ints(self.lags, "lags", 1))
        if self.ohlc and len(self.ohlc) != 4:
            raise ConfigError(
                f"`ohlc` must name 4 columns (open, high, low, close). Received: ohlc={list(self.ohlc)}"
            )
        if self.target is not None and self.target not in _TARGETS:
            raise ConfigError(
                f"`target` must be None or one of {list(_TARGETS)}. Received: target={self.target!r}"
            )
        if self.volatility and not self.log_returns and self.target != "log_return":
            raise ConfigError(
                "`volatility` is computed on log returns: set `log_returns` or "
                f"target='log_return'. Received: volatility={list(self.volatility)}"
            )

    @property
    def warmup(self) -> int:
        """Leading rows per series that `add_features` drops (their features need history)."""
        r = int(bool(self.log_returns or self.simple_returns or self.target))
        return max([r, *self.volatility, *(k + r for k in self.lags)])

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ConfigError(f"Unknown feature spec keys {unknown}; allowed: {allowed}")
        return cls(**d)


def add_features(
    frame: pd.DataFrame, schema: SeriesSchema, spec: FeatureSpec
) -> tuple[pd.DataFrame, SeriesSchema]:
    """Append the features of `spec` and return the new frame and schema.

    The first `spec.warmup` rows of each series (or segment) are dropped so no feature is NaN.
    The same call on new history at serving time gives the same features; `future_features`
    gives the calendar columns over the horizon.

    Returns:
        ``(frame, schema)``: returns/ranges/volatility/lags are added as past covariates (or
        replace the targets under `spec.target`), calendar columns as future covariates.

    Raises:
        DataValidationError: missing columns, feature columns already present, values a
            feature cannot use, or a series shorter than ``spec.warmup + 1`` rows.

    Example:
        >>> spec = FeatureSpec(log_returns=("close",), volatility=(20,), calendar=("weekday",))
        >>> frame, schema = add_features(frame, schema, spec)
    """
    if not isinstance(spec, FeatureSpec) or not isinstance(schema, SeriesSchema):
        raise ConfigError(
            f"`schema` must be a SeriesSchema and `spec` a FeatureSpec. Received: "
            f"{type(schema).__name__}, {type(spec).__name__}"
        )
    by = schema.id_col
    needed = [schema.time_col, *([by] if by else []), *schema.value_columns]
    _present(frame, [*needed, *spec.log_returns, *spec.simple_returns, *spec.ohlc], "columns")
    feats, targets = _compute(frame, schema, spec)
    cal = calendar_features(frame[schema.time_col], spec.calendar) if spec.calendar else None
    added = [part for part in (feats, cal) if part is not None and len(part.columns)]
    clash = [c for part in added for c in part.columns if c in frame.columns]
    if clash:
        raise DataValidationError(
            f"Feature columns {clash} are already in the frame; add_features appends them, so "
            f"run it once on a frame without them."
        )
    out = pd.concat([frame, *added], axis=1) if added else frame.copy(deep=False)
    if spec.warmup:
        order, pos = _layout(frame, by)
        keep = _unsort(pos >= spec.warmup, order)
        _check_lengths(frame, by, keep, spec.warmup)
        out = out.loc[keep]
    if not out.index.equals(pd.RangeIndex(len(out))):
        out = out.reset_index(drop=True)
    nan = out[list(feats.columns)].isna().to_numpy() if len(feats.columns) else np.zeros((1, 0))
    if nan.any():
        raise DataValidationError(
            f"Features {list(feats.columns[nan.any(axis=0)])} are NaN after the warm-up, first "
            f"{_rows(out, nan.any(axis=1), by)}; the inputs hold NaN. Run "
            f"pipelines.validate.validate first."
        )
    out.attrs = dict(frame.attrs)
    past = [c for c in feats.columns if c not in targets]
    return out, SeriesSchema(
        time_col=schema.time_col,
        id_col=by,
        targets=targets,
        past_covariates=tuple(dict.fromkeys([*schema.past_covariates, *past])),
        future_covariates=(*schema.future_covariates, *(cal.columns if cal is not None else ())),
        freq=schema.freq,
    )


def _compute(
    frame: pd.DataFrame, schema: SeriesSchema, spec: FeatureSpec
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Per-series feature columns (NaN during warm-up) and the target names after `spec`."""
    by, swap = schema.id_col, list(schema.targets) if spec.target else []
    log_cols = [*spec.log_returns, *(swap if spec.target == "log_return" else [])]
    simple_cols = [*spec.simple_returns, *(swap if spec.target == "simple_return" else [])]
    log_cols, simple_cols = list(dict.fromkeys(log_cols)), list(dict.fromkeys(simple_cols))
    # Only the kinds asked for: an empty one still costs a shift and a frame (~1 ms each, most
    # of a served one-series request for a model without features).
    parts = [log_returns(frame, log_cols, id_col=by)] if log_cols else []
    if simple_cols:
        parts.append(simple_returns(frame, simple_cols, id_col=by))
    if spec.ohlc:
        names = dict(zip(("open", "high", "low", "close"), spec.ohlc, strict=True))
        parts.append(ohlc_features(frame, **names))
    parts += [rolling_volatility(frame, log_cols, w, id_col=by) for w in spec.volatility]
    feats = pd.concat(parts, axis=1) if parts else _no_columns(frame)
    targets = schema.targets
    if spec.target is not None:
        targets = tuple(f"{c}{_TARGETS[spec.target]}" for c in schema.targets)
    if spec.lags:
        src = pd.concat([frame, feats], axis=1)  # returns can be lagged too
        lagged = lags(src, list(spec.lag_columns or targets), spec.lags, id_col=by)
        feats = pd.concat([feats, lagged], axis=1)
    return feats, targets


def future_features(times: Any, spec: FeatureSpec) -> pd.DataFrame:
    """The future-covariate columns `spec` adds, for timestamps over a forecast horizon."""
    return calendar_features(times, spec.calendar)


def _no_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame with `frame`'s index and no columns; ``DataFrame(index=...)`` costs 9x more
    (~90 us: a tenth of featurizing a one-series request for a model without features)."""
    return pd.DataFrame(np.empty((len(frame), 0)), index=frame.index)


def _layout(frame: pd.DataFrame, id_col: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Row order that makes each series (and segment) contiguous, and positions within it."""
    keys = [k for k in (id_col, SEGMENT_COL) if k is not None and k in frame.columns]
    if id_col is not None and id_col not in frame.columns:
        raise DataValidationError(f"The following columns are missing: [{id_col!r}].")
    if not keys:
        n = len(frame)
        return np.arange(n), np.arange(n)
    if len(keys) == 1:  # factorize: the same codes as groupby(...).ngroup(), 20x faster
        codes = pd.factorize(frame[keys[0]], sort=False)[0]
    else:
        codes = frame.groupby(keys, sort=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    c = codes[order]
    start = np.flatnonzero(np.append(True, c[1:] != c[:-1]))
    return order, np.arange(len(c)) - np.repeat(start, np.diff(np.append(start, len(c))))


def _unsort(sorted_values: np.ndarray, order: np.ndarray) -> np.ndarray:
    out = np.empty_like(sorted_values)
    out[order] = sorted_values
    return out


def _shift(values: pd.DataFrame, k: int, frame: pd.DataFrame, id_col: str | None) -> pd.DataFrame:
    """`values` k rows earlier within each series (NaN where the series has no such row)."""
    order, pos = _layout(frame, id_col)
    v = values.to_numpy(dtype=np.float64)[order]
    shifted = np.full_like(v, np.nan)
    if k < len(v):
        shifted[k:] = v[: len(v) - k]
    shifted[pos < k] = np.nan
    return pd.DataFrame(_unsort(shifted, order), index=values.index, columns=values.columns)


def _check_lengths(frame, id_col, keep, warmup) -> None:
    if warmup == 0:
        return
    ids = frame[id_col] if id_col else pd.Series(0, index=frame.index)
    left = pd.Series(keep, index=frame.index).groupby(ids, sort=False).sum()
    short = left[left == 0]
    if len(short):
        raise DataValidationError(
            f"Series {short.index.tolist()[:5]} have at most {warmup} rows; the features need "
            f"{warmup} warm-up rows plus at least one more (spec.warmup={warmup})."
        )


def _rows(frame: pd.DataFrame, mask: np.ndarray, id_col: str | None) -> str:
    idx = np.flatnonzero(mask)[:5]
    labels = frame.index.to_numpy()[idx].tolist()
    if id_col and id_col in frame.columns:
        return f"rows {labels} (series {frame[id_col].to_numpy()[idx].tolist()})"
    return f"rows {labels}"


def _present(frame: Any, columns: Any, name: str) -> list[str]:
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"`frame` must be a pandas DataFrame. Received: {type(frame).__name__}")
    cols = list(_names(columns, name))
    missing = [c for c in dict.fromkeys(cols) if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"The following columns are missing: {missing}. Found columns: {list(frame.columns)}"
        )
    return cols


def _names(value: Any, name: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value or ())
    for item in items:
        if not isinstance(item, str) or not item or (allowed is not None and item not in allowed):
            expected = f"one of {list(allowed)}" if allowed else "non-empty column names"
            raise ConfigError(f"`{name}` must hold {expected}. Received: {name}={list(items)}")
    return items


def _ints(value: Any, name: str, low: int) -> tuple[int, ...]:
    items = (value,) if isinstance(value, int) else tuple(value or ())
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer) or item < low:
            raise ConfigError(f"`{name}` must hold ints >= {low}. Received: {name}={list(items)}")
    return tuple(int(i) for i in items)
