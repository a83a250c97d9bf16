"""Tracked runs against a real (temporary) MLflow store."""

from __future__ import annotations

import json
import math
import subprocess

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from mlflow import MlflowClient

import forecast
from forecast.tracking.runs import (
    DEFAULT_TRACKING_URI,
    MAX_PARAM_VALUE_LENGTH,
    MlflowEpochLogger,
    ensure_experiment,
    flatten_config,
    log_dataset,
    log_figure,
    log_metrics,
    log_table_csv,
    metric_names,
    resolve_tracking_uri,
    tracked_run,
)
from pipelines.errors import ConfigError, DataValidationError
from tests.conftest import REPO_ROOT

CONFIG = {
    "data": {"targets": ("value",), "freq": "D", "lookback": 24},
    "model": {"kind": "lstm", "units": [32, 16], "dropout": 0.1, "bidirectional": False},
    "train": {"epochs": 2, "seed": None, "optimizer": {"name": "adam", "lr": 1e-3}},
    "tracking": {},
}


pytestmark = pytest.mark.usefixtures("migrated_mlflow_store")


def _artifact_text(run_id: str, path: str) -> str:
    return mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")


# --- tracking URI -----------------------------------------------------------------------------


def test_resolve_tracking_uri_prefers_config_then_env_then_default(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_tracking_uri("http://tracking:5000") == "http://tracking:5000"
    assert resolve_tracking_uri(None) == "sqlite:///from-env.db"
    assert resolve_tracking_uri("  ") == "sqlite:///from-env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(None) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"


def test_artifact_location_applies_to_new_experiment(tmp_path):
    location = (tmp_path / "artifacts").as_uri()
    ensure_experiment("with-location", artifact_location=location)
    with tracked_run(experiment="with-location", run_name="r", config={"a": 1}) as run:
        pass
    assert mlflow.get_experiment_by_name("with-location").artifact_location == location
    assert run.info.artifact_uri.startswith(location)
    assert (tmp_path / "artifacts" / run.info.run_id / "artifacts" / "config.yaml").is_file()


# --- params -----------------------------------------------------------------------------------


def test_flatten_config_joins_keys_and_encodes_lists_as_json():
    flat = flatten_config(CONFIG)
    assert flat == {
        "data.targets": '["value"]',
        "data.freq": "D",
        "data.lookback": "24",
        "model.kind": "lstm",
        "model.units": "[32, 16]",
        "model.dropout": "0.1",
        "model.bidirectional": "False",
        "train.epochs": "2",
        "train.seed": "None",
        "train.optimizer.name": "adam",
        "train.optimizer.lr": "0.001",
        "tracking": "{}",
    }


def test_flatten_config_truncates_values_over_mlflow_limit():
    flat = flatten_config({"long": "x" * 7000, "short": "y" * MAX_PARAM_VALUE_LENGTH})
    assert len(flat["long"]) == MAX_PARAM_VALUE_LENGTH
    assert flat["long"].endswith("[truncated; the full value is in config.yaml]")
    assert flat["short"] == "y" * MAX_PARAM_VALUE_LENGTH


def test_flatten_config_rejects_colliding_keys_and_non_plain_values():
    with pytest.raises(ConfigError, match=r"Two config entries flatten to the same param 'a\.b'"):
        flatten_config({"a.b": 1, "a": {"b": 2}})
    with pytest.raises(ConfigError, match=r"config\.model\.shape is set: \{3\}"):
        flatten_config({"model": {"shape": {3}}})
    with pytest.raises(ConfigError, match=r"config\.model has key 3 of type int"):
        flatten_config({"model": {3: "x"}})
    with pytest.raises(ConfigError, match="`config` must be a mapping. Received: list"):
        flatten_config([("a", 1)])


_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.floats(allow_nan=False)
)
_keys = st.text(alphabet="abcxyz_", min_size=1, max_size=4)
_configs = st.recursive(
    st.dictionaries(_keys, _leaves, max_size=4),
    lambda inner: st.dictionaries(_keys, st.one_of(inner, st.lists(_leaves, max_size=3))),
    max_leaves=20,
)


@given(_configs)
def test_flatten_config_every_key_walks_back_to_its_leaf(config):
    flat = flatten_config(config)
    for key, text in flat.items():
        node = config
        for part in key.split("."):
            node = node[part]
        if isinstance(node, list | dict):
            assert json.loads(text) == node
        else:
            assert text == str(node)

    # Every non-empty-dict leaf appears exactly once.
    def count(node):
        return sum(count(v) if isinstance(v, dict) and v else 1 for v in node.values())

    assert len(flat) == count(config)


