"""Shared pieces of the fault suite: a tiny real config and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

# Trains in a few seconds: 360 monthly points, one GRU of 4 units.
TINY = {
    "name": "faults_sunspots",
    "data": {"dataset": "sunspots", "last_n": 360},
    "split": {"validation": 0.2, "test": 0.2},
    "window": {"lookback": 24, "horizon": 6},
    "model": {"cell": "gru", "units": [4]},
    "training": {"epochs": 3, "batch_size": 64, "verbose": 0, "patience": 5},
    "evaluation": {"season": 12},
}


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def run_cli(*args: str, cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "forecast", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def write_config(path: Path, **sections: dict) -> Path:
    config = {**TINY, **sections}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "tiny.yaml")
