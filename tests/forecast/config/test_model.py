"""ModelSpec / OptimizerSpec: validation messages and dict / YAML round trips."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from forecast.config import model as spec_module
from forecast.models import ModelSpec, OptimizerSpec, build_model
from pipelines.errors import ConfigError

model_specs = st.builds(
    ModelSpec,
    cell=st.sampled_from(spec_module.CELLS),
    units=st.lists(st.integers(1, 64), min_size=1, max_size=3).map(tuple),
    mode=st.sampled_from(spec_module.MODES),
    bidirectional=st.booleans(),
    merge_mode=st.sampled_from(spec_module.MERGE_MODES),
    dropout=st.floats(0.0, 0.9),
    recurrent_dropout=st.floats(0.0, 0.9),
    layer_norm=st.booleans(),
    head=st.sampled_from(spec_module.HEADS),
    future_mode=st.sampled_from(spec_module.FUTURE_MODES),
    quantiles=st.sampled_from([(), (0.5,), (0.1, 0.5, 0.9), (0.05, 0.25, 0.5, 0.75)]),
    kernel_initializer=st.sampled_from(spec_module.KERNEL_INITIALIZERS),
    l1=st.floats(0.0, 1.0),
    l2=st.floats(0.0, 1.0),
    precision=st.sampled_from(spec_module.PRECISIONS),
    target_scaling=st.sampled_from(spec_module.TARGET_SCALINGS),
)

training_specs = st.builds(
    OptimizerSpec,
    optimizer=st.sampled_from(spec_module.OPTIMIZERS),
    learning_rate=st.floats(1e-6, 1.0),
    schedule=st.sampled_from(spec_module.SCHEDULES),
    decay_steps=st.integers(1, 10_000),
    decay_rate=st.floats(0.01, 1.0),
    clipnorm=st.none() | st.floats(0.1, 10.0),
    weight_decay=st.none() | st.floats(0.0, 0.1),
    loss=st.sampled_from(spec_module.LOSSES),
    metrics=st.lists(st.sampled_from(spec_module.METRICS), max_size=3).map(tuple),
)


@given(model_specs)
def test_model_spec_round_trips_through_dict_and_yaml(spec):
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    section = yaml.safe_load(spec.to_yaml())
    assert list(section) == ["model"]
    assert ModelSpec.from_dict(section["model"]) == spec


@given(training_specs)
def test_training_spec_round_trips_through_dict_and_yaml(spec):
    assert OptimizerSpec.from_dict(spec.to_dict()) == spec
    assert OptimizerSpec.from_dict(yaml.safe_load(spec.to_yaml())["optimizer"]) == spec


def test_to_dict_holds_only_builtins_for_logging():
    d = ModelSpec(units=(8, 4), quantiles=(0.1, 0.5, 0.9)).to_dict()
    assert d["units"] == [8, 4] and d["quantiles"] == [0.1, 0.5, 0.9]
    assert yaml.safe_load(yaml.safe_dump(d)) == d


def test_units_accepts_an_int_or_a_list():
    assert ModelSpec(units=8).units == (8,)
    assert ModelSpec(units=[8, 4]).units == (8, 4)


@pytest.mark.parametrize(
    ("key", "hint"),
    [("unit", "units"), ("bidirectinal", "bidirectional"), ("quantile", "quantiles")],
)
def test_unknown_key_fails_with_did_you_mean(key, hint):
    with pytest.raises(ConfigError) as err:
        ModelSpec.from_dict({key: 1})
    assert f"Unknown ModelSpec keys ['{key}']" in str(err.value)
    assert f"Did you mean '{hint}'?" in str(err.value)


def test_unknown_training_key_fails_with_did_you_mean():
    with pytest.raises(ConfigError, match=r"\['learning_rat'\].*Did you mean 'learning_rate'"):
        OptimizerSpec.from_dict({"learning_rat": 0.1})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"cell": "lsmt"},
            "`cell` must be one of ['lstm', 'gru', 'rnn', 'peephole_lstm']. "
            "Received: cell='lsmt'. Did you mean 'lstm'?",
        ),
        (
            {"mode": "ragged"},
            "`mode` must be one of ['static', 'dynamic']. Received: mode='ragged'",
        ),
        ({"head": "seq"}, "`head` must be one of ['direct', 'seq2seq']"),
        ({"merge_mode": "avg"}, "Received: merge_mode='avg'. Did you mean 'ave'?"),
        ({"precision": "float16"}, "`precision` must be one of ['float32', 'mixed_float16'"),
        ({"units": 0}, "`units` must all be >= 1. Received: units=0"),
        ({"units": ()}, "`units` must be a positive integer or a non-empty list"),
        ({"units": "8"}, "Received: units='8'"),
        ({"dropout": 1.0}, "`dropout` must be a number in [0.0, 0.99]. Received: dropout=1.0"),
        ({"recurrent_dropout": -0.1}, "Received: recurrent_dropout=-0.1"),
        ({"l2": -1.0}, "`l2` must be a number >= 0.0. Received: l2=-1.0"),
        ({"bidirectional": "yes"}, "`bidirectional` must be true or false"),
        ({"quantiles": (0.1, 0.9)}, "include 0.5 (the median is the point forecast)"),
        ({"quantiles": (0.5, 0.1)}, "strictly increasing levels in (0, 1)"),
        ({"quantiles": (0.0, 0.5)}, "Received: quantiles=[0.0, 0.5]"),
        ({"quantiles": "median"}, "`quantiles` must be a list of numbers in (0, 1)"),
        ({"mode": "dynamic", "unroll": True}, "`unroll=True` needs a fixed time dimension"),
        (
            {"recurrent_initializer": "identity"},
            "IRNN initialization for cell='rnn' only. Received: "
            "recurrent_initializer='identity', cell='lstm'",
        ),
    ],
)
def test_bad_model_spec_names_field_allowed_values_and_received(fields, message):
    with pytest.raises(ConfigError) as err:
        ModelSpec(**fields)
    assert message in str(err.value)


def test_identity_initializer_is_allowed_for_simple_rnn():
    assert ModelSpec(cell="rnn", recurrent_initializer="identity").cell == "rnn"


def test_bad_spec_dict_fails_at_build_time_before_any_layer():
    with pytest.raises(ConfigError, match="`cell` must be one of .* Received: cell='transformer'"):
        build_model({"cell": "transformer"}, n_features=2, n_targets=1, horizon=2, lookback=4)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"optimizer": "adma"}, "Received: optimizer='adma'. Did you mean 'adam'?"),
        ({"schedule": "linear"}, "`schedule` must be one of ['constant', 'cosine', 'exponential']"),
        ({"loss": "pinball"}, "`loss` must be one of ['mse', 'mae', 'huber']"),
        ({"metrics": ("mape",)}, "`metrics` must be one of ['mae', 'mse', 'rmse']"),
        ({"learning_rate": 0}, "Received: learning_rate=0"),
        ({"decay_steps": 0}, "`decay_steps` must be an integer >= 1. Received: decay_steps=0"),
        ({"decay_rate": 1.5}, "`decay_rate` must be a number in [1e-12, 1.0]"),
        ({"clipnorm": -1.0}, "Received: clipnorm=-1.0"),
        (
            {"clipnorm": 1.0, "clipvalue": 0.5},
            "Set at most one of `clipnorm` and `clipvalue`. Received: clipnorm=1.0, clipvalue=0.5",
        ),
    ],
)
def test_bad_training_spec_names_field_and_received(fields, message):
    with pytest.raises(ConfigError) as err:
        OptimizerSpec(**fields)
    assert message in str(err.value)


def test_specs_are_frozen():
    with pytest.raises(AttributeError):
        ModelSpec().cell = "gru"  # type: ignore[misc]


# ------------------------------------------------------------------ issue 14 §2 options


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"target_centre": "median"}, "`target_centre` must be one of ['none', 'last', 'mean']"),
        (
            {"target_transform": "sqrt"},
            "`target_transform` must be one of ['none', 'log', 'boxcox']",
        ),
        (
            {"residual": "ets"},
            "`residual` must be one of ['none', 'seasonal_naive', 'exp_smoothing']",
        ),
        (
            {"residual_season": 12},
            "`residual_season` applies only with a residual base (seasonal_naive or exp",
        ),
        (
            {"residual": "seasonal_naive", "residual_season": 0},
            "`residual_season` must be >= 1. Received: residual_season=0",
        ),
        (
            {"residual": "seasonal_naive", "head": "seq2seq"},
            "`residual: seasonal_naive` corrects the direct head's forecasts",
        ),
        ({"head_layers": [64, 0]}, "`head_layers` must be a list of positive integers"),
        ({"head_layers": [8], "head": "seq2seq"}, "`head_layers` are Dense layers of the direct"),
        ({"ensemble": 0}, "`ensemble` must be between 1 and 20"),
        ({"ensemble": "3"}, "`ensemble` must be an integer >= 1. Received: '3'"),
    ],
)
def test_option_fields_are_checked_at_load(fields, message):
    with pytest.raises(ConfigError) as err:
        ModelSpec.from_dict(fields)
    assert message in str(err.value)


def test_option_fields_round_trip_through_a_dict():
    spec = ModelSpec(
        target_centre="last",
        target_transform="boxcox",
        residual="seasonal_naive",
        residual_season=12,
        head_layers=[256],
        ensemble=3,
    )
    assert spec.head_layers == (256,)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
