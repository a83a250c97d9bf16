"""Several jobs at the same moment on one store: a new SQLite file, an initialised one, and
an `mlflow server` on loopback (the production setup). Real processes, started together."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from forecast.serving.local_server import free_port
from forecast.tracking.store import open_store
from tests.faults.conftest import cli_env

JOB = Path(__file__).with_name("store_job.py")
GAP_S = 3.0  # between rounds: longer than one round takes on an idle machine


def run_together(rounds_per_process: list[list[tuple[str, float]]], cwd: Path) -> list[str]:
    """Start one store_job.py per list of rounds; release them at once; their output lines."""
    procs = []
    for rounds in rounds_per_process:
        args = [str(x) for uri, metric in rounds for x in (uri, metric)]
        procs.append(
            subprocess.Popen(
                [sys.executable, str(JOB), *args],
                cwd=cwd,
                env=cli_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "READY"
        start = time.time() + 1.0
        for proc in procs:
            proc.stdin.write(f"GO {start} {GAP_S}\n")
            proc.stdin.close()
        outputs = [proc.stdout.read() for proc in procs]
        for proc in procs:
            proc.wait(timeout=300)
        return outputs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def assert_champion_is_best(uri: str, runs: int) -> None:
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("concurrent")
    statuses = [r.info.status for r in client.search_runs([experiment.experiment_id])]
    assert statuses == ["FINISHED"] * runs
    versions = client.search_model_versions("name = 'concurrent'")
    assert len(versions) == runs
    best = min(versions, key=lambda v: (float(v.tags["val_mase"]), int(v.version)))
    assert client.get_registered_model("concurrent").aliases["champion"] == best.version


@pytest.mark.slow
def test_two_jobs_at_once_on_new_and_on_initialised_sqlite_stores(tmp_path):
    new = [f"sqlite:///{tmp_path / 'new.db'}"]
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    with contextlib.chdir(tmp_path):
        open_store(shared)  # initialised before the jobs start
    # A round on a new store, then one on the initialised one (each job of a round
    # starts in the same moment; more rounds cost ~10 s each here); metrics all differ.
    plan = [
        [(uri, 1.0 + i + 0.5 * p) for i, uri in enumerate(new)] + [(shared, 2.0 - 0.5 * p)]
        for p in range(2)
    ]
    outputs = run_together(plan, tmp_path)
    for out in outputs:
        assert [line for line in out.splitlines() if "FAILED" in line] == [], out
        assert out.count(" OK ") == 2, out
    for uri in new:
        assert_champion_is_best(uri, runs=2)
    assert_champion_is_best(shared, runs=2)


@contextlib.contextmanager
def tracking_server(tmp_path: Path):
    """`mlflow server` on 127.0.0.1 with a SQLite backend, stopped by its process group."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "server_artifacts"), "--workers", "1",
    ]  # fmt: skip
    env = {**cli_env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no mlflow server (exit {proc.poll()})") from None
                time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_three_jobs_at_once_against_one_tracking_server(tmp_path):
    with tracking_server(tmp_path) as url:
        # Three simultaneous jobs, each better than the last to start.
        outputs = run_together([[(url, 1.0 - 0.1 * p)] for p in range(3)], tmp_path)
        for out in outputs:
            assert out.count(" OK ") == 1, out
        assert_champion_is_best(url, runs=3)
