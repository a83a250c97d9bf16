"""Config sections refuse bad values when the config loads, naming the key: booleans, the
promotion metric (validation only), numbers, tracking strings and the dataset name."""

from __future__ import annotations

import pytest

from forecast.config import PROMOTE_METRICS, ForecastConfig, load_config
from pipelines.errors import ConfigError
from tests.conftest import REPO_ROOT

SP500 = REPO_ROOT / "configs" / "sp500.yaml"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.deterministic=maybe", "`training.deterministic` must be true or false. "),
        ("scale.per_series=maybe", "`scale.per_series` must be true or false. "),
        ("tracking.register=nope", "`tracking.register` must be true or false. "),
        ("training.reduce_lr_factor=half", "`training.reduce_lr_factor` must be a number >= 0"),
        ("training.min_lr=tiny", "`training.min_lr` must be a number >= 0"),
        ("tracking.tracking_uri=123", "`tracking.tracking_uri` must be a non-empty string"),
        ("tracking.registered_model=''", "`tracking.registered_model` must be a non-empty"),
        (
            "tracking.promote_metric=test_mase",
            "the champion is never chosen on test data). Received: promote_metric='test_mase'",
        ),
        ("tracking.promote_metric=val_mas", "Did you mean 'val_mase'?"),
        ("data.dataset=sunspot", "Unknown dataset 'sunspot' in `data.dataset`. Did you mean"),
        ("data.calendar=XNYZ", "`data.calendar` 'XNYZ' is neither 'regular', 'business' nor"),
        ("data.calendar={days: Mon-Fry}", "`data.calendar.days` must be 'business', 'all'"),
        ("data.calendar={holidays: XX}", "`data.calendar.holidays` must be a country code"),
        ("training.refit=ful", "`training.refit` must be one of ['none', 'full']. Received: "),
        (
            "training.steps_per_execution=0",
            "`steps_per_execution` must be an integer >= 1. Received: steps_per_execution=0",
        ),
        (
            "split.test=soon",
            "`split.test` as text must be a timestamp such as '1958-01-01' or "
            "'2024-03-01 09:30'. Received: test='soon'",
        ),
        ("split.test=-3", "`split.test` must be a fraction in [0, 1), a number of steps >= 0"),
        (
            "split.validation=0.9",
            "`split.validation` and `split.test` fractions must sum to less than 1",
        ),
        (
            "split.validation=0",
            "`split.validation: 0` leaves no validation part, which early stopping and "
            "promotion (`tracking.promote_metric`) read",
        ),
    ],
)
def test_bad_values_fail_when_the_config_loads(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(SP500, (override,))
    assert message in str(err.value)


def test_yaml_booleans_and_every_promotion_metric_are_accepted():
    config = load_config(SP500, ("tracking.register=false", "scale.per_series=true"))
    assert config.tracking.register is False and config.scale.per_series is True
    for metric in PROMOTE_METRICS:  # sp500 has a quantile head, so pinball is allowed too
        assert load_config(SP500, (f"tracking.promote_metric={metric}",)).tracking.promote_metric
    assert "val_mase" in PROMOTE_METRICS and not any(m.startswith("test") for m in PROMOTE_METRICS)


def test_pinball_promotion_needs_a_quantile_head():
    config = {
        "name": "point",
        "data": {"dataset": "sunspots"},
        "window": {"lookback": 24, "horizon": 6},
        "tracking": {"promote_metric": "val_pinball_mean"},
    }
    with pytest.raises(ConfigError, match="needs a quantile head: set `model.quantiles`"):
        ForecastConfig.from_dict(config)
    config["model"] = {"quantiles": [0.1, 0.5, 0.9]}
    assert ForecastConfig.from_dict(config).tracking.promote_metric == "val_pinball_mean"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "evaluation.classical=[auto_etz]",
            "Unknown classical model 'auto_etz' in `evaluation.classical`. Did you mean 'auto_ets'?",
        ),
        ("evaluation.classical=mstl", "`evaluation.classical` must be a list of names from"),
        (
            "evaluation.classical_timeout=0",
            "`evaluation.classical_timeout` must be a number of seconds > 0 or null (no limit). "
            "Received: classical_timeout=0",
        ),
        ("evaluation.classical_step=0", "`evaluation.classical_step` must be an integer >= 1"),
        ("evaluation.classical_history=1.5", "`evaluation.classical_history` must be an integer"),
        ("evaluation.seasons=[1]", "`evaluation.seasons` must be a list of integers >= 2"),
    ],
)
def test_bad_classical_settings_fail_when_the_config_loads(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(SP500, (override,))
    assert message in str(err.value)


def test_classical_settings_round_trip():
    config = load_config(SP500, ("evaluation.classical=[mstl]", "evaluation.seasons=[336, 48]"))
    assert config.evaluation.classical == ("mstl",) and config.evaluation.seasons == (48, 336)
    assert ForecastConfig.from_dict(config.to_dict()) == config


def test_a_split_date_from_yaml_or_set_is_a_timestamp():
    # `--set split.test=1958-01-01`: YAML reads a date object, kept as its ISO text.
    config = load_config(SP500, ("split.test=1958-01-01", "split.validation=1957-01-01 09:30"))
    assert (config.split.test, config.split.validation) == ("1958-01-01", "1957-01-01 09:30")
    assert ForecastConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError) as err:
        load_config(SP500, ("split.test=1958-01-01", "split.validation=1959-01-01"))
    assert str(err.value) == (
        "`split.validation` must start before `split.test`. Received: "
        "validation='1959-01-01', test='1958-01-01'"
    )
