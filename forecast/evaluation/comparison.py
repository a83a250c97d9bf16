"""The model against statsforecast's classical models on the same windows of a part.

`compare_classical` picks the windows of a part whose origins fall every
`evaluation.classical_step` steps of each series, runs the classical models of
`forecast.evaluation.classical` from exactly those origins (fitted on training rows only),
and scores the model, seasonal naive (and the random walk of a return target) and every
classical model on those windows, overall and per series.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.config import EvaluationConfig
from forecast.data import Prepared
from forecast.evaluation.classical import (
    CLASSICAL,
    ClassicalRun,
    SeriesJob,
    mstl_seasons,
    run_classical,
)
from forecast.evaluation.metrics import evaluate
from forecast.evaluation.scoring import Forecasts, baseline_forecasts, is_returns
from pipelines._frames import series_blocks
from pipelines.errors import ConfigError
from pipelines.validate import SEGMENT_COL

ALL = "all"  # the `series` label of scores over every series (their `scope` is OVERALL)
# The `scope` of a score: over every series, or of one series. A series may be named "all"
# like the overall label, so tables are filtered by scope, never by that label.
OVERALL, PER_SERIES = "overall", "series"


@dataclass(frozen=True)
class Comparison:
    """Scores of the model and the classical baselines on the same windows of one part.

    Attributes:
        part: the part scored (``"test"``...).
        step: steps between the origins scored, per series.
        n_windows: windows scored (of every series).
        table: tidy scores: scope (``"overall"`` or ``"series"``), series (``"all"`` over
            every series, else the id), model, metric, value.
        runs: each classical model's run (forecasts, time taken, or why it was skipped).
        seasons: the seasons the classical models were given (MSTL's; the first is theirs).
    """

    part: str
    step: int
    n_windows: int
    table: pd.DataFrame
    runs: dict[str, ClassicalRun]
    seasons: tuple[int, ...]

    def wide(self, series: str | None = None) -> pd.DataFrame:
        """Model x metric over every series (or the series of id `series`)."""
        t = self.table
        sub = (
            t[t["scope"] == OVERALL]
            if series is None
            else t[(t["scope"] == PER_SERIES) & (t["series"] == str(series))]
        )
        out = sub.pivot(index="model", columns="metric", values="value")
        first = ("model", "seasonal_naive", "random_walk", *CLASSICAL)
        order = [m for m in first if m in out.index]
        return out.loc[order + [m for m in out.index if m not in order]]

    @property
    def skipped(self) -> dict[str, str]:
        """Label -> why it is not compared, for each classical model left out."""
        return {CLASSICAL[n]: r.skipped for n, r in self.runs.items() if r.skipped}

    @property
    def where(self) -> str:
        """Which windows, in words."""
        return (
            f"the {self.n_windows} {self.part} windows with origins every {self.step} steps "
            "(classical models fitted on training rows only)"
        )

    def metrics(self, prefix: str) -> dict[str, float]:
        """Flat MLflow metrics: ``{prefix}_classical_mase`` (the model),
        ``auto_ets_{prefix}_classical_mase``..., and per series ``..._mase.<series>``."""
        split = f"{prefix}_classical"
        out = {}
        for row in self.table.itertuples(index=False):
            overall = row.scope == OVERALL
            if not overall and row.metric != "mase":
                continue
            name = (
                f"{split}_{row.metric}"
                if row.model == "model"
                else (f"{row.model}_{split}_{row.metric}")
            )
            if not overall:
                name += "." + _metric_safe(str(row.series))
            out[name] = float(row.value)
        for name, run in self.runs.items():
            out[f"{name}_{split}_seconds"] = run.seconds
        return out


def _metric_safe(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", text)


def classical_windows(prepared: Prepared, part: str, step: int) -> np.ndarray:
    """Positions of the windows of `part` whose origins are each series' first origin in
    the part plus a multiple of `step`."""
    w = prepared.windows[part]
    origin, series = w.origin, w.series
    first = np.full(len(w.series_ids), np.iinfo(np.int64).max)
    np.minimum.at(first, series, origin)
    return np.flatnonzero((origin - first[series]) % step == 0)


def _origin_times(prepared: Prepared, part: str) -> np.ndarray:
    """(N,) timestamp of each window's last history row."""
    split, lookback = prepared.split, prepared.windows[part].spec.lookback
    frame = split.frame if part == "train" else split.with_history(part, lookback)[0]
    times = frame[prepared.schema.time_col].to_numpy()
    return times[prepared.windows[part].last]


def _jobs(
    prepared: Prepared, part: str, index: np.ndarray
) -> tuple[list[SeriesJob], list[tuple[int, int, np.ndarray]]]:
    """One job per (series, target) with windows in `index`, and where its rows go:
    (target, window positions in `index` order)."""
    split, schema = prepared.split, prepared.schema
    frame = split.frame
    labels, starts = series_blocks(frame, schema)
    stops = np.append(starts[1:], len(frame))
    by_label = {label: k for k, label in enumerate(labels)}
    is_train = split.rows("train")
    times = frame[schema.time_col].to_numpy()
    windows = prepared.windows[part]
    at = _origin_times(prepared, part)[index]
    window_series = windows.series[index]
    jobs, places = [], []
    for s, label in enumerate(windows.series_ids):
        mine = np.flatnonzero(window_series == s)
        if not len(mine):
            continue
        k = by_label[label]
        rows = slice(starts[k], stops[k])
        positions = np.searchsorted(times[rows], at[mine])
        if SEGMENT_COL in frame and frame[SEGMENT_COL].iloc[rows].nunique() > 1:
            raise ConfigError(
                f"series {label!r} has gaps (gaps='segment'); the classical baselines need "
                "a regular series: fill the gaps or set `evaluation.classical: []`"
            )
        n_train = int(is_train[rows].sum())
        last = int(positions.max()) + 1
        for t, col in enumerate(schema.targets):
            y = frame[col].to_numpy(np.float64)[rows][:last]
            jobs.append(SeriesJob(y=y, n_train=n_train, origins=positions))
            places.append((t, mine))
    return jobs, places


def compare_classical(
    prepared: Prepared, part: str, forecasts: Forecasts, evaluation: EvaluationConfig
) -> Comparison:
    """The model, seasonal naive and each classical model on the same windows of `part`.

    Args:
        prepared: the job's prepared data (split, windows, MASE scale).
        part: the part scored; `forecasts` are the model's for all its windows.
        forecasts: the model's forecasts in original units (`model_forecasts`).
        evaluation: the `evaluation` config section (models, budget, step, history).
    """
    windows = prepared.windows[part]
    horizon, n_targets = windows.spec.horizon, windows.n_targets
    step = evaluation.classical_step or horizon
    index = classical_windows(prepared, part, step)
    seasons = evaluation.seasons or mstl_seasons(prepared.season, prepared.freq)
    try:
        jobs, places = _jobs(prepared, part, index)
        reason = None
    except ConfigError as exc:
        jobs, places, reason = [], [], str(exc)
    runs = (
        run_classical(
            evaluation.classical,
            jobs,
            horizon=horizon,
            season=prepared.season,
            seasons=seasons,
            quantiles=forecasts.levels,
            history=evaluation.classical_history,
            timeout=evaluation.classical_timeout,
        )
        if reason is None
        else {n: ClassicalRun(n, None, None, 0.0, skipped=reason) for n in evaluation.classical}
    )
    y = prepared.y_true(part)[index]
    scale = prepared.scale_for(windows)[index]
    levels = forecasts.levels or None
    preds: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        "model": (
            forecasts.point[index],
            None if forecasts.quantiles is None else forecasts.quantiles[index],
        )
    }
    for name, point in _naive(prepared, part).items():
        preds[name] = (point[index], None)
    for name, run in runs.items():
        if run.mean is not None:
            preds[name] = _assemble(run, places, (len(index), horizon, n_targets), levels)
    table = _score(y, scale, preds, levels, windows.series[index], windows.series_ids, prepared)
    return Comparison(part, step, len(index), table, runs, tuple(seasons))


