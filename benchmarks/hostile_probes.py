"""Hostile-input probes of issue 17: config load, batch-predict model URIs, the served model.

Run from the repository root (a few minutes: one tiny training run, one server, a dozen CLI
processes)::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow .venv/bin/python -m benchmarks.hostile_probes
    ... --server mlflow    # serve with plain `mlflow models serve` instead of `forecast serve`

Each probe is one input; its outcome is sorted into the categories of the issue:

- ``clear``: refused before any work with a message (exit 2 / HTTP 4xx, no traceback, the
  first line is not MLflow's frame repr);
- ``correct``: a valid input answered correctly (the in-process forecasts, to 1e-5);
- ``traceback``: a traceback or internal error (exit 1, or a stack trace in the body);
- ``5xx``: an HTTP 5xx;
- ``silent wrong``: an answer without complaint that is wrong (forecasts of history x1e6);
- ``accepted``: an invalid value accepted without a word;
- ``buried``: refused, but the first line a client reads is MLflow's ``Failed to predict
  data '<frame repr>'`` and our message comes after it.

Prints one line per probe and the counts; ``--only config`` (or ``uri``, ``server``) runs one
group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SP500 = REPO / "configs" / "sp500.yaml"
CONFIG_PROBES_BAD = [
    "training.deterministic=maybe",
    "scale.per_series=maybe",
    "tracking.register=nope",
    "tracking.promote_metric=test_mase",
    "tracking.promote_metric=val_mas",
    "training.reduce_lr_factor=half",
    "training.min_lr=tiny",
    "tracking.tracking_uri=123",
    "training.epochs=[",
    "training.epochs={a: 1",
    "training.epochs='unclosed",
    "model.units=[100000000]",
    "model.units=[100000, 100000]",
    "model.units=[0]",
    "model.units=abc",
    "tracking.alias=bad/alias",
    "tracking.alias=latest",
    "tracking.alias=v3",
    "tracking.alias=''",
    "tracking.alias=has space",
    "tracking.alias=champion:1",
    "tracking.registered_model=team/model",
    "tracking.registered_model=a:b",
    "tracking.registered_model=..",
    "tracking.registered_model=a/../b",
    "tracking.experiment=[1, 2]",
    "tracking.tracking_uri=sqlite:////nonexistent_dir/x.db",
    "tracking.tracking_uri=sqlite:///no/such/folder/x.db",
    "tracking.tracking_uri=sqlite:////tmp",
    "tracking.tracking_uri=sqlite:x.db",
    "name=team/sp500",
    "training.epochs=-1",
    "training.epochs=1.5",
    "training.epochs=abc",
    "training.batch_size=0",
    "window.lookback=0",
    "window.horizon=-3",
    "window.lookback=abc",
    "split.test=-0.5",
    "model.dropout=1.5",
    "model.cell=lstmm",
    "optimizer.learning_rate=-1",
    "optimizer.learning_rate=.nan",
    "data.last_n=1",
    "data.dataset=sunspot",
    "data.start=notadate",
    "foo.bar=1",
    "training.epochs",
    "=3",
    "a..b=1",
    "model=5",
    "model.quantiles=[0.9, 0.1]",
    "evaluation.season=0",
    "calibration.windows=-1",
    "backtest.folds=0",
    "scale.method=zscore",
]
CONFIG_PROBES_GOOD = [
    (),
    ("training.epochs=3",),
    ("tracking.alias=prod-1",),
    ("tracking.registered_model=sp500.v2",),
    ("tracking.tracking_uri=sqlite:///probe.db",),
]
# Config files: name -> bytes (written to a temporary folder).
CONFIG_FILES = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "latin-1": "name: d\xe9mo\n".encode("latin-1"),
    "list at top": b"- 1\n- 2\n",
    "scalar at top": b"hello\n",
    "empty": b"",
    "deeply nested": b"[" * 100_000,
    "2 MB": b"# " + b"x" * 2_000_000 + b"\n",
}
MODEL_URIS = [
    "s3://bucket/model",
    "gs://bucket/model",
    "http://127.0.0.1:9/model",
    "https://example.com/model",
    "ftp://example.com/model",
    "dbfs:/models/x",
    "mlflow-artifacts:/x",
    "models:/",
    "models:/only-a-name",
    "models:/a@b/c",
    "runs:/",
    "/nonexistent/model",
    "{tmp}",  # a folder that holds no model
]

ELEC = {
    "name": "probe",
    "data": {
        "dataset": "elecdemand",
        "last_n": 1500,
        "features": {"calendar": ["hour", "weekday"]},
    },
    "window": {"lookback": 64, "horizon": 24},
    "model": {"units": [8], "quantiles": [0.1, 0.5, 0.9]},
    "training": {"epochs": 1, "verbose": 0},
    "evaluation": {"baselines": ["naive"]},
}


def classify_config(run: Callable[[], object], bad: bool) -> str:
    from pipelines.errors import ForecastError

    try:
        run()
    except ForecastError as err:
        return "clear" if "\n" not in str(err) else "traceback"
    except Exception:  # what the CLI would print as a traceback (exit 1)
        return "traceback"
    return "accepted" if bad else "correct"


def config_probes(tmp: Path) -> list[tuple[str, str]]:
    from forecast.config import load_config

    out = []
    with contextlib.chdir(tmp):
        for item in CONFIG_PROBES_BAD:
            out.append(
                (f"--set {item}", classify_config(lambda i=item: load_config(SP500, (i,)), True))
            )
        for items in CONFIG_PROBES_GOOD:
            label = f"--set {' '.join(items) or '(none)'}"
            out.append((label, classify_config(lambda i=items: load_config(SP500, i), False)))
        for name, data in CONFIG_FILES.items():
            path = tmp / f"{name.replace(' ', '_')}.yaml"
            path.write_bytes(data)
            out.append(
                (f"config file: {name}", classify_config(lambda p=path: load_config(p), True))
            )
        out.append(("config file: a folder", classify_config(lambda: load_config(tmp), True)))
    return out


def cli(args: list[str], cwd: Path) -> tuple[int, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "forecast", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    return proc.returncode, proc.stdout + proc.stderr


def classify_cli(code: int, text: str, bad: bool) -> str:
    if "Traceback" in text or code not in (0, 2):
        return "traceback"
    if code == 2:
        return "clear" if len(text.strip().splitlines()) == 1 else "traceback"
    return "accepted" if bad else "correct"


def uri_probes(tmp: Path, history: Path) -> list[tuple[str, str]]:
    out = []
    for uri in MODEL_URIS:
        uri = uri.format(tmp=tmp)
        code, text = cli(
            ["predict", "--model", uri, "--input", str(history), "--output", "o.csv"], tmp
        )
        out.append((f"predict --model {uri}", classify_cli(code, text, True)))
    for label, args in (
        ("train binary config", ["train", str(tmp / "binary.yaml")]),
        ("train --set training.epochs=[", ["train", str(SP500), "--set", "training.epochs=["]),
        (
            "train --set model.units=[100000000]",
            ["train", str(SP500), "--set", "model.units=[100000000]"],
        ),
    ):
        code, text = cli(args, tmp)
        out.append((label, classify_cli(code, text, True)))
    return out


# ----------------------------------------------------------------------------- the server


def train_and_serve(tmp: Path, kind: str):
    """Train the tiny model, log it as @champion to a store in `tmp`, start the server."""
    import mlflow

    from forecast.config import ForecastConfig
    from forecast.data import prepare
    from forecast.serving.local_server import HOST, ModelServer
    from forecast.serving.pyfunc import log_forecaster
    from forecast.tracking.registry import register_and_promote
    from forecast.training.fitting import train_model

    config = ForecastConfig.from_dict(ELEC)
    forecaster = train_model(config, prepare(config)).forecaster
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with contextlib.chdir(tmp):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        with mlflow.start_run():
            info = log_forecaster(forecaster, name="probe", input_example=elec_request())
        register_and_promote(info.model_uri, name="probe", candidate_metric=1.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    server = ModelServer("models:/probe@champion", env=env, cwd=tmp)
    if kind == "forecast":
        server.cmd = [
            sys.executable,
            "-m",
            "forecast",
            "serve",
            "--model",
            "models:/probe@champion",
        ]
        server.cmd += ["--host", HOST, "--port", str(server.port)]
    return forecaster, server


def elec_request(end: int = 1100, history: int = 100):
    import numpy as np
    import pandas as pd

    from pipelines import datasets

    frame = datasets.load("elecdemand").frame
    past = frame.iloc[end - history : end]
    future = frame.iloc[end : end + 24].assign(Demand=np.nan)
    return pd.concat([past, future], ignore_index=True)


def server_cases():
    """(label, body, content type, expected): expected is 'error' (invalid), 'range' (far
    outside the training range: a 200 is wrong numbers) or the frame whose forecasts are due."""
    import numpy as np

    from forecast.serving.http import request_json

    good = elec_request()
    js = "application/json"

    def split(frame):
        return request_json(frame).encode()

    def edit(fn):
        frame = good.copy()
        fn(frame)
        return split(frame)

    def set_(row, col, value):
        def fn(f):
            if isinstance(value, str):
                f[col] = f[col].astype(object)
            f.loc[row, col] = value

        return fn

    records = json.loads(request_json(good, orient="records"))["dataframe_records"]
    split_body = json.loads(request_json(good))["dataframe_split"]
    cases = [
        ("valid dataframe_split", split(good), js, good),
        ("valid dataframe_records", request_json(good, orient="records").encode(), js, good),
        ("valid payload as text/csv", good.to_csv(index=False).encode(), "text/csv", good),
        ("valid, charset=utf-8", split(good), "application/json; charset=utf-8", good),
        ("extra unknown column", split(good.assign(extra=1.0)), js, good),
        ("history x1e6", split(good.assign(Demand=good["Demand"] * 1e6)), js, "range"),
        (
            "Temperature x1e6 in history",
            edit(lambda f: f.__setitem__("Temperature", f["Temperature"] * 1e6)),
            js,
            "range",
        ),
        ("one value x1e9", edit(set_(50, "Demand", 4e12)), js, "range"),
        ("nested [ x100000", b"[" * 100_000, js, "error"),
        ("nested { x100000", b'{"a":' * 100_000, js, "error"),
        ("nested [ x5000", b"[" * 5000 + b"]" * 5000, js, "error"),
        (
            "nested [ in dataframe_split x3000",
            b'{"dataframe_split": {"data": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
            js,
            "error",
        ),
        ("nested [ x50", b"[" * 50 + b"]" * 50, js, "error"),
        ("missing column", split(good.drop(columns="Temperature")), js, "error"),
        (
            "unsorted rows",
            split(good.iloc[[*range(11), 12, 11, *range(13, len(good))]]),
            js,
            "error",
        ),
        (
            "duplicate timestamp",
            edit(set_(11, "timestamp", good.loc[10, "timestamp"])),
            js,
            "error",
        ),
        ("NaN in history", edit(set_(40, "Demand", np.nan)), js, "error"),
        ("NaN future covariate", edit(set_(110, "Temperature", np.nan)), js, "error"),
        ("string in a numeric column", edit(set_(5, "Demand", "abc")), js, "error"),
        ("empty frame", split(good.iloc[:0]), js, "error"),
        ("too short", split(good.iloc[60:]), js, "error"),
        ("no future rows", split(good.iloc[:100]), js, "error"),
        ("a future row missing", split(good.drop(index=110)), js, "error"),
        ("bad timestamp text", edit(set_(3, "timestamp", "not a time")), js, "error"),
        (
            "timestamps with an offset",
            split(good.assign(timestamp=good["timestamp"].dt.tz_localize("UTC"))),
            js,
            "error",
        ),
        (
            "timestamps as epoch ints",
            split(good.assign(timestamp=good["timestamp"].astype("int64") // 10**9)),
            js,
            "error",
        ),
        ("booleans as Demand", split(good.assign(Demand=True)), js, "error"),
        ("huge number 1e308", edit(set_(30, "Demand", 1e308)), js, "range"),
        ("all null", split(good.assign(Demand=np.nan, Temperature=np.nan)), js, "error"),
        ("not JSON", b"{not json", js, "error"),
        ("empty body", b"", js, "error"),
        ("invalid UTF-8", b"\xff\xfe\x00{", js, "error"),
        ("JSON list at top", b"[1, 2, 3]", js, "error"),
        ("JSON string at top", b'"hello"', js, "error"),
        ("unknown top key", b'{"rows": []}', js, "error"),
        (
            "two format keys",
            json.dumps({"dataframe_split": split_body, "dataframe_records": records}).encode(),
            js,
            "error",
        ),
        (
            "dataframe_split data not a list",
            b'{"dataframe_split": {"columns": ["a"], "data": 5}}',
            js,
            "error",
        ),
        (
            "columns and rows of different lengths",
            json.dumps(
                {
                    "dataframe_split": {
                        "columns": split_body["columns"][:2],
                        "data": split_body["data"],
                    }
                }
            ).encode(),
            js,
            "error",
        ),
        ("records not dicts", b'{"dataframe_records": [1, 2]}', js, "error"),
        ("empty records", b'{"dataframe_records": []}', js, "error"),
        ("inputs format", json.dumps({"inputs": split_body["data"]}).encode(), js, "error"),
        ("instances format (records)", json.dumps({"instances": records}).encode(), js, good),
        (
            "params junk",
            json.dumps({"dataframe_split": split_body, "params": {"x": [1]}}).encode(),
            js,
            good,
        ),
        ("text/plain", split(good), "text/plain", "error"),
        ("charset latin-1", split(good), "application/json; charset=latin-1", "error"),
        ("CSV garbage", b"\x00\x01\x02,,,\n\n", "text/csv", "error"),
        ("CSV empty", b"", "text/csv", "error"),
        ("CSV header only", b"timestamp,Demand,Temperature,WorkDay\n", "text/csv", "error"),
        (
            "CSV bad time",
            good.assign(timestamp="yesterday").to_csv(index=False).encode(),
            "text/csv",
            "error",
        ),
        (
            "CSV non-UTF-8",
            "timestamp,Demand\n2014-01-01,\xe9\n".encode("latin-1"),
            "text/csv",
            "error",
        ),
        ("parquet garbage", b"PAR1garbage", "application/vnd.apache.parquet", "error"),
    ]
    return cases


def classify_http(status: int, text: str, expected, forecaster) -> str:
    if status >= 500:
        return "5xx"
    if "Traceback" in text or "stack_trace" in text:
        return "traceback"
    if status >= 400:
        try:
            message = json.loads(text).get("message", "")
        except (ValueError, AttributeError):
            message = text
        first = str(message).strip().splitlines()[0] if str(message).strip() else ""
        return "buried" if first.startswith("Failed to predict data") else "clear"
    if isinstance(expected, str):  # 200 for an invalid input; out of range means wrong numbers
        return "silent wrong" if expected == "range" else "accepted"
    import numpy as np

    from forecast.serving.http import forecasts_from_json

    got = forecasts_from_json(text)
    want = forecaster.predict(expected)
    same = len(got) == len(want) and np.allclose(
        got["forecast"].to_numpy(), want["forecast"].to_numpy(), rtol=0, atol=1e-5
    )
    return "correct" if same else "silent wrong"


def server_probes(tmp: Path, kind: str) -> list[tuple[str, str]]:
    import requests

    forecaster, server = train_and_serve(tmp, kind)
    out = []
    with server:
        for label, body, content_type, expected in server_cases():
            response = requests.post(
                f"{server.url}/invocations",
                data=body,
                headers={"Content-Type": content_type},
                timeout=120,
            )
            outcome = classify_http(response.status_code, response.text, expected, forecaster)
            out.append((f"HTTP {label} -> {response.status_code}", outcome))
        # The server still answers a good request correctly after all of that.
        good = elec_request(end=1300)
        from forecast.serving.http import request_json

        response = requests.post(
            f"{server.url}/invocations",
            data=request_json(good),
            headers={"Content-Type": "application/json"},
            timeout=120,
        )
        out.append(
            (
                "HTTP good request after the probes",
                classify_http(response.status_code, response.text, good, forecaster),
            )
        )
    return out


def _show(results: list[tuple[str, str]], group: list[tuple[str, str]]) -> None:
    for label, outcome in group:
        print(f"{outcome:13s} {label[:110]}", flush=True)
    results += group


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("forecast", "mlflow"), default="forecast")
    parser.add_argument("--only", choices=("config", "uri", "server"), default=None)
    args = parser.parse_args(argv)
    results: list[tuple[str, str]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        history = tmp / "history.csv"
        if args.only in (None, "config"):
            _show(results, config_probes(tmp))
        if args.only in (None, "uri"):
            if not (tmp / "binary.yaml").exists():
                (tmp / "binary.yaml").write_bytes(CONFIG_FILES["binary"])
            elec_request().to_csv(history, index=False)
            _show(results, uri_probes(tmp, history))
        if args.only in (None, "server"):
            _show(results, server_probes(tmp, args.server))
    counts = Counter(outcome for _, outcome in results)
    order = ("clear", "correct", "traceback", "5xx", "silent wrong", "accepted", "buried")
    print(
        f"\n{len(results)} probes in {time.perf_counter() - start:.0f} s: "
        + ", ".join(f"{k} {counts.get(k, 0)}" for k in order)
    )


if __name__ == "__main__":
    main()
