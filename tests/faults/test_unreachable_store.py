"""An unreachable tracking server: a bounded retry and one line, before any training."""

from __future__ import annotations

import time

import pytest

from forecast.cli import main
from tests.faults.conftest import run_cli

DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there


def test_train_against_a_dead_server_fails_in_seconds_with_one_line(tmp_path, tiny_config):
    started = time.monotonic()
    res = run_cli("train", str(tiny_config), "--set", f"tracking.tracking_uri={DEAD}", cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(
        f"forecast: error: tracking server {DEAD} is not reachable after 3 tries in "
    )
    assert "(Connection refused); start it, or point tracking.tracking_uri" in lines[0]
    assert time.monotonic() - started < 60  # was 250 s of MLflow's retries, then a traceback
    assert not (tmp_path / "mlruns").exists()  # refused before any work


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_mlflow_retry_settings_bound_the_probe(tmp_path, tiny_config, monkeypatch, capsys, command):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    started = time.monotonic()
    code = main([command, str(tiny_config), "--set", f"tracking.tracking_uri={DEAD}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"forecast: error: tracking server {DEAD} is not reachable after 1 tries")
    assert time.monotonic() - started < 10
