"""Pinball loss: the textbook formula, its minimizer, and Keras serialization."""

from __future__ import annotations

import keras
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from forecast.models import PinballLoss, pinball_loss

LEVELS = (0.1, 0.5, 0.9)
values = st.floats(-100, 100, width=32)


def test_matches_the_formula_written_out():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 3, 2)).astype("float32")
    pred = rng.normal(size=(4, 3, 2, 3)).astype("float32")
    expected = np.zeros((4, 3, 2))
    for k, q in enumerate(LEVELS):
        e = y - pred[..., k]
        expected += np.where(e >= 0, q * e, (q - 1) * e) / len(LEVELS)
    assert np.allclose(np.asarray(pinball_loss(y, pred, LEVELS)), expected, atol=1e-6)
    assert np.isclose(float(PinballLoss(LEVELS)(y, pred)), expected.mean(), atol=1e-6)


@given(hnp.arrays("float32", (2, 3, 1), elements=values), hnp.arrays("float32", 3, elements=values))
def test_is_non_negative_and_zero_only_at_the_target(y, offsets):
    pred = np.repeat(y[..., None], 3, axis=-1) + offsets
    loss = np.asarray(pinball_loss(y, pred, LEVELS))
    assert (loss >= 0).all()
    assert np.asarray(pinball_loss(y, np.repeat(y[..., None], 3, axis=-1), LEVELS)).max() == 0


def test_constant_minimizing_the_loss_is_the_empirical_quantile():
    samples = np.random.default_rng(1).exponential(size=(1000, 1, 1)).astype("float32")
    grid = np.linspace(0, 4, 401, dtype="float32")
    for q in LEVELS:
        losses = [
            float(np.mean(pinball_loss(samples, np.full((1000, 1, 1, 1), c, "float32"), (q,))))
            for c in grid
        ]
        best = grid[int(np.argmin(losses))]
        assert abs(best - np.quantile(samples, q)) < 0.02


def test_config_round_trip():
    loss = PinballLoss(LEVELS, reduction="sum")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, PinballLoss)
    assert restored.get_config() == loss.get_config()
    assert restored.quantiles == LEVELS