def test_tracked_run_round_trips_params_config_and_version_tags():
    with tracked_run(
        experiment="exp", run_name="lstm-1", config=CONFIG, tags={"dataset": "m4"}
    ) as run:
        assert mlflow.active_run().info.run_id == run.info.run_id
    assert mlflow.active_run() is None

    stored = MlflowClient().get_run(run.info.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.info.run_name == "lstm-1"
    assert stored.data.params == flatten_config(CONFIG)
    expected = {**CONFIG, "data": {**CONFIG["data"], "targets": ["value"]}}
    assert yaml.safe_load(_artifact_text(run.info.run_id, "config.yaml")) == expected
    assert stored.data.tags["forecast.version"] == forecast.__version__
    assert stored.data.tags["dataset"] == "m4"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    if head.returncode == 0:
        assert stored.data.tags["forecast.git_commit"] == head.stdout.strip()


def test_tracked_run_logs_more_params_than_one_mlflow_batch():
    config = {"grid": {f"p{i}": i for i in range(150)}}
    with tracked_run(experiment="exp", run_name=None, config=config) as run:
        pass
    assert len(MlflowClient().get_run(run.info.run_id).data.params) == 150


# --- failures and nesting ---------------------------------------------------------------------


def test_failing_body_ends_run_failed_with_error_tag_and_traceback():
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        with tracked_run(experiment="exp", run_name="boom", config=CONFIG) as run:
            _ = 1 / 0
    assert mlflow.active_run() is None
    stored = MlflowClient().get_run(run.info.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags["error"] == "ZeroDivisionError: division by zero"
    trace = _artifact_text(run.info.run_id, "error.txt")
    assert trace.startswith("Traceback (most recent call last)")
    assert "_ = 1 / 0" in trace


def test_interrupted_run_ends_killed():
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(experiment="exp", run_name="ctrl-c", config={}) as run:
            raise KeyboardInterrupt
    assert MlflowClient().get_run(run.info.run_id).info.status == "KILLED"


def test_error_tag_is_truncated_but_error_txt_keeps_everything():
    with pytest.raises(ValueError):
        with tracked_run(experiment="exp", run_name="long", config={}) as run:
            raise ValueError("z" * 2000)
    tag = MlflowClient().get_run(run.info.run_id).data.tags["error"]
    assert len(tag) == 500 and tag.endswith("...")
    assert "z" * 2000 in _artifact_text(run.info.run_id, "error.txt")


def test_nested_fold_runs_carry_parent_id_and_fail_alone():
    client = MlflowClient()
    with tracked_run(experiment="bt", run_name="backtest", config=CONFIG) as parent:
        folds = []
        for fold in range(2):
            with tracked_run(
                experiment="bt", run_name=f"fold-{fold}", config={"fold": fold}, nested=True
            ) as child:
                log_metrics({"mase": 1.0 + fold}, prefix="test")
            folds.append(child.info.run_id)
        with pytest.raises(RuntimeError, match="fold 2 diverged"):
            with tracked_run(experiment="bt", run_name="fold-2", config={}, nested=True) as bad:
                raise RuntimeError("fold 2 diverged")
        assert mlflow.active_run().info.run_id == parent.info.run_id

    for run_id in [*folds, bad.info.run_id]:
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert client.get_run(folds[1]).data.metrics == {"test_mase": 2.0}
    assert client.get_run(bad.info.run_id).info.status == "FAILED"
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_nesting_mistakes_are_refused_before_a_run_starts():
    with pytest.raises(ConfigError, match="`nested=True` needs an active parent run"):
        with tracked_run(experiment="exp", run_name="x", config={}, nested=True):
            pass
    with tracked_run(experiment="exp", run_name="outer", config={}) as outer:
        with pytest.raises(ConfigError, match=f"Run {outer.info.run_id} is still active"):
            with tracked_run(experiment="exp", run_name="inner", config={}):
                pass
        with pytest.raises(ConfigError, match="must share its parent's experiment"):
            with tracked_run(experiment="other", run_name="inner", config={}, nested=True):
                pass
    runs = mlflow.search_runs(experiment_names=["exp"], output_format="list")
    assert [r.info.run_name for r in runs] == ["outer"]
    assert mlflow.get_experiment_by_name("other") is None


# --- metrics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), math.inf, -np.inf, np.float32("nan")])
def test_log_metrics_refuses_non_finite_and_logs_nothing(bad):
    with tracked_run(experiment="exp", run_name="m", config={}) as run:
        with pytest.raises(DataValidationError, match=r"Metric 'val_mase' is (nan|inf|-inf)"):
            log_metrics({"mae": 1.5, "mase": bad}, prefix="val")
    assert MlflowClient().get_run(run.info.run_id).data.metrics == {}


def test_log_metrics_prefixes_and_steps():
    with tracked_run(experiment="exp", run_name="m", config={}) as run:
        assert log_metrics({"mase": 0.5}, prefix="val_", step=3) == {"val_mase": 0.5}
        with pytest.raises(DataValidationError, match=r"Metric 'mae' must be a number"):
            log_metrics({"mae": "low"})
    history = MlflowClient().get_metric_history(run.info.run_id, "val_mase")
    assert [(m.step, m.value) for m in history] == [(3, 0.5)]


def test_helpers_refuse_to_start_an_implicit_run():
    with pytest.raises(ConfigError, match="`log_metrics` needs an active MLflow run"):
        log_metrics({"mase": 1.0})
    assert mlflow.active_run() is None


def test_metric_names_for_model_and_baselines():
    names = metric_names(
        {"mase": 0.8, "mae": 2.0},
        {"naive": {"mase": 1.0, "mae": 2.5}, "seasonal_naive": {"mase": 0.9}},
    )
    assert names == {
        "test_mase": 0.8,
        "test_mae": 2.0,
        "naive_test_mase": 1.0,
        "naive_test_mae": 2.5,
        "seasonal_naive_test_mase": 0.9,
    }
    assert metric_names({"mase": 1.1}, {}, split="val") == {"val_mase": 1.1}
    with pytest.raises(ConfigError, match="Baseline names must be non-empty strings"):
        metric_names({}, {"": {"mase": 1.0}})


def test_epoch_logger_records_each_epoch_of_a_real_fit():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    with tracked_run(experiment="exp", run_name="fit", config={}) as run:
        history = model.fit(
            x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0,
            callbacks=[MlflowEpochLogger()],
        )  # fmt: skip
    client = MlflowClient()
    for key in ("loss", "mae", "val_loss", "val_mae"):
        logged = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in logged] == [0, 1]
        np.testing.assert_allclose([m.value for m in logged], history.history[key], rtol=1e-6)


def test_epoch_logger_needs_an_active_run():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ConfigError, match="`MlflowEpochLogger` needs an active MLflow run"):
        model.fit(np.ones((4, 1)), np.ones((4, 1)), verbose=0, callbacks=[MlflowEpochLogger()])


