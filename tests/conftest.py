"""Test-wide settings: quiet TensorFlow, a temporary MLflow store, deterministic seeds."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
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

# The longest test files, longest first (seconds of one CI run, `--durations`). `make test`
# keeps each file on one pytest-xdist worker (--dist loadfile) and hands files out in
# collection order (--no-loadscope-reorder): a long file handed out last kept one worker busy
# minutes after the other had finished. The rest keep their order.
LONGEST_FIRST = (
    "test_shipped_configs.py",  # 6 trainings, each served by `mlflow models serve`: ~220 s
    "test_notebooks.py",  # 3 notebooks in fresh kernels: ~150 s
    "forecast/training/test_distribute.py",  # 3 fresh interpreters with TensorFlow: ~150 s
    "forecast/test_cli.py",  # CLI subprocesses, train/predict round trip: ~90 s
    "faults/test_concurrent_store.py",  # three jobs against one tracking server: ~70 s
    "forecast/serving/test_local_server.py",  # the served model fixture: ~60 s
    "forecast/serving/test_spark.py",  # a local Spark: ~50 s
    "faults/test_kill_resume.py",  # a job killed and resumed: ~35 s
)


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).parent
    missing = [name for name in LONGEST_FIRST if not (tests / name).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names no file: {missing}")
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item) -> int:
        path = item.path
        return (
            rank.get(path.relative_to(tests).as_posix(), len(rank))
            if path.is_relative_to(tests)
            else len(rank)
        )

    items.sort(key=key)  # stable: the other files and each file's tests keep their order


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """Every test gets its own tracking store; nothing is written to the working directory."""
    store = tmp_path / "mlflow"
    store.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{store / 'mlflow.db'}")
    if "mlflow" in sys.modules:
        # Jobs call mlflow.set_tracking_uri, a process-wide setting that outranks the
        # environment: point it at this test's store so no test sees another's runs.
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
        mlflow.set_registry_uri(f"sqlite:///{store / 'mlflow.db'}")
    # MLflow puts artifacts under ./mlruns relative to the working directory even with a
    # SQLite store, so every test runs from its own temporary directory.
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def _mlflow_store_template(tmp_path_factory):
    """An MLflow SQLite store with its tables created once: migrating costs ~1 s per store."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow_template")
    # The Default experiment created with the tables takes ./mlruns of the current directory
    # as its artifact location: make that a temporary folder, never the checkout.
    with contextlib.chdir(folder):
        MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def migrated_mlflow_store(_isolated_mlflow, _mlflow_store_template, tmp_path):
    """Still one store per test, started from the migrated template (for MLflow-heavy modules)."""
    shutil.copyfile(_mlflow_store_template, tmp_path / "mlflow" / "mlflow.db")


@contextlib.contextmanager
def use_store(uri: str):
    """Point MLflow at `uri` for the block, then drop the global URIs again.

    The global URI outranks the per-test environment of `_isolated_mlflow`, so it must not
    leak into other tests; MLflow also rewrites the environment variables, which are restored.
    """
    import mlflow

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {name: os.environ.get(name) for name in names}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
