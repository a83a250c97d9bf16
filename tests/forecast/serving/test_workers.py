"""`forecast.serving.workers`: one SO_REUSEPORT socket per worker, connections spread by the
kernel over them, a port in use refused before anything starts."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from forecast.serving.local_server import HOST, free_port
from forecast.serving.workers import listening_sockets, serve
from pipelines.errors import ConfigError
from tests.conftest import REPO_ROOT


def test_connections_opened_together_are_spread_over_the_workers_sockets():
    port = free_port()
    sockets = listening_sockets(HOST, port, 2)
    clients = []
    try:
        for sock in sockets:
            sock.listen(64)
            sock.setblocking(False)
        # 32 connections opened at once, as a pool or the benchmark's clients open theirs:
        # on uvicorn's one shared socket the first worker to wake takes them all.
        clients = [socket.create_connection((HOST, port), timeout=5) for _ in range(32)]
        accepted = []
        for sock in sockets:
            n = 0
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
            accepted.append(n)
        assert sum(accepted) == 32
        assert min(accepted) > 0, accepted  # all on one of two: a chance of 2**-31
    finally:
        for sock in sockets + clients:
            sock.close()


def test_a_port_in_use_is_refused_naming_host_and_port():
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"Cannot listen on --host {HOST} --port {port}: "):
            listening_sockets(HOST, port, 2)
    # also a server of ours already there: SO_REUSEPORT alone would share the port with it
    first = listening_sockets(HOST, port, 1)
    first[0].listen(1)
    try:
        with pytest.raises(ConfigError, match="Address already in use"):
            listening_sockets(HOST, port, 1)
    finally:
        first[0].close()


def test_two_workers_answer_connections_opened_together_and_stop_on_sigterm():
    port = free_port()
    sockets = listening_sockets(HOST, port, 2)
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    seen: dict[str, object] = {}

    def clients() -> None:  # while `serve` runs in the main thread, where signals arrive
        try:
            deadline = time.monotonic() + 60
            me = psutil.Process()
            # Only children on the port: an xdist worker may hold other tests' children.
            while len(workers := [w for w in me.children() if _listening(w, port)]) < 2:
                assert time.monotonic() < deadline, "the workers did not start in 60 s"
                time.sleep(0.1)
            seen["workers"] = {w.pid for w in workers}
            # 16 keep-alive connections opened at once: all on one worker, a chance of 2**-15
            conns = [http.client.HTTPConnection(HOST, port, timeout=30) for _ in range(16)]
            for conn in conns:
                conn.connect()
            answers = set()
            for conn in conns:
                conn.request("GET", "/")
                answers.add(conn.getresponse().read().decode())
                conn.close()
            seen["answers"] = answers
        except BaseException as exc:
            seen["error"] = exc
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # `serve` stops its workers and returns

    # A SIGTERM that comes after `serve` returned (a worker died first) must not end pytest.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        thread = threading.Thread(target=clients)
        thread.start()
        code = serve(sockets, env=env, app="tests.forecast.serving.pid_app:create_app", grace=10)
        thread.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if "error" in seen:
        raise seen["error"]
    assert code == 0
    assert seen["answers"] == {f"{pid} 2" for pid in seen["workers"]}  # both, told they are 2
    assert not any(psutil.pid_exists(pid) for pid in seen["workers"])


def test_workers_die_with_a_killed_parent_and_free_the_port():
    port = free_port()
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    # The module alone (the package's imports take seconds): a parent that only serves.
    script = (
        "import importlib.util as u; "
        f"s = u.spec_from_file_location('w', {str(REPO_ROOT / 'forecast/serving/workers.py')!r}); "
        "w = u.module_from_spec(s); s.loader.exec_module(w); "
        f"w.serve(w.listening_sockets({HOST!r}, {port}, 2), "
        "app='tests.forecast.serving.pid_app:create_app')"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        proc = psutil.Process(parent.pid)
        while len(proc.children()) < 2 or not all(_listening(w, port) for w in proc.children()):
            assert time.monotonic() < deadline, "the workers did not start in 60 s"
            time.sleep(0.1)
        workers = proc.children()
    finally:
        parent.kill()  # SIGKILL: `serve` cannot pass anything on
        parent.wait()
    gone, alive = psutil.wait_procs(workers, timeout=20)
    for w in alive:  # do not leave them behind if the assertion fails
        w.kill()
    assert not alive, [w.pid for w in alive]
    listening_sockets(HOST, port, 1)[0].close()  # the port is free again


def _listening(proc: psutil.Process, port: int) -> bool:
    try:
        conns = proc.net_connections("tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns)


def test_forecast_serve_refuses_a_port_in_use_before_downloading_the_model(capsys):
    from forecast.cli import main

    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        # the model does not exist: the port is refused before anything looks for it
        code = main(["serve", "--model", "models:/no-such-model@champion", "--port", str(port)])
    assert code == 2
    assert f"Cannot listen on --host {HOST} --port {port}: " in capsys.readouterr().err
