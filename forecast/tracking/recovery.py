"""Runs whose process died: who owns a run, marking dead ones KILLED, resuming a train run.

Every run is tagged with its owner (``forecast.owner``: host, pid and the process's start
time, so a recycled pid is not mistaken for the owner). A job that starts in an experiment
ends the RUNNING runs whose owner on this host is gone as KILLED; runs owned by another
host are left alone (their owner cannot be checked from here). A killed train run keeps its
epoch checkpoint (`checkpoint_dir`), and ``forecast train CONFIG --resume RUN_ID`` continues
it in the same run.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from pipelines.errors import ConfigError

logger = logging.getLogger(__name__)

OWNER_TAG = "forecast.owner"
RESUMED_TAG = "forecast.resumed_from_epoch"
CHECKPOINT_ROOT_ENV = "FORECAST_CHECKPOINT_ROOT"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class Owner:
    """The process that runs a job."""

    host: str
    pid: int
    started: str  # /proc/<pid>/stat start time in clock ticks; "" where there is no /proc

    def tag(self) -> str:
        return f"{self.host}:{self.pid}:{self.started}"

    @classmethod
    def parse(cls, tag: str) -> Owner | None:
        host, _, rest = tag.rpartition(":")
        host, _, pid = host.rpartition(":")
        return cls(host, int(pid), rest) if host and pid.isdigit() else None

    def alive(self) -> bool:
        """Whether this process still runs (only answerable on its own host)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: it exists
            pass
        return not self.started or process_start_time(self.pid) == self.started


def process_start_time(pid: int) -> str:
    """The start time of a process (clock ticks after boot); "" where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces: count fields after its closing ")".
    return stat.rpartition(")")[2].split()[19]


@functools.cache
def current_owner() -> Owner:
    """This process as a run owner."""
    return Owner(socket.gethostname(), os.getpid(), process_start_time(os.getpid()))


def mark_dead_runs(experiment_id: str) -> list[str]:
    """End as KILLED the RUNNING runs of an experiment whose owner on this host is gone.

    Returns:
        The ids of the runs it ended.
    """
    client = mlflow.MlflowClient()
    me = current_owner()
    ended = []
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'")
    for run in runs:
        owner = Owner.parse(run.data.tags.get(OWNER_TAG, ""))
        if owner is None or owner.host != me.host or owner == me or owner.alive():
            continue
        message = (
            f"KILLED: its process (pid {owner.pid} on {owner.host}) ended without finishing "
            f"the run (kill -9, out of memory, power loss)"
        )
        client.set_tag(run.info.run_id, "error", message)
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        ended.append(run.info.run_id)
        job = run.data.tags.get("forecast.job")
        hint = f"; resume it with `forecast train CONFIG --resume {run.info.run_id}`"
        logger.warning("Run %s %s%s.", run.info.run_id, message[8:], hint if job == "train" else "")
    return ended


def checkpoint_dir(run: Run) -> Path:
    """Where the epoch checkpoint of a run lives: in its artifacts when they are local files.

    Runs whose artifacts go to a server or object store keep it in a run-keyed folder on
    this machine instead (``$FORECAST_CHECKPOINT_ROOT``, default
    ``~/.cache/forecast/checkpoints``): a resume must then run on the same machine.
    """
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import is_local_uri

    uri = run.info.artifact_uri
    if is_local_uri(uri, is_tracking_or_registry_uri=False):
        return Path(local_file_uri_to_path(uri)) / CHECKPOINTS
    root = os.environ.get(CHECKPOINT_ROOT_ENV) or Path.home() / ".cache/forecast/checkpoints"
    return Path(root) / run.info.run_id


def resumable_run(run_id: str, *, experiment: str, config: dict[str, Any]) -> Run:
    """The killed or failed train run ``run_id``, checked to be safe to continue.

    Raises:
        ConfigError: no such run; another experiment or job; it finished; its process
            still runs; or it was started with another config (the keys that differ are
            named).
    """
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        raise ConfigError(
            f"--resume {run_id}: no such run in tracking store {mlflow.get_tracking_uri()}"
        ) from None
    name = client.get_experiment(run.info.experiment_id).name
    if name != experiment:
        raise ConfigError(
            f"--resume {run_id}: the run belongs to experiment {name!r}, the config to "
            f"{experiment!r}"
        )
    if run.data.tags.get("forecast.job") != "train":
        raise ConfigError(f"--resume {run_id}: not a `forecast train` run")
    status = run.info.status
    if status == "FINISHED":
        raise ConfigError(f"--resume {run_id}: the run finished; there is nothing to resume")
    if status == "RUNNING":
        owner = Owner.parse(run.data.tags.get(OWNER_TAG, ""))
        if owner is None or owner.host != current_owner().host or owner.alive():
            where = f"pid {owner.pid} on {owner.host}" if owner else "an unknown process"
            raise ConfigError(
                f"--resume {run_id}: the run is still RUNNING in {where}; stop it first"
            )
    logged = _logged_config(run_id)
    if logged is not None:
        differ = _differing_keys(logged, config)
        if differ:
            raise ConfigError(
                f"--resume {run_id}: the run was started with another config; these keys "
                f"differ: {', '.join(differ[:10])}. Resume with the run's config.yaml."
            )
    return run


def _logged_config(run_id: str) -> dict[str, Any] | None:
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
    except Exception:  # a run killed before it logged its config
        return None
    return yaml.safe_load(text)


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(dict.fromkeys([*a, *b]))
        out: list[str] = []
        for key in keys:
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                out.append(path)
            else:
                out += _differing_keys(a[key], b[key], path)
        return out
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        a, b = list(a), list(b)
    return [] if a == b else [prefix or "<config>"]
