"""The classical side of the suite: seasonal naive and statsforecast's models per series."""

from __future__ import annotations

import numpy as np

from forecast.evaluation.classical import CLASSICAL, SeriesJob, mstl_seasons, run_classical

from .scoring import QUANTILES, panel, score, seasonal_naive
from .series import Series


def run_series(series: Series, *, timeout: float | None) -> dict[str, dict]:
    """{method: {"metrics": ..., "seconds": ..., "note": ...}} for one suite series.

    Each statsforecast model is fitted once per series on the rows before the test period
    and run forward from every origin (`forecast.evaluation.classical`).
    """
    ids, values = panel(series)
    p = series.protocol
    returns = series.kind == "returns"
    out: dict[str, dict] = {
        "seasonal_naive": {"metrics": score(series, values, seasonal_naive(series, values))}
    }
    if returns:
        zero = np.zeros((sum(len(p.origins(len(y))) for y in values), p.horizon, 1))
        out["random_walk"] = {"metrics": score(series, values, zero)}
    jobs = [SeriesJob(y=y, n_train=p.fit_rows(len(y)), origins=p.origins(len(y))) for y in values]
    runs = run_classical(
        list(CLASSICAL),
        jobs,
        horizon=p.horizon,
        season=series.season,
        seasons=mstl_seasons(series.season, series.freq),
        quantiles=QUANTILES if returns else (),
        timeout=timeout,
    )
    for name, run in runs.items():
        entry: dict = {"seconds": run.seconds, "note": run.skipped}
        if run.mean is not None:
            point = np.concatenate(run.mean)[..., None]
            q = np.concatenate(run.quantiles)[:, :, None, :] if run.quantiles else None
            entry["metrics"] = score(series, values, point, q)
            entry["point"] = point.tolist()  # for `combination`: (S * O, H, 1)
            entry["fitted"] = sorted(set(run.fitted))
        out[name] = entry
    return out
