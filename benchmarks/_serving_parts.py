"""The profile and cold-start sections of `benchmarks.serving` (see its docstring)."""

from __future__ import annotations

import collections
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import mlflow
import numpy as np
import pandas as pd

import forecast.serving.forecaster as forecaster_module
import forecast.serving.pyfunc as pyfunc_module
from forecast.serving.http import request_json, served_records, served_rows

SERVING_ENV = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"
# What each cold process runs; each prints its clock at each phase as JSON.
_OURS = """
import json, sys, time
import forecast, mlflow
from pipelines.sources import read_parquet
imported = time.time()
model = forecast.load_model(sys.argv[2])
loaded = time.time()
model.predict(read_parquet(sys.argv[1]))
print(json.dumps({"imported": imported, "loaded": loaded, "answered": time.time()}))
"""
# The same process through MLflow's loader, which also runs MLflow's environment check.
_MLFLOW = _OURS.replace("forecast.load_model(", "mlflow.pyfunc.load_model(")
_FLOOR = """
import json, sys, time
import numpy as np, tensorflow, keras
import forecast.models  # registers the layers the .keras file names
imported = time.time()
model = keras.saving.load_model(sys.argv[2], compile=False)
loaded = time.time()
model.predict_on_batch(dict(np.load(sys.argv[1])))
print(json.dumps({"imported": imported, "loaded": loaded, "answered": time.time()}))
"""


