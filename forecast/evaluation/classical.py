"""statsforecast's AutoETS, AutoTheta, MSTL and AutoARIMA as baselines, each in a time budget.

Protocol (the same for every model, and leakage-free by construction):

- each model is fitted once per series and target on that series' *training rows only*
  (`statsforecast` ``fit``): model choice, coefficients and initial states;
- at each scored origin it is run ``forward`` over the series' rows up to and including
  the origin (the last `history` of them when set, statsforecast's ``input_size``): the
  same rows a served model may be given as history. ``forward`` re-filters the states
  through those rows with the fitted parameters; it estimates nothing, so no row after
  the training part moves a parameter and no row after the origin is read;
- its ``h``-step forecast (and, for quantile models, its intervals at the matching
  levels) is scored on exactly the windows the network is scored on.

A model that does not finish (fit on every series plus every forecast) within `timeout`
seconds is stopped and reported as such; the models run in a worker process so that one
can be.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "CLASSICAL",
    "ClassicalRun",
    "SeriesJob",
    "forecast_job",
    "make_model",
    "mstl_seasons",
    "quantile_levels",
    "run_classical",
]

# Config name -> statsforecast class (also the label reports use).
CLASSICAL = {
    "auto_ets": "AutoETS",
    "auto_theta": "AutoTheta",
    "mstl": "MSTL",
    "auto_arima": "AutoARIMA",
}


class NotApplicable(ValueError):
    """A classical model cannot run on this data (the reason is the message)."""


def mstl_seasons(season: int, freq: str | None) -> tuple[int, ...]:
    """MSTL's seasons: `season` plus a longer one where the frequency has one.

    Sub-daily data (a daily `season`, e.g. 48 half-hours) adds the week (336); daily data
    adds the year (365 days, 260 business days). Other data keeps `season` alone.
    """
    import pandas as pd

    try:
        offset = pd.tseries.frequencies.to_offset(freq) if freq else None
    except ValueError:
        offset = None
    if offset is None:
        return (season,)
    code = offset.name.lstrip("0123456789")
    if offset.n == 1 and code in ("D", "B"):
        yearly = 365 if code == "D" else 260
        return tuple(sorted({season, yearly})) if season > 1 else (yearly,)
    try:
        nanos = offset.nanos  # fixed durations only
    except ValueError:
        nanos = 0
    if nanos and nanos < 86_400 * 10**9 and season * nanos == 86_400 * 10**9:
        return (season, 7 * season)
    return (season,)


# Measured (PITFALLS.md): AutoARIMA's seasonal search with m >= 48 runs for minutes.
_ARIMA_MAX_SEASON = 48


def make_model(name: str, *, season: int, seasons: Sequence[int], n_train: int) -> Any:
    """The statsforecast model `name` for a series with `n_train` training rows.

    Raises:
        NotApplicable: MSTL without two full periods of any season in the training rows.
    """
    from statsforecast import models

    if name == "auto_ets":
        # ETS has no seasonal state beyond 24 steps; statsforecast then fits non-seasonal
        # models itself (PITFALLS.md), which is what is reported.
        return models.AutoETS(season_length=season)
    if name == "auto_theta":
        return models.AutoTheta(season_length=season)
    if name == "auto_arima":
        if season >= _ARIMA_MAX_SEASON:
            raise NotApplicable(
                f"AutoARIMA's seasonal search does not finish with a season of {season} steps "
                f"(>= {_ARIMA_MAX_SEASON}: 90 s for 490 half-hourly rows even approximated, "
                "minutes on more); MSTL is the seasonal model for such data"
            )
        # R's forecast::auto.arima default: approximate the likelihood during the search on
        # long or long-season series (35 s -> 2.4 s on 216 monthly sunspots, same search).
        approximate = n_train > 150 or season > 12
        return models.AutoARIMA(season_length=season, approximation=approximate)
    if name == "mstl":
        usable = [s for s in seasons if s > 1 and 2 * s <= n_train]
        if not usable:
            raise NotApplicable(
                f"MSTL needs two full periods of a season in the training rows "
                f"(seasons {list(seasons)}, {n_train} training rows)"
            )
        return models.MSTL(season_length=usable)
    raise NotApplicable(f"unknown classical model {name!r}; choose from {sorted(CLASSICAL)}")


def quantile_levels(quantiles: Sequence[float]) -> list[int | float]:
    """statsforecast ``level=`` (central interval %) whose bounds are `quantiles`.

    0.1 and 0.9 are the bounds of the 80% interval; 0.5 is the mean (the intervals are
    symmetric around it).
    """
    out = set()
    for q in quantiles:
        if not np.isclose(q, 0.5):
            level = round(abs(1 - 2 * q) * 100, 6)
            out.add(int(level) if level == int(level) else level)
    return sorted(out)


@dataclass(frozen=True)
class SeriesJob:
    """One univariate series to forecast at several origins.

    Attributes:
        y: the series' values in original units, oldest first, up to its last origin.
        n_train: leading rows of `y` that are training rows (the only rows fitted on).
        origins: positions in `y` of each origin (the last history row), ascending.
    """

    y: np.ndarray
    n_train: int
    origins: np.ndarray


@dataclass(frozen=True)
class ClassicalRun:
    """One classical model's forecasts for every job, or why there are none.

    Attributes:
        name: config name (``auto_ets``...).
        mean: per job, (origins, H) point forecasts; None when it did not run.
        quantiles: per job, (origins, H, Q) at the requested quantiles; None without them.
        seconds: wall time it took (or was given, when stopped).
        skipped: None, or why the model is not compared (time budget, data too short).
        fitted: per job, statsforecast's description of the fitted model (e.g. ETS(A,Ad,N)).
    """

    name: str
    mean: list[np.ndarray] | None
    quantiles: list[np.ndarray] | None
    seconds: float
    skipped: str | None = None
    fitted: tuple[str, ...] = ()


def _describe(model: Any) -> str:
    state = getattr(model, "model_", None)
    if isinstance(state, dict):
        for key in ("method", "modeltype"):
            if key in state:
                return str(state[key])
        if "arma" in state:  # (p, q, P, Q, m, d, D)
            p, q, sp, sq, m, d, sd = state["arma"]
            return f"ARIMA({p},{d},{q})({sp},{sd},{sq})[{m}]"
    trend = getattr(model, "trend_forecaster", None)
    if trend is not None and hasattr(trend, "model_"):
        return f"MSTL{list(model.season_length)} + {_describe(trend)}"
    return type(model).__name__


def forecast_job(
    name: str,
    job: SeriesJob,
    *,
    horizon: int,
    season: int,
    seasons: Sequence[int],
    quantiles: Sequence[float] = (),
    history: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Fit `name` on the training rows of `job`, then forecast from each origin.

    Returns:
        ``(mean (O, H), quantiles (O, H, Q) or None, fitted description)``.
    """
    model = make_model(name, season=season, seasons=seasons, n_train=job.n_train)
    y = np.asarray(job.y, dtype=np.float64)
    fitted = model.fit(y=y[: job.n_train])
    levels = quantile_levels(quantiles) if len(quantiles) else None
    mean = np.empty((len(job.origins), horizon))
    qs = np.empty((len(job.origins), horizon, len(quantiles))) if levels else None
    for i, origin in enumerate(job.origins):
        start = 0 if history is None else max(0, int(origin) + 1 - history)
        out = fitted.forward(y=y[start : int(origin) + 1], h=horizon, level=levels)
        mean[i] = out["mean"]
        if qs is not None:
            for j, q in enumerate(quantiles):
                qs[i, :, j] = _bound(out, q)
    return mean, qs, _describe(fitted)


