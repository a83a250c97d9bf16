"""The Forecaster: saved and loaded as is, and serving exactly what evaluation scored."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from forecast.config import ForecastConfig
from forecast.data import prepare
from forecast.evaluation.scoring import model_forecasts
from forecast.models.layers import _kernels
from forecast.serving.forecaster import Forecaster, PipelineState, quantile_column
from forecast.training.fitting import train_model
from pipelines import datasets
from pipelines.errors import DataValidationError
from pipelines.scale import SeriesScaler
from pipelines.window import WindowSpec

LOOKBACK, H = 16, 3
# Four stock indices, log-return target (one row of feature warm-up), a quantile head.
CONFIG = {
    "name": "forecaster",
    "data": {"dataset": "eustockmarkets", "last_n": 200, "features": {"target": "log_return"}},
    "window": {"lookback": LOOKBACK, "horizon": H},
    "model": {"units": [8], "quantiles": [0.1, 0.5, 0.9]},
    "training": {"epochs": 1, "verbose": 0},
    "evaluation": {"baselines": ["naive"]},
}
RAW = datasets.load("eustockmarkets").frame
SERIES = ("CAC", "DAX", "FTSE", "SMI")


@pytest.fixture(scope="module")
def trained():
    config = ForecastConfig.from_dict(CONFIG)
    prepared = prepare(config)
    return prepared, train_model(config, prepared).forecaster


def _history(end: pd.Timestamp, rows: int = 30) -> pd.DataFrame:
    """The last `rows` raw rows of every series up to `end` (inclusive)."""
    return RAW[RAW["timestamp"] <= end].groupby("series").tail(rows).reset_index(drop=True)


def _series_history(series: str, end: pd.Timestamp, rows: int = 30) -> pd.DataFrame:
    """The last `rows` raw rows of one series up to `end` (inclusive)."""
    mine = RAW[(RAW["series"] == series) & (RAW["timestamp"] <= end)]
    return mine.tail(rows)


# ----------------------------------------------------------------------------- state


def test_quantile_column_names_levels_in_percent():
    assert quantile_column(0.1) == "p10"
    assert quantile_column(0.5) == "p50"
    assert quantile_column(0.9) == "p90"
    assert quantile_column(0.025) == "p2_5"
    assert quantile_column(0.975) == "p97_5"
    assert quantile_column(0.05) == "p5"


def test_pipeline_state_round_trips_through_json(trained):
    _, forecaster = trained
    state = forecaster.state
    d = state.to_dict()
    assert d["format"] == "rnn-forecast/pipeline-v1"
    back = PipelineState.from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == d
    assert back.window == state.window and back.features == state.features
    assert back.schema == state.schema and back.raw_schema == state.raw_schema
    assert back.quantiles == (0.1, 0.5, 0.9) and back.freq == state.freq == "B"
    frame = RAW.groupby("series").tail(5).rename(columns={"value": "value_log_return"})
    frame = frame.assign(value_log_return=np.linspace(-0.02, 0.02, len(frame)))
    np.testing.assert_array_equal(
        back.scaler.transform(frame)["value_log_return"],
        state.scaler.transform(frame)["value_log_return"],
    )


def test_pipeline_state_of_another_format_is_refused(trained):
    d = {**trained[1].state.to_dict(), "format": "rnn-forecast/pipeline-v0"}
    with pytest.raises(DataValidationError) as err:
        PipelineState.from_dict(d)
    assert str(err.value) == (
        "Unknown pipeline state format 'rnn-forecast/pipeline-v0'; "
        "expected 'rnn-forecast/pipeline-v1'."
    )


def test_min_rows_is_the_window_plus_warm_up_plus_calibration(trained):
    _, forecaster = trained
    state = forecaster.state
    assert state.features.warmup == 1  # a log return needs the previous price
    assert state.min_rows == LOOKBACK + 1
    assert replace(state, calibration_windows=7).min_rows == LOOKBACK + 1 + 7 + H - 1
    dynamic = replace(state, window=WindowSpec(lookback=LOOKBACK, horizon=H, min_lookback=5))
    assert dynamic.min_rows == 5 + 1


def test_the_forecaster_takes_exactly_min_rows_of_history(trained):
    _, forecaster = trained
    need = forecaster.state.min_rows
    end = RAW["timestamp"].iloc[500]
    assert len(forecaster.predict(_history(end, rows=need))) == len(SERIES) * H
    with pytest.raises(DataValidationError) as err:
        forecaster.predict(_history(end, rows=need - 1))
    assert f"History too short: 'CAC' has {need - 1}, 'DAX' has {need - 1}" in str(err.value)
    assert f"needs at least {need} rows per series ({LOOKBACK} for the window, 1 for" in str(
        err.value
    )


def test_output_and_required_columns(trained):
    _, forecaster = trained
    state = forecaster.state
    assert state.output_columns == [
        "series",
        "timestamp",
        "step",
        "target",
        "forecast",
        "p10",
        "p50",
        "p90",
    ]
    assert replace(state, quantiles=()).output_columns[-1] == "forecast"
    assert forecaster.required_columns == ["timestamp", "series", "value"]
    got = forecaster.predict(_history(RAW["timestamp"].iloc[700]))
    assert list(got.columns) == state.output_columns
    with pytest.raises(DataValidationError) as err:
        forecaster.predict(_history(RAW["timestamp"].iloc[700]).drop(columns="value"))
    assert str(err.value) == (
        "The following columns are missing: ['value']. "
        "Expected columns: ['timestamp', 'series', 'value']"
    )


# ----------------------------------------------------------------------------- persistence


def test_save_and_load_give_identical_forecasts(trained, tmp_path):
    _, forecaster = trained
    folder = forecaster.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["model.keras", "pipeline.json"]
    assert json.loads((folder / "pipeline.json").read_text()) == forecaster.state.to_dict()
    loaded = Forecaster.load(folder)
    assert loaded.state.to_dict() == forecaster.state.to_dict()
    for end in (300, 900, 1500):
        history = _history(RAW["timestamp"].iloc[end])
        pd.testing.assert_frame_equal(loaded.predict(history), forecaster.predict(history))


# ----------------------------------------------------------------------------- serving = evaluation


def test_serving_equals_evaluation_on_every_test_window(trained):
    """For every test origin, `predict` on the raw rows up to it gives the scored forecasts,
    dated with the data's next timestamps."""
    prepared, forecaster = trained
    scored = model_forecasts(forecaster.model, prepared, "test")
    windows = prepared.windows["test"]
    ids = np.asarray(windows.series_ids, dtype=object)[windows.series]
    assert sorted(set(ids)) == list(SERIES)
    frame = prepared.frame
    times = {s: frame.loc[frame["series"] == s, "timestamp"].to_numpy() for s in SERIES}
    n = {s: int((ids == s).sum()) for s in SERIES}
    assert len(set(n.values())) == 1 and n["CAC"] > 10  # the series share one calendar
    for back in range(n["CAC"]):
        # The `back`-th window from the end of a series has its origin H + back rows from it.
        origin = {s: times[s][len(times[s]) - H - 1 - back] for s in SERIES}
        request = pd.concat([_series_history(s, origin[s]) for s in SERIES], ignore_index=True)
        got = forecaster.predict(request)
        assert got["series"].tolist() == list(np.repeat(SERIES, H))
        for s in SERIES:
            i = np.flatnonzero(ids == s)[n[s] - 1 - back]
            mine = got[got["series"] == s]
            assert mine["step"].tolist() == list(range(1, H + 1))
            o = len(times[s]) - H - 1 - back
            np.testing.assert_array_equal(mine["timestamp"].to_numpy(), times[s][o + 1 : o + 1 + H])
            np.testing.assert_allclose(
                mine["forecast"].to_numpy(), scored.point[i, :, 0], rtol=1e-5, atol=1e-7
            )
            np.testing.assert_allclose(
                mine[["p10", "p50", "p90"]].to_numpy(),
                scored.quantiles[i, :, 0],
                rtol=1e-5,
                atol=1e-7,
            )
            assert (mine["target"] == "value_log_return").all()