def _naive(prepared: Prepared, part: str) -> dict[str, np.ndarray]:
    try:
        return baseline_forecasts(prepared, part, ["seasonal_naive"])
    except ConfigError:  # a lookback shorter than the season: no seasonal naive
        return baseline_forecasts(prepared, part, [])


def _assemble(
    run: ClassicalRun,
    places: list[tuple[int, np.ndarray]],
    shape: tuple[int, int, int],
    levels: tuple[float, ...] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    point = np.empty(shape)
    q = np.empty((*shape, len(levels))) if levels and run.quantiles else None
    for j, (t, where) in enumerate(places):
        point[where, :, t] = run.mean[j]
        if q is not None:
            q[where, :, t, :] = run.quantiles[j]
    return point, q


def _score(y, scale, preds, levels, series, series_ids, prepared) -> pd.DataFrame:
    returns = is_returns(prepared)
    groups = [(OVERALL, ALL, np.arange(len(y)))]
    if len(series_ids) > 1:
        groups += [
            (PER_SERIES, str(series_ids[s]), np.flatnonzero(series == s)) for s in np.unique(series)
        ]
    rows = []
    for scope, label, sel in groups:
        for name, (point, q) in preds.items():
            metrics = evaluate(
                y[sel],
                point[sel],
                scale=scale[sel],
                quantiles=levels if q is not None else None,
                q_pred=None if q is None else q[sel],
                directional=returns,
            )
            rows += [(scope, label, name, k, v) for k, v in metrics.items()]
    return pd.DataFrame(rows, columns=["scope", "series", "model", "metric", "value"])
