"""Serving through the real `mlflow models serve`, each figure beside its reference of the same run.

Run from the repository root::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow .venv/bin/python -m benchmarks.serving
    ... -m benchmarks.serving --quick                 # fewer requests and repeats
    ... -m benchmarks.serving --only latency,profile  # some of the sections below

A small static LSTM (64 units, lookback 64, horizon 10) is trained on EuStockMarkets with one
scaler for all series (``per_series: false``), so any series label is accepted. It is logged
with `forecast.serving.pyfunc.log_forecaster` to a temporary MLflow store and promoted to
@champion. Two requests (``dataframe_split`` JSON, built once): one series (the last 64 rows
of DAX) and 100 series (the four indices copied 25 times, each copy relabelled and cut at a
different end; 6,400 rows). Every measured figure and its reference run interleaved
(A B A B ...), so the load of the shared machine hits both; medians over the repeats.

- ``latency``: our model and a trivial pyfunc (``benchmarks/trivial_model.py``: returns its
  input's last row, same signature, so MLflow parses the same payload the same way)
  served side by side, one keep-alive client posting to each in turn; in-process
  `Forecaster.predict` and the loaded pyfunc's ``predict`` beside them.
- ``workers``: our model behind 1 and 2 workers of ``mlflow models serve`` and of
  ``forecast serve``, 8 concurrent clients (threads of this process, one `http.client`
  keep-alive connection each) posting back to back for a timed round (4 s; the answers
  before its end count); each worker's CPU, the connections each worker holds with the
  round's requests/s and the clients' CPU are printed, and the served forecasts are
  compared with the in-process ones (`benchmarks/_workers.py`).
- ``profile``: where the milliseconds of one request go, by timing the scoring server's own
  steps in process (JSON parsing, MLflow's pyfunc wrapper, our predict and within it the
  coercion, validation and features, and the network, writing the JSON answer); HTTP is the
  served p50 minus their sum. Beside it, the answer as MLflow writes it from a frame and from the
  row dicts the served model returns (`forecast.serving.http.served_records`).
- ``coldstart``: a fresh process that imports the package, loads models:/bench@champion from
  the local store with the package's loader (`forecast.load_model`, which the CLI, Spark and
  the demo use) and answers one one-series request; the same process through
  `mlflow.pyfunc.load_model` beside it; against a fresh process that imports
  TensorFlow (and `forecast.models`, which registers the layers) and loads the bare
  ``model.keras`` with `keras.saving.load_model` and predicts once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import requests  # noqa: E402

import forecast  # noqa: E402
from benchmarks import _serving_parts as parts  # noqa: E402
from benchmarks import _workers as workers  # noqa: E402
from forecast.config import ForecastConfig  # noqa: E402
from forecast.data import prepare  # noqa: E402
from forecast.serving.http import request_json  # noqa: E402
from forecast.serving.local_server import ModelServer  # noqa: E402
from forecast.serving.pyfunc import forecaster_signature, log_forecaster, pip_requirements  # noqa: E402
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
SECTIONS = ("latency", "workers", "profile", "coldstart")
TRIVIAL_CODE = Path(__file__).with_name("trivial_model.py")


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


def post(session: requests.Session, url: str, body: str) -> str:
    response = session.post(f"{url}/invocations", data=body, headers=HEADERS, timeout=120)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[-500:]}")
    return response.text


def interleaved(calls: dict[str, Callable[[], object]], n: int) -> dict[str, list[float]]:
    """Seconds per call of each callable, called in turn (order flipped every round)."""
    names = list(calls)
    for name in names:
        calls[name]()  # warm-up
    out: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            calls[name]()
            out[name].append(time.perf_counter() - start)
    return out


def p(seconds: list[float], q: float = 50) -> float:
    """Percentile `q` in milliseconds."""
    return float(np.percentile(seconds, q) * 1000)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def load() -> str:
    return "load average {:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())


class Bench:
    """The trained model, its MLflow store and the two logged models."""

    def __init__(self, root: Path) -> None:
        self.root = root
        config = ForecastConfig.from_dict(CONFIG)
        self.forecaster = train_model(config, prepare(config)).forecaster
        self.store = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.store)
        mlflow.set_registry_uri(self.store)
        with contextlib.chdir(root), mlflow.start_run():
            info = log_forecaster(self.forecaster, name="model")
            # Our signature (outputs only): MLflow parses the same body the same way for both.
            trivial = mlflow.pyfunc.log_model(
                name="trivial",
                python_model=str(TRIVIAL_CODE),
                signature=forecaster_signature(self.forecaster),
                pip_requirements=pip_requirements(),
            )
        register_and_promote(info.model_uri, name="bench", candidate_metric=1.0)
        self.model_uri, self.trivial_uri = "models:/bench@champion", trivial.model_uri
        self.forecaster.save(root / "bare")  # the bare .keras file of the cold-start floor
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.env = env | {"MLFLOW_TRACKING_URI": self.store, "MLFLOW_REGISTRY_URI": self.store}

    def server(self, uri: str, workers: int = 1, command: str = "mlflow") -> ModelServer:
        return ModelServer(uri, env=self.env, cwd=self.root, workers=workers, command=command)


def latency_section(bench: Bench, frames: dict[str, pd.DataFrame], args: Any) -> dict:
    """Served p50 of ours and of the trivial model, interleaved; in-process beside them."""
    n = {"1 series": 40, "100 series": 10} if args.quick else {"1 series": 300, "100 series": 40}
    pyfunc = mlflow.pyfunc.load_model(bench.model_uri)
    ours, trivial = bench.server(bench.model_uri), bench.server(bench.trivial_uri)
    results = {}
    print(f"\n### Latency: ours beside a trivial pyfunc model ({load()} at start)\n")
    with contextlib.ExitStack() as stack:
        for server in (ours, trivial):
            stack.callback(server.stop)
            server.start()
        for server in (ours, trivial):
            server.wait_ready()
        for name, frame in frames.items():
            body = request_json(frame)
            local = interleaved(
                {
                    "predict": lambda f=frame: bench.forecaster.predict(f),
                    "pyfunc": lambda f=frame: pyfunc.predict(f),
                },
                n[name],
            )
            with requests.Session() as s1, requests.Session() as s2:
                served = interleaved(
                    {
                        "ours": lambda b=body, s=s1: post(s, ours.url, b),
                        "trivial": lambda b=body, s=s2: post(s, trivial.url, b),
                    },
                    n[name],
                )
            results[name] = {**local, **served, "kib": len(body) / 1024, "rows": len(frame)}
    print("| request | ours p50 / p99 ms | trivial p50 / p99 ms | ours / trivial | goal "
          "| in-process Forecaster.predict p50 ms | in-process pyfunc p50 ms |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|---:|")
    goals = {"1 series": (1.5, 10.0), "100 series": (3.0, None)}
    for name, r in results.items():
        ratio = p(r["ours"]) / p(r["trivial"])
        limit, ms = goals[name]
        ok = ratio <= limit and (ms is None or p(r["ours"]) <= ms)
        goal = f"<= {limit}x" + (f" and <= {ms:g} ms" if ms else "") + f": {verdict(ok)}"
        print(
            f"| {name} ({r['rows']} rows, {r['kib']:.0f} KiB) | {p(r['ours']):.1f} / "
            f"{p(r['ours'], 99):.1f} | {p(r['trivial']):.1f} / {p(r['trivial'], 99):.1f} "
            f"| {ratio:.2f}x | {goal} | {p(r['predict']):.2f} | {p(r['pyfunc']):.2f} |"
        )
    one = p(results["1 series"]["predict"])
    print(f"\nIn-process one-series Forecaster.predict p50 {one:.2f} ms (goal <= 3 ms: "
          f"{verdict(one <= 3)}). Requests per measurement: {n}; {load()} at the end.")  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and repeats")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"some of {SECTIONS}")
    args = parser.parse_args(argv)
    sections = args.only.split(",")
    frames = requests_frames()
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {load()} at start; "
        f"lookback {LOOKBACK}, horizon {HORIZON}, LSTM 64 units; package at "
        f"{Path(forecast.__file__).parent.parent}."
    )
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        served = latency_section(bench, frames, args) if "latency" in sections else None
        if "workers" in sections:
            workers.workers_section(bench, frames, args, load)
        if "profile" in sections:
            parts.profile_section(bench, frames, served, quick=args.quick)
            parts.answer_section(bench, frames, quick=args.quick)
            parts.stages_section(bench, frames, quick=args.quick)
        if "coldstart" in sections:
            parts.coldstart_section(bench, frames["1 series"], repeats=3 if args.quick else 7)
    print(f"\n{load()} at the end; {sys.executable}")


if __name__ == "__main__":
    main()
