"""Fixtures for the model tests: a fixed Keras seed per test."""

from __future__ import annotations

import keras
import pytest


@pytest.fixture(autouse=True)
def _keras_seed():
    keras.utils.set_random_seed(0)
    yield
