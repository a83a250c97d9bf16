"""`training.strategy`: two-replica training equals one device, saves normally, checks early.

Two replicas on one CPU need two logical CPU devices, which TensorFlow only accepts before
it starts, and `multi_worker` must be created before any TensorFlow op: those checks run in
fresh Python processes (the two-replica checks and the too-late `multi_worker` share one).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from forecast.config import ForecastConfig, TrainConfig
from forecast.training.distribute import make_strategy, read_tf_config
from pipelines.errors import ConfigError
from tests.conftest import REPO_ROOT

# 365 sunspot months, 72 for validation and 72 for test: 192 training windows (six full
# batches of 32) and 67 validation windows (an odd count, split 34/33 over two replicas).
SMALL = {
    "name": "distribute",
    "data": {"dataset": "sunspots", "last_n": 365},
    "split": {"validation": 72, "test": 72},
    "window": {"lookback": 24, "horizon": 6},
    "model": {"units": [8]},
    "training": {"epochs": 2, "batch_size": 32, "verbose": 0, "deterministic": True},
    "evaluation": {"baselines": ["naive"]},
}


def _run_script(body: str, env: dict[str, str] | None = None, timeout: int = 240) -> dict:
    """Run `body` in a fresh interpreter; it prints one JSON line prefixed with RESULT."""
    script = f"import sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n" + textwrap.dedent(body)
    full_env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(REPO_ROOT),
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


_MIRRORED = """
import json, os, tempfile
import keras
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from forecast.config import ForecastConfig
from forecast.training.distribute import make_strategy, mirrored_devices
from forecast.training.fitting import train_model
from forecast.serving.forecaster import Forecaster
from forecast.models import build_model, compile_model
from forecast.data import load_source, prepare
from forecast.config import TrainConfig
from forecast.training.loop import fit, seed_everything
from pipelines.dataset import to_dataset
from pipelines.errors import ConfigError

SMALL = json.loads({small!r})
out = {{"devices": mirrored_devices()}}

# 1. The same seeds and batches on one device and on two replicas, through the package's
# build / compile / fit. The training order is a seeded shuffle that changes with every
# pass over the dataset; Keras reads one batch ahead of a distributed fit (to build the
# metrics), so the one-device run makes that same extra pass before fitting.
config = ForecastConfig.from_dict(SMALL)
prepared = prepare(config)
train, val = prepared.windows["train"], prepared.windows["validation"]
out["n_train"], out["n_val"] = len(train), len(val)
tc = TrainConfig(epochs=3, patience=10, batch_size=32, verbose=0)
runs = {{}}
for name in ("none", "mirrored"):
    strategy = make_strategy(name)
    seed_everything(0)
    with strategy.scope():
        model = build_model(
            config.model, n_features=train.n_features, n_targets=train.n_targets,
            horizon=train.spec.horizon, n_future=train.n_future, lookback=train.spec.lookback,
        )
        compile_model(model, config.optimizer)
    train_ds = to_dataset(train, batch_size=32, shuffle=True, seed=0)
    if name == "none":
        next(iter(train_ds))
    result = fit(model, train_ds, to_dataset(val, batch_size=34), config=tc)
    runs[name] = {{
        "replicas": strategy.num_replicas_in_sync,
        "weights": [w.numpy().tolist() for w in model.weights],
        "history": result.history,
    }}
out["runs"] = runs

