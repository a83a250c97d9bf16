"""Forecast accuracy metrics on (N, H, T) arrays in original units, per horizon step or overall.

Every metric takes `y_true` and forecasts shaped (windows N, horizon H, targets T) and a
keyword `reduce`: True gives one float over everything, False an (H,) array per horizon step
(averaged over windows and targets). Bad input raises before anything is computed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from pipelines.errors import ConfigError, DataValidationError

logger = logging.getLogger(__name__)

__all__ = [
    "directional_accuracy",
    "evaluate",
    "evaluate_by_step",
    "interval_coverage",
    "interval_width",
    "mae",
    "mape",
    "mase",
    "pinball_loss",
    "rmse",
    "seasonal_naive_scale",
    "smape",
]

FloatArray = NDArray[np.float64]
_AXES = "(window, step, target)"


# ---------------------------------------------------------------- validation


def _first_positions(bad: NDArray[np.bool_], k: int = 3) -> str:
    return str([tuple(int(i) for i in p) for p in np.argwhere(bad)[:k]])


def _array(name: str, x: ArrayLike, ndim: int = 3) -> FloatArray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"`{name}` must be numeric. Received: {exc}") from None
    if a.ndim != ndim or a.size == 0:
        layout = "(N, H, T)" if ndim == 3 else "(N, H, T, Q)"
        raise DataValidationError(
            f"`{name}` must be a non-empty {ndim}-D array {layout}. Received: {name}.shape={a.shape}"
        )
    bad = ~np.isfinite(a)
    if bad.any():
        # A NaN metric is worse than an error: it is logged and compared as if it meant something.
        raise DataValidationError(
            f"`{name}` holds {int(bad.sum())} NaN/inf values (first at {_AXES}"
            f"{'' if ndim == 3 else ' + quantile'}: {_first_positions(bad)}); "
            "metrics need finite values."
        )
    return a


def _pair(
    y_true: ArrayLike, y_pred: ArrayLike, pred_name: str = "y_pred", true_name: str = "y_true"
) -> tuple[FloatArray, FloatArray]:
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if yt.shape != yp.shape:
        raise DataValidationError(
            f"`{pred_name}` must have the shape of `{true_name}` (N, H, T). "
            f"Received: {true_name}.shape={yt.shape}, {pred_name}.shape={yp.shape}"
        )
    return _array(true_name, yt), _array(pred_name, yp)


def _quantiles(quantiles: Sequence[float] | ArrayLike) -> FloatArray:
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 1 or q.size == 0 or not np.all((q > 0) & (q < 1)):
        raise ConfigError(
            f"`quantiles` must be a non-empty list of levels strictly between 0 and 1. "
            f"Received: quantiles={q.tolist()}"
        )
    if np.any(np.diff(q) <= 0):
        raise ConfigError(
            f"`quantiles` must be strictly increasing (sorted, no duplicates). "
            f"Received: quantiles={q.tolist()}"
        )
    return q


def _q_pred(y_true: FloatArray, q_pred: ArrayLike, q: FloatArray) -> FloatArray:
    qp = np.asarray(q_pred)
    expected = (*y_true.shape, q.size)
    if qp.shape != expected:
        raise DataValidationError(
            f"`q_pred` must have shape (N, H, T, Q) = {expected} for y_true.shape={y_true.shape} "
            f"and {q.size} quantiles. Received: q_pred.shape={qp.shape}"
        )
    return _array("q_pred", qp, ndim=4)


def _scale(scale: ArrayLike, shape: tuple[int, ...]) -> FloatArray:
    n, _, t = shape
    s = np.asarray(scale, dtype=np.float64)
    if s.ndim == 0 or s.shape == (t,):
        s = s.reshape(1, 1, -1)
    elif s.shape == (n, t):
        s = s[:, None, :]
    else:
        raise DataValidationError(
            f"`scale` must be a number, one per target (T,)=({t},) or one per window and target "
            f"(N, T)=({n}, {t}). Received: scale.shape={s.shape}"
        )
    if not np.all(np.isfinite(s) & (s > 0)):
        raise DataValidationError(
            f"`scale` must be finite and > 0; {int(np.sum(~(s > 0)))} values are not. "
            "Compute it with `seasonal_naive_scale` on the training series."
        )
    return s


# ---------------------------------------------------------------- reductions


def _reduce(values: FloatArray, reduce: bool) -> float | FloatArray:
    """Mean over everything (a float) or over windows and targets per step (an (H,) array)."""
    return float(values.mean()) if reduce else values.mean(axis=(0, 2))


def _weighted(
    values: FloatArray, weights: FloatArray, reduce: bool, what: str
) -> float | FloatArray:
    axes = None if reduce else (0, 2)
    total = weights.sum(axis=axes)
    if np.any(total == 0):
        where = "" if reduce else f" at steps {(np.flatnonzero(total == 0) + 1).tolist()}"
        raise DataValidationError(f"{what}{where}: no values left to average.")
    out = (values * weights).sum(axis=axes) / total
    return float(out) if reduce else out


# ---------------------------------------------------------------- point metrics


def mae(y_true: ArrayLike, y_pred: ArrayLike, *, reduce: bool = True) -> float | FloatArray:
    """Mean absolute error."""
    yt, yp = _pair(y_true, y_pred)
    return _reduce(np.abs(yt - yp), reduce)


def rmse(y_true: ArrayLike, y_pred: ArrayLike, *, reduce: bool = True) -> float | FloatArray:
    """Root mean squared error; the square root is taken after averaging (overall or per step)."""
    yt, yp = _pair(y_true, y_pred)
    mse = _reduce((yt - yp) ** 2, reduce)
    return float(np.sqrt(mse)) if reduce else np.sqrt(mse)


def mape(y_true: ArrayLike, y_pred: ArrayLike, *, reduce: bool = True) -> float | FloatArray:
    """Mean absolute percentage error, as a fraction (0.05 = 5 %), like scikit-learn.

    Raises:
        DataValidationError: when `y_true` holds zeros, where the metric is undefined.
    """
    yt, yp = _pair(y_true, y_pred)
    _no_zeros(yt)
    return _reduce(np.abs(yt - yp) / np.abs(yt), reduce)


def _no_zeros(yt: FloatArray) -> None:
    zeros = yt == 0
    if zeros.any():
        raise DataValidationError(
            f"`y_true` holds {int(zeros.sum())} zeros (first at {_AXES}: {_first_positions(zeros)}); "
            "MAPE divides by y_true and is undefined there. Use smape or mase instead."
        )


def smape(y_true: ArrayLike, y_pred: ArrayLike, *, reduce: bool = True) -> float | FloatArray:
    """Symmetric MAPE: mean of 2|y - p| / (|y| + |p|), in [0, 2]; a step where both are 0 scores 0."""
    yt, yp = _pair(y_true, y_pred)
    return _reduce(_sape(yt, yp), reduce)


def _sape(yt: FloatArray, yp: FloatArray) -> FloatArray:
    denom = np.abs(yt) + np.abs(yp)
    # Both zero means a perfect forecast of zero: the error is 0, not 0/0.
    return np.divide(2 * np.abs(yt - yp), denom, out=np.zeros_like(denom), where=denom > 0)


def mase(
    y_true: ArrayLike, y_pred: ArrayLike, *, scale: ArrayLike, reduce: bool = True
) -> float | FloatArray:
    """Mean absolute scaled error: absolute errors over the in-sample seasonal-naive MAE.

    1.0 means as good as the seasonal-naive forecast was in sample. `scale` comes from
    `seasonal_naive_scale` on training data: a number, one per target (T,), or one per window
    and target (N, T) when windows come from several series.
    """
    yt, yp = _pair(y_true, y_pred)
    return _reduce(np.abs(yt - yp) / _scale(scale, yt.shape), reduce)


def seasonal_naive_scale(train_series: ArrayLike, season: int) -> float | FloatArray:
    """In-sample MAE of the seasonal-naive forecast, mean |y[t] - y[t - season]|: MASE's scale.

    Compute it on the training part of one series only, never on validation or test data.

    Args:
        train_series: one series (n,) or its targets side by side (n, T).
        season: seasonal period in steps (1 = naive).

    Returns:
        A float for a 1-D series, a (T,) array for a 2-D one.

    Raises:
        ConfigError: when `season` is not an integer >= 1.
        DataValidationError: when the series has no more than `season` values, holds NaN, or
            repeats itself exactly every `season` steps (scale 0).
    """
    if isinstance(season, bool) or not isinstance(season, int | np.integer) or season < 1:
        raise ConfigError(f"`season` must be an integer >= 1. Received: season={season!r}")
    y = np.asarray(train_series, dtype=np.float64)
    if y.ndim not in (1, 2):
        raise DataValidationError(
            f"`train_series` must be 1-D (n,) or 2-D (n, T). Received: shape={y.shape}"
        )
    if y.shape[0] <= season:
        raise DataValidationError(
            f"`train_series` needs more than season={season} values to compute the seasonal-naive "
            f"scale. Received: {y.shape[0]} values"
        )
    bad_rows = np.flatnonzero(~np.isfinite(y).reshape(len(y), -1).all(axis=1))
    if bad_rows.size:
        raise DataValidationError(
            f"`train_series` holds NaN/inf values in {bad_rows.size} rows "
            f"(first rows: {bad_rows[:3].tolist()}); the scale needs finite values."
        )
    scale = np.abs(y[season:] - y[:-season]).mean(axis=0)
    zero = np.flatnonzero(np.atleast_1d(scale) == 0)
    if zero.size:
        raise DataValidationError(
            f"`train_series` (target columns {zero.tolist()}) repeats itself every season={season} "
            "steps, so its seasonal-naive MAE is 0 and MASE is undefined."
        )
    return float(scale) if y.ndim == 1 else scale


# ---------------------------------------------------------------- probabilistic metrics


def pinball_loss(
    y_true: ArrayLike, q_pred: ArrayLike, quantiles: Sequence[float], *, reduce: bool = True
) -> FloatArray:
    """Pinball (quantile) loss per quantile: q * max(y - p, 0) + (1 - q) * max(p - y, 0).

    `q_pred` is (N, H, T, Q) for the Q `quantiles`, strictly increasing in (0, 1). Returns a (Q,)
    array, or (H, Q) per step with ``reduce=False``.
    """
    q = _quantiles(quantiles)
    yt = _array("y_true", y_true)
    return _pinball(yt, _q_pred(yt, q_pred, q), q, reduce)


def _pinball(yt: FloatArray, qp: FloatArray, q: FloatArray, reduce: bool) -> FloatArray:
    diff = yt[..., None] - qp  # (N, H, T, Q)
    loss = np.maximum(q * diff, (q - 1) * diff)
    return loss.mean(axis=(0, 1, 2)) if reduce else loss.mean(axis=(0, 2))


def interval_coverage(
    y_true: ArrayLike, lower: ArrayLike, upper: ArrayLike, *, reduce: bool = True
) -> float | FloatArray:
    """Fraction of observations inside [lower, upper] (bounds included); crossed bounds never cover."""
    yt, lo = _pair(y_true, lower, "lower")
    _, hi = _pair(yt, upper, "upper")
    _warn_crossed(lo, hi)
    return _reduce(((yt >= lo) & (yt <= hi)).astype(np.float64), reduce)


def interval_width(
    lower: ArrayLike, upper: ArrayLike, *, reduce: bool = True
) -> float | FloatArray:
    """Mean width upper - lower; crossed bounds (lower > upper) count with their negative width."""
    lo, hi = _pair(lower, upper, "upper", "lower")
    _warn_crossed(lo, hi)
    return _reduce(hi - lo, reduce)


def _warn_crossed(lo: FloatArray, hi: FloatArray) -> None:
    # Unconstrained quantile heads can cross; that is a model defect to report, not a data error.
    crossed = lo > hi
    if crossed.any():
        logger.warning(
            "%d of %d intervals have lower > upper (first at %s: %s)",
            int(crossed.sum()),
            crossed.size,
            _AXES,
            _first_positions(crossed),
        )


def directional_accuracy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    reference: ArrayLike | None = None,
    reduce: bool = True,
) -> float | FloatArray:
    """Share of forecasts whose sign matches the observed sign (targets that are returns).

    Observations that are exactly 0 have no direction and are left out; a forecast of 0 for a
    non-zero observation counts as a miss. For level targets pass `reference`, the last observed
    value (N, T): the directions are then those of y - reference and p - reference.

    Raises:
        DataValidationError: when every observation (or every one at some step) is 0.
    """
    yt, yp = _pair(y_true, y_pred)
    if reference is not None:
        ref = _reference(reference, yt.shape)
        yt, yp = yt - ref, yp - ref
    st, sp = np.sign(yt), np.sign(yp)
    hits = (st == sp).astype(np.float64)
    return _weighted(
        hits,
        (st != 0).astype(np.float64),
        reduce,
        "directional_accuracy: every observed change is 0",
    )


def _reference(reference: ArrayLike, shape: tuple[int, ...]) -> FloatArray:
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (shape[0], shape[2]) or not np.all(np.isfinite(ref)):
        raise DataValidationError(
            f"`reference` must be the finite last observed value per window and target "
            f"(N, T)=({shape[0]}, {shape[2]}). Received: reference.shape={ref.shape}"
        )
    return ref[:, None, :]


# ---------------------------------------------------------------- evaluate


def _q_name(q: float) -> str:
    pct = round(q * 100, 6)
    return f"p{pct:02.0f}" if pct == int(pct) else "p" + f"{pct:g}".replace(".", "_")


def _both(values: FloatArray) -> tuple[float, FloatArray]:
    return _reduce(values, True), _reduce(values, False)  # type: ignore[return-value]


def _symmetric_pairs(q: FloatArray) -> list[tuple[int, int]]:
    """Index pairs (lower, upper) of levels q and 1 - q, such as 0.1 and 0.9."""
    return [
        (i, int(j[0]))
        for i in range(q.size)
        if q[i] < 0.5 and (j := np.flatnonzero(np.isclose(q, 1 - q[i]))).size
    ]


def _collect(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    scale: ArrayLike | None,
    quantiles: Sequence[float] | None,
    q_pred: ArrayLike | None,
    directional: bool,
    reference: ArrayLike | None,
) -> dict[str, tuple[float, FloatArray]]:
    if (quantiles is None) != (q_pred is None):
        raise ConfigError(
            "`quantiles` and `q_pred` go together: pass both or neither. "
            f"Received: quantiles={quantiles!r}, q_pred={'None' if q_pred is None else 'array'}"
        )
    # Validate everything before computing anything.
    yt, yp = _pair(y_true, y_pred)
    s = None if scale is None else _scale(scale, yt.shape)
    q = None if quantiles is None else _quantiles(quantiles)
    qp = None if q is None else _q_pred(yt, q_pred, q)
    if directional and reference is not None:
        _reference(reference, yt.shape)

    abs_err = np.abs(yt - yp)
    mse, mse_by_step = _both(abs_err**2)
    out = {"mae": _both(abs_err), "rmse": (mse**0.5, np.sqrt(mse_by_step))}
    out["smape"] = _both(_sape(yt, yp))
    if np.any(yt == 0):
        logger.info("mape left out: y_true holds %d zeros", int(np.sum(yt == 0)))
    else:
        out["mape"] = _both(abs_err / np.abs(yt))
    if s is not None:
        out["mase"] = _both(abs_err / s)
    if q is not None and qp is not None:
        overall, by_step = _pinball(yt, qp, q, True), _pinball(yt, qp, q, False)
        for i, level in enumerate(q):
            out[f"pinball_{_q_name(level)}"] = (float(overall[i]), by_step[:, i])
        out["pinball_mean"] = (float(overall.mean()), by_step.mean(axis=1))
        for i, j in _symmetric_pairs(q):
            lo, hi = qp[..., i], qp[..., j]
            _warn_crossed(lo, hi)
            level = f"{round((q[j] - q[i]) * 100, 6):g}".replace(".", "_")
            out[f"coverage_{level}"] = _both(((yt >= lo) & (yt <= hi)).astype(np.float64))
            out[f"width_{level}"] = _both(hi - lo)
    if directional:
        out["directional_accuracy"] = (
            directional_accuracy(yt, yp, reference=reference, reduce=True),
            directional_accuracy(yt, yp, reference=reference, reduce=False),
        )
    return out


def evaluate(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    scale: ArrayLike | None = None,
    quantiles: Sequence[float] | None = None,
    q_pred: ArrayLike | None = None,
    directional: bool = False,
    reference: ArrayLike | None = None,
) -> dict[str, float]:
    """Every metric that applies, under the names logged to MLflow.

    Always ``mae``, ``rmse``, ``smape``; ``mape`` unless y_true holds zeros; ``mase`` when
    `scale` is given; with quantiles ``pinball_p10`` (one per level), ``pinball_mean`` and, for
    each symmetric pair such as 0.1/0.9, ``coverage_80`` and ``width_80``;
    ``directional_accuracy`` when `directional` is True.

    Args:
        y_true: observed values (N, H, T), original units.
        y_pred: point forecasts (N, H, T), original units.
        scale: MASE scale (see `mase`).
        quantiles: quantile levels of `q_pred`, strictly increasing in (0, 1).
        q_pred: quantile forecasts (N, H, T, Q).
        directional: add directional accuracy (see `directional_accuracy`).
        reference: last observed value (N, T) for directional accuracy on level targets.

    Returns:
        Metric name -> float.

    Example:
        >>> evaluate(np.ones((2, 3, 1)), np.zeros((2, 3, 1)))["mae"]
        1.0
    """
    values = _collect(y_true, y_pred, scale, quantiles, q_pred, directional, reference)
    return {name: float(overall) for name, (overall, _) in values.items()}


def evaluate_by_step(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    scale: ArrayLike | None = None,
    quantiles: Sequence[float] | None = None,
    q_pred: ArrayLike | None = None,
    directional: bool = False,
    reference: ArrayLike | None = None,
) -> pd.DataFrame:
    """The metrics of `evaluate` per horizon step: a frame indexed by ``step`` (1..H), one column each."""
    values = _collect(y_true, y_pred, scale, quantiles, q_pred, directional, reference)
    table = pd.DataFrame({name: by_step for name, (_, by_step) in values.items()})
    table.index = pd.RangeIndex(1, len(table) + 1, name="step")
    return table
