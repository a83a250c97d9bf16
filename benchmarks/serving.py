"""Serving latency and throughput through the real `mlflow models serve`, beside in-process predict.

Run from the repository root::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow .venv/bin/python -m benchmarks.serving
    ... -m benchmarks.serving --quick          # fewer requests, a minute or so

A small static LSTM (64 units, lookback 64, horizon 10) is trained on EuStockMarkets with one
scaler for all series (``per_series: false``), so any series label is accepted. It is logged
with `forecast.serving.pyfunc.log_forecaster` to a temporary MLflow store, promoted to @champion and
served by ``mlflow models serve -m models:/bench@champion --env-manager local`` on 127.0.0.1
with one uvicorn worker. Two requests (``dataframe_split`` JSON, built once):

- one series: the last 64 rows of DAX;
- 100 series: the four indices copied 25 times, each copy relabelled (``s000``..``s099``) and
  cut at a different end, so no two histories are equal (6,400 rows).

For each request: latency percentiles of sequential requests from one keep-alive client,
throughput (requests/s) of that client and of several concurrent clients, and beside them
the in-process time of `Forecaster.predict` and of the loaded pyfunc's ``predict`` (which adds
MLflow's schema enforcement). Server numbers include HTTP, JSON parsing and serialization.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import requests  # noqa: E402

from forecast.config import ForecastConfig  # noqa: E402
from forecast.data import prepare  # noqa: E402
from forecast.serving.forecaster import Forecaster  # noqa: E402
from forecast.serving.http import request_json  # noqa: E402
from forecast.serving.local_server import ModelServer  # noqa: E402
from forecast.serving.pyfunc import log_forecaster  # noqa: E402
from forecast.tracking.registry import register_and_promote  # noqa: E402
from forecast.training.fitting import train_model  # noqa: E402
from pipelines import datasets  # noqa: E402

LOOKBACK, HORIZON = 64, 10
CONFIG = {
    "name": "bench",
    "data": {"dataset": "eustockmarkets", "last_n": 800},
    "scale": {"per_series": False},
    "window": {"lookback": LOOKBACK, "horizon": HORIZON},
    "model": {"units": [64]},
    "training": {"epochs": 2, "verbose": 0},
    "evaluation": {"baselines": ["naive"]},
}
HEADERS = {"Content-Type": "application/json"}


def requests_frames() -> dict[str, pd.DataFrame]:
    """The one-series and the 100-series history frames."""
    frame = datasets.load("eustockmarkets").frame
    groups = dict(tuple(frame.groupby("series")))
    one = groups["DAX"].iloc[-LOOKBACK:]
    copies = []
    for i in range(100):
        rows = groups[sorted(groups)[i % 4]]
        end = len(rows) - 7 * (i // 4)  # each copy of a series ends a week earlier
        copies.append(rows.iloc[end - LOOKBACK : end].assign(series=f"s{i:03d}"))
    return {"1 series": one.reset_index(drop=True), "100 series": pd.concat(copies)}


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Seconds per call of `fn`, after one warm-up call."""
    fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def concurrent(url: str, body: str, clients: int, per_client: int) -> tuple[float, list[float]]:
    """Requests/s of `clients` keep-alive clients sending `per_client` requests each."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as session:
            mine = timed(lambda: post(session, url, body), per_client)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each client's warm-up request is outside its latencies but inside the wall time.
    return clients * (per_client + 1) / (time.perf_counter() - start), latencies


def post(session: requests.Session, url: str, body: str) -> None:
    response = session.post(f"{url}/invocations", data=body, headers=HEADERS, timeout=120)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[-500:]}")


def ms(seconds: list[float], q: float) -> str:
    return f"{np.percentile(seconds, q) * 1000:.1f}"


def train_and_serve(root: Path) -> tuple[Forecaster, str, str]:
    """Train, log, promote; returns the forecaster, the store URI and the champion's URI."""
    config = ForecastConfig.from_dict(CONFIG)
    forecaster = train_model(config, prepare(config)).forecaster
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with contextlib.chdir(root), mlflow.start_run():
        info = log_forecaster(forecaster, name="model")
    register_and_promote(info.model_uri, name="bench", candidate_metric=1.0)
    return forecaster, uri, "models:/bench@champion"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    args = parser.parse_args(argv)
    n = {"1 series": 40, "100 series": 10} if args.quick else {"1 series": 300, "100 series": 40}
    frames = requests_frames()
    load = os.getloadavg()[0]
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load:.1f} "
        f"at start; lookback {LOOKBACK}, horizon {HORIZON}, LSTM 64 units, 1 uvicorn worker."
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        forecaster, uri, model_uri = train_and_serve(Path(tmp))
        pyfunc = mlflow.pyfunc.load_model(model_uri)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env |= {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
        with ModelServer(model_uri, env=env, cwd=tmp) as server:
            for name, frame in frames.items():
                body = request_json(frame)
                k = n[name]
                direct = timed(lambda f=frame: forecaster.predict(f), k)
                wrapped = timed(lambda f=frame: pyfunc.predict(f), k)
                with requests.Session() as session:
                    start = time.perf_counter()
                    served = timed(lambda b=body, s=session: post(s, server.url, b), k)
                    sequential_rps = (k + 1) / (time.perf_counter() - start)
                per_client = max(2, k // args.clients)
                rps, loaded = concurrent(server.url, body, args.clients, per_client)
                rows.append(
                    f"| {name} ({len(frame)} rows, {len(body) / 1024:.0f} KiB) "
                    f"| {ms(direct, 50)} | {ms(wrapped, 50)} "
                    f"| {ms(served, 50)} / {ms(served, 99)} | {sequential_rps:.1f} "
                    f"| {ms(loaded, 50)} / {ms(loaded, 99)} | {rps:.1f} |"
                )
                print(f"{name}: done ({k} sequential, {args.clients}x{per_client} concurrent)")
    print()
    print(
        "| request | in-process Forecaster.predict p50 ms | in-process pyfunc p50 ms "
        "| server p50 / p99 ms (1 client) | req/s (1 client) "
        f"| server p50 / p99 ms ({args.clients} clients) | req/s ({args.clients} clients) |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nRequests per measurement: {n}; with so few, p99 is close to the maximum.")


if __name__ == "__main__":
    main()
