"""The main job on bundled real data: train, register, promote, batch-predict, plot.

`make demo` runs it against a local MLflow store (`sqlite:///mlflow.db` unless
MLFLOW_TRACKING_URI says otherwise) and writes forecasts and plots under `outputs/`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.errors import ConfigError
from pipelines.sources import atomic_write, write_frame

log = logging.getLogger(__name__)

DEMO_CONFIGS = ("sp500", "elecdemand")


def _config_dir(configs: str | None) -> Path:
    folder = Path(configs) if configs else Path("configs")
    missing = [n for n in DEMO_CONFIGS if not (folder / f"{n}.yaml").is_file()]
    if missing:
        raise ConfigError(
            f"configs {missing} not found in {str(folder)!r}; run from the repository root "
            "or pass --configs FOLDER"
        )
    return folder


def demo_request(outcome: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recent raw history of every series with its last `horizon` targets hidden.

    Returns:
        ``(request, actual)``: the request frame (history, plus future rows that keep
        only the known-future covariates when the model needs them), and the hidden
        actuals in the model's target units (from the featurized frame).
    """
    from forecast.data import load_source

    state = outcome.fitted.forecaster.state
    raw, schema, horizon = state.raw_schema, state.schema, state.window.horizon
    keys = [raw.id_col] if raw.id_col else []
    source = load_source(outcome.config.data).frame.sort_values([*keys, raw.time_col])
    featurized = outcome.prepared.frame
    keep = state.min_rows * 3 + horizon
    requests, actuals = [], []
    by_id = (lambda f: f.groupby(raw.id_col, sort=False)) if keys else (lambda f: [(None, f)])
    feats = dict(list(by_id(featurized)))
    for sid, g in by_id(source):
        g = g.tail(keep).copy()
        hidden = g.index[-horizon:]
        if raw.future_covariates:
            g.loc[hidden, list(raw.targets)] = np.nan  # future rows: covariates only
        else:
            g = g.drop(index=hidden)
        requests.append(g)
        actuals.append(feats[sid].tail(horizon)[[*keys, schema.time_col, *schema.targets]])
    request = pd.concat(requests, ignore_index=True)[outcome.fitted.forecaster.required_columns]
    return request, pd.concat(actuals, ignore_index=True)


def run_demo(*, outputs: str, configs: str | None, overrides: list[str]) -> int:
    """Train the demo configs, promote, predict from the champion, write and plot."""
    import mlflow

    from forecast.config import load_config
    from forecast.jobs.train import train_job
    from forecast.serving.batch import load_model, predict_frame
    from forecast.tracking.runs import resolve_tracking_uri

    folder = _config_dir(configs)
    out = Path(outputs)
    out.mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(None)
    print(f"MLflow tracking store: {uri}")
    start = time.monotonic()
    for name in DEMO_CONFIGS:
        config = load_config(folder / f"{name}.yaml", tuple(overrides))
        print(f"\n=== {name}: training a {config.model.cell} model ===", flush=True)
        t0 = time.monotonic()
        outcome = train_job(config)
        print(outcome.report())
        print(f"trained, scored and logged in {time.monotonic() - t0:.0f} s")

        model_uri = f"models:/{config.registered_model}@{config.tracking.alias}"
        request, actual = demo_request(outcome)
        write_frame(request, out / f"{name}_history.csv", overwrite=True)
        mlflow.set_tracking_uri(uri)
        forecasts = predict_frame(load_model(model_uri), request)
        for suffix in (".parquet", ".csv"):
            write_frame(forecasts, out / f"{name}_forecast{suffix}", overwrite=True)
        plot_forecast(outcome, forecasts, actual, out / f"{name}_forecast.png")
        print(f"batch predict from {model_uri}: {len(forecasts)} rows -> {out}/{name}_forecast.*")
    print(f"\nDemo finished in {time.monotonic() - start:.0f} s. Outputs in {out.resolve()}")
    print(f"Open the MLflow UI:  mlflow ui --backend-store-uri {uri}")
    print(
        f"Serve the champion:  MLFLOW_TRACKING_URI={uri} mlflow models serve "
        f"-m models:/{DEMO_CONFIGS[-1]}@champion --env-manager local -h 127.0.0.1 -p 5000"
    )
    return 0


def plot_forecast(outcome: Any, forecasts: pd.DataFrame, actual: pd.DataFrame, path: Path) -> None:
    """Forecast of the first series against the hidden actuals, written atomically as PNG."""
    import matplotlib.pyplot as plt

    from forecast.evaluation.plots import forecast_vs_actual

    state = outcome.fitted.forecaster.state
    raw, target = state.raw_schema, state.schema.targets[0]
    first = forecasts["series"].iloc[0]
    fc = forecasts[(forecasts["series"] == first) & (forecasts["target"] == target)]
    act = actual if raw.id_col is None else actual[actual[raw.id_col].astype(str) == first]
    fig = forecast_vs_actual(
        fc["timestamp"].to_numpy(),
        act[target].to_numpy(dtype=float),
        fc["forecast"].to_numpy(),
        lower=fc["p10"].to_numpy() if "p10" in fc else None,
        upper=fc["p90"].to_numpy() if "p90" in fc else None,
        title=f"{outcome.config.name}: champion forecast vs held-out actuals ({first})",
        ylabel=target,
    )
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)
