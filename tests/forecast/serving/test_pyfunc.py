"""The pyfunc model: logged with its code, loaded from runs:/ and models:/ (also in a fresh
process), same forecasts as the in-process `Forecaster`, clear errors for bad payloads."""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.models import get_model_info
from mlflow.pyfunc.scoring_server import predictions_to_json

from forecast.config import ForecastConfig
from forecast.data import featurize, prepare
from forecast.serving.forecaster import Forecaster
from forecast.serving.http import forecasts_from_json, request_json
from forecast.serving.local_server import ModelServer, _group_alive, _stop
from forecast.serving.pyfunc import (
    ForecasterModel,
    example_history,
    log_forecaster,
)
from forecast.tracking.registry import register_and_promote
from forecast.training.fitting import train_model
from pipelines import datasets
from pipelines.errors import ConfigError, DataValidationError
from pipelines.scale import SeriesScaler
from pipelines.schema import SeriesSchema
from tests.conftest import REPO_ROOT, use_store

# Tiny models: one epoch of 8 units is enough to check serving, not accuracy.
CONFIGS = {
    # Static, one series, known-future covariates (Temperature, WorkDay) + calendar, quantiles.
    "elec": {
        "name": "elec",
        "data": {
            "dataset": "elecdemand",
            "last_n": 1500,
            "features": {"calendar": ["hour", "weekday"]},
        },
        "window": {"lookback": 64, "horizon": 24},
        "model": {"units": [8], "quantiles": [0.1, 0.5, 0.9]},
        "training": {"epochs": 1, "verbose": 0},
        "evaluation": {"baselines": ["naive"]},
    },
    # Dynamic (histories of 8..32 steps), four series, per-series scaler, calendar feature,
    # targets scaled per window inside the network (over each history's valid steps only).
    "stocks": {
        "name": "stocks",
        "data": {"dataset": "eustockmarkets", "last_n": 400, "features": {"calendar": ["weekday"]}},
        "window": {"lookback": 32, "horizon": 5, "min_lookback": 8},
        "model": {"units": [8], "mode": "dynamic", "target_scaling": "window_rms"},
        "training": {"epochs": 1, "verbose": 0},
        "evaluation": {"baselines": ["naive"]},
    },
}
ELEC_FRAME = datasets.load("elecdemand").frame
STOCK_FRAME = datasets.load("eustockmarkets").frame
TOL = 1e-6


