"""kill -9 during `forecast train`, then `--resume RUN_ID`: same run, same final weights."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from forecast.config import load_config
from forecast.jobs.train import train_job
from tests.faults.conftest import cli_env, run_cli

# The real CLI in a subprocess, with one callback added that reports the end of epoch 1
# (after that epoch's checkpoint is written) and then waits to be killed.
_KILLABLE = textwrap.dedent(
    """
    import sys, time
    import keras
    import forecast.jobs.train as job

    class WaitForKill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                print("CHECKPOINTED", flush=True)
                time.sleep(600)

    real = job.train_model
    job.train_model = lambda *a, callbacks=(), **kw: real(
        *a, callbacks=[*callbacks, WaitForKill()], **kw
    )
    from forecast.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _weights(model_uri: str) -> list[np.ndarray]:
    model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    return model.forecaster.model.get_weights()


@pytest.mark.slow
def test_killed_train_resumes_into_the_same_run_with_the_same_weights(tmp_path, tiny_config):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = tmp_path / "killable.py"
    script.write_text(_KILLABLE)
    args = ["train", str(tiny_config), "--set", f"tracking.tracking_uri={store}"]
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # Meanwhile, the same config uninterrupted, in this process.
        config = load_config(tiny_config, (f"tracking.tracking_uri={store}",))
        straight = train_job(config, register=False)
        assert proc.stdout.readline().strip() == "CHECKPOINTED"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(config.experiment)
    killed = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.info.run_id != straight.run_id
    ]
    assert len(killed) == 1 and killed[0].info.status == "RUNNING"
    run_id = killed[0].info.run_id
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1]

    res = run_cli(*args, "--resume", run_id, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"run {run_id}" in res.stdout
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["forecast.resumed_from_epoch"] == "2"
    assert "error" not in run.data.tags
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1, 2]
    # Nothing left behind: the checkpoint went with the logged model.
    assert not list(tmp_path.glob("mlruns/*/*/artifacts/checkpoints"))

    model_uri = next(line for line in res.stdout.splitlines() if line.startswith("model: "))[7:]
    for got, want in zip(_weights(model_uri), straight.fitted.model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    metrics = run.data.metrics
    assert metrics["val_mase"] == pytest.approx(
        client.get_run(straight.run_id).data.metrics["val_mase"], abs=1e-6
    )