# --- lineage and artifacts --------------------------------------------------------------------


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=20, freq="D"),
            "value": np.arange(20, dtype=float),
            "temp": np.linspace(0.0, 1.0, 20),
        }
    )


def test_log_dataset_records_lineage_with_a_stable_digest():
    frame = _frame()
    with tracked_run(experiment="exp", run_name="data", config={}) as run:
        digest = log_dataset(frame, name="daily", targets="value", source="data/daily.csv")
        same = log_dataset(frame.copy(), name="daily", context="validation")
        changed = frame.assign(value=frame["value"] + 1.0)
        other = log_dataset(changed, name="daily-shifted", targets=["value", "temp"])
    assert digest == same
    assert other != digest

    inputs = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    by_name = {(i.dataset.name, i.dataset.digest): i for i in inputs}
    logged = by_name[("daily", digest)]
    tags = {t.key: t.value for t in logged.tags}
    assert tags["mlflow.data.context"] in {"training", "validation"}
    assert "value" in logged.dataset.schema
    multi_tags = {t.key: t.value for t in by_name[("daily-shifted", other)].tags}
    assert json.loads(multi_tags["forecast.targets"]) == ["value", "temp"]


def test_log_dataset_names_the_missing_target():
    with tracked_run(experiment="exp", run_name="data", config={}):
        with pytest.raises(DataValidationError, match=r"Target columns \['sales'\] are not in"):
            log_dataset(_frame(), name="daily", targets="sales")


def test_log_table_csv_round_trips_frame():
    table = pd.DataFrame({"fold": [0, 1], "mase": [0.9, 1.1]})
    with tracked_run(experiment="exp", run_name="t", config={}) as run:
        log_table_csv(table, "tables/folds.csv")
        with pytest.raises(ConfigError, match=r"`name` must end in '\.csv'"):
            log_table_csv(table, "folds.json")
    path = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/tables/folds.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), table)


def test_log_figure_stores_png_and_closes_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    with tracked_run(experiment="exp", run_name="fig", config={}) as run:
        log_figure(figure, "plots/forecast.png")
    assert not plt.fignum_exists(figure.number)
    path = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/plots/forecast.png")
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
