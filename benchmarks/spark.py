"""Batch forecasting throughput: in-process `predict_frame` against Spark local[2].

Run from the repository root (a few minutes on 2 cores)::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow .venv/bin/python -m benchmarks.spark
    ... -m benchmarks.spark --sizes 1000 --repeats 2      # quicker

A small static LSTM (32 units, lookback 64, horizon 10, one scaler for all series, so any
label is accepted) is trained for one epoch on EuStockMarkets and saved as a forecaster
folder. The history of N series is the four indices copied N/4 times, relabelled and cut at
different ends (64 rows each). For each N:

- in-process: `predict_frame(Forecaster.load(folder), history)` on a pandas frame;
- Spark: the history read from Parquet, `spark_forecast` (default `group_size`) written to
  Spark's ``noop`` sink (all rows computed, nothing stored). A first Spark run on the largest
  N starts the Python workers, imports TensorFlow and loads the model in each: it is reported
  apart ("cold") and left out of the medians.

Throughput is series per second, the median of `--repeats` runs. Peak memory is the largest
resident set size (RSS) sampled every 50 ms with psutil: of this (driver) process, of the
Spark JVM, and of the Python workers under it (the largest one and all of them together).
The load average is printed: on a shared machine the numbers move with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pandas as pd  # noqa: E402
import psutil  # noqa: E402

from forecast.config import ForecastConfig  # noqa: E402
from forecast.data import prepare  # noqa: E402
from forecast.serving.batch import predict_frame  # noqa: E402
from forecast.serving.forecaster import Forecaster  # noqa: E402
from forecast.training.fitting import train_model  # noqa: E402
from pipelines import datasets  # noqa: E402

LOOKBACK, HORIZON, ROWS = 64, 10, 64
CONFIG = {
    "name": "bench-spark",
    "data": {"dataset": "eustockmarkets", "last_n": 800},
    "scale": {"per_series": False},
    "window": {"lookback": LOOKBACK, "horizon": HORIZON},
    "model": {"units": [32]},
    "training": {"epochs": 1, "verbose": 0},
    "evaluation": {"baselines": ["naive"]},
}


def history(n_series: int) -> pd.DataFrame:
    """`n_series` relabelled copies of the four indices, `ROWS` rows each, different ends."""
    base = {
        s: g.reset_index(drop=True)
        for s, g in datasets.load("eustockmarkets").frame.groupby("series")
    }
    parts = []
    for i in range(n_series):
        g = base[list(base)[i % 4]]
        end = len(g) - (i // 4) % 200
        parts.append(g.iloc[end - ROWS : end].assign(series=f"s{i:05d}"))
    return pd.concat(parts, ignore_index=True)


class PeakRss:
    """Peak RSS of this process, the JVM and the Python workers, sampled in a thread."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self.peak = {"driver": 0, "jvm": 0, "worker_max": 0, "workers_total": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        sizes = {"driver": me.memory_info().rss, "jvm": 0, "workers": []}
        for p in me.children(recursive=True):
            try:
                name, rss = p.name(), p.memory_info().rss
            except psutil.Error:
                continue
            if name.startswith("java"):
                sizes["jvm"] += rss
            elif name.startswith("python"):
                sizes["workers"].append(rss)
        workers = sizes.pop("workers")
        sizes |= {"worker_max": max(workers, default=0), "workers_total": sum(workers)}
        for key, value in sizes.items():
            self.peak[key] = max(self.peak[key], value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def text(self) -> str:
        mib = {k: v / 2**20 for k, v in self.peak.items()}
        return (
            f"driver {mib['driver']:.0f} MiB, JVM {mib['jvm']:.0f} MiB, Python workers "
            f"{mib['worker_max']:.0f} MiB each at most / {mib['workers_total']:.0f} MiB together"
        )


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], PeakRss]:
    times = []
    with PeakRss() as rss:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times), times, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--group-size", type=int, default=None, help="default: the module's")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from forecast.serving.spark import (
        DEFAULT_GROUP_SIZE,
        read_history,
        spark_forecast,
        spark_session,
    )

    group_size = args.group_size or DEFAULT_GROUP_SIZE

    tmp = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    config = ForecastConfig.from_dict(CONFIG)
    folder = str(train_model(config, prepare(config)).forecaster.save(tmp / "model"))
    model = Forecaster.load(folder)
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at start")
    print(f"model: LSTM 32 units, lookback {LOOKBACK}, horizon {HORIZON}; {ROWS} rows per series")

    start = time.perf_counter()
    spark = spark_session("local[2]", "bench-spark")
    print(f"Spark {spark.version} local[2] session started in {time.perf_counter() - start:.1f} s")
    frames, inputs = {}, {}
    for n in args.sizes:
        frames[n] = history(n)
        frames[n].to_parquet(tmp / f"history-{n}.parquet", index=False)
        inputs[n] = read_history(spark, str(tmp / f"history-{n}.parquet"), "timestamp")

    def run(n: int) -> None:
        rows = spark_forecast(inputs[n], folder, id_col="series", group_size=group_size)
        rows.write.format("noop").mode("overwrite").save()

    # The largest input has a group for every task: every Python worker starts here.
    start = time.perf_counter()
    run(max(args.sizes))
    print(
        f"Spark cold run, N={max(args.sizes)} (Python workers start, import TensorFlow, load the "
        f"model): {time.perf_counter() - start:.2f} s"
    )
    for n in args.sizes:
        med, runs, rss = timed(lambda n=n: predict_frame(model, frames[n]), args.repeats)
        print(
            f"\nN={n:>6} in-process: {n / med:8.0f} series/s (median {med:.2f} s of "
            f"{', '.join(f'{t:.2f}' for t in runs)}); peak RSS of this process "
            f"{rss.peak['driver'] / 2**20:.0f} MiB"
        )
        med, runs, rss = timed(lambda n=n: run(n), args.repeats)
        print(
            f"N={n:>6} Spark local[2], {group_size} series per group: {n / med:8.0f} series/s "
            f"(median {med:.2f} s of {', '.join(f'{t:.2f}' for t in runs)}); peak RSS "
            f"{rss.text()}"
        )
    spark.stop()
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
