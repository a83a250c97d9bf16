"""Loading a job's data: the `data` row filters, and what a backtest on filtered data sees."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.config import ForecastConfig
from forecast.data import featurize, load_source
from forecast.jobs.backtest import fold_splits
from pipelines import datasets

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
