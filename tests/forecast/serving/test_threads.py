"""TensorFlow pools per server worker: the worker count as uvicorn was told it."""

from __future__ import annotations

import pytest

from forecast.serving.threads import THREADS_ENV, server_workers, serving_threads
from pipelines.errors import ConfigError

UVICORN = ["/venv/bin/uvicorn", "--host", "127.0.0.1", "--port", "5000"]
APP = "mlflow.pyfunc.scoring_server.app:app"


@pytest.mark.parametrize(
    ("argv", "env", "workers"),
    [
        ([*UVICORN, "--workers", "2", APP], {}, 2),  # what `mlflow models serve -w 2` runs
        ([*UVICORN, "--workers=3", APP], {}, 3),
        (["/venv/lib/uvicorn/__main__.py", "--factory", "--workers", "2"], {}, 2),  # forecast serve
        ([*UVICORN, APP], {"WEB_CONCURRENCY": "4"}, 4),  # uvicorn's own variable
        ([*UVICORN, APP], {}, 1),
        (["python", "-m", "pytest", "--workers", "2"], {}, 1),  # not uvicorn: not ours to read
    ],
)
def test_worker_count_comes_from_uvicorns_command_line(argv, env, workers):
    assert server_workers(argv, env) == workers


def test_each_worker_gets_its_share_of_the_cores():
    two = [*UVICORN, "--workers", "2", APP]
    assert serving_threads(two, {}, cores=2) == 1
    assert serving_threads(two, {}, cores=8) == 4
    assert serving_threads([*UVICORN, "--workers", "3", APP], {}, cores=2) == 1  # at least 1
    assert serving_threads([*UVICORN, APP], {}, cores=2) is None  # one worker: TF's default
    assert serving_threads(two, {THREADS_ENV: "2"}, cores=2) == 2  # the override wins


@pytest.mark.parametrize(
    ("env", "name"),
    [({THREADS_ENV: "0"}, THREADS_ENV), ({"WEB_CONCURRENCY": "two"}, "WEB_CONCURRENCY")],
)
def test_a_bad_count_is_refused_naming_the_variable(env, name):
    with pytest.raises(
        ConfigError, match=f"`{name}` must be a whole number >= 1. Received: {name}="
    ):
        serving_threads([*UVICORN, APP], env, cores=2)
