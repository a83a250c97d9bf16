"""The real ``mlflow models serve`` on 127.0.0.1, started and stopped by PID: a harness for
tests and benchmarks, not part of the public API."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # the local server listens on loopback only


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ModelServer:
    """``mlflow models serve`` (or ``forecast serve``) on 127.0.0.1, as a context manager;
    for checks and benchmarks.

    The server is the real one (uvicorn, ``--env-manager local``; or our guarded app with one
    socket per worker, `forecast.serving.workers`). It runs in its own process
    group, which `stop` terminates (then kills) so that no worker outlives it. `start` only
    launches it, so several servers can boot at once before `wait_ready`.

    Args:
        model_uri: ``runs:/...``, ``models:/NAME@ALIAS``, ``models:/m-...`` or a path.
        port: the port; None picks a free one.
        env: environment of the server (e.g. ``MLFLOW_TRACKING_URI``); None inherits ours.
        cwd: working directory of the server.
        workers: uvicorn worker processes.
        command: ``"mlflow"`` (``mlflow models serve``) or ``"forecast"`` (``forecast serve``).

    Example:
        >>> with ModelServer("models:/elec@champion") as server:
        ...     requests.post(f"{server.url}/invocations", data=request_json(history),
        ...                   headers={"Content-Type": "application/json"})
    """

    def __init__(
        self,
        model_uri: str,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        workers: int = 1,
        command: str = "mlflow",
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        where = ["-h", HOST, "-p", str(self.port), "-w", str(workers)]
        if command == "mlflow":
            self.cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
            self.cmd += ["--env-manager", "local", *where]
        elif command == "forecast":
            where = ["--host", HOST, "--port", str(self.port), "--workers", str(workers)]
            self.cmd = [sys.executable, "-m", "forecast", "serve", "--model", model_uri, *where]
        else:
            raise ConfigError(
                f"`command` must be 'mlflow' or 'forecast'. Received: command={command!r}"
            )
        self.env = dict(os.environ if env is None else env)
        # The CLI starts `uvicorn` through the shell: find it next to this interpreter.
        bindir = str(Path(sys.executable).parent)
        self.env["PATH"] = os.pathsep.join([bindir, self.env.get("PATH", os.defpath)])
        self.cwd = cwd
        self.workers = workers
        self.pid: int | None = None  # of the CLI, leader of the server's process group
        self._proc: subprocess.Popen | None = None
        self._log: Any = None

    def start(self) -> ModelServer:
        """Launch the server process (returns at once)."""
        self._log = tempfile.TemporaryFile("a+")  # O_APPEND: reading never moves its writes
        self._proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # uvicorn is a child of the CLI: stop the whole group
        )
        self.pid = self._proc.pid
        return self

    @property
    def alive(self) -> bool:
        """Whether any process of the server (CLI or uvicorn) is still running."""
        return self.pid is not None and _group_alive(self.pid)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until ``/ping`` answers 200 and every worker has started.

        ``/ping`` is answered by the first worker up; the others may still be loading the
        model (and would take no connection yet), so the server's log must also hold
        uvicorn's ``Application startup complete.`` once per worker.

        Raises:
            ConfigError: `start` was not called.
            RuntimeError: the server exited or did not answer within `timeout` seconds; the
                message holds the end of its log.
        """
        if self._proc is None:
            raise ConfigError("The model server is not running: call `start()` first.")
        deadline = time.monotonic() + timeout
        while self._proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                    if response.status == 200 and self._started_workers() >= self.workers:
                        return
                    time.sleep(0.2)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        code = self._proc.poll()
        why = (
            f"exited with code {code}"
            if code is not None
            else f"did not start {self.workers} worker(s) answering /ping in {timeout:g} s"
        )
        raise RuntimeError(f"The model server at {self.url} {why}:\n{self.log_tail()}")

    def terminate(self) -> None:
        """Send SIGTERM to the server's process group without waiting (see `stop`)."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)

    def stop(self, grace: float = 15.0) -> None:
        """Terminate the server's process group; kill what is left after `grace` seconds."""
        if self._proc is not None:
            _stop(self._proc, grace)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _started_workers(self) -> int:
        if self._log is None:
            return 0
        self._log.seek(0)
        return self._log.read().count("Application startup complete.")

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's combined stdout and stderr."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-chars:]

    def __enter__(self) -> ModelServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the server's process group, SIGKILL whatever is left after `grace` seconds."""
    group = proc.pid  # start_new_session made the CLI the leader of its own group
    for sig, seconds in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if sig == signal.SIGKILL:
            log.warning("The model server did not stop on SIGTERM within %g s; killing it.", grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        deadline = time.monotonic() + seconds
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)  # uvicorn may outlive the CLI for a moment
        if not _group_alive(group):
            break
    proc.wait()


def _group_alive(group: int) -> bool:
    """Whether a process other than a zombie is left in the process group."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    if not Path("/proc").is_dir():
        return True
    # Zombies answer signal 0 until reaped; orphans wait on PID 1, which may never reap them.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(pgrp) == group and state != "Z":
            return True
    return False
