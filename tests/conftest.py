"""Test-wide settings: quiet TensorFlow, a temporary MLflow store, deterministic seeds."""

from __future__ import annotations

import os
from pathlib import Path

# Tests run from a temporary directory (see `_isolated_mlflow`); reach repo files through this.
REPO_ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """Every test gets its own tracking store; nothing is written to the working directory."""
    store = tmp_path / "mlflow"
    store.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{store / 'mlflow.db'}")
    # MLflow puts artifacts under ./mlruns relative to the working directory even with a
    # SQLite store, so every test runs from its own temporary directory.
    monkeypatch.chdir(tmp_path)
    yield
