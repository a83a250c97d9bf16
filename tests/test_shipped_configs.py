"""Every shipped config (pizzaplace: a session calendar) and a tz-aware working-hours CSV run
end to end: train (one epoch, a short slice), score next to the baselines, register, and
serve: at every test origin the served model (pyfunc and the real ``mlflow models serve``)
returns the evaluation's forecasts, on the data's own next timestamps."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import requests

from forecast.config import ForecastConfig, load_config
from forecast.data import load_source
from forecast.evaluation.scoring import model_forecasts
from forecast.jobs.train import train_job
from forecast.serving.forecaster import quantile_column
from forecast.serving.http import forecasts_from_json, request_json
from forecast.serving.local_server import ModelServer
from pipelines import datasets
from pipelines.validate import parse_timestamps
from tests.conftest import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))
# A short test part: every one of its origins is served, over HTTP too.
ORIGINS = 4


def test_every_bundled_dataset_has_a_config_of_its_name():
    assert [p.stem for p in CONFIGS] == sorted(datasets.names())
    assert all(load_config(p).data.dataset == p.stem for p in CONFIGS)


def tz_sessions_csv(path, *, days: int = 12) -> dict:
    """Two services' 15-minute volumes in New York working hours (09:00-17:00, Mon-Fri, no
    US holidays), the timestamps written with their UTC offset (``-05:00``): a session
    calendar and a tz-aware time column at once. Returns the `data` section that reads it."""
    import holidays

    dates = pd.bdate_range("2024-12-09", periods=days + 5)
    dates = dates[~dates.isin(pd.DatetimeIndex(list(holidays.US(years=[2024, 2025]))))][:days]
    slots = pd.timedelta_range("09:00:00", "16:45:00", freq="15min")
    local = pd.DatetimeIndex((dates.values[:, None] + slots.values[None, :]).reshape(-1))
    times = local.tz_localize("America/New_York")
    rng = np.random.default_rng(0)
    rows = []
    for k, sid in enumerate(["svc_a", "svc_b"]):
        y = 50 + 30 * (k + 1) * np.sin(np.pi * (local.hour - 9) / 8) + rng.normal(0, 3, len(local))
        text = times.strftime("%Y-%m-%d %H:%M:%S%z").str.replace(r"(\d\d)$", r":\1", regex=True)
        rows.append(pd.DataFrame({"time": text, "service": sid, "volume": y.round().astype(int)}))
    pd.concat(rows).to_csv(path, index=False)
    return {
        "path": str(path),
        "schema": {"time_col": "time", "id_col": "service", "targets": ["volume"], "freq": "15min"},
        "calendar": {"open": "09:00", "close": "17:00", "days": "Mon-Fri", "holidays": "US"},
        "features": {"calendar": ["hour", "weekday"]},
        "start": "2024-12-10 00:00-05:00",  # a config timestamp with an offset
    }


def _own_config(name: str, data: dict, horizon: int, lookback: int) -> ForecastConfig:
    return ForecastConfig.from_dict(
        {
            "name": name,
            "data": data,
            "window": {"lookback": lookback, "horizon": horizon},
            "split": {"validation": 0.2, "test": horizon + ORIGINS - 1},
            "model": {"cell": "gru", "units": [8]},
            "training": {"epochs": 1, "batch_size": 64},
            "evaluation": {"baselines": ["naive", "seasonal_naive"], "classical": ["auto_theta"]},
        }
    )


def _config(case: str, tmp_path) -> ForecastConfig:
    if case == "tz_sessions":
        return _own_config(case, tz_sessions_csv(tmp_path / "volumes.csv"), horizon=8, lookback=40)
    path = REPO_ROOT / "configs" / f"{case}.yaml"
    horizon = load_config(path).window.horizon
    return load_config(
        path,
        (
            "training.epochs=1",
            "data.last_n=700",
            f"split.test={horizon + ORIGINS - 1}",
            # The quickest classical model keeps the comparison's path (many series,
            # returns, masks, half-hours) in this test at a second per config.
            "evaluation.classical=[auto_theta]",
        ),
    )


def _origins(prepared, config) -> list[tuple[object, pd.Timestamp, pd.DatetimeIndex]]:
    """(series id, origin timestamp, next H timestamps) of each test window, in window order."""
    w, h = prepared.windows["test"], config.window.horizon
    part, _ = prepared.split.with_history("test", config.window.lookback)
    times = part[prepared.schema.time_col].reset_index(drop=True)
    return [
        (w.series_ids[s], times[last], pd.DatetimeIndex(times[last + 1 : last + 1 + h]))
        for s, last in zip(w.series, w.last, strict=True)
    ]


def _requests(config, state, origins) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
    """The raw history before each origin (plus future covariate rows), as a user sends it."""
    raw = state.raw_schema
    source = load_source(config.data).frame
    times = parse_timestamps(source[raw.time_col])
    ids = source[raw.id_col].astype(str) if raw.id_col else pd.Series("", index=source.index)
    keep = state.window.lookback + state.features.warmup + state.calibration_rows + 5
    out = []
    for at in sorted({t for _, t, _ in origins}):
        parts = []
        for sid, _, future in (o for o in origins if o[1] == at):
            mine = source[(ids == str(sid)) if raw.id_col else slice(None)]
            past = mine[times[mine.index] <= at].tail(keep)
            if raw.future_covariates:
                nxt = mine[times[mine.index].isin(future)].copy()
                nxt[list(raw.targets)] = np.nan
                past = pd.concat([past, nxt])
            parts.append(past)
        request = pd.concat(parts, ignore_index=True)
        # As pandas read the CSV (text times with offsets, integer volumes): the served
        # model coerces them itself (forecast.serving.coerce).
        out.append((at, request))
    return out


def _check(rows: pd.DataFrame, at, origins, evaluated, state, how: str) -> None:
    """Served rows at origin `at` equal the evaluated windows there, timestamps included."""
    for i, (sid, origin, future) in enumerate(origins):
        if origin != at:
            continue
        mine = rows[rows["series"] == str(sid)].sort_values(["step", "target"])
        served = pd.DatetimeIndex(mine["timestamp"].drop_duplicates())
        if served.tz is None and future.tz is not None:  # JSON bodies come back as UTC text
            served = served.tz_localize("UTC")
        assert served.equals(future) if future.tz is None else (served == future).all(), (
            f"{how}: series {sid} at {origin}: served timestamps {list(served)}, data {list(future)}"
        )
        want = evaluated.point[i]  # (H, T); rows are step-major, then target
        got = mine["forecast"].to_numpy().reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=f"{how} {sid} {at}")
        if evaluated.quantiles is not None:
            for j, q in enumerate(state.quantiles):
                qs = mine[quantile_column(q)].to_numpy().reshape(want.shape)
                np.testing.assert_allclose(qs, evaluated.quantiles[i][..., j], atol=1e-5, rtol=1e-5)


CASES = [p.stem for p in CONFIGS] + ["tz_sessions"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_served_forecasts_equal_evaluated_ones_on_the_data_timeline(case, tmp_path):
    import mlflow

    config = _config(case, tmp_path)
    outcome = train_job(config, register=True)
    scores = outcome.scores
    test = scores[(scores["part"] == "test") & (scores["model"] == "model")]
    assert np.isfinite(test.set_index("metric")["value"]["mase"])
    assert set(config.evaluation.baselines) <= set(scores["model"])
    classical = outcome.comparison.wide()
    assert np.isfinite(classical.loc[["model", "auto_theta"], "mase"]).all()
    assert "AutoTheta (MASE" in outcome.verdict()
    forecaster = outcome.fitted.forecaster
    state = forecaster.state
    assert state.calibration_windows == config.calibration.windows
    uri = f"models:/{config.registered_model}/1"
    server = ModelServer(uri, env=dict(os.environ), cwd=tmp_path).start()
    try:
        evaluated = model_forecasts(
            outcome.fitted.model, outcome.prepared, "test", calibration=config.calibration.windows
        )
        origins = _origins(outcome.prepared, config)
        assert len({o[1] for o in origins}) >= ORIGINS
        calls = _requests(config, state, origins)
        served = mlflow.pyfunc.load_model(uri)
        for at, request in calls:
            _check(forecaster.predict(request), at, origins, evaluated, state, "Forecaster")
            _check(served.predict(request), at, origins, evaluated, state, "pyfunc")
        server.wait_ready()
        for at, request in calls:
            reply = requests.post(
                f"{server.url}/invocations",
                data=request_json(request),
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            assert reply.status_code == 200, reply.text[:2000]
            _check(forecasts_from_json(reply.text), at, origins, evaluated, state, "HTTP")
    finally:
        server.stop()
    if config.model.quantiles:
        q = forecaster.predict(calls[-1][1])[["p10", "p50", "p90"]].to_numpy()
        assert (np.diff(q, axis=1) >= 0).all()
