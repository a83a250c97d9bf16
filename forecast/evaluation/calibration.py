"""Rolling interval recalibration: each quantile conformalized on its series' recent forecasts.

A quantile model trained on one volatility regime keeps its interval widths when the regime
changes, so coverage drifts (a 10-90% interval covering 70% in a crisis and 85% in a calm).
With ``calibration.windows: K`` every forecast made at origin ``t`` is corrected with the
last K forecasts of the same series whose outcomes are all known at ``t`` (origins
``t - H - K + 1 .. t - H``):

- each quantile's distance from the median is multiplied by one factor per (quantile,
  target), ``q' = m + s (q - m)``;
- ``s`` is the conformal quantile, at level ``max(tau, 1 - tau)``, of the ratios
  ``(y - m) / (q - m)`` over those K forecasts and their H steps, so that a fraction
  ``tau`` of the recent outcomes fell below ``q'``;
- the median is unchanged (so the point forecast and its MASE are unchanged); factors are
  at least 0, so no quantile crosses the median, and the quantiles on each side are sorted
  afterwards in case two factors made them cross.

The correction reads only outcomes known at the origin, so it needs no fitted state and is
the same function of the history in evaluation and in serving: the served model needs
``K + H - 1`` more history rows per series. A sliding window of recent scores (rather than
an online update of the level, as in adaptive conformal inference) makes each forecast
depend on a fixed stretch of history, not on how much history a request happens to send.
"""

from __future__ import annotations

import logging

import numpy as np

from pipelines.errors import ConfigError

log = logging.getLogger(__name__)


def correcting_windows(
    past_origin: np.ndarray, first_origin: np.ndarray, *, horizon: int, windows: int
) -> np.ndarray:
    """Which earlier forecasts can correct the forecasts of their series from `first_origin` on.

    A forecast at origin ``t`` is corrected with origins ``t - H - K + 1 .. t - H``, so a
    series whose first corrected origin is `first_origin` needs the earlier forecasts at
    origins after ``first_origin - H - K``. Evaluation and serving select them here.

    Args:
        past_origin: (M,) origin of each earlier forecast.
        first_origin: (M,) the first origin to correct of that forecast's series.
        horizon: H.
        windows: K.

    Returns:
        (M,) bool mask of the earlier forecasts to compute.
    """
    return np.asarray(past_origin) > np.asarray(first_origin) - horizon - windows


def quantile_factors(
    median: np.ndarray, quantiles: np.ndarray, y: np.ndarray, levels: tuple[float, ...]
) -> np.ndarray:
    """(T, Q) factors from forecasts with known outcomes, pooled over windows and steps.

    Args:
        median: (K, H, T) the median forecasts.
        quantiles: (K, H, T, Q) the quantile forecasts, levels increasing.
        y: (K, H, T) what happened.
        levels: the Q quantile levels.

    Returns:
        Factor 1 for the median and wherever no ratio is defined.
    """
    d = quantiles - median[..., None]  # (K, H, T, Q) distance from the median
    e = (y - median)[..., None]  # (K, H, T, 1)
    ok = np.abs(d) > 1e-12 * (1.0 + np.abs(median[..., None]))
    ratio = np.where(ok, e / np.where(ok, d, 1.0), np.nan)
    ratio = ratio.reshape(-1, *ratio.shape[2:])  # (K * H, T, Q)
    out = np.ones(ratio.shape[1:])
    for j, tau in enumerate(levels):
        if tau == 0.5:
            continue
        level = max(tau, 1.0 - tau)
        for t in range(out.shape[0]):
            r = np.sort(ratio[:, t, j][np.isfinite(ratio[:, t, j])])
            if len(r):
                # Split conformal: the ceil((n + 1) * level)-th smallest of n (the largest
                # when n is too small for the level).
                k = int(np.ceil((len(r) + 1) * level - 1e-9))
                # At least 0: a quantile may shrink onto the median but never cross it,
                # so the median (the point forecast) stays the median.
                out[t, j] = max(0.0, r[min(k, len(r)) - 1])
    return out


def rescale(median: np.ndarray, quantiles: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``m + s (q - m)`` for (N, H, T) medians, (N, H, T, Q) quantiles, (N, T, Q) factors."""
    out = median[..., None] + factors[:, None] * (quantiles - median[..., None])
    return np.sort(out, axis=-1)  # monotone rearrangement: levels stay increasing


def recalibrate(
    quantiles: np.ndarray,
    levels: tuple[float, ...],
    *,
    series: np.ndarray,
    origin: np.ndarray,
    past_series: np.ndarray,
    past_origin: np.ndarray,
    past_quantiles: np.ndarray,
    past_y: np.ndarray,
    horizon: int,
    windows: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Recalibrate forecasts with the earlier forecasts of the same series.

    Args:
        quantiles: (N, H, T, Q) forecasts to correct, in original units.
        levels: the Q quantile levels; must include 0.5.
        series: (N,) series key of each forecast (any comparable values).
        origin: (N,) position of each forecast's origin within its series.
        past_series, past_origin: (M,) the same for forecasts with known outcomes.
        past_quantiles: (M, H, T, Q) their quantile forecasts.
        past_y: (M, H, T) their outcomes.
        horizon: H.
        windows: K.

    Returns:
        ``(calibrated, used)``: the (N, H, T, Q) corrected quantiles and (N,) how many
        earlier forecasts corrected each one (K when the history allows).
    """
    if 0.5 not in levels:
        raise ConfigError(
            "Recalibration scales distances from the median: `model.quantiles` must include "
            f"0.5. Received: {list(levels)}"
        )
    m = levels.index(0.5)
    out = np.empty_like(quantiles, dtype=np.float64)
    used = np.zeros(len(quantiles), dtype=np.int64)
    for key in np.unique(series):
        mine = np.flatnonzero(series == key)
        theirs = np.flatnonzero(past_series == key)
        theirs = theirs[np.argsort(past_origin[theirs], kind="stable")]
        known = past_origin[theirs]
        for i in mine:
            # Outcomes of a forecast made at o end at o + H: known at origin t when o <= t - H.
            lo = np.searchsorted(known, origin[i] - horizon - windows, side="right")
            hi = np.searchsorted(known, origin[i] - horizon, side="right")
            cal = theirs[lo:hi]
            used[i] = len(cal)
            q = past_quantiles[cal]
            factors = quantile_factors(q[..., m], q, past_y[cal], levels)
            out[i] = rescale(quantiles[i : i + 1, ..., m], quantiles[i : i + 1], factors[None])[0]
    return out, used


def warn_short(used: np.ndarray, windows: int, what: str) -> None:
    """Log forecasts corrected with fewer than K earlier forecasts (none: left as they are)."""
    short = used < windows
    if short.any():
        log.warning(
            "%d %s were recalibrated with fewer than %d earlier forecasts (min %d; with 0 "
            "the quantiles are left as the network gave them).",
            int(short.sum()),
            what,
            windows,
            int(used.min()),
        )
