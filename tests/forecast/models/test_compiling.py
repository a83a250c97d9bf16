"""Training knobs, then the Keras-style cycle: build, fit one batch, save, reload, compare."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from forecast.models import (
    TEACHER_INPUT,
    OptimizerSpec,
    PinballLoss,
    compile_model,
    make_optimizer,
    with_teacher_targets,
)
from pipelines.errors import ConfigError
from tests.forecast.models.util import make_inputs, max_abs_diff, tiny_model


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("adam", keras.optimizers.Adam),
        ("adamw", keras.optimizers.AdamW),
        ("nadam", keras.optimizers.Nadam),
        ("rmsprop", keras.optimizers.RMSprop),
        ("sgd", keras.optimizers.SGD),
    ],
)
def test_optimizer_by_name(name, cls):
    assert type(make_optimizer(OptimizerSpec(optimizer=name))) is cls


def test_schedules_clipping_and_weight_decay_reach_the_optimizer():
    cosine = make_optimizer(OptimizerSpec(schedule="cosine", decay_steps=10, clipnorm=0.5))
    assert isinstance(cosine._learning_rate, keras.optimizers.schedules.CosineDecay)
    assert cosine._learning_rate.decay_steps == 10 and cosine.clipnorm == 0.5
    exp = make_optimizer(
        OptimizerSpec(schedule="exponential", decay_steps=4, decay_rate=0.1, clipvalue=2.0)
    )
    assert np.isclose(float(exp._learning_rate(4)), 1e-4)  # 1e-3 * 0.1 after 4 steps
    assert exp.clipvalue == 2.0
    assert make_optimizer(OptimizerSpec(optimizer="adamw", weight_decay=0.01)).weight_decay == 0.01


def test_float16_models_get_loss_scaling_and_others_do_not():
    half = compile_model(tiny_model(precision="mixed_float16"))
    assert isinstance(half.optimizer, keras.optimizers.LossScaleOptimizer)
    for precision in ("float32", "mixed_bfloat16"):
        model = compile_model(tiny_model(precision=precision))
        assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_compile_validates_a_training_dict():
    with pytest.raises(ConfigError, match="Did you mean 'clipnorm'"):
        compile_model(tiny_model(), {"clip_norm": 1.0})


def test_quantile_models_train_the_pinball_loss_on_quantiles():
    model = compile_model(tiny_model(quantiles=(0.1, 0.5, 0.9)), {"loss": "mae"})
    assert isinstance(model.loss["quantiles"], PinballLoss)
    assert model.loss["quantiles"].quantiles == (0.1, 0.5, 0.9)


# One variant per head / output kind, spreading the cells and options across them.
VARIANTS = [
    {"cell": "lstm", "units": (6, 4)},
    {"cell": "gru", "mode": "dynamic", "bidirectional": True, "quantiles": (0.1, 0.5, 0.9)},
    {"cell": "rnn", "recurrent_initializer": "identity", "l2": 1e-3, "future_mode": "per_step"},
    {"cell": "peephole_lstm", "mode": "dynamic", "head": "seq2seq", "quantiles": (0.2, 0.5)},
    {"cell": "lstm", "head": "seq2seq", "layer_norm": True, "dropout": 0.2, "unroll": True},
    {"cell": "gru", "quantiles": (0.1, 0.5, 0.9), "target_scaling": "window_rms"},
]


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda s: "-".join(map(str, s.values())))
def test_build_fit_save_reload_compare(spec, tmp_path):
    model = compile_model(
        tiny_model(**spec), {"optimizer": "sgd", "clipnorm": 1.0}, run_eagerly=True
    )
    x = make_inputs(model, batch=4)
    y = np.random.default_rng(3).normal(size=(4, 3, 1)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit({**x, TEACHER_INPUT: y}, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, model.get_weights(), strict=True))

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model) and loaded.spec == model.spec
    assert loaded.sizes == model.sizes
    assert max_abs_diff(loaded(x), model(x)) == 0.0
    assert max_abs_diff(loaded.predict(x, verbose=0), model.predict(x, verbose=0)) < 1e-6
    # The optimizer state comes back too: one more identical step gives identical weights.
    model.fit({**x, TEACHER_INPUT: y}, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    loaded.fit({**x, TEACHER_INPUT: y}, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    if not spec.get("dropout"):
        assert max_abs_diff(loaded(x), model(x)) < 1e-6


def test_fit_uses_teacher_forcing_in_graph_mode():
    """The compiled (tf.function) train step must see `training=True` and the true targets."""
    model = tiny_model(head="seq2seq", mode="dynamic", units=(4,))
    start = model.get_weights()
    x = make_inputs(model, batch=4)
    y = np.random.default_rng(4).normal(size=(4, 3, 1)).astype("float32")
    # The way a training loop adds the true targets to a tf.data pipeline.
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    dataset = dataset.map(lambda inputs, target: (with_teacher_targets(inputs, target), target))
    finals = {}
    for name, data, eager in (
        ("graph_forced", (dataset, None), False),
        ("eager_forced", ({**x, TEACHER_INPUT: y}, y), True),
        ("eager_free", (x, y), True),
    ):
        model.set_weights(start)
        compile_model(model, {"optimizer": "sgd", "learning_rate": 0.1}, run_eagerly=eager)
        model.fit(*data, epochs=1, verbose=0, shuffle=False, **({"batch_size": 4} if eager else {}))
        finals[name] = model.get_weights()

    def gap(a, b):
        return max(np.abs(u - v).max() for u, v in zip(finals[a], finals[b], strict=True))

    assert gap("graph_forced", "eager_forced") < 1e-6
    assert gap("graph_forced", "eager_free") > 1e-4
