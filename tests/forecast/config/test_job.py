"""The job config: `data.start` / `data.end` are checked and kept as timestamp text; `model: auto`."""

from __future__ import annotations

import re

import pytest

from forecast.config import ForecastConfig, apply_overrides, load_config
from forecast.tracking.runs import flatten_config
from pipelines.errors import ConfigError

BASE = {
    "name": "dates",
    "data": {"dataset": "eustockmarkets"},
    "window": {"lookback": 20, "horizon": 5},
}


def _config(**data):
    return ForecastConfig.from_dict({**BASE, "data": {**BASE["data"], **data}})


def test_yaml_dates_become_iso_text_that_round_trips_and_logs(tmp_path):
    # Unquoted, YAML reads these as date / datetime objects, which MLflow params reject.
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "name: dates\n"
        "data:\n"
        "  dataset: eustockmarkets\n"
        "  start: 1992-01-02\n"
        "  end: 1997-07-24 16:30:00\n"
        "window: {lookback: 20, horizon: 5}\n"
    )
    config = load_config(path)
    assert config.data.start == "1992-01-02"
    assert config.data.end == "1997-07-24T16:30:00"
    assert ForecastConfig.from_dict(config.to_dict()) == config
    params = flatten_config(config.to_dict())
    assert params["data.start"] == "1992-01-02"
    assert params["data.end"] == "1997-07-24T16:30:00"


def test_date_overrides_are_parsed_like_the_file():
    # `--set data.end=1997-07-24` goes through the same YAML parsing.
    config = ForecastConfig.from_dict(apply_overrides(BASE, ["data.end=1997-07-24"]))
    assert config.data.end == "1997-07-24"


def test_timestamp_strings_are_kept_as_given():
    config = _config(start=" 1992-01-02 ", end="1997-07-24 16:00")
    assert (config.data.start, config.data.end) == ("1992-01-02", "1997-07-24 16:00")


@pytest.mark.parametrize(
    ("value", "received"),
    [
        ("notadate", "end='notadate'"),
        ("NaT", "end='NaT'"),
        ("", "end=''"),
        (12, "end=12"),
        (["1997-07-24"], "end=['1997-07-24']"),
    ],
)
def test_bad_end_names_the_key_and_the_value(value, received):
    with pytest.raises(ConfigError) as err:
        _config(end=value)
    text = str(err.value)
    assert text.startswith("`data.end` must be a date or timestamp")
    assert f"Received: {received}" in text


def test_bad_start_names_start():
    with pytest.raises(ConfigError, match=r"`data.start` must be a date or timestamp"):
        _config(start="soon")


def test_start_after_end_fails_when_the_config_loads():
    with pytest.raises(ConfigError) as err:
        _config(start="1998-01-01", end="1997-07-24")
    assert str(err.value) == (
        "`data.start` must not be after `data.end`: no row would be kept. "
        "Received: start='1998-01-01', end='1997-07-24'"
    )


AUTO = {"name": "a", "data": {"dataset": "sp500"}, "window": {"lookback": 10, "horizon": 2}}


def test_model_auto_loads_with_a_validated_budget_and_round_trips():
    config = ForecastConfig.from_dict({**AUTO, "model": "auto", "tuning": {"trials": 3}})
    assert config.auto and config.tuning.trials == 3 and config.tuning.timeout == 600.0
    d = config.to_dict()
    assert d["model"] == "auto"
    assert d["tuning"] == {"trials": 3, "timeout": 600.0, "seed": 0, "space": {}}
    assert ForecastConfig.from_dict(d) == config
    assert not ForecastConfig.from_dict({**AUTO, "model": {}}).auto
    # `auto: true` in a mapping keeps the keys the search leaves alone, e.g. the quantiles.
    kept = {"auto": True, "quantiles": [0.1, 0.5, 0.9], "dropout": 0.1}
    config = ForecastConfig.from_dict({**AUTO, "model": kept})
    assert config.auto and config.model.quantiles == (0.1, 0.5, 0.9)
    assert config.to_dict()["model"] == kept
    assert ForecastConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "lstm"}, "`model` must be a mapping of model settings, or 'auto' to let"),
        ({"model": "auto", "tuning": {"trials": 0}}, "`tuning.trials` must be between 1 and 200"),
        ({"model": "auto", "tuning": {"timeout": "1h"}}, "`tuning.timeout` must be a number"),
        ({"model": "auto", "tuning": {"trails": 2}}, "Unknown key 'tuning.trails'"),
        (
            {"model": "auto", "tuning": {"space": {"cell": ["tcn"]}}},
            "Received: cell=['tcn']; allowed: ['lstm', 'gru']",
        ),
        ({"tuning": {"trials": 2}}, "`tuning` is the search budget of `model: auto`"),
        ({"auto": True}, "Unknown key 'auto'. To let `forecast train` choose the model, write"),
        (
            {"model": {"auto": "yes"}},
            "`model.auto` must be true (or write `model: auto`). Received",
        ),
        (
            {"model": {"auto": True, "cell": "gru", "units": [8]}},
            "`model: auto` chooses ['cell', 'units'] itself; with `auto: true` the model section",
        ),
        (
            {"model": {"auto": True, "quantiles": [0.2]}},
            "`quantiles` must be strictly increasing levels in (0, 1) that include 0.5",
        ),
    ],
)
def test_model_auto_and_its_budget_are_refused_at_load_with_the_key(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ForecastConfig.from_dict({**AUTO, **changes})
