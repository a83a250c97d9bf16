"""Runs whose process died are ended KILLED; which runs `--resume` accepts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient

from forecast.tracking.recovery import (
    OWNER_TAG,
    Owner,
    current_owner,
    process_start_time,
    resumable_run,
)
from forecast.tracking.runs import tracked_run
from pipelines.errors import ConfigError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _running_run(experiment_id: str, owner: str, job: str = "train") -> str:
    run = MlflowClient().create_run(experiment_id, tags={OWNER_TAG: owner, "forecast.job": job})
    return run.info.run_id


def test_the_next_job_ends_runs_whose_owner_died_as_killed(caplog):
    experiment = mlflow.create_experiment("recovery")
    host = socket.gethostname()
    dead = _running_run(experiment, f"{host}:{_dead_pid()}:")
    parent = os.getppid()
    alive = _running_run(experiment, Owner(host, parent, process_start_time(parent)).tag())
    elsewhere = _running_run(experiment, f"other-host:{_dead_pid()}:")
    with tracked_run(experiment="recovery", run_name="next", config={}):
        pass
    client = MlflowClient()
    run = client.get_run(dead)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"].startswith("KILLED: its process (pid ")
    assert f"resume it with `forecast train CONFIG --resume {dead}`" in caplog.text
    assert client.get_run(alive).info.status == "RUNNING"  # pytest's parent still runs
    assert client.get_run(elsewhere).info.status == "RUNNING"  # cannot be checked from here


def test_owner_tags_round_trip_and_a_recycled_pid_is_not_the_owner():
    me = current_owner()
    assert Owner.parse(me.tag()) == me and me.alive()
    assert not Owner(me.host, me.pid, "0").alive()  # same pid, another process start
    assert Owner.parse("garbage") is None


def test_resume_refuses_what_cannot_be_continued():
    with pytest.raises(ConfigError, match=r"--resume nope: no such run in tracking store"):
        resumable_run("nope", experiment="x", config={})
    with tracked_run(
        experiment="resume", run_name="done", config={"a": 1}, tags={"forecast.job": "train"}
    ) as run:
        finished = run.info.run_id
    with pytest.raises(ConfigError, match="the run finished; there is nothing to resume"):
        resumable_run(finished, experiment="resume", config={"a": 1})
    with pytest.raises(ConfigError, match="belongs to experiment 'resume', the config to 'other'"):
        resumable_run(finished, experiment="other", config={"a": 1})

    with pytest.raises(RuntimeError):
        with tracked_run(
            experiment="resume",
            run_name="x",
            config={"a": 1, "b": [1, 2]},
            tags={"forecast.job": "train"},
        ) as run:
            failed = run.info.run_id
            raise RuntimeError("boom")
    assert (
        resumable_run(failed, experiment="resume", config={"a": 1, "b": (1, 2)}).info.status
        == "FAILED"
    )
    with pytest.raises(ConfigError, match="these keys differ: a, b"):
        resumable_run(failed, experiment="resume", config={"a": 2, "b": [1]})
    with tracked_run(
        experiment="resume", run_name="live", config={}, tags={"forecast.job": "train"}
    ) as run:
        with pytest.raises(ConfigError, match=r"the run is still RUNNING in pid \d+ on "):
            resumable_run(run.info.run_id, experiment="resume", config={})