def trained_forecaster(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Forecaster:
    """Train `kind` once per session (saved under pytest's base temp folder), then load it."""
    folder = tmp_path_factory.getbasetemp() / "serving-models" / kind
    if not (folder / "pipeline.json").is_file():
        config = ForecastConfig.from_dict(CONFIGS[kind])
        train_model(config, prepare(config)).forecaster.save(folder)
    return Forecaster.load(folder)


def elec_request(end: int = 1100, history: int = 100) -> pd.DataFrame:
    """Real history rows up to row `end`, then 24 future rows with Demand left empty."""
    past = ELEC_FRAME.iloc[end - history : end]
    future = ELEC_FRAME.iloc[end : end + 24].assign(Demand=np.nan)
    return pd.concat([past, future], ignore_index=True)


def stock_request(lengths: dict[str, int], end: int = 1800) -> pd.DataFrame:
    """The last `lengths[s]` rows before position `end` of each series `s`."""
    parts = [
        g.iloc[end - lengths[s] : end] for s, g in STOCK_FRAME.groupby("series") if s in lengths
    ]
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class Store:
    """A temporary MLflow store holding both models, each registered with @champion."""

    uri: str
    root: Path
    run_id: str


@contextlib.contextmanager
def new_run():
    """A run in a new experiment: another module's `set_experiment` may point elsewhere."""
    experiment = mlflow.MlflowClient().create_experiment(f"serving-{os.urandom(4).hex()}")
    with mlflow.start_run(experiment_id=experiment) as run:
        yield run


def load_pyfunc(uri: str) -> mlflow.pyfunc.PyFuncModel:
    """Load in this process, without leaving the model's code folder on sys.path."""
    before = list(sys.path)
    try:
        return mlflow.pyfunc.load_model(uri)
    finally:
        sys.path[:] = before


def log_both(elec: Forecaster, stocks: Forecaster, root: Path) -> Store:
    """Log both models in one run and promote each to @champion."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with contextlib.chdir(root), use_store(uri):
        with new_run() as run:
            infos = {
                "elec": log_forecaster(elec, name="elec", input_example=elec_request()),
                "stocks": log_forecaster(stocks, name="stocks"),
            }
        for name, info in infos.items():
            assert register_and_promote(info.model_uri, name=name, candidate_metric=1.0).promoted
    return Store(uri=uri, root=root, run_id=run.info.run_id)


@pytest.fixture(scope="module")
def elec(tmp_path_factory) -> Forecaster:
    return trained_forecaster("elec", tmp_path_factory)


@pytest.fixture(scope="module")
def stocks(tmp_path_factory) -> Forecaster:
    return trained_forecaster("stocks", tmp_path_factory)


@pytest.fixture(scope="module")
def store(elec, stocks, tmp_path_factory) -> Store:
    return log_both(elec, stocks, tmp_path_factory.mktemp("serving-store"))


@pytest.fixture(scope="module")
def served(store) -> dict[str, mlflow.pyfunc.PyFuncModel]:
    """Both champions, loaded once in this process."""
    with use_store(store.uri):
        return {name: load_pyfunc(f"models:/{name}@champion") for name in ("elec", "stocks")}


def assert_same_forecasts(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) > 0
    for col in ("series", "target", "step"):
        assert got[col].tolist() == want[col].tolist()
    assert (pd.to_datetime(got["timestamp"]) == pd.to_datetime(want["timestamp"])).all()
    value_cols = [c for c in want.columns if c == "forecast" or c.startswith("p")]
    np.testing.assert_allclose(got[value_cols], want[value_cols], rtol=0, atol=TOL)


# ----------------------------------------------------------------------------- the logged model


def test_signature_is_explicit_forecast_rows_out_and_the_inputs_are_metadata(store):
    with use_store(store.uri):
        info = {n: get_model_info(f"models:/{n}@champion") for n in ("elec", "stocks")}
    # No input schema: MLflow's enforcement would refuse a CSV as pandas reads it.
    assert info["elec"].signature.inputs is None
    inputs = {c["name"]: c["type"] for c in info["elec"].metadata["forecast_inputs"]}
    assert inputs == {
        "timestamp": "datetime",
        "Demand": "double",
        "Temperature": "double",
        "WorkDay": "double",
    }
    outputs = [s.name for s in info["elec"].signature.outputs.inputs]
    assert outputs == ["series", "timestamp", "step", "target", "forecast", "p10", "p50", "p90"]
    stock_inputs = {c["name"]: c["type"] for c in info["stocks"].metadata["forecast_inputs"]}
    assert stock_inputs == {"timestamp": "datetime", "series": "string", "value": "double"}
    assert [s.name for s in info["stocks"].signature.outputs.inputs][-1] == "forecast"


def csv_as_read(request: pd.DataFrame) -> pd.DataFrame:
    """`request` with whole-number covariates and an extra column, written to CSV and read
    back by pandas: text timestamps, int64 columns, a column the model does not read."""
    ints = {"Temperature": request["Temperature"].round().astype(np.int64)}
    ints["WorkDay"] = request["WorkDay"].astype(np.int64)
    buffer = io.StringIO(request.assign(**ints, note="x").to_csv(index=False))
    return pd.read_csv(buffer)


def test_a_csv_as_pandas_reads_it_is_served_like_the_typed_request(served, elec, caplog):
    request = elec_request(end=1250)
    csv = csv_as_read(request)
    assert csv["timestamp"].dtype == object
    assert csv["Temperature"].dtype == np.int64 and csv["WorkDay"].dtype == np.int64
    with caplog.at_level("WARNING"):
        got = served["elec"].predict(csv)
    assert [r.getMessage() for r in caplog.records if "extra inputs" in r.getMessage()] == []
    want = elec.predict(request.assign(Temperature=request["Temperature"].round()))
    assert_same_forecasts(got, want)


def test_a_utc_offset_is_kept_in_the_served_timestamps(served, elec):
    request = elec_request(end=1250)
    local = request.assign(timestamp=request["timestamp"].dt.tz_localize("+10:00"))
    got = served["elec"].predict(local)
    assert str(got["timestamp"].dt.tz) == "UTC+10:00"
    want = elec.predict(request)  # the same wall times: the same calendar features
    assert (got["timestamp"] == want["timestamp"].dt.tz_localize("+10:00")).all()
    np.testing.assert_allclose(got["forecast"], want["forecast"], rtol=0, atol=TOL)


def test_under_a_scoring_server_the_rows_are_the_records_it_writes(served, elec, monkeypatch):
    request = elec_request(end=1250)
    want = elec.predict(request)
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")  # set by the server
    got = served["elec"].predict(request)
    assert isinstance(got, list) and len(got) == len(want)
    assert list(got[0]) == list(want.columns)
    assert [r["timestamp"] for r in got] == [t.isoformat() for t in want["timestamp"]]
    assert [r["forecast"] for r in got] == want["forecast"].tolist()
    written = [io.StringIO(), io.StringIO()]
    predictions_to_json(got, written[0])
    predictions_to_json(want, written[1])
    assert written[0].getvalue() == written[1].getvalue()
    monkeypatch.delenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT")
    assert served["elec"].predict(request)["timestamp"].dtype == "datetime64[ns]"


def test_a_uvicorn_process_freezes_the_loaded_objects_and_others_do_not(store, monkeypatch):
    gc.unfreeze()
    try:
        with use_store(store.uri):
            mlflow.pyfunc.load_model("models:/elec@champion")  # a notebook, a batch job
            assert gc.get_freeze_count() == 0
            # MLflow imitating its server (the input-example check at logging) is not one.
            monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")
            mlflow.pyfunc.load_model("models:/elec@champion").predict(elec_request(end=1250))
            assert gc.get_freeze_count() == 0
            monkeypatch.setattr(sys, "argv", ["/venv/bin/uvicorn", "--workers", "2", "app"])
            mlflow.pyfunc.load_model("models:/elec@champion")
            assert gc.get_freeze_count() > 10_000  # TensorFlow, Keras, MLflow and the model
    finally:
        gc.unfreeze()


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def test_model_is_logged_from_code_with_its_state_and_pinned_requirements(store):
    with use_store(store.uri):
        local = Path(mlflow.artifacts.download_artifacts("models:/elec@champion"))
    for path in (
        "code/forecast/serving/forecaster.py",
        "code/forecast/serving/pyfunc.py",
        "code/pipelines/validate.py",
        "artifacts/forecaster/model.keras",
        "artifacts/forecaster/pipeline.json",
    ):
        assert (local / path).is_file(), path
    # Models from code: MLflow runs the logged code file; nothing is pickled.
    conf = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert Path(conf["model_code_path"]).name == "model_code.py"
    assert "python_model" not in conf
    assert not list(local.rglob("*.pkl"))
    requirements = (local / "requirements.txt").read_text().split()
    tf_dist = next(d for d in ("tensorflow-cpu", "tensorflow") if _installed(d))
    names = (tf_dist, "keras", "pandas", "numpy", "scikit-learn", "mlflow", "pyyaml", "pyarrow")
    assert requirements == [f"{d}=={_installed(d)}" for d in names]


def test_load_context_warms_up_the_predict_function(served):
    wrapper = served["elec"].unwrap_python_model()
    assert isinstance(wrapper, ForecasterModel)
    # Traced once at load time, so the first request does not pay for tracing.
    assert wrapper.forecaster.model.predict_function is not None


# ----------------------------------------------------------------------------- same forecasts


def test_pyfunc_equals_forecaster_with_known_future_covariates(served, elec):
    request = elec_request()
    assert request["Demand"].tail(24).isna().all()  # future rows: covariates, no target
    got = served["elec"].predict(request)
    want = elec.predict(request)
    assert_same_forecasts(got, want)
    assert got["timestamp"].tolist() == request["timestamp"].tail(24).tolist()
    assert (got["p10"] <= got["p50"]).all() and (got["p50"] <= got["p90"]).all()


def test_pyfunc_equals_forecaster_for_several_series(served, stocks):
    request = stock_request({"DAX": 40, "SMI": 32, "CAC": 20, "FTSE": 8})
    got = served["stocks"].predict(request)
    assert_same_forecasts(got, stocks.predict(request))
    assert sorted(set(got["series"])) == ["CAC", "DAX", "FTSE", "SMI"]
    assert len(got) == 4 * 5


def test_time_column_precision_does_not_matter_in_process(served, elec):
    request = elec_request()
    micro = request.assign(timestamp=request["timestamp"].astype("datetime64[us]"))
    assert_same_forecasts(served["elec"].predict(micro), elec.predict(request))


@settings(max_examples=15)
@given(
    lengths=st.dictionaries(
        st.sampled_from(["CAC", "DAX", "FTSE", "SMI"]), st.integers(8, 45), min_size=1
    ),
    end=st.integers(200, 1860),
    seed=st.integers(0, 2**16),
)
def test_each_series_of_a_request_is_forecast_as_if_alone(served, lengths, end, seed):
    request = stock_request(lengths, end=end)
    shuffled = request.sample(frac=1.0, random_state=seed)  # series may interleave, time may not
    shuffled = shuffled.sort_values("timestamp", kind="stable")
    together = served["stocks"].predict(shuffled).set_index(["series", "step"])
    for series in lengths:
        alone = served["stocks"].predict(request[request["series"] == series])
        # Padded and masked beside longer series, or alone: the same numbers (prices ~1e3).
        # A lone window runs as one XLA computation, a batch as the plain trace: float32 sums
        # in another order differ by a few ulps (1.2e-6 relative seen); a padding or masking
        # error is orders of magnitude larger.
        np.testing.assert_allclose(
            together.loc[series, "forecast"].to_numpy(), alone["forecast"].to_numpy(), rtol=1e-5
        )


def test_predict_is_thread_safe(served, elec):
    requests = [elec_request(end=end) for end in (800, 900, 1000, 1100)]
    expected = [elec.predict(r) for r in requests]
    outcomes: list[str] = []

    def client(k: int) -> None:
        for i in range(8):
            j = (k + i) % len(requests)
            try:
                got = served["elec"].predict(requests[j])
                same = np.allclose(got["forecast"], expected[j]["forecast"], rtol=0, atol=TOL)
                outcomes.append("ok" if same else f"client {k} request {j}: other numbers")
            except Exception as exc:  # a thread's exception would otherwise go unseen
                outcomes.append(f"client {k} request {j}: {exc!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert outcomes == ["ok"] * 64


# ----------------------------------------------------------------------------- bad payloads


def _drop_row(frame: pd.DataFrame, i: int) -> pd.DataFrame:
    return frame.drop(index=i).reset_index(drop=True)


def _set(frame: pd.DataFrame, row: int, col: str, value) -> pd.DataFrame:
    out = frame.copy()
    if isinstance(value, str):
        out[col] = out[col].astype(object)
    out.loc[row, col] = value
    return out


def _swap(frame: pd.DataFrame, i: int, j: int) -> pd.DataFrame:
    order = np.arange(len(frame))
    order[[i, j]] = order[[j, i]]
    return frame.take(order).reset_index(drop=True)


ELEC_BAD = {
    "missing column": (
        lambda r: r.drop(columns="Temperature"),
        "The following columns are missing: ['Temperature']",
    ),
    "unsorted": (lambda r: _swap(r, 10, 11), "is not sorted by time"),
    "duplicate": (
        lambda r: _set(r, 11, "timestamp", r.loc[10, "timestamp"]),
        "1 duplicate timestamps; series 'series_0' at ['2014-01-22 01:00:00']",
    ),
    "NaN in history": (
        lambda r: _set(r, 40, "Demand", np.nan),
        "Column 'Demand' has 1 NaN/inf values; series 'series_0' at ['2014-01-22 16:00:00']",
    ),
    "NaN covariate in a future row": (
        lambda r: _set(r, 110, "Temperature", np.nan),
        "Future covariate 'Temperature' must be a finite number in every future row (the rows "
        "after the last target); series 'series_0' at 2014-01-24 03:00:00 has no value.",
    ),
    "string in a numeric column": (
        lambda r: _set(r, 5, "Demand", "abc"),
        "Column 'Demand' must hold a number in every row; row 5 has 'abc' (1 such rows).",
    ),
    "text that is no timestamp": (
        lambda r: _set(r, 7, "timestamp", "soon"),
        "Column 'timestamp' must hold a timestamp such as '2020-01-31 12:30' in every row; "
        "row 7 has 'soon' (1 such rows).",
    ),
    "empty frame": (lambda r: r.iloc[:0], "The request holds no rows"),
    "too short": (
        lambda r: r.iloc[60:].reset_index(drop=True),
        "History too short: 'series_0' has 40 rows. This static model needs at least 64 rows",
    ),
    "no future rows": (
        lambda r: r.iloc[:100],
        "This model needs known-future covariates ['Temperature', 'WorkDay'] for the next 24",
    ),
    "a future row missing": (
        lambda r: _drop_row(r, 110),
        "Future covariates ['Temperature', 'WorkDay'] are missing for series 'series_0' at "
        "2014-01-24 03:00:00",
    ),
}
STOCK_BAD = {
    "unknown series": (
        lambda r: r.replace({"series": {"FTSE": "NIKKEI"}}),
        "Series ['NIKKEI'] were not seen when the scaler was fitted",
    ),
    "shorter than min_lookback": (
        lambda r: r.drop(index=r.index[r["series"] == "SMI"][:3]),
        "History too short: 'SMI' has 7 rows. This dynamic (min_lookback) model needs at least 8",
    ),
    "empty target at the end": (
        lambda r: _set(r, len(r) - 1, "value", np.nan),
        "Series 'SMI' ends with a row without target ['value']: this model reads no "
        "known-future covariates",
    ),
}


@pytest.mark.parametrize("case", list(ELEC_BAD))
def test_bad_elec_payload_raises_invalid_parameter_naming_the_problem(served, case):
    make, message = ELEC_BAD[case]
    with pytest.raises(MlflowException) as info:
        served["elec"].predict(make(elec_request()))
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert message in info.value.message


@pytest.mark.parametrize("case", list(STOCK_BAD))
def test_bad_stocks_payload_raises_invalid_parameter_naming_the_problem(served, case):
    make, message = STOCK_BAD[case]
    with pytest.raises(MlflowException) as info:
        served["stocks"].predict(make(stock_request({"DAX": 30, "FTSE": 12, "SMI": 10})))
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert message in info.value.message


def test_dynamic_model_takes_histories_down_to_min_lookback(served, stocks):
    assert stocks.state.min_rows == 8
    got = served["stocks"].predict(stock_request({"DAX": 8, "SMI": 9, "CAC": 31}))
    assert got.groupby("series").size().to_dict() == {"CAC": 5, "DAX": 5, "SMI": 5}


# ----------------------------------------------------------------------------- many series,
# known-future covariates: the elec network behind a pipeline with an id column `site`.


def two_site_request(north_end: int = 1100, south_end: int = 3000) -> pd.DataFrame:
    """Two sites over the same half-hours: the south one replays another stretch of data."""
    north = elec_request(end=north_end).assign(site="north")
    south = elec_request(end=south_end).assign(site="south", timestamp=north["timestamp"])
    # Rows of the two sites interleave (each site still in time order).
    both = pd.concat([north, south]).sample(frac=1.0, random_state=0)
    return both.sort_values("timestamp", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def two_sites(elec) -> Forecaster:
    st = elec.state
    raw = SeriesSchema.from_dict({**st.raw_schema.to_dict(), "id_col": "site"})
    history = two_site_request(north_end=1500, south_end=3500).dropna()
    frame, schema, _ = featurize(history, raw, st.policy, st.features)
    scaler = SeriesScaler(method="standard").fit(frame, schema)  # one scale per site
    return Forecaster(elec.model, replace(st, raw_schema=raw, schema=schema, scaler=scaler))


def test_several_series_with_known_future_covariates(two_sites, tmp_path):
    request = two_site_request()
    assert request["site"].iloc[:10].nunique() == 2
    together = two_sites.predict(request)
    assert together["series"].tolist() == ["north"] * 24 + ["south"] * 24
    for site in ("north", "south"):
        alone = two_sites.predict(request[request["site"] == site])
        part = together[together["series"] == site].reset_index(drop=True)
        assert_same_forecasts(part, alone)
    with use_store(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"), new_run():
        info = log_forecaster(two_sites, input_example=request)
    with use_store(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"):
        assert_same_forecasts(load_pyfunc(info.model_uri).predict(request), together)


def test_future_rows_are_checked_per_series(two_sites):
    request = two_site_request()
    south_future = request.index[(request["site"] == "south") & request["Demand"].isna()]
    with pytest.raises(DataValidationError, match="are missing for series 'south' at"):
        two_sites.predict(request.drop(index=south_future[3]))
    with pytest.raises(DataValidationError, match="Future rows repeat series 'south' at"):
        two_sites.predict(pd.concat([request, request.loc[south_future[:1]]]))


# ----------------------------------------------------------------------------- log_forecaster


def test_log_forecaster_needs_an_active_run(elec):
    with pytest.raises(ConfigError, match="`log_forecaster` needs an active MLflow run"):
        log_forecaster(elec)


def test_log_forecaster_refuses_other_objects_and_bad_examples(elec, tmp_path):
    with use_store(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"), new_run() as run:
        with pytest.raises(ConfigError, match="Received: Sequential"):
            log_forecaster(keras.Sequential())
        with pytest.raises(DataValidationError, match="History too short"):
            log_forecaster(elec, input_example=elec_request().iloc[70:])
        logged = mlflow.MlflowClient().search_logged_models([run.info.experiment_id])
        assert list(logged) == []


def test_example_history_is_a_valid_request(elec, stocks):
    for forecaster, future in ((elec, 24), (stocks, 0)):
        example = example_history(forecaster)
        window = forecaster.state.window
        assert len(example) == window.lookback + forecaster.state.features.warmup + future
        assert len(forecaster.predict(example)) == window.horizon


def test_request_json_round_trips_times_and_missing_targets():
    request = elec_request()
    for orient in ("split", "records"):
        body = json.loads(request_json(request, orient=orient))[f"dataframe_{orient}"]
        rows = body["data"] if orient == "split" else [list(r.values()) for r in body]
        assert rows[0][0] == "2014-01-21T20:00:00.000"
        assert rows[-1][1] is None  # the future rows' target
    with pytest.raises(ConfigError, match="`orient` must be 'split' or 'records'"):
        request_json(request, orient="index")
    parsed = forecasts_from_json(
        {"predictions": [{"series": "a", "timestamp": "2014-01-01T00:30:00", "step": 1}]}
    )
    assert parsed["timestamp"].dtype == "datetime64[ns]"


# ----------------------------------------------------------------------------- server helper


@pytest.mark.parametrize("ignore_term", [False, True])
def test_stopping_a_server_ends_its_whole_process_group(ignore_term, caplog):
    # A stand-in for the CLI and its uvicorn child: a shell with a background child.
    script = ("trap '' TERM; " if ignore_term else "") + "sleep 60 & echo ready; sleep 60"
    proc = subprocess.Popen(
        ["bash", "-c", script], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    try:
        # Stop only once the trap is set: on a loaded machine TERM could otherwise arrive
        # before bash has run `trap` and end it without the kill this test is about.
        assert proc.stdout.readline().strip() == "ready"
        assert _group_alive(proc.pid)
        _stop(proc, grace=0.5)
        assert not _group_alive(proc.pid)
        assert ("killing it" in caplog.text) == ignore_term
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, 9)
        proc.stdout.close()


def test_model_server_defaults_to_a_free_loopback_port():
    server = ModelServer("models:/elec@champion")
    assert server.url == f"http://127.0.0.1:{server.port}" and not server.alive
    with pytest.raises(ConfigError, match="call `start\\(\\)` first"):
        server.wait_ready(timeout=1)
    server.stop()  # a no-op when never started


# ----------------------------------------------------------------------------- fresh process

FRESH_PROCESS = """
import json, sys
# As if rnn-forecast were not installed: drop the editable install's import hook.
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
import importlib.util
assert importlib.util.find_spec("forecast") is None, "forecast importable before loading"
import mlflow, pandas as pd
history = pd.read_parquet(sys.argv[1])
for i, uri in enumerate(sys.argv[3:]):
    mlflow.pyfunc.load_model(uri).predict(history).to_parquet(f"{sys.argv[2]}/{i}.parquet")
import forecast
print(json.dumps({"forecast_file": forecast.__file__}))
"""


@pytest.mark.slow
def test_loads_and_predicts_in_a_fresh_process_without_the_package(store, elec, tmp_path):
    request = elec_request(end=1300)
    request.to_parquet(tmp_path / "history.parquet")
    uris = [f"runs:/{store.run_id}/elec", "models:/elec@champion"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHONPATH"))} | {
        "MLFLOW_TRACKING_URI": store.uri,
        "MLFLOW_REGISTRY_URI": store.uri,
    }
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "history.parquet"), str(tmp_path)]
        + uris,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    forecast_file = Path(json.loads(done.stdout.strip().splitlines()[-1])["forecast_file"])
    assert REPO_ROOT not in forecast_file.parents  # imported from the model's code/ folder
    assert forecast_file.parent.parent.name == "code"
    want = elec.predict(request)
    for i in range(len(uris)):
        assert_same_forecasts(pd.read_parquet(tmp_path / f"{i}.parquet"), want)
