"""The workers section of `benchmarks.serving`: 1 against 2 server workers, 8 keep-alive clients
posting back to back for timed rounds.

Both servers a user can run are measured, ``mlflow models serve -w N`` (uvicorn's workers
share one listening socket) and ``forecast serve --workers N`` (one ``SO_REUSEPORT`` socket
per worker, `forecast.serving.workers`). Besides the requests/s, each round records what
explains them: the CPU each worker process used (cores: CPU seconds per second of the
round, from ``/proc`` through psutil), how the clients' connections are spread over the
workers (counted on the workers' sockets when the round opens) and the clients' own CPU.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import statistics
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import psutil
import requests

from forecast.serving.http import forecasts_from_json, request_json

HEADERS = {"Content-Type": "application/json"}


def worker_processes(leader: int, port: int) -> list[psutil.Process]:
    """The server's worker processes: those of its process group listening on `port` whose
    children do not (uvicorn's parent process also holds the shared socket)."""
    listening = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) != leader:
                continue
            conns = proc.net_connections("tcp")
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
                listening.append(proc)
    pids = {p.pid for p in listening}
    return [p for p in listening if not any(c.pid in pids for c in p.children())]


def connections(workers: list[psutil.Process], port: int) -> list[int]:
    """Established client connections each worker holds on `port`."""
    counts = []
    for proc in workers:
        try:
            conns = proc.net_connections("tcp")
        except psutil.Error:
            conns = []
        counts.append(
            sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
        )
    return counts


def concurrent(
    url: str, body: str, clients: int, seconds: float, workers: list[psutil.Process]
) -> dict[str, Any]:
    """One round of a steady load: `clients` threads, one `http.client` keep-alive connection
    each (a tenth of the CPU of a `requests.Session` per request, so the load generator takes
    little from the cores the workers share), posting back to back for `seconds`.

    The round is timed, not counted (as wrk and other load generators do): every client
    connects and is answered once, then all post until the same deadline and only the
    answers that arrive before it count. A fixed number of requests per client would end the
    round when the clients of the busiest worker finish, leaving the other worker idle for the
    rest of it; a keep-alive connection stays with the worker that accepted it, and uvicorn's
    shared socket often gives one worker 6 or 7 of 8.

    Returns:
        ``rps``; ``clients_cpu`` (cores this process used); ``cpu`` (cores per worker);
        ``spread`` (connections per worker, once every client is connected).
    """
    host, port = url.removeprefix("http://").split(":")
    payload = body.encode()
    failures: list[str] = []
    window: dict[str, Any] = {}

    def open_window() -> None:  # runs once, before any client is released
        window["spread"] = connections(workers, int(port))
        window["before"] = [w.cpu_times() for w in workers]
        window["cpu"], window["start"] = time.process_time(), time.perf_counter()
        window["end"] = window["start"] + seconds

    ready = threading.Barrier(clients + 1, action=open_window)
    answered = [0] * clients

    def post(conn: http.client.HTTPConnection) -> None:
        conn.request("POST", "/invocations", payload, HEADERS)
        response = conn.getresponse()
        text = response.read()
        if response.status != 200:
            failures.append(f"HTTP {response.status}: {text[-300:]!r}")

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            post(conn)  # connected and warm before the window opens
            ready.wait()
            while not failures and time.perf_counter() < window["end"]:
                post(conn)
                if time.perf_counter() <= window["end"]:
                    answered[i] += 1
        except threading.BrokenBarrierError:
            pass
        except Exception as exc:  # noqa: BLE001 - reported as the round's failure
            failures.append(repr(exc))
            ready.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(timeout=300)
    opened = "end" in window  # else a client failed or they did not connect in time
    if opened:
        time.sleep(max(0.0, window["end"] - time.perf_counter()))
        wall = time.perf_counter() - window["start"]
        used = time.process_time() - window["cpu"]
        after = [w.cpu_times() for w in workers]
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(failures[0])
    if not opened:
        raise RuntimeError(f"{clients} clients did not connect to {url} in 300 s")
    busy = [
        (a.user + a.system - b.user - b.system) / wall
        for a, b in zip(after, window["before"], strict=True)
    ]
    return {"rps": sum(answered) / seconds, "clients_cpu": used / wall, "cpu": busy,
            "spread": window["spread"]}  # fmt: skip


