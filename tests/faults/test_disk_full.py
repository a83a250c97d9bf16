"""A full disk: exit 2 with "no space left on device writing X", nothing partial left.

The disk is a real one: a tmpfs of a few pages mounted in a user and mount namespace
(`unshare`), so the write fails with ENOSPC exactly as on a full volume.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.faults.conftest import cli_env

LEGACY = REPO_ROOT / "tests/fixtures/legacy_pyfunc"


def _can_mount_tmpfs() -> bool:
    try:
        probe = subprocess.run(
            [
                "unshare",
                "--user",
                "--map-root-user",
                "--mount",
                "sh",
                "-c",
                "mount -t tmpfs -o size=4k tmpfs /mnt",
            ],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _can_mount_tmpfs(), reason="needs unshare to mount a small tmpfs (user namespaces)"
)


def on_small_disk(disk: Path, size_kb: int, command: str, *, fill: bool = False):
    """Run `command` with a tmpfs of `size_kb` KiB mounted on `disk` (filled up if asked)."""
    setup = f"mount -t tmpfs -o size={size_kb}k tmpfs {shlex.quote(str(disk))}"
    if fill:
        setup += f" && (dd if=/dev/zero of={shlex.quote(str(disk / 'filler'))} bs=4k || true)"
    return subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            f"{setup} 2>/dev/null && {command}",
        ],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def legacy_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("legacy")
    with tarfile.open(LEGACY / "model.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    return folder / "model"


def test_predict_onto_a_full_disk_exits_2_and_leaves_nothing(tmp_path, legacy_model):
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "forecasts.csv"
    predict = [
        sys.executable,
        "-m",
        "forecast",
        "predict",
        "--model",
        str(legacy_model),
        "--input",
        str(LEGACY / "request.parquet"),
        "--output",
        str(out),
    ]
    listing = f"ls -A {shlex.quote(str(disk))}"
    res = on_small_disk(disk, 16, f"{shlex.join(predict)}; echo EXIT $?; {listing}", fill=True)
    lines = res.stdout.strip().splitlines()
    assert "EXIT 2" in lines, res.stdout + res.stderr
    assert lines[-1] == "filler"  # no forecasts.csv and no temporary file beside it
    assert res.stderr.strip().splitlines()[-1] == (
        f"forecast: error: no space left on device writing {out}"
    )
    assert "Traceback" not in res.stderr


_LOG_MODEL = textwrap.dedent(
    """
    import json, os, sys
    import mlflow
    from forecast.serving.pyfunc import log_forecaster
    from pipelines.errors import DiskFullError

    model_dir, store, disk = sys.argv[1:]
    forecaster = mlflow.pyfunc.load_model(model_dir).unwrap_python_model().forecaster
    mlflow.set_tracking_uri(store)
    experiment = mlflow.create_experiment("full", artifact_location=disk)
    with mlflow.start_run(experiment_id=experiment):
        try:
            log_forecaster(forecaster)
            print("LOGGED")
        except DiskFullError as exc:
            print("ERROR", exc)
    left = [os.path.relpath(os.path.join(d, f), disk) for d, _, fs in os.walk(disk) for f in fs]
    print("LEFT", json.dumps(left))
    print("MODELS", len(mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")))
    """
)


def test_a_full_disk_while_logging_the_model_leaves_no_partial_model(tmp_path, legacy_model):
    disk = tmp_path / "artifacts"
    disk.mkdir()
    script = tmp_path / "log_model.py"
    script.write_text(_LOG_MODEL)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # 256 KiB: the run's folders fit, the model's copy of the package source does not.
    args = [sys.executable, str(script), str(legacy_model), store, str(disk)]
    res = on_small_disk(disk, 256, shlex.join(args))
    out = {
        line.split(" ", 1)[0]: line.split(" ", 1)[1]
        for line in res.stdout.splitlines()
        if line.split(" ", 1)[0] in ("ERROR", "LEFT", "MODELS", "LOGGED")
    }
    assert "ERROR" in out, res.stdout + res.stderr
    assert out["ERROR"].startswith("no space left on device writing model 'model' of run ")
    assert json.loads(out["LEFT"]) == []
    assert out["MODELS"] == "0"
