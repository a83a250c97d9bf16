"""Baselines to beat, vectorized over windows: naive, seasonal, drift, moving average, ridge."""

from __future__ import annotations

import abc
import inspect
import re
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.linear_model import Ridge

from pipelines.errors import ConfigError, DataValidationError, did_you_mean

__all__ = [
    "BASELINES",
    "Baseline",
    "Drift",
    "Mean",
    "MovingAverage",
    "Naive",
    "RidgeLags",
    "SeasonalNaive",
    "make_baseline",
    "season_from_freq",
]

# Steps per season for calendar frequencies; sub-daily ones use a daily season (see below).
_CALENDAR_SEASONS = {
    "D": 7,
    "B": 5,
    "C": 5,
    "W": 52,
    **dict.fromkeys(["M", "MS", "ME", "BM", "BMS", "BME", "CBMS", "CBME"], 12),
    **dict.fromkeys(["SM", "SMS", "SME"], 24),
    **dict.fromkeys(["Q", "QS", "QE", "BQ", "BQS", "BQE"], 4),
    **dict.fromkeys(["Y", "YS", "YE", "A", "AS", "BY", "BYS", "BYE", "BA", "BAS"], 1),
}
# Pre-pandas-2.2 spellings of fixed frequencies, still common in configs.
_LEGACY_TICKS = {"H": "h", "T": "min", "S": "s", "L": "ms", "U": "us", "N": "ns"}
_DAY_NS = 86_400 * 10**9


def season_from_freq(freq: str) -> int:
    """Seasonal period in steps for a pandas frequency string.

    Sub-daily data gets a daily season ("30min" -> 48, "h" -> 24), daily a weekly one
    ("D" -> 7, "B" -> 5), weekly and monthly a yearly one ("W" -> 52, "MS" -> 12); yearly data
    has none (1). A multiple divides the season ("2W" -> 26); one that fills it ("7D") gives 1,
    so pass `season` for such data.

    Raises:
        ConfigError: for an unknown frequency or one that does not divide its season evenly.
    """
    match = re.fullmatch(r"\s*(\d*)\s*([A-Za-z]+)(-[A-Za-z]+)?\s*", str(freq))
    base = None
    if match:
        n, code = int(match.group(1) or 1), match.group(2)
        # Case matters: "MS" is month start, "ms" millisecond.
        base = _CALENDAR_SEASONS.get(code)
        season_of = f"{base} {code!r} steps"
        if base is None:
            try:
                nanos = pd.tseries.frequencies.to_offset(
                    f"{n}{_LEGACY_TICKS.get(code, code)}"
                ).nanos
            except ValueError:  # unknown or not a fixed duration
                nanos = 0
            if nanos:
                n, base, season_of = nanos, _DAY_NS, "a day"
    if base is None:
        raise ConfigError(
            f"Cannot derive a season from freq={freq!r}; pass `season` explicitly "
            "(e.g. freq='h' -> 24, 'D' -> 7, 'MS' -> 12)."
        )
    if base % n:
        raise ConfigError(
            f"freq={freq!r} does not divide its season ({season_of}) into whole steps; "
            "pass `season` explicitly."
        )
    return base // n


# ---------------------------------------------------------------- history access


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    return int(value)


def _first_windows(bad: NDArray[np.bool_], k: int = 5) -> list[int]:
    return np.flatnonzero(bad)[:k].tolist()


