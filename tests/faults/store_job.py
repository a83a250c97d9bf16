"""What a train job does to the tracking store, without the training: run by the
concurrency tests as several real processes at once.

Usage: python store_job.py STORE_URI METRIC [STORE_URI METRIC ...]
Each pair is one round. It prints READY once imported and reads ``GO <unix time> <gap>``;
round i starts at that time plus i gaps, so that every process hits the store in the same
moment. A round opens the store, start a tracked run, log the same
dataset as the other processes, log a metric and a small model file, register it and
promote it on that metric. Prints ``ROUND i OK version`` or ``ROUND i FAILED <error>``.
"""

from __future__ import annotations

import sys
import time

import mlflow
import pandas as pd

from forecast.tracking.registry import register_and_promote
from forecast.tracking.runs import log_dataset, log_metrics, tracked_run
from forecast.tracking.store import open_store


def one_round(uri: str, metric: float) -> int:
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    open_store(uri)
    frame = pd.DataFrame({"t": pd.date_range("2000", periods=50, freq="D"), "y": range(50)})
    with tracked_run(
        experiment="concurrent", run_name="job", config={"metric": metric}, tags={}
    ) as run:
        log_dataset(frame, name="shared", targets="y")
        log_metrics({"mase": metric}, prefix="val")
        mlflow.log_text("not a real model", "model/MLmodel")
        result = register_and_promote(
            f"runs:/{run.info.run_id}/model", name="concurrent", candidate_metric=metric
        )
    return result.version


def main(args: list[str]) -> None:
    print("READY", flush=True)
    _, start, gap = sys.stdin.readline().split()
    for i in range(0, len(args), 2):
        uri, metric = args[i], float(args[i + 1])
        time.sleep(max(0.0, float(start) + (i // 2) * float(gap) - time.time()))
        try:
            version = one_round(uri, metric)
            print(f"ROUND {i // 2} OK {version}", flush=True)
        except Exception as exc:  # the test reports what failed
            line = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"ROUND {i // 2} FAILED {line}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