def _bound(out: dict[str, np.ndarray], q: float) -> np.ndarray:
    if np.isclose(q, 0.5):
        return out["mean"]
    (level,) = quantile_levels([q])
    return out[f"{'lo' if q < 0.5 else 'hi'}-{level}"]


def _all_jobs(name: str, jobs: Sequence[SeriesJob], options: dict[str, Any]) -> tuple:
    means, quants, fitted = [], [], []
    for job in jobs:
        mean, qs, desc = forecast_job(name, job, **options)
        means.append(mean)
        quants.append(qs)
        fitted.append(desc)
    return means, quants, tuple(fitted)


class _Worker:
    """A Python process that has imported statsforecast and runs one model at a time.

    It is started once and reused, so a job pays the import only once; it is killed when
    a model overruns its time budget (and started afresh for the next one). A separate
    interpreter, not a fork: the parent's threads (TensorFlow, MLflow) are not copied and
    the user's main script is not re-imported.
    """

    def __init__(self) -> None:
        import forecast

        root = str(Path(forecast.__file__).resolve().parents[1])
        to_child, self._child_in = os.pipe()
        self._child_out, from_child = os.pipe()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "forecast.evaluation.classical", str(to_child), str(from_child)],
            pass_fds=(to_child, from_child),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self.send = Connection(self._child_in, readable=False)
        self.receive = Connection(self._child_out, writable=False)
        self.ready = False

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Wait for the worker's imports, so that no model's budget pays for them."""
        if not self.ready:
            if not self.receive.poll(timeout):
                raise RuntimeError(f"the classical-baseline worker did not start in {timeout} s")
            self.ready = self.receive.recv() == "ready"

    def ask(self, message: tuple, timeout: float | None) -> tuple[str, Any] | None:
        """Send one request; its answer, or None when it did not come within `timeout`."""
        self.send.send(message)
        if not self.receive.poll(timeout):
            return None
        try:
            return self.receive.recv()
        except EOFError:
            return "skip", f"its process ended without a result (exit {self.proc.poll()})"

    def close(self) -> None:
        for conn in (self.send, self.receive):
            conn.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


_WORKER: _Worker | None = None


def _worker() -> _Worker:
    global _WORKER
    if _WORKER is None or _WORKER.proc.poll() is not None:
        _WORKER = _Worker()
        atexit.register(_WORKER.close)
    return _WORKER


def _drop_worker() -> None:
    global _WORKER
    if _WORKER is not None:
        _WORKER.close()
        _WORKER = None


def _answer(name: str, jobs: Sequence[SeriesJob], options: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", _all_jobs(name, jobs, options)
    except NotApplicable as exc:
        return "skip", str(exc)
    except Exception as exc:  # a model that fails on this data is reported, not fatal
        return "skip", f"failed: {type(exc).__name__}: {exc}"


def run_classical(
    names: Sequence[str],
    jobs: Sequence[SeriesJob],
    *,
    horizon: int,
    season: int,
    seasons: Sequence[int],
    quantiles: Sequence[float] = (),
    history: int | None = None,
    timeout: float | None = 60.0,
) -> dict[str, ClassicalRun]:
    """Every model of `names` on every job, one after the other, each within `timeout` s.

    The models run in a separate worker process (see `_Worker`), so one that overruns
    `timeout` can be stopped; None waits for each however long it takes.
    """
    options = {
        "horizon": horizon,
        "season": season,
        "seasons": tuple(seasons),
        "quantiles": tuple(quantiles),
        "history": history,
    }
    out = {}
    for name in names:
        worker = _worker()
        worker.wait_ready()
        start = time.perf_counter()
        answer = worker.ask((name, list(jobs), options), timeout)
        if answer is None:
            _drop_worker()
            n = sum(len(j.origins) for j in jobs)
            answer = (
                "skip",
                (
                    f"did not finish within the time budget of {timeout:g} s "
                    f"({len(jobs)} series, {n} origins; raise `evaluation.classical_timeout`, or "
                    "forecast fewer origins with `evaluation.classical_step` or read fewer rows "
                    "with `evaluation.classical_history`)"
                ),
            )
        status, payload = answer
        seconds = time.perf_counter() - start
        if status == "ok":
            means, quants, fitted = payload
            out[name] = ClassicalRun(
                name, means, quants if quantiles else None, seconds, fitted=fitted
            )
        else:
            out[name] = ClassicalRun(name, None, None, seconds, skipped=payload)
            log.warning("%s not compared: %s", CLASSICAL[name], payload)
    return out


def _serve(read_fd: int, write_fd: int) -> None:
    """The worker's loop: answer each (name, jobs, options) request until the pipe closes."""
    import warnings

    warnings.filterwarnings("ignore")  # statsmodels' convergence chatter is not the user's
    import statsforecast.models  # noqa: F401 - once, before the first request is timed

    receive = Connection(read_fd, writable=False)
    send = Connection(write_fd, readable=False)
    send.send("ready")
    while True:
        try:
            name, jobs, options = receive.recv()
        except EOFError:
            return
        send.send(_answer(name, jobs, options))


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
