"""TensorFlow's thread pools in a served model: one share of the cores per server worker.

TensorFlow sizes its inter-op and intra-op pools to every core of the machine. With
``mlflow models serve --workers 2`` on 2 cores, both workers then run two-thread pools
and the fused RNN layers cut every batch in two groups, so four busy threads share two
cores and a forecast waits for threads of the other worker to be descheduled. Each worker
gets ``cores // workers`` threads (at least 1) instead.

The worker count is read from the command line uvicorn was started with (``--workers N``,
which `mlflow models serve -w N` passes on; uvicorn's spawned workers inherit it) or
``WEB_CONCURRENCY`` (uvicorn's own variable for it, which ``forecast serve --workers N`` sets
for each of its workers, `forecast.serving.workers`). ``FORECAST_TF_THREADS`` overrides the
result. Pools can only be sized before TensorFlow runs its first operation, so
`configure_threads` is called by the model-code file before the model loads; when
TensorFlow already runs (a model loaded in a notebook), the pools are left as they are.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

THREADS_ENV = "FORECAST_TF_THREADS"


def under_uvicorn(argv: Sequence[str] | None = None) -> bool:
    """This process is a uvicorn server's: `uvicorn ...` (mlflow models serve) or
    `python -m uvicorn ...` (forecast serve), or one of the workers it spawns."""
    argv = list(sys.argv if argv is None else argv)
    return bool(argv) and "uvicorn" in (Path(argv[0]).name, Path(argv[0]).parent.name)


def server_workers(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    """The uvicorn worker processes this process is one of (1 when not under uvicorn)."""
    argv = list(sys.argv if argv is None else argv)
    env = os.environ if env is None else env
    if under_uvicorn(argv):
        for i, arg in enumerate(argv):
            if arg == "--workers" and i + 1 < len(argv):
                return _positive(argv[i + 1], "--workers")
            if arg.startswith("--workers="):
                return _positive(arg.split("=", 1)[1], "--workers")
    if env.get("WEB_CONCURRENCY"):
        return _positive(env["WEB_CONCURRENCY"], "WEB_CONCURRENCY")
    return 1


def serving_threads(
    argv: Sequence[str] | None = None, env: dict[str, str] | None = None, cores: int | None = None
) -> int | None:
    """Threads per TensorFlow pool for this worker; None: leave TensorFlow's default."""
    env = os.environ if env is None else env
    if env.get(THREADS_ENV):
        return _positive(env[THREADS_ENV], THREADS_ENV)
    workers = server_workers(argv, env)
    if workers <= 1:
        return None
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // workers)


def configure_threads() -> int | None:
    """Size TensorFlow's pools for this worker (see the module docstring); returns the size."""
    threads = serving_threads()
    if threads is None:
        return None
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran an op in this process: too late
        log.info("TensorFlow already runs; its thread pools keep their size.")
        return None
    log.info("TensorFlow thread pools of %d for each of the server's workers.", threads)
    return threads


def _positive(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        from pipelines.errors import ConfigError

        raise ConfigError(f"`{name}` must be a whole number >= 1. Received: {name}={text!r}")
    return value