def _timed(clock: collections.Counter, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock[label] += time.perf_counter() - start

    return wrapped


def profile_section(bench: Any, frames: dict[str, pd.DataFrame], served: Any, quick: bool) -> None:
    """Milliseconds of each step of the scoring server's ``invocations`` on one request."""
    from mlflow.pyfunc import scoring_server

    pyfunc = mlflow.pyfunc.load_model(bench.model_uri)
    schema = pyfunc.metadata.get_input_schema()
    clock: collections.Counter = collections.Counter()
    ours = pyfunc._model_impl.python_model  # the ForecasterModel instance
    patches = [
        (scoring_server, "_parse_json_data", "parse"),
        (scoring_server, "predictions_to_json", "write"),
        (forecaster_module, "featurize", "featurize"),
        (forecaster_module, "predict_windows", "network"),
        (pyfunc_module, "coerce_request", "coerce"),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, label in patches:
        setattr(obj, name, _timed(clock, label, getattr(obj, name)))
    ours.predict = _timed(clock, "ours", ours.predict)
    whole = pyfunc.predict
    pyfunc.predict = _timed(clock, "pyfunc", lambda data, params=None: whole(data, params=params))
    n = {"1 series": 30 if quick else 200, "100 series": 10 if quick else 40}
    table: dict[str, dict[str, float]] = {}
    # What `scoring_server.init` sets in a server process; the served model reads it.
    serving = os.environ.get(SERVING_ENV)
    os.environ[SERVING_ENV] = "true"
    try:
        for name, frame in frames.items():
            body = request_json(frame).encode()
            steps = collections.defaultdict(list)
            for i in range(n[name] + 1):
                clock.clear()
                start = time.perf_counter()
                scoring_server.invocations(body, "application/json", pyfunc, schema)
                clock["total"] = time.perf_counter() - start
                if i == 0:
                    continue  # the first call warms up
                for label, seconds in clock.items():
                    steps[label].append(seconds)
            table[name] = {k: 1000 * statistics.median(v) for k, v in steps.items()}
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
        del ours.predict, pyfunc.predict
        if serving is None:
            del os.environ[SERVING_ENV]
        else:
            os.environ[SERVING_ENV] = serving
    rows = [
        ("parse the JSON body into a frame (MLflow)", lambda t: t["parse"]),
        (
            "MLflow's pyfunc `predict` around ours (no input schema)",
            lambda t: t["pyfunc"] - t["ours"],
        ),
        ("coerce the request (ours, `coerce_request`)", lambda t: t["coerce"]),
        ("validate + features (ours, pandas)", lambda t: t["featurize"]),
        ("the network (`predict_windows`)", lambda t: t["network"]),
        (
            "the rest of `Forecaster.predict` (ours)",
            lambda t: t["ours"] - t["coerce"] - t["featurize"] - t["network"],
        ),  # fmt: skip
        ("write the JSON answer (MLflow)", lambda t: t["write"]),
        ("in-process `invocations`, all of the above", lambda t: t["total"]),
    ]
    print("\n### Profile: where the milliseconds of one request go (medians)\n")
    print("| step | " + " | ".join(f"{name} ms | share" for name in table) + " |")
    print("|---|" + "---:|---:|" * len(table))
    for label, value in rows:
        cells = [f"{value(t):.2f} | {value(t) / t['total']:.0%}" for t in table.values()]
        print(f"| {label} | {' | '.join(cells)} |")
    if served is not None:
        cells = []
        for name, t in table.items():
            http = 1000 * statistics.median(served[name]["ours"]) - t["total"]
            cells.append(f"{http:.2f} | {http / (t['total'] + http):.0%} of served")
        print(
            f"| HTTP, uvicorn and the client (served p50 minus the above) | {' | '.join(cells)} |"
        )


def answer_section(bench: Any, frames: dict[str, pd.DataFrame], quick: bool) -> None:
    """MLflow writing our answer: the frame (timestamps as text) against our row dicts.

    Both are what the served model returned at some point (`served_rows` before session
    16, `served_records` since); the records' time includes building them. They must be
    written as the same bytes.
    """
    from mlflow.pyfunc.scoring_server import predictions_to_json

    def written(answer: Any) -> str:
        out = io.StringIO()
        predictions_to_json(answer, out)
        return out.getvalue()

    n = 30 if quick else 200
    print("\n### The answer: MLflow writing our frame or our row dicts (medians, interleaved)\n")
    print(
        "| request | forecast rows | frame ms | row dicts ms (incl. building them) | ratio | same bytes |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name, frame in frames.items():
        rows = bench.forecaster.predict(frame)
        same = written(served_rows(rows)) == written(served_records(rows))
        calls = {
            "frame": lambda r=rows: written(served_rows(r)),
            "records": lambda r=rows: written(served_records(r)),
        }
        times: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(n):
            for label, call in calls.items():
                start = time.perf_counter()
                call()
                times[label].append(time.perf_counter() - start)
        a, b = (1000 * statistics.median(times[k]) for k in ("frame", "records"))
        print(f"| {name} | {len(rows)} | {a:.2f} | {b:.2f} | {b / a:.2f}x | {same} |")


# `Forecaster.predict`'s steps, each timed where it is looked up when predict runs.
_STAGES = (
    ("split history / future rows, check lengths", "Forecaster", "_split_rows"),
    ("", "Forecaster", "_check_lengths"),
    ("validate (pipelines.validate)", "forecast.data", "validate"),
    ("features (pipelines.features)", "forecast.data", "add_features"),
    ("last timestamps", "Forecaster", "_last_times"),
    ("scale (target transform, scaler)", "PipelineState", "encode"),
    ("training-range check", "forecaster", "check_in_range"),
    ("horizon timestamps (calendar)", "Forecaster", "_future_times"),
    ("inference windows", "forecaster", "inference_windows"),
    ("the network (`predict_windows`)", "forecaster", "predict_windows"),
    ("back to original units", "PipelineState", "to_original"),
    ("forecast rows (the output frame)", "Forecaster", "_rows"),
)


def stages_section(bench: Any, frames: dict[str, pd.DataFrame], quick: bool) -> None:
    """Milliseconds of each step of in-process `Forecaster.predict` (medians)."""
    import forecast.data as data_module

    owners = {
        "Forecaster": forecaster_module.Forecaster,
        "PipelineState": forecaster_module.PipelineState,
        "forecaster": forecaster_module,
        "forecast.data": data_module,
    }
    clock: collections.Counter = collections.Counter()
    saved = []
    for _, owner, name in _STAGES:
        obj = owners[owner]
        saved.append(
            (obj, name, obj.__dict__[name] if isinstance(obj, type) else getattr(obj, name))
        )
        setattr(obj, name, _timed(clock, name, getattr(obj, name)))
    n = {"1 series": 30 if quick else 300, "100 series": 10 if quick else 40}
    table: dict[str, dict[str, float]] = {}
    try:
        for label, frame in frames.items():
            steps = collections.defaultdict(list)
            for i in range(n[label] + 1):
                clock.clear()
                start = time.perf_counter()
                bench.forecaster.predict(frame)
                clock["total"] = time.perf_counter() - start
                if i:  # the first call warms up
                    for name, seconds in clock.items():
                        steps[name].append(seconds)
            table[label] = {k: 1000 * statistics.median(v) for k, v in steps.items()}
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
    print("\n### In process: where `Forecaster.predict`'s milliseconds go (medians)\n")
    print("| step | " + " | ".join(f"{label} ms" for label in table) + " |")
    print("|---|" + "---:|" * len(table))
    rows: list[tuple[str, list[str]]] = []
    for title, _, name in _STAGES:
        if title:
            rows.append((title, [name]))
        else:
            rows[-1][1].append(name)
    for title, names in rows:
        cells = [f"{sum(t.get(k, 0.0) for k in names):.2f}" for t in table.values()]
        print(f"| {title} | {' | '.join(cells)} |")
    staged = [k for _, _, k in _STAGES]
    rest = [f"{t['total'] - sum(t.get(k, 0.0) for k in staged):.2f}" for t in table.values()]
    print(f"| the rest (checks and glue in `predict`) | {' | '.join(rest)} |")
    totals = " | ".join(f"{t['total']:.2f}" for t in table.values())
    print(f"| `Forecaster.predict`, all of the above | {totals} |")


def coldstart_section(bench: Any, one: pd.DataFrame, repeats: int) -> None:
    """A fresh process to its first forecast: our registered pyfunc against a bare .keras."""
    request = bench.root / "one.parquet"
    one.to_parquet(request, index=False)
    inputs = bench.root / "one_window.npz"
    captured = {}
    original = forecaster_module.predict_windows

    def capture(model: Any, windows: Any, **kwargs: Any) -> Any:
        captured.update(windows.inputs())
        return original(model, windows, **kwargs)

    forecaster_module.predict_windows = capture
    try:
        bench.forecaster.predict(one)
    finally:
        forecaster_module.predict_windows = original
    np.savez(inputs, **captured)
    processes = {
        "ours": (_OURS, [str(request), bench.model_uri]),
        "mlflow": (_MLFLOW, [str(request), bench.model_uri]),
        "floor": (_FLOOR, [str(inputs), str(bench.root / "bare" / "model.keras")]),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in processes}
    print(f"\n### Cold start: a fresh process to its first one-series forecast ({_load()})\n")
    names = list(processes)
    for r in range(repeats):
        for name in names[r % 3 :] + names[: r % 3]:  # each goes first in turn
            code, args = processes[name]
            start = time.time()
            out = subprocess.run(
                [sys.executable, "-c", code, *args],
                env=bench.env | {"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
                cwd=bench.root,
                capture_output=True,
                text=True,
                check=True,
            )
            t = json.loads(out.stdout.strip().splitlines()[-1])
            runs[name].append(
                {
                    "total": t["answered"] - start,
                    "imports": t["imported"] - start,
                    "load": t["loaded"] - t["imported"],
                    "first predict": t["answered"] - t["loaded"],
                }
            )
    med = {
        name: {k: statistics.median(run[k] for run in rs) for k in rs[0]}
        for name, rs in runs.items()
    }
    print("| process | start + imports s | load s | first predict s | total s |")
    print("|---|---:|---:|---:|---:|")
    labels = {
        "ours": "ours: import forecast, forecast.load_model(models:/bench@champion), predict",
        "mlflow": "the same through mlflow.pyfunc.load_model (MLflow's environment check)",
        "floor": "floor: import TensorFlow, keras.saving.load_model(model.keras), predict_on_batch",
    }
    for name, m in med.items():
        print(f"| {labels[name]} | {m['imports']:.2f} | {m['load']:.2f} "
              f"| {m['first predict']:.3f} | {m['total']:.2f} |")  # fmt: skip
    ratio = med["ours"]["total"] / med["floor"]["total"]
    through_mlflow = med["mlflow"]["total"] / med["floor"]["total"]
    first = med["ours"]["first predict"]
    print(f"\nours / floor: {ratio:.2f}x (goal <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'}); "
          f"through mlflow.pyfunc.load_model {through_mlflow:.2f}x; "
          f"our first predict after loading {first * 1000:.0f} ms (goal: no multi-second "
          f"compile: {'met' if first < 1 else 'NOT met'}). Medians of {repeats}, run in "
          f"turn; {_load()} at the end.")  # fmt: skip


def _load() -> str:
    return "load average {:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())
