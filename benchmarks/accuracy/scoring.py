"""Scores of one method on one suite series: MASE averaged over series, origins and steps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.evaluation.metrics import evaluate, seasonal_naive_scale

from .series import Series

QUANTILES = (0.1, 0.5, 0.9)  # returns series: the 80% interval and the median


def panel(series: Series) -> tuple[list[str], list[np.ndarray]]:
    """Series ids and their values (oldest first); all share one protocol."""
    frame = series.frame()
    ids, values = [], []
    for sid, g in frame.groupby("series", sort=True):
        ids.append(str(sid))
        values.append(g["value"].to_numpy(np.float64))
    return ids, values


def truth(series: Series, values: list[np.ndarray]) -> np.ndarray:
    """(S * O, H, 1) outcomes after each origin, series-major."""
    p = series.protocol
    rows = [y[o + 1 : o + 1 + p.horizon] for y in values for o in p.origins(len(y))]
    return np.stack(rows)[..., None]


def scales(series: Series, values: list[np.ndarray]) -> np.ndarray:
    """(S * O, 1) MASE scale: in-sample seasonal-naive MAE on the rows before the test."""
    p = series.protocol
    out = [
        np.full(
            len(p.origins(len(y))), seasonal_naive_scale(y[: p.fit_rows(len(y))], series.season)
        )
        for y in values
    ]
    return np.concatenate(out)[:, None]


def score(
    series: Series,
    values: list[np.ndarray],
    point: np.ndarray,
    quantiles: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric of `forecast.evaluation.metrics.evaluate` for forecasts (S * O, H, 1)."""
    return evaluate(
        truth(series, values),
        point,
        scale=scales(series, values),
        quantiles=QUANTILES if quantiles is not None else None,
        q_pred=quantiles,
    )


def seasonal_naive(series: Series, values: list[np.ndarray]) -> np.ndarray:
    """y[o + h - s * ceil(h / s)]: the last season repeated, from each origin."""
    p, s = series.protocol, series.season
    h = np.arange(1, p.horizon + 1)
    back = s * ((h - 1) // s + 1) - h
    rows = [y[o - back] for y in values for o in p.origins(len(y))]
    return np.stack(rows)[..., None]


def table_row(name: str, metrics: dict[str, float]) -> pd.Series:
    return pd.Series(metrics, name=name)