# 2. The whole train_model path from the config, then a save / reload.
mirrored = ForecastConfig.from_dict({{**SMALL, "training": {{**SMALL["training"], "strategy": "mirrored"}}}})
class Replicas(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        out["train_model_replicas"] = self.model.distribute_strategy.num_replicas_in_sync

fitted = train_model(mirrored, prepared, callbacks=[Replicas()])
out["returned_model_has_strategy"] = fitted.model._distribute_strategy is not None
out["train_model_epochs"] = fitted.result.epochs_run
folder = tempfile.mkdtemp()
fitted.forecaster.save(folder)
loaded = Forecaster.load(folder)
history = load_source(mirrored.data).frame.tail(60)
a, b = fitted.forecaster.predict(history), loaded.predict(history)
out["forecast_diff"] = float(np.max(np.abs(a["forecast"].to_numpy() - b["forecast"].to_numpy())))
out["n_forecasts"] = len(a)
out["loaded_has_strategy"] = tf.distribute.has_strategy() or loaded.model._distribute_strategy is not None

# 3. A global batch that does not split evenly over the replicas is refused.
odd = ForecastConfig.from_dict({{**SMALL, "training": {{**SMALL["training"], "strategy": "mirrored", "batch_size": 33}}}})
try:
    train_model(odd, prepared)
    out["odd_batch_error"] = None
except ConfigError as err:
    out["odd_batch_error"] = str(err)

# 4. Masked, variable-length windows are refused on several replicas (see train_model).
dynamic = ForecastConfig.from_dict({{
    **SMALL,
    "window": {{"lookback": 24, "horizon": 6, "min_lookback": 6}},
    "model": {{"units": [8], "mode": "dynamic"}},
    "training": {{**SMALL["training"], "strategy": "mirrored"}},
}})
try:
    train_model(dynamic, prepare(dynamic))
    out["dynamic_error"] = None
except ConfigError as err:
    out["dynamic_error"] = str(err)

# 5. `multi_worker` asked for once TensorFlow has run ops (all of the above) is refused.
os.environ["TF_CONFIG"] = json.dumps({{
    "cluster": {{"worker": ["localhost:{port}"]}}, "task": {{"type": "worker", "index": 0}},
}})
try:
    make_strategy("multi_worker")
    out["late_multi_worker_error"] = None
except ConfigError as err:
    out["late_multi_worker_error"] = str(err)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def mirrored():
    # One interpreter for every check that needs TensorFlow already started: each fresh one
    # costs seconds of start-up.
    return _run_script(_MIRRORED.format(small=json.dumps(SMALL), port=_free_port()))


def test_mirrored_uses_every_logical_cpu(mirrored):
    assert mirrored["devices"] == [
        "/device:CPU:0",
        "/device:CPU:1",
    ] or mirrored["devices"] == [
        "/job:localhost/replica:0/task:0/device:CPU:0",
        "/job:localhost/replica:0/task:0/device:CPU:1",
    ]
    assert mirrored["runs"]["none"]["replicas"] == 1
    assert mirrored["runs"]["mirrored"]["replicas"] == 2
    assert mirrored["train_model_replicas"] == 2
    assert mirrored["train_model_epochs"] == 2
    assert (mirrored["n_train"], mirrored["n_val"]) == (192, 67)  # 67 splits 34 / 33


def test_two_replicas_equal_one_device(mirrored):
    # Each replica averages the loss over its half of the global batch and the gradients
    # are summed over replicas after dividing by their number: the full-batch gradient,
    # up to float32 rounding in a different summation order (measured: weights within
    # 3e-8, losses within 1.2e-7 after three epochs).
    one, two = mirrored["runs"]["none"], mirrored["runs"]["mirrored"]
    assert len(one["history"]["loss"]) == len(two["history"]["loss"]) == 3
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-6)
    assert len(one["weights"]) == len(two["weights"]) > 0
    for w1, w2 in zip(one["weights"], two["weights"], strict=True):
        np.testing.assert_allclose(np.asarray(w2), np.asarray(w1), rtol=0, atol=1e-6)
    # The weights moved: the comparison is not between two untrained models.
    assert one["history"]["loss"][-1] < one["history"]["loss"][0]


def test_model_trained_on_two_replicas_saves_and_reloads(mirrored):
    assert mirrored["n_forecasts"] == 6
    assert mirrored["forecast_diff"] <= 1e-6
    assert mirrored["loaded_has_strategy"] is False
    # train_model hands back a plain model: under the strategy, `predict_on_batch` would
    # return one copy of the outputs per replica.
    assert mirrored["returned_model_has_strategy"] is False


def test_global_batch_must_split_evenly_over_replicas(mirrored):
    assert mirrored["odd_batch_error"] == (
        "`training.batch_size` is the global batch, split evenly across the 2 replicas of "
        "`training.strategy: mirrored`: use a multiple of 2. Received: batch_size=33"
    )


def test_masked_windows_are_refused_on_several_replicas(mirrored):
    # Keras builds the metrics from the first batch averaged over the replicas, which
    # fails inside TensorFlow (AddN of bool) for the boolean mask: a clear error instead.
    assert mirrored["dynamic_error"].startswith(
        "`model.mode: dynamic` (masked, variable-length windows) cannot train on the 2 "
        "replicas of `training.strategy: mirrored`"
    )


