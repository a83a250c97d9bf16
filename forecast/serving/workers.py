"""Server worker processes that each listen on their own socket: what ``forecast serve`` runs.

``uvicorn --workers N`` (and so ``mlflow models serve --workers N``) binds one socket and
hands it to every worker; whichever worker's event loop wakes first accepts every
connection waiting in the queue. Clients that open their connections together and keep them
alive (a connection pool, a proxy's upstream connections, the benchmark's 8 clients) then all
land on one worker, and the second worker idles: measured with 8 keep-alive clients, 8 of 8
connections on one worker, 1.0x the requests/s of one worker (benchmarks/RESULTS.md,
"Serving (issue 16)", session 3).

Here each worker gets its own listening socket on the same port with ``SO_REUSEPORT``, and
the kernel hashes every new connection to one of them (what nginx's ``reuse_port`` does), so
connections are spread over the workers however they arrive. The sockets are bound in the
parent before any worker starts, so a port in use is refused at once; the parent then waits,
passes SIGTERM and SIGINT on to the workers and, if one worker dies, stops the others.
Linux only (``SO_REUSEPORT`` balances connections there; elsewhere it does not).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

APP = "forecast.serving.scoring_app:create_app"  # uvicorn factory of the guarded app


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets bound to `host`:`port` with ``SO_REUSEPORT`` (not yet listening).

    Raises:
        ConfigError: the address cannot be bound: the port is in use by anything, including
            another ``SO_REUSEPORT`` server of this user (which would otherwise silently
            share the port's connections), or the host is not an address of this machine.
    """
    from pipelines.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:  # no SO_REUSEPORT: exclusive
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        raise ConfigError(
            f"Cannot listen on --host {host} --port {port}: {err.strerror or err}."
        ) from None
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def serve(
    sockets: Sequence[socket.socket],
    env: Mapping[str, str] | None = None,
    *,
    app: str = APP,
    grace: float = 30,
) -> int:
    """Run one uvicorn worker per socket of `listening_sockets`, until a signal or a crash;
    the sockets are closed here (each worker holds its copy).

    Args:
        sockets: from `listening_sockets`.
        env: the workers' environment (None: ours).
        app: ``module:function`` of the ASGI app factory each worker runs (default the
            guarded scoring app, `forecast.serving.scoring_app.create_app`).
        grace: seconds the workers get to finish after SIGTERM before they are killed.

    Each worker sees ``WEB_CONCURRENCY`` = the number of workers (uvicorn's variable for the
    worker count), which `forecast.serving.threads` reads to size TensorFlow's pools.

    Returns:
        0 after SIGTERM/SIGINT; otherwise the exit code of the first worker that stopped.
    """
    env = dict(os.environ if env is None else env) | {"WEB_CONCURRENCY": str(len(sockets))}
    procs = []
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for sock in sockets:
            # This file as a script: a worker imports only uvicorn and its app (-P: not this
            # folder on sys.path, whose http.py would shadow the standard library's).
            cmd = [sys.executable, "-P", __file__, "--fd", str(sock.fileno()), "--app", app]
            cmd += ["--parent", str(os.getpid())]
            procs.append(subprocess.Popen(cmd, env=env, pass_fds=[sock.fileno()]))
            sock.close()  # the worker holds its copy
        log.info("%d server workers, one socket each (SO_REUSEPORT)", len(sockets))
        code = _wait(procs, stopping)
    finally:
        for sock in sockets:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _terminate(procs, grace)
    return code


def _wait(procs: Sequence[subprocess.Popen], stopping: list[int]) -> int:
    """Block until a signal arrives (0) or a worker exits (its code)."""
    while not stopping:
        for proc in procs:
            code = proc.poll()
            if code is not None:
                log.error("Worker %d exited with code %d; stopping the others.", proc.pid, code)
                return code or 1
        time.sleep(0.2)
    return 0


def _terminate(procs: Sequence[subprocess.Popen], grace: float) -> None:
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()  # uvicorn finishes the requests in flight, then exits
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _die_with(parent: int) -> None:
    """Linux: SIGTERM this worker when `serve`'s process dies, even by SIGKILL, so that no
    orphaned worker keeps answering on the port (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the prctl: nobody would send the signal
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(fd: int, app: str) -> None:
    """One worker: uvicorn serving the app of factory `app` on the inherited socket `fd`."""
    import uvicorn

    sys.path.insert(0, os.getcwd())  # as uvicorn's command line does (--app-dir .)
    sock = socket.socket(fileno=fd)  # family and type read from the descriptor
    config = uvicorn.Config(app, factory=True, workers=1)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one worker of `forecast serve`")
    parser.add_argument("--fd", type=int, required=True, help="the inherited listening socket")
    parser.add_argument("--app", default=APP, help="module:function of the ASGI app factory")
    parser.add_argument("--parent", type=int, help="PID of `serve`: the worker dies with it")
    args = parser.parse_args()
    if args.parent is not None:
        _die_with(args.parent)
    _worker(args.fd, args.app)