def workers_section(bench: Any, frames: dict[str, pd.DataFrame], args: Any, load: Any) -> None:
    """Requests/s of 1 and 2 workers of each server under concurrent clients, interleaved."""
    rounds, seconds = (3, 1.0) if args.quick else (7, 4.0)
    print(f"\n### Workers: 1 against 2 server workers, {args.clients} keep-alive clients, {seconds:g} s a round ({load()})\n")  # fmt: skip
    print("| server | request | req/s, 1 worker | req/s, 2 workers | 2 / 1 | goal >= 1.7x "
          "| connections per worker: req/s, each 2-worker round | CPU per worker, cores (2 workers) "
          "| CPU, cores (1 worker) | server CPU ms per request, 1 / 2 workers "
          "| clients' CPU, cores | largest difference from in-process |")  # fmt: skip
    print("|---|---|---:|---:|---:|---|---|---|---:|---:|---:|---:|")
    for command in ("mlflow", "forecast"):
        servers = {w: bench.server(bench.model_uri, workers=w, command=command) for w in (1, 2)}
        with contextlib.ExitStack() as stack:
            for server in servers.values():
                stack.callback(server.stop)
                server.start()
            for server in servers.values():
                server.wait_ready(timeout=300)
            procs = {w: worker_processes(s.pid, s.port) for w, s in servers.items()}
            for name, frame in frames.items():
                _measure(bench, command, name, frame, servers, procs, rounds, seconds, args)
    print(f"\nMedians of {rounds} rounds; {load()} at the end.")


def _measure(bench, command, name, frame, servers, procs, rounds, seconds, args) -> None:  # noqa: ANN001
    body, want = request_json(frame), bench.forecaster.predict(frame)
    diff = 0.0
    for server in servers.values():
        for _ in range(3):  # new connections: each worker of a server answers some of these
            got = forecasts_from_json(requests.post(
                f"{server.url}/invocations", data=body, headers=HEADERS, timeout=120
            ).text)  # fmt: skip
            diff = max(diff, float(np.abs(got["forecast"] - want["forecast"]).max()))
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    concurrent(servers[2].url, body, args.clients, seconds / 4, procs[2])  # both workers warm
    for r in range(rounds):
        for w in (1, 2) if r % 2 == 0 else (2, 1):
            runs[w].append(concurrent(servers[w].url, body, args.clients, seconds, procs[w]))
    one = statistics.median(run["rps"] for run in runs[1])
    two = statistics.median(run["rps"] for run in runs[2])
    spreads = ", ".join(f"{'/'.join(map(str, run['spread']))}: {run['rps']:.0f}" for run in runs[2])
    cpu2 = " + ".join(f"{statistics.median(run['cpu'][i] for run in runs[2]):.2f}"
                      for i in range(len(procs[2])))  # fmt: skip
    cpu1 = statistics.median(run["cpu"][0] for run in runs[1])
    per_request = [statistics.median(1000 * sum(run["cpu"]) / run["rps"] for run in runs[w])
                   for w in (1, 2)]  # fmt: skip
    clients = statistics.median(run["clients_cpu"] for run in runs[1] + runs[2])
    label = {"mlflow": "`mlflow models serve`", "forecast": "`forecast serve`"}[command]
    print(f"| {label} | {name} | {one:.1f} | {two:.1f} | {two / one:.2f}x "
          f"| {'met' if two / one >= 1.7 else 'NOT met'} | {spreads} | {cpu2} | {cpu1:.2f} "
          f"| {per_request[0]:.1f} / {per_request[1]:.1f} | {clients:.2f} | {diff:.1e} |")  # fmt: skip