def test_bad_strategy_names_the_key_and_the_choices():
    with pytest.raises(ConfigError) as err:
        ForecastConfig.from_dict({**SMALL, "training": {"strategy": "mirored"}})
    assert str(err.value) == (
        "`training.strategy` must be one of ['none', 'mirrored', 'multi_worker']. "
        "Received: training.strategy='mirored'. Did you mean 'mirrored'?"
    )
    assert TrainConfig().strategy == "none"
    assert TrainConfig(strategy="multi_worker").to_dict()["strategy"] == "multi_worker"


def test_none_is_the_current_strategy():
    import tensorflow as tf

    assert make_strategy("none") is tf.distribute.get_strategy()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{cluster: ", "TF_CONFIG must be JSON such as"),
        ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG needs a `cluster` with"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker"}}', "`task` with `type`"),
    ],
)
def test_multi_worker_needs_a_valid_tf_config(monkeypatch, value, message):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ConfigError, match=None) as err:
        make_strategy("multi_worker")
    assert message in str(err.value)


def test_multi_worker_without_tf_config_fails_before_any_work(monkeypatch):
    from forecast.jobs import backtest
    from forecast.jobs import train as jobs

    monkeypatch.delenv("TF_CONFIG", raising=False)

    def no_loading(*args, **kwargs):
        raise AssertionError("data was loaded before the strategy was checked")

    monkeypatch.setattr(jobs, "load_source", no_loading)
    monkeypatch.setattr(backtest, "load_source", no_loading)
    config = ForecastConfig.from_dict({**SMALL, "training": {"strategy": "multi_worker"}})
    for job in (jobs.train_job, backtest.run_backtest):
        with pytest.raises(ConfigError, match="needs the TF_CONFIG environment variable"):
            job(config)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_multi_worker_trains_from_tf_config():
    # A one-worker cluster: the real MultiWorkerMirroredStrategy and collective ops, one
    # process. The job creates the strategy before TensorFlow runs its first op.
    tf_config = {
        "cluster": {"worker": [f"localhost:{_free_port()}"]},
        "task": {"type": "worker", "index": 0},
    }
    out = _run_script(
        f"""
        import json
        import keras
        import tensorflow as tf
        from forecast.config import ForecastConfig
        from forecast.training.distribute import make_strategy
        from forecast.training.fitting import train_model
        from forecast.data import prepare
        small = json.loads({json.dumps(SMALL)!r})
        config = ForecastConfig.from_dict(
            {{**small, "training": {{**small["training"], "strategy": "multi_worker", "epochs": 1}}}}
        )
        strategy = make_strategy("multi_worker")
        seen = []

        class Seen(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                seen.append(self.model.distribute_strategy is strategy)

        fitted = train_model(config, prepare(config), callbacks=[Seen()])
        print("RESULT " + json.dumps({{
            "kind": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
            "replicas": strategy.num_replicas_in_sync,
            "trained_under_it": seen,
            "epochs": fitted.result.epochs_run,
        }}))
        """,
        env={"TF_CONFIG": json.dumps(tf_config)},
    )
    assert out == {
        "kind": True,
        "replicas": 1,
        "trained_under_it": [True],
        "epochs": 1,
    }


def test_multi_worker_after_tensorflow_started_is_a_config_error(mirrored):
    assert mirrored["late_multi_worker_error"].startswith(
        "`training.strategy: multi_worker` must be set up before TensorFlow runs any op"
    )


def test_multi_worker_on_several_workers_is_refused_before_starting(monkeypatch):
    # Measured with two local workers: Keras 3.15's fit fails on the first batch
    # (keras-team/keras#20329, #20585), so a cluster is refused before it spends any time.
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    )
    with pytest.raises(ConfigError) as err:
        make_strategy("multi_worker")
    assert str(err.value).startswith(
        "`training.strategy: multi_worker` cannot train on 2 workers with Keras 3."
    )
    assert "keras-team/keras#20329" in str(err.value)


def test_read_tf_config_returns_the_cluster(monkeypatch):
    value = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(value))
    assert read_tf_config() == value
