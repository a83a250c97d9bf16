"""The job config: `data.start` / `data.end` are checked and kept as timestamp text."""

from __future__ import annotations

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
