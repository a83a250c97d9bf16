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


def _run(seed, steps_per_execution=TrainConfig.steps_per_execution):
    seed_everything(seed)
    train, val = _datasets(seed=seed)
    model = _model()
    config = TrainConfig(
        epochs=3, patience=5, seed=seed, verbose=0, steps_per_execution=steps_per_execution
    )
    res = fit(model, train, val, config=config)
    assert model.steps_per_execution == steps_per_execution
    return res, model


def test_same_seed_same_metrics_to_1e6():
    """Also with one batch a call against 4 (6 batches an epoch: calls of 4 and 2 batches):
    `steps_per_execution` only moves the loop over batches into the graph."""
    a, first = _run(7, steps_per_execution=1)
    b, second = _run(7, steps_per_execution=4)
    assert a.epochs_run == b.epochs_run == 3
    np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=0, atol=1e-6)
    for w1, w2 in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-6)


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
    ckpt = tmp_path / "ckpt"
    fit(_model(), train, val, config=TrainConfig(epochs=2, verbose=0), checkpoint_dir=ckpt)
    # Only the newest complete epoch is kept, and `latest` names it.
    assert (ckpt / "latest").read_text() == "epoch-0002"
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch-0002", "latest"]
    assert {p.name for p in (ckpt / "epoch-0002").iterdir()} == {
        "weights.weights.h5",
        "best.npz",
        "state.json",
    }


def _fresh(seed=0):
    # What a new process does: seed, then build the data and the model again.
    seed_everything(seed)
    train, val = _datasets(seed=seed)
    return train, val, _model()


def test_resume_keeps_the_schedules_and_ends_with_the_uninterrupted_weights(tmp_path):
    # patience 1 and LR reduction after 1 bad epoch: their counters decide the later epochs.
    config = TrainConfig(epochs=6, patience=2, reduce_lr_patience=1, seed=0, verbose=0)
    train, val, model = _fresh()
    straight = fit(model, train, val, config=config)
    want = model.get_weights()
    lr = float(model.optimizer.learning_rate)

    train, val, model = _fresh()
    short = TrainConfig(epochs=3, patience=2, reduce_lr_patience=1, seed=0, verbose=0)
    fit(model, train, val, config=short, checkpoint_dir=tmp_path)  # "killed" after epoch 3
    train, val, model = _fresh()
    resumed = fit(model, train, val, config=config, checkpoint_dir=tmp_path)

    assert resumed.history == straight.history  # the epochs before the resume included
    assert (resumed.epochs_run, resumed.best_epoch) == (straight.epochs_run, straight.best_epoch)
    assert float(model.optimizer.learning_rate) == lr
    for got, exp in zip(model.get_weights(), want, strict=True):
        np.testing.assert_allclose(got, exp, rtol=0, atol=1e-6)


def test_resume_of_a_finished_fit_runs_no_epoch_and_restores_the_best_weights(tmp_path):
    config = TrainConfig(epochs=3, patience=5, seed=0, verbose=0)
    train, val, model = _fresh()
    first = fit(model, train, val, config=config, checkpoint_dir=tmp_path)
    want = model.get_weights()
    train, val, model = _fresh()
    again = fit(model, train, val, config=config, checkpoint_dir=tmp_path)
    assert again.history == first.history
    for got, exp in zip(model.get_weights(), want, strict=True):
        np.testing.assert_array_equal(got, exp)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    train, val, model = _fresh()
    fit(model, train, val, config=TrainConfig(epochs=1, verbose=0), checkpoint_dir=tmp_path)
    inp = keras.Input((8, 1))
    other = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(inp)))
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(ConfigError, match="does not fit this model"):
        fit(other, train, val, config=TrainConfig(epochs=2, verbose=0), checkpoint_dir=tmp_path)


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
    assert (ckpt / "latest").read_text() == "epoch-0001"

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
