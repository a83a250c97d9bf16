"""Models logged before the package was restructured (a CloudPickled
`forecast.serving.ForecasterModel`, the flat `forecast/` layout) still load and answer
exactly as they did."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import forecast
from forecast.serving import ForecasterModel
from tests.conftest import REPO_ROOT

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "legacy_pyfunc"


@pytest.fixture(scope="module")
def legacy_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("legacy")
    with tarfile.open(FIXTURE / "model.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    return folder / "model"


def test_the_fixture_is_a_pickled_model_of_the_old_layout(legacy_model):
    assert (legacy_model / "python_model.pkl").is_file()
    assert (legacy_model / "code" / "forecast" / "evaluate.py").is_file()  # the flat layout
    assert not (legacy_model / "code" / "forecast" / "evaluation").exists()


def test_an_old_pickled_model_loads_with_todays_code_and_answers_the_same(legacy_model):
    before = list(sys.path)
    try:
        model = mlflow.pyfunc.load_model(str(legacy_model))
    finally:
        sys.path[:] = before  # the model's code/ folder must not shadow this checkout
    wrapped = model.unwrap_python_model()
    # Unpickled through today's `forecast.serving.ForecasterModel`, not the copy in code/.
    assert isinstance(wrapped, ForecasterModel)
    assert type(wrapped).__module__ == "forecast.serving.pyfunc"
    assert Path(sys.modules[type(wrapped).__module__].__file__).is_relative_to(
        Path(forecast.__file__).parent
    )
    request = pd.read_parquet(FIXTURE / "request.parquet")
    want = pd.read_parquet(FIXTURE / "forecasts.parquet")
    got = model.predict(request)
    assert list(got.columns) == list(want.columns)
    assert got[["series", "step", "target"]].equals(want[["series", "step", "target"]])
    assert (pd.to_datetime(got["timestamp"]) == pd.to_datetime(want["timestamp"])).all()
    values = ["forecast", "p10", "p50", "p90"]
    # The fixture's forecasts were computed on another machine: float32 sums may run in
    # another order here (1.1e-9 relative seen on AMD EPYC, 5.8e-6 on a level of 5288),
    # so the comparison is relative; a wrong state or window is off by far more.
    np.testing.assert_allclose(got[values], want[values], rtol=1e-7, atol=0)


def test_an_old_model_takes_a_csv_as_pandas_reads_it_in_batch_predict(legacy_model):
    from forecast.serving.batch import predict_frame

    before = list(sys.path)
    try:
        model = mlflow.pyfunc.load_model(str(legacy_model))
    finally:
        sys.path[:] = before
    request = pd.read_parquet(FIXTURE / "request.parquet")
    whole = request.assign(value=request["value"].round())
    ints = whole.assign(value=whole["value"].astype(np.int64), note="x")
    csv = pd.read_csv(io.StringIO(ints.to_csv(index=False)))
    assert csv["value"].dtype == np.int64 and csv["timestamp"].dtype == object
    got = predict_frame(model, csv)
    want = model.predict(whole)
    np.testing.assert_allclose(got["forecast"], want["forecast"], rtol=0, atol=1e-6)
    assert (pd.to_datetime(got["timestamp"]) == pd.to_datetime(want["timestamp"])).all()
