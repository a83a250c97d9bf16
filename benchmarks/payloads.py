"""Issue 13 §3: does a payload as pandas reads a CSV (int64 values, text timestamps, a UTC
offset, an extra column) reach the model in-process, through `forecast predict` and through
`mlflow models serve` (JSON and text/csv)? Run: ``python -m benchmarks.payloads --server``.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import requests

import forecast
from forecast.config import ForecastConfig
from forecast.data import prepare
from forecast.serving.http import request_json
from forecast.serving.local_server import ModelServer
from forecast.serving.pyfunc import log_forecaster
from forecast.training.fitting import train_model
from pipelines import datasets

print("package:", forecast.__file__)  # noqa: T201 - a script
root = Path(tempfile.mkdtemp())
os.chdir(root)
uri = f"sqlite:///{root}/mlflow.db"
mlflow.set_tracking_uri(uri)
cfg = ForecastConfig.from_dict(
    {
        "name": "m",
        "data": {"dataset": "eustockmarkets", "last_n": 200},
        "window": {"lookback": 16, "horizon": 3},
        "model": {"units": [4]},
        "training": {"epochs": 1, "verbose": 0},
        "evaluation": {"baselines": ["naive"]},
    }
)
f = train_model(cfg, prepare(cfg)).forecaster
with mlflow.start_run():
    info = log_forecaster(f, name="model")
model = mlflow.pyfunc.load_model(info.model_uri)
raw = datasets.load("eustockmarkets").frame
hist = raw.groupby("series").tail(30).reset_index(drop=True)
cases = {
    "int values": hist.assign(value=hist["value"].round().astype(np.int64)),
    "text timestamps": hist.assign(timestamp=hist["timestamp"].astype(str)),
    "tz-aware (+01:00)": hist.assign(timestamp=hist["timestamp"].dt.tz_localize("+01:00")),
    "extra column": hist.assign(note="x"),
}


def outcome(fn):
    try:
        out = fn()
        return f"ok ({len(out)} rows, timestamp {out['timestamp'].iloc[0]})"
    except Exception as e:
        msg = str(e)
        msg = msg[msg.rfind("Error:") :] if "Error:" in msg else msg
        return f"{type(e).__name__}: {msg[:160]}"


for name, frame in cases.items():
    print(f"pyfunc.predict   {name:20s} -> {outcome(lambda frame=frame: model.predict(frame))}")
# forecast predict on the CSV as written
for name, frame in cases.items():
    csv = root / "h.csv"
    frame.to_csv(csv, index=False)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "forecast.cli",
            "predict",
            "--model",
            info.model_uri,
            "--input",
            str(csv),
            "--output",
            str(root / "o.csv"),
            "--overwrite",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
    )
    print(
        f"forecast predict {name:20s} -> exit {res.returncode} {res.stderr.strip().splitlines()[-1][:140] if res.returncode else ''}"
    )
if "--server" in sys.argv:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {
        "MLFLOW_TRACKING_URI": uri
    }
    server = ModelServer(info.model_uri, env=env, cwd=root).start()
    try:
        server.wait_ready(timeout=300)
        for name, frame in cases.items():
            body = request_json(
                frame.assign(timestamp=frame["timestamp"].astype(str)) if "tz" in name else frame
            )
            r = requests.post(
                f"{server.url}/invocations",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            print(
                f"server JSON      {name:20s} -> HTTP {r.status_code} {'' if r.ok else r.json().get('message', '')[:120]}"
            )
            r = requests.post(
                f"{server.url}/invocations",
                data=frame.to_csv(index=False),
                headers={"Content-Type": "text/csv"},
                timeout=60,
            )
            print(
                f"server CSV       {name:20s} -> HTTP {r.status_code} {'' if r.ok else r.json().get('message', '')[:120]}"
            )
    finally:
        server.stop()
