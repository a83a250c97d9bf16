"""Training: early stopping, checkpoints, resume after a kill, seeded reproducibility."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from forecast.config import TrainConfig
from forecast.training.loop import fit, seed_everything
from pipelines.errors import ConfigError
from tests.conftest import REPO_ROOT


def _data(n=256, lookback=8, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n + lookback + 1, dtype=np.float32)
    series = np.sin(t / 3.0) + 0.05 * rng.standard_normal(t.shape).astype(np.float32)
    x = np.stack([series[i : i + lookback] for i in range(n)])[..., None]
    y = series[lookback : lookback + n][:, None]
    return x.astype(np.float32), y.astype(np.float32)


def _datasets(batch=32, seed=0):
    x, y = _data()
    train = tf.data.Dataset.from_tensor_slices((x[:192], y[:192]))
    train = train.shuffle(192, seed=seed).batch(batch)
    val = tf.data.Dataset.from_tensor_slices((x[192:], y[192:])).batch(batch)
    return train, val


def _model(lookback=8):
    inp = keras.Input((lookback, 1))
    h = keras.layers.LSTM(8)(inp)
    model = keras.Model(inp, keras.layers.Dense(1)(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def _run(seed):
    seed_everything(seed)
    train, val = _datasets(seed=seed)
    model = _model()
    res = fit(model, train, val, config=TrainConfig(epochs=3, patience=5, seed=seed, verbose=0))
    return res, model


def test_same_seed_same_metrics_to_1e6():
    a, _ = _run(7)
    b, _ = _run(7)
    assert a.epochs_run == b.epochs_run == 3
    np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=0, atol=1e-6)


def test_training_reduces_loss_and_restores_best_weights():
    res, model = _run(1)
    assert res.history["val_loss"][-1] < res.history["val_loss"][0] or res.best_epoch > 0
    _, val = _datasets()
    restored = model.evaluate(val, verbose=0)
    assert restored == pytest.approx(res.best_val_loss, rel=1e-4)


def test_early_stopping_stops_on_a_plateau():
    seed_everything(0)
    x = np.zeros((64, 8, 1), np.float32)
    y = np.random.default_rng(0).standard_normal((64, 1)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    inp = keras.Input((8, 1))
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(inp)))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")  # a learning rate of 0
    res = fit(model, ds, ds, config=TrainConfig(epochs=50, patience=2, verbose=0))
    assert res.epochs_run == 3  # the first epoch sets the best, two more without improvement


def test_checkpoints_written_each_epoch(tmp_path):
    seed_everything(0)
    train, val = _datasets()
    fit(_model(), train, val, config=TrainConfig(epochs=2, verbose=0), checkpoint_dir=tmp_path)
    assert (tmp_path / "last.keras").is_file()
    assert (tmp_path / "best.keras").is_file()
    # A finished run removes its resume backup.
    assert not (tmp_path / "backup").exists()


_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {root!r})
    import keras, numpy as np
    from tests.forecast.training.test_loop import _datasets, _model
    from forecast.config import TrainConfig
    from forecast.training.loop import fit, seed_everything

    class Slow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print("EPOCH", epoch, flush=True)
            if os.environ.get("SLOW"):
                time.sleep(30)

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            print("BEGIN", epoch, flush=True)

    seed_everything(0)
    train, val = _datasets()
    res = fit(_model(), train, val, config=TrainConfig(epochs=4, patience=10, verbose=0),
              checkpoint_dir=sys.argv[1], callbacks=[Slow(), Count()])
    print("DONE", res.epochs_run, flush=True)
    """
)


@pytest.mark.slow
def test_killed_run_resumes_from_last_epoch(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(_SCRIPT.format(root=str(REPO_ROOT)))
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "SLOW": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ckpt)], stdout=subprocess.PIPE, text=True, env=env
    )
    # Wait for the first finished epoch (its backup is written at epoch end), then kill hard.
    deadline = time.monotonic() + 120
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if line.startswith("EPOCH 0"):
            time.sleep(2)  # the backup callback runs in the same epoch-end pass
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert any(s.startswith("EPOCH 0") for s in seen), seen
    assert (ckpt / "backup").exists()

    env.pop("SLOW")
    out = subprocess.run(
        [sys.executable, str(script), str(ckpt)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    ).stdout
    begins = [line for line in out.splitlines() if line.startswith("BEGIN")]
    # Resumed: it does not start again at epoch 0.
    assert begins and begins[0] != "BEGIN 0", out
    assert "DONE" in out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "`epochs` must be an integer >= 1. Received: epochs=0"),
        ({"patience": -1}, "`patience` must be an integer >= 0"),
        ({"reduce_lr_factor": 1.5}, "`reduce_lr_factor` must be in (0, 1)"),
        ({"verbose": "loud"}, "`verbose` must be one of"),
    ],
)
def test_bad_train_config(kwargs, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**kwargs)
    assert message in str(err.value)


def test_unknown_key_gets_did_you_mean():
    with pytest.raises(ConfigError, match="Unknown key 'training.epoch'. Did you mean 'epochs'?"):
        TrainConfig.from_dict({"epoch": 3})


def test_uncompiled_model_is_refused():
    train, val = _datasets()
    inp = keras.Input((8, 1))
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(inp)))
    with pytest.raises(ConfigError, match="must be compiled"):
        fit(model, train, val, config=TrainConfig(epochs=1, verbose=0))