def _history(
    past: ArrayLike, mask: ArrayLike | None, n_targets: int, need: tuple[str, int, int]
) -> tuple[NDArray[np.floating], NDArray[np.bool_] | None, NDArray[np.intp] | None]:
    """Validated target history (N, L, T), mask (N, L) or None, and valid-step counts (N,).

    `need` is (what needs it, lookback needed, valid steps every window needs).
    """
    what, min_lookback, min_valid = need
    x = np.asarray(past)
    if x.ndim != 3 or x.shape[0] == 0:
        raise DataValidationError(
            f"`past` must be a non-empty 3-D array (N, L, F). Received: past.shape={x.shape}"
        )
    if x.shape[2] < n_targets:
        raise DataValidationError(
            f"`past` holds the targets in its first n_targets={n_targets} features, but it has "
            f"{x.shape[2]}. Received: past.shape={x.shape}"
        )
    if x.shape[1] < min_lookback:
        raise ConfigError(
            f"{what} needs a history of at least {min_lookback} steps, but the "
            f"windows' lookback is L={x.shape[1]}. Received: past.shape={x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    values = x[..., :n_targets]  # (N, L, T)
    finite = bool(np.isfinite(values).all())  # one cheap pass; details only when it fails
    if mask is None:
        bad = np.zeros(1, bool) if finite else ~np.isfinite(values).all(axis=(1, 2))
        n_valid = None
    else:
        m = np.asarray(mask)
        if m.dtype != np.bool_ or m.shape != x.shape[:2]:
            raise DataValidationError(
                f"`mask` must be a boolean array (N, L)={x.shape[:2]}. "
                f"Received: mask.shape={m.shape}, dtype={m.dtype}"
            )
        n_valid = m.sum(axis=1)
        short = n_valid < min_valid
        if short.any():
            raise DataValidationError(
                f"{int(short.sum())} windows have fewer than {min_valid} valid history steps, "
                f"which {what} needs (first windows: {_first_windows(short)}, "
                f"fewest: {int(n_valid.min())}); raise the windows' min_lookback."
            )
        # Padded steps may hold anything; only the real ones must be finite.
        bad = np.zeros(1, bool) if finite else (m[..., None] & ~np.isfinite(values)).any((1, 2))
        mask = m
    if bad.any():
        raise DataValidationError(
            f"`past` holds NaN/inf target values at real steps of {int(bad.sum())} windows "
            f"(first windows: {_first_windows(bad)})."
        )
    return values, mask, n_valid


def _values_back(
    values: NDArray[np.floating],
    mask: NDArray[np.bool_] | None,
    n_valid: NDArray[np.intp] | None,
    back: NDArray[np.intp],
) -> tuple[NDArray[np.floating], NDArray[np.bool_]]:
    """Values `back[j]` valid steps before the last valid one (N, J, T), and which exist (N, J).

    Steps are counted over real steps only, so any padding side (or holes) gives the values an
    unpadded window would. Missing steps (a window too short) hold an arbitrary real value.
    """
    n, length = values.shape[:2]
    if mask is None:
        return values[:, length - 1 - back], (back < length)[None, :]
    # Last True whatever the padding side; argmax on a contiguous copy beats a reversed view.
    last = length - 1 - np.argmax(np.ascontiguousarray(mask[:, ::-1]), axis=1)
    exists = back[None, :] < n_valid[:, None]  # (N, J)
    if back.size == 1 and back[0] == 0:
        return values[np.arange(n), last][:, None], exists
    first = np.argmax(mask, axis=1)
    if np.array_equal(last - first + 1, n_valid):
        # Every window's real steps are contiguous (left, right or no padding): count back.
        pos = np.where(exists, last[:, None] - back[None, :], last[:, None])  # (N, J)
    else:
        # Any other mask: position of the r-th valid step from the end, by scattering.
        r_max = int(back.max()) + 1
        rank = n_valid[:, None] - np.cumsum(mask, axis=1)  # 0 at the last valid step
        rows, cols = np.nonzero(mask & (rank < r_max))
        by_rank = np.repeat(last[:, None], r_max, axis=1)  # (N, r_max)
        by_rank[rows, rank[rows, cols]] = cols
        pos = by_rank[:, back]
    return values[np.arange(n)[:, None], pos], exists  # (N, J, T), (N, J)


def _last_k(k: int) -> NDArray[np.intp]:
    """Offsets of the last k valid steps in time order."""
    return np.arange(k - 1, -1, -1)


_LAST = np.zeros(1, dtype=np.intp)


# ---------------------------------------------------------------- interface


class Baseline(abc.ABC):
    """One interface for every baseline: `fit(past, target, mask)` then `predict(past, mask)`.

    `past` (N, L, F) holds the targets in its first `n_targets` features; `mask` (N, L) marks the
    real steps of dynamic windows (any padding side). Forecasts are in the units of `past`:
    inverse-scale them before computing metrics in original units.

    Args:
        horizon: number of steps to forecast (H).
        n_targets: number of target features (T) at the start of `past`.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, horizon: int, n_targets: int = 1) -> None:
        self.horizon = _positive_int("horizon", horizon)
        self.n_targets = _positive_int("n_targets", n_targets)
        # (what needs it, lookback needed, valid steps needed per window), checked before work.
        self._need: tuple[str, int, int] = (f"{type(self).__name__}", 1, 1)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments plus ``name``: ``make_baseline(**config)`` rebuilds it."""
        params = inspect.signature(type(self).__init__).parameters
        return {"name": self.name, **{p: getattr(self, p) for p in params if p != "self"}}

    def fit(self, past: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> Self:
        """Check the training windows; baselines without parameters learn nothing."""
        self._check_target(np.asarray(past).shape, target)
        _history(past, mask, self.n_targets, self._need)
        return self

    def predict(
        self, past: ArrayLike, mask: ArrayLike | None = None, future: ArrayLike | None = None
    ) -> NDArray[np.floating]:
        """Forecast (N, H, T) from histories (N, L, F); `future` covariates are not used."""
        values, m, n_valid = _history(past, mask, self.n_targets, self._need)
        return self._forecast(values, m, n_valid)

    @abc.abstractmethod
    def _forecast(
        self,
        values: NDArray[np.floating],
        mask: NDArray[np.bool_] | None,
        n_valid: NDArray[np.intp] | None,
    ) -> NDArray[np.floating]:
        """(N, H, T) forecasts from the checked histories; each baseline defines it."""

    def _check_target(self, past_shape: tuple[int, ...], target: ArrayLike) -> NDArray[np.floating]:
        y = np.asarray(target, dtype=np.float64)
        expected = (past_shape[0], self.horizon, self.n_targets)
        if y.shape != expected:
            raise DataValidationError(
                f"`target` must be (N, H, T)={expected} for past.shape={past_shape}, "
                f"horizon={self.horizon}, n_targets={self.n_targets}. Received: target.shape={y.shape}"
            )
        return y

    def _repeat(self, last: NDArray[np.floating]) -> NDArray[np.floating]:
        return np.repeat(last[:, None, :], self.horizon, axis=1)  # (N, H, T)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Naive(Baseline):
    """The last valid target value, repeated over the horizon."""

    name = "naive"

    def _forecast(self, values, mask, n_valid):
        return self._repeat(_values_back(values, mask, n_valid, _LAST)[0][:, 0])


class SeasonalNaive(Baseline):
    """The value one season before each horizon step: y[t + h - s * ceil(h / s)].

    Args:
        horizon: steps to forecast.
        n_targets: target features at the start of `past`.
        season: seasonal period in steps; or None to derive it from `freq`.
        freq: pandas frequency string, used when `season` is None (see `season_from_freq`).
    """

    name = "seasonal_naive"

    def __init__(
        self,
        *,
        horizon: int,
        n_targets: int = 1,
        season: int | None = None,
        freq: str | None = None,
    ) -> None:
        super().__init__(horizon=horizon, n_targets=n_targets)
        if season is None and freq is None:
            raise ConfigError("SeasonalNaive needs `season` or `freq`. Received neither")
        self.freq = freq
        self.season = _positive_int("season", season) if season is not None else None
        self.season_ = self.season or season_from_freq(freq)
        src = "" if self.season else f" (from freq={freq!r})"
        self._need = (f"season={self.season_}{src}", self.season_, self.season_)

    def _forecast(self, values, mask, n_valid):
        s = self.season_
        h = np.arange(1, self.horizon + 1)
        steps_back = s * ((h - 1) // s + 1) - h  # (H,) in [0, s): 0 = the last valid value
        return _values_back(values, mask, n_valid, steps_back)[0]


class Drift(Baseline):
    """The line through the first and last valid values, extended over the horizon."""

    name = "drift"

    def _forecast(self, values, mask, n_valid):
        n, length = values.shape[:2]
        last = _values_back(values, mask, n_valid, _LAST)[0][:, 0]  # (N, T)
        if mask is None:
            first, steps = values[:, 0], np.full(n, length - 1)
        else:
            first, steps = values[np.arange(n), np.argmax(mask, axis=1)], n_valid - 1
        # One valid step has no slope: the forecast is naive.
        slope = (last - first) / np.maximum(steps, 1)[:, None].astype(np.float64)
        h = np.arange(1, self.horizon + 1)[None, :, None]
        return (last[:, None, :] + h * slope[:, None, :]).astype(values.dtype)


class MovingAverage(Baseline):
    """Mean of the last `k` valid values (of all of them when a window has fewer), repeated.

    Args:
        horizon: steps to forecast.
        n_targets: target features at the start of `past`.
        k: number of last values averaged.
    """

    name = "moving_average"

    def __init__(self, *, horizon: int, n_targets: int = 1, k: int = 7) -> None:
        super().__init__(horizon=horizon, n_targets=n_targets)
        self.k = _positive_int("k", k)
        # Short dynamic windows average what they have, so each needs only one valid step.
        self._need = (f"k={self.k}", self.k, 1)

    def _forecast(self, values, mask, n_valid):
        if mask is None:
            return self._repeat(values[:, -self.k :].mean(axis=1))
        last_k, exists = _values_back(values, mask, n_valid, _last_k(self.k))  # (N, k, T)
        total = np.where(exists[..., None], last_k, 0).sum(axis=1)
        return self._repeat(total / exists.sum(axis=1)[:, None].astype(values.dtype))


class RidgeLags(Baseline):
    """Ridge regression from the last `n_lags` valid target values to the whole horizon.

    Fit on training windows only. With `relative`, lags and targets are taken relative to the
    last valid value, so the model learns changes: it works on trending series and shrinks
    towards the naive forecast as `alpha` grows.

    Args:
        horizon: steps to forecast.
        n_targets: target features at the start of `past`.
        n_lags: last valid steps used as features (every window needs that many).
        alpha: ridge penalty.
        relative: regress changes from the last value instead of levels.
    """

    name = "ridge"

    def __init__(
        self,
        *,
        horizon: int,
        n_targets: int = 1,
        n_lags: int = 24,
        alpha: float = 1.0,
        relative: bool = True,
    ) -> None:
        super().__init__(horizon=horizon, n_targets=n_targets)
        self.n_lags = _positive_int("n_lags", n_lags)
        self._need = (f"n_lags={self.n_lags}", self.n_lags, self.n_lags)
        if not np.isfinite(alpha) or alpha < 0:
            raise ConfigError(f"`alpha` must be a finite number >= 0. Received: alpha={alpha!r}")
        self.alpha = float(alpha)
        self.relative = bool(relative)

    def _features(self, values, mask, n_valid):
        lags, _ = _values_back(values, mask, n_valid, _last_k(self.n_lags))  # (N, n_lags, T)
        origin = lags[:, -1:, :] if self.relative else np.zeros_like(lags[:, -1:, :])
        x = (lags - origin).reshape(len(lags), -1).astype(np.float64)
        return x, origin  # (N, n_lags * T), (N, 1, T)

    def fit(self, past: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> Self:
        """Learn the ridge from training windows `past` (N, L, F) to `target` (N, H, T)."""
        y = self._check_target(np.asarray(past).shape, target)
        if not np.isfinite(y).all():
            bad = ~np.isfinite(y).all(axis=(1, 2))
            raise DataValidationError(
                f"`target` holds NaN/inf in {int(bad.sum())} windows (first: {_first_windows(bad)})"
            )
        x, origin = self._features(*_history(past, mask, self.n_targets, self._need))
        self.model_ = Ridge(alpha=self.alpha).fit(x, (y - origin).reshape(len(y), -1))
        return self

    def predict(
        self, past: ArrayLike, mask: ArrayLike | None = None, future: ArrayLike | None = None
    ) -> NDArray[np.floating]:
        """Forecast (N, H, T) with the ridge fitted on training windows."""
        if not hasattr(self, "model_"):
            raise ConfigError("RidgeLags is not fitted: call fit(past, target) on training windows")
        return super().predict(past, mask, future)

    def _forecast(self, values, mask, n_valid):
        x, origin = self._features(values, mask, n_valid)
        # The linear map itself: sklearn's predict re-validates 100k rows for nothing.
        out = (x @ self.model_.coef_.T + self.model_.intercept_).reshape(
            len(x), self.horizon, self.n_targets
        ) + origin
        return out.astype(values.dtype, copy=False)


class Mean(Baseline):
    """The mean target of the training windows, repeated over the horizon.

    On a return target this is the random walk with drift of the price.
    """

    name = "mean"

    def fit(self, past: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> Mean:
        y = self._check_target(np.asarray(past).shape, target)
        _history(past, mask, self.n_targets, self._need)
        if not np.isfinite(y).all():
            raise DataValidationError(
                "`target` holds NaN/inf; the mean baseline needs finite targets."
            )
        self.mean_ = y.mean(axis=(0, 1))  # (T,)
        return self

    def _forecast(self, values, mask, n_valid):
        if not hasattr(self, "mean_"):
            raise ConfigError("The mean baseline must be fitted before `predict`.")
        return np.broadcast_to(self.mean_, (len(values), self.horizon, self.n_targets)).astype(
            values.dtype
        )


BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls for cls in (Naive, SeasonalNaive, Drift, MovingAverage, RidgeLags, Mean)
}


def make_baseline(name: str, **kwargs: Any) -> Baseline:
    """Build a baseline by name, e.g. ``make_baseline("seasonal_naive", horizon=12, freq="h")``.

    Raises:
        ConfigError: for an unknown name (with the closest match) or unknown arguments.
    """
    if name not in BASELINES:
        hint = did_you_mean(name, BASELINES)
        raise ConfigError(
            f"Unknown baseline {name!r}.{hint} Choose one of {sorted(BASELINES)}. Received: name={name!r}"
        )
    cls = BASELINES[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(f"Baseline {name!r} takes {allowed}; unknown arguments: {unknown}")
    return cls(**kwargs)