# ----------------------------------------------------------------------------- tracing


def _trace_count(model) -> int:
    """Traces of the model's predict function plus those of the fused layers' XLA loops."""
    loops = [f for f in vars(_kernels).values() if hasattr(f, "experimental_get_tracing_count")]
    assert loops, "the fused layers' loops are no longer tf.functions: update this test"
    count = model.predict_function.experimental_get_tracing_count()
    return count + sum(f.experimental_get_tracing_count() for f in loops)


def test_requests_of_any_number_of_series_reuse_one_trace(trained):
    """A server answers 1, 5, 7 or 100 series with the trace of its first request: no
    request retraces the predict function or the recurrent loops, and a series' forecasts do
    not depend on how many others share its request."""
    prepared, fitted = trained
    # One scaler for all series, so relabelled copies are valid series of their own.
    scaler = SeriesScaler(method=fitted.state.scaler.method, per_series=False)
    scaler.fit(prepared.split.train, prepared.schema)
    forecaster = Forecaster(fitted.model, replace(fitted.state, scaler=scaler))
    end = RAW["timestamp"].iloc[-1]
    copies = [
        _series_history(SERIES[i % 4], end - pd.Timedelta(days=7 * (i // 4))).assign(
            series=f"s{i:03d}"
        )
        for i in range(100)
    ]
    alone = forecaster.predict(copies[0])  # the first request traces (or reuses a trace)
    before = _trace_count(forecaster.model)
    for n in (5, 7, 100, 1):
        got = forecaster.predict(pd.concat(copies[:n], ignore_index=True))
        assert got["series"].nunique() == n
        first = got[got["series"] == "s000"].reset_index(drop=True)
        np.testing.assert_allclose(first["forecast"], alone["forecast"], rtol=0, atol=1e-6)
    assert _trace_count(forecaster.model) == before
