"""Bad job inputs fail before any training starts, with a message that names the problem."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import (
    _validate_model_alias_name,
    _validate_model_alias_name_reserved,
    _validate_model_name,
)

from forecast.config import ForecastConfig, ModelSpec, TrainConfig, load_config
from forecast.config.mlflow_names import check_alias, check_model_name
from forecast.config.model import recurrent_weights
from forecast.data import prepare
from forecast.models import build_model, compile_model
from forecast.training.loop import fit
from pipelines.errors import ConfigError, ForecastError
from tests.conftest import REPO_ROOT

BASE = {
    "name": "bad",
    "data": {"dataset": "sunspots", "last_n": 240},
    "window": {"lookback": 24, "horizon": 6},
    "split": {"validation": 0.2, "test": 0.2},
    "evaluation": {"season": 12},
}


def _config(**sections):
    d = {**BASE}
    for key, value in sections.items():
        d[key] = {**d.get(key, {}), **value}
    return ForecastConfig.from_dict(d)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        # The test part (10 months) is shorter than one forecast (24 months).
        ({"split": {"test": 10}, "window": {"horizon": 24}}, "test"),
        # A season longer than the history a window sees: refused when the config loads.
        (
            {"evaluation": {"season": 48}},
            "`evaluation.season` (48) must be shorter than `window.lookback` (24)",
        ),
        # A season longer than the whole (training) series.
        (
            {"evaluation": {"season": 500, "baselines": ["naive"]}},
            "The season (500 steps) is longer than the training part of the series (144 steps)",
        ),
    ],
)
def test_bad_data_settings_fail_in_prepare(sections, message):
    with pytest.raises(ForecastError) as err:  # at config load, or in prepare before training
        prepare(_config(**sections))
    assert message in str(err.value)


def test_horizon_longer_than_test_period_names_both():
    with pytest.raises(ConfigError) as err:
        prepare(_config(split={"test": 10}, window={"horizon": 24}))
    text = str(err.value)
    assert "horizon" in text and "24" in text and "10" in text


@pytest.mark.parametrize(
    ("quantiles", "message"),
    [
        ([0.1, 0.5, 1.2], "strictly increasing levels in (0, 1)"),
        ([0.9, 0.5, 0.1], "strictly increasing levels in (0, 1)"),
        ([0.0, 0.5], "strictly increasing levels in (0, 1)"),
        ([0.1, 0.9], "include 0.5"),
    ],
)
def test_bad_quantiles_fail_when_the_config_loads(quantiles, message):
    with pytest.raises(ConfigError) as err:
        _config(model={"quantiles": quantiles})
    assert message in str(err.value)


def test_model_and_data_with_different_feature_counts():
    model = compile_model(
        build_model({"units": [4]}, n_features=3, n_targets=1, horizon=2, lookback=5)
    )
    x = {"past": np.zeros((8, 5, 5), np.float32)}
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros((8, 2, 1), np.float32))).batch(4)
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(ConfigError) as err:
        fit(model, ds, ds, config=TrainConfig(epochs=1, verbose=0))
    assert "Input 'past' has 5 features per window but the model was built for 3" in str(err.value)
    # Nothing was trained.
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


# ------------------------------------------------------------------ refused at config load
# Issue 17: every input below was accepted, or failed only after training, or with a
# traceback. Each is now one line from `forecast train` (exit 2) before TensorFlow loads.

SP500 = REPO_ROOT / "configs" / "sp500.yaml"
AT_LOAD = [
    ("training.deterministic=maybe", "`training.deterministic` must be true or false."),
    ("scale.per_series=maybe", "`scale.per_series` must be true or false."),
    ("tracking.register=nope", "`tracking.register` must be true or false."),
    ("tracking.promote_metric=test_mase", "the champion is never chosen on test data)"),
    ("tracking.promote_metric=val_mas", "Did you mean 'val_mase'?"),
    ("training.reduce_lr_factor=half", "`training.reduce_lr_factor` must be a number >= 0"),
    ("training.min_lr=tiny", "`training.min_lr` must be a number >= 0"),
    ("tracking.tracking_uri=123", "`tracking.tracking_uri` must be a non-empty string"),
    (
        "training.epochs=[",
        "--set training.epochs=[ is not valid YAML: expected the node content, but found "
        "'<stream end>' at line 1, column 2",
    ),
    ("training.epochs={a: 1", "--set training.epochs={a: 1 is not valid YAML: expected ','"),
    (
        "model.units=[100000000]",
        "`model.units` asks for at least 4e+16 recurrent weights (~6.4e+08 GB to train), more "
        "than the limit of 1e+08 (MAX_WEIGHTS in forecast/config/model.py). Received: "
        "units=[100000000]",
    ),
    ("model.units=[4000, 4000]", "`model.units` asks for at least 1.92e+08 recurrent weights"),
    (
        "tracking.alias=bad/alias",
        "`tracking.alias` may only contain letters, digits, '_' and '-' (at most 255 "
        "characters; MLflow's alias rule). Received: tracking.alias='bad/alias'",
    ),
    ("tracking.alias=has space", "`tracking.alias` may only contain letters, digits"),
    ("tracking.alias=''", "`tracking.alias` may only contain letters, digits"),
    ("tracking.alias=latest", "`tracking.alias` must not be 'latest' or 'v<number>'"),
    ("tracking.alias=V12", "MLflow reserves them for versions (models:/NAME@latest)"),
    (
        "tracking.registered_model=team/model",
        "`tracking.registered_model` must not contain ['/'] (MLflow refuses '/' and ':' in "
        "registered model names",
    ),
    ("tracking.registered_model=a:b", "`tracking.registered_model` must not contain [':']"),
    ("tracking.registered_model=..", "`tracking.registered_model` must not be '.', '..'"),
    ("tracking.registered_model=a/../b", "must not contain ['/']"),
    (
        "name=team/sp500",
        "`name` must not contain ['/'] (MLflow refuses '/' and ':' in registered model names",
    ),
    (
        "tracking.tracking_uri=sqlite:////nonexistent_dir/x.db",
        "`tracking.tracking_uri`: the folder '/nonexistent_dir' of the SQLite store does not "
        "exist; create it first (it is not created for you).",
    ),
    (
        "tracking.tracking_uri=sqlite:///no/such/folder/x.db",
        "the folder 'no/such/folder' of the SQLite store does not exist",
    ),
    ("tracking.tracking_uri=sqlite:////tmp", "names a folder, not a database file"),
    ("tracking.tracking_uri=sqlite:x.db", "must look like sqlite:///relative/path.db"),
]


@pytest.mark.parametrize(("override", "message"), AT_LOAD, ids=[o for o, _ in AT_LOAD])
def test_bad_override_exits_2_with_one_line_before_any_work(tmp_path, capsys, override, message):
    from forecast.cli import main

    assert main(["train", str(SP500), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("forecast: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not Path("/nonexistent_dir").exists() and not (tmp_path / "no").exists()


CONFIG_FILES = [
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file (it holds NUL bytes)"),
    ("latin-1", "name: d\xe9mo\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 7)"),
    ("list", b"- 1\n- 2\n", "must hold a mapping of sections (name, data, window, ...) at the "),
    ("empty", b"", "at the top; it holds nothing (the file is empty)."),
    ("nested", b"[" * 100_000, "is not valid YAML: nested too deeply (more than 100 levels"),
    ("bad yaml", b"name: x\n  bad: [\n", "is not valid YAML: "),
    ("huge", b"#" * (2 << 20), "is 2,097,152 bytes; a YAML config is at most 1,048,576"),
]


@pytest.mark.parametrize(
    ("kind", "data", "message"), CONFIG_FILES, ids=[c[0] for c in CONFIG_FILES]
)
def test_a_config_file_that_is_not_yaml_exits_2_naming_it(tmp_path, capsys, kind, data, message):
    from forecast.cli import main

    path = tmp_path / "cfg.yaml"
    path.write_bytes(data)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"Config file '{path}' " in err and message in err, err


def test_a_folder_given_as_the_config_is_named(tmp_path, capsys):
    from forecast.cli import main

    assert main(["train", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"forecast: error: Config file '{tmp_path}' is a folder; expected a YAML file.\n"


def test_good_registry_names_and_stores_still_load(tmp_path):
    config = load_config(
        SP500,
        (
            "tracking.alias=prod-1_b",
            "tracking.registered_model=sp500.v2 daily",
            f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        ),
    )
    assert config.tracking.alias == "prod-1_b"
    assert config.tracking.registered_model == "sp500.v2 daily"


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@given(TEXT | st.sampled_from(["latest", "LATEST", "v1", "V12", "v", "a-b_c", "x/y", "a b"]))
def test_alias_rule_is_mlflows(alias):
    try:
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
        mlflow_ok = True
    except MlflowException:
        mlflow_ok = False
    try:
        check_alias("tracking.alias", alias)
        ours = True
    except ConfigError:
        ours = False
    # MLflow's `^[\w\-]*$` also matches before a final newline ("prod\n"): ours does not.
    assert ours == mlflow_ok or (mlflow_ok and alias.endswith("\n")), alias


@given(TEXT | st.sampled_from(["a/b", "a:b", ".", "..", "../a", "a/./b", " x", "m.v2"]))
def test_registered_model_name_rule_is_mlflows(name):
    try:
        _validate_model_name(name)
        mlflow_ok = True
    except MlflowException:
        mlflow_ok = False
    try:
        check_model_name("tracking.registered_model", name)
        ours = True
    except ConfigError:
        ours = False
    assert ours == mlflow_ok


@pytest.mark.parametrize(
    "spec",
    [
        {"units": [8]},
        {"units": [8, 4], "cell": "gru", "bidirectional": True},
        {"units": [6], "cell": "rnn", "bidirectional": True, "merge_mode": "sum"},
        {"units": [5, 3], "cell": "peephole_lstm", "head": "seq2seq"},
    ],
)
def test_size_estimate_is_a_lower_bound_on_the_built_model(spec):
    model = build_model(spec, n_features=1, n_targets=1, horizon=1, lookback=5)
    estimate = recurrent_weights(ModelSpec.from_dict(spec))
    assert 0.5 * model.count_params() < estimate <= model.count_params()


# ------------------------------------------------------------------ batch predict --model

MODEL_URIS = [
    ("s3://bucket/model", "reading models from s3:// needs the boto3 package, which is not "),
    ("gs://bucket/model", "reading models from gs:// needs the google.cloud.storage package"),
    ("http://127.0.0.1:9/model", "the http: scheme is not supported; use models:/NAME@ALIAS"),
    ("https://example.com/m", "the https: scheme is not supported; use models:/NAME@ALIAS"),
    ("ftp://example.com/m", "the ftp: scheme is not supported"),
    ("dbfs:/models/x", "the dbfs: scheme is not supported"),
    ("models:/", "is not a valid models:/ URI; expected models:/NAME@ALIAS, models:/NAME/"),
    ("models:/only-a-name", "is not a valid models:/ URI"),
    ("models:/a@b/c", "is not a valid models:/ URI"),
    ("runs:/", "is not a valid runs:/ URI"),
    ("/nonexistent/model", "no such folder, and not a URI; expected models:/NAME@ALIAS"),
    ("{tmp}", "is not a model folder: it holds neither pipeline.json (a saved forecaster) nor"),
]


@pytest.mark.parametrize(("uri", "message"), MODEL_URIS, ids=[u for u, _ in MODEL_URIS])
def test_unsupported_model_uri_exits_2_saying_what_is_supported(tmp_path, capsys, uri, message):
    from forecast.cli import main

    if uri.startswith("s3") and importlib.util.find_spec("boto3") is not None:
        pytest.skip("boto3 is installed here: s3:// is then supported")
    uri = uri.format(tmp=tmp_path)
    (tmp_path / "in.csv").write_text("timestamp,value\n2020-01-01,1\n")
    args = ["predict", "--model", uri, "--input", str(tmp_path / "in.csv")]
    assert main([*args, "--output", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert err == f"forecast: error: --model {uri!r}{err.split(repr(uri), 1)[1]}", err
    assert message in err and err.count("\n") == 1
    assert "runs:/RUN_ID/PATH, or a local folder" in err or "not a model folder" in err
    assert not (tmp_path / "out.csv").exists()
