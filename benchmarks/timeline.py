"""Served vs evaluated forecasts on a user's own session-calendar and tz-aware CSVs (issue 13).

Trains briefly on each CSV, then calls the trained `Forecaster` with the raw history before
every test origin and compares with what evaluation scored: MAE between served and evaluated
forecasts, MAE of each against the actuals, and how many served timestamps differ from the
data's real next timestamps. Self-contained so that it also runs on code from before
calendars existed (that code gets the observed-calendar policy instead of `data.calendar`).

    PYTHONPATH=. python -m benchmarks.timeline --out /tmp/timeline
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HAS_CALENDARS = importlib.util.find_spec("pipelines.calendars") is not None


def session_csv(path: Path) -> dict:
    """5-minute volumes of two services, 09:00-17:00 on US working days (Dec 2024-Jan 2025)."""
    import holidays

    dates = pd.bdate_range("2024-12-02", "2025-01-17")
    dates = dates[~dates.isin(pd.DatetimeIndex(list(holidays.US(years=[2024, 2025]))))]
    slots = pd.timedelta_range("09:00:00", "16:55:00", freq="5min")
    times = pd.DatetimeIndex((dates.values[:, None] + slots.values[None, :]).reshape(-1))
    rng = np.random.default_rng(0)
    parts = []
    for k, sid in enumerate(["svc_a", "svc_b"]):
        tod = (times.hour + times.minute / 60 - 9) / 8
        y = 40 + 30 * (k + 1) * np.sin(np.pi * tod) ** 2 + rng.normal(0, 4, len(times))
        parts.append(pd.DataFrame({"time": times, "service": sid, "volume": np.rint(y)}))
    pd.concat(parts).to_csv(path, index=False)
    data = {
        "path": str(path),
        "schema": {"time_col": "time", "id_col": "service", "targets": ["volume"], "freq": "5min"},
        "features": {"calendar": ["hour", "weekday"]},
    }
    if HAS_CALENDARS:
        data["calendar"] = {"open": "09:00", "close": "17:00", "days": "Mon-Fri", "holidays": "US"}
    else:  # the only way the old code trains this file: one step = one observed timestamp
        data["validation"] = {"calendar": "observed"}
    return data


def tz_csv(path: Path) -> dict:
    """Hourly readings of three stations, timestamps written with UTC offsets (+00:00)."""
    times = pd.date_range("2024-10-01", periods=24 * 45, freq="h", tz="UTC")
    rng = np.random.default_rng(1)
    parts = []
    for k, sid in enumerate(["north", "south", "west"]):
        y = 10 + k + 5 * np.sin(2 * np.pi * (times.hour - 6) / 24) + rng.normal(0, 0.5, len(times))
        text = times.strftime("%Y-%m-%d %H:%M:%S+00:00")
        parts.append(pd.DataFrame({"ts": text, "station": sid, "temp": y}))
    pd.concat(parts).to_csv(path, index=False)
    return {
        "path": str(path),
        "schema": {"time_col": "ts", "id_col": "station", "targets": ["temp"], "freq": "h"},
        "features": {"calendar": ["hour"]},
    }


def measure(name: str, data: dict, *, lookback: int, horizon: int, season: int, test) -> dict:
    from forecast.config import ForecastConfig
    from forecast.data import load_source
    from forecast.evaluation.scoring import model_forecasts
    from forecast.jobs.train import train_job

    config = ForecastConfig.from_dict(
        {
            "name": name,
            "data": data,
            "split": {"validation": 0.15, "test": test},
            "window": {"lookback": lookback, "horizon": horizon},
            "model": {"cell": "gru", "units": [32]},
            "training": {"epochs": 4, "batch_size": 64, "seed": 0},
            "evaluation": {"baselines": ["naive", "seasonal_naive"], "season": season},
        }
    )
    try:
        outcome = train_job(config, register=False)
    except Exception as exc:  # noqa: BLE001 - the "before" code may refuse the data
        return {"dataset": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    prepared, forecaster = outcome.prepared, outcome.fitted.forecaster
    raw = forecaster.state.raw_schema
    evaluated = model_forecasts(outcome.fitted.model, prepared, "test")
    w = prepared.windows["test"]
    part, _ = prepared.split.with_history("test", config.window.lookback)
    times = part[prepared.schema.time_col].reset_index(drop=True)
    y = prepared.y_true("test")
    source = load_source(config.data).frame
    stamps = pd.to_datetime(source[raw.time_col], utc=raw.time_col == "ts")
    ids = source[raw.id_col].astype(str)
    served = np.empty_like(evaluated.point)
    wrong = total = 0
    for i, (s, last) in enumerate(zip(w.series, w.last, strict=True)):
        sid, origin = w.series_ids[s], times[last]
        future = pd.DatetimeIndex(times[last + 1 : last + 1 + horizon])
        mine = source[(ids == str(sid)) & (stamps <= origin).to_numpy()]
        request = mine.tail(forecaster.state.min_rows + 5).copy()
        request[raw.time_col] = pd.to_datetime(request[raw.time_col], utc=raw.time_col == "ts")
        rows = forecaster.predict(request)
        served[i] = rows["forecast"].to_numpy().reshape(served[i].shape)
        got = pd.DatetimeIndex(rows["timestamp"])
        wrong += int((got.asi8 != future.asi8).sum())
        total += len(future)
    return {
        "dataset": name,
        "test_windows": len(w),
        "served_vs_evaluated_mae": float(np.abs(served - evaluated.point).mean()),
        "evaluated_mae": float(np.abs(evaluated.point - y).mean()),
        "served_mae": float(np.abs(served - y).mean()),
        "timestamp_mismatches": f"{wrong} of {total}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        results.append(
            measure(
                "sessions_5min",
                session_csv(Path(tmp) / "volumes.csv"),
                lookback=120,
                horizon=12,
                season=96,
                test=0.1,
            )
        )
        tz = tz_csv(Path(tmp) / "stations.csv")
        results.append(measure("tz_hourly", tz, lookback=48, horizon=6, season=24, test=0.1))
        results.append(
            measure(
                "tz_hourly_split_at",
                tz,
                lookback=48,
                horizon=6,
                season=24,
                test="2024-11-11 00:00:00+00:00",
            )
        )
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
