"""The load generator of the serving benchmark's workers section: a round is timed, not counted."""

from __future__ import annotations

import http.server
import threading
import time

import psutil
import pytest

from benchmarks._workers import concurrent

PAUSE = 0.05  # seconds each answer takes


class _Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the benchmark's clients expect
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(PAUSE)
        status = 500 if self.server.fail else 200
        body = b"broken" if self.server.fail else b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    srv.fail = False
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_a_round_counts_the_answers_that_arrive_before_its_end(server):
    url = f"http://127.0.0.1:{server.server_address[1]}"
    this = psutil.Process()  # the server runs in this process's threads
    got = concurrent(url, "{}", clients=3, seconds=1.0, workers=[this])
    # Three clients, each answered every 50 ms, for 1 s: at most 60 answers (the last
    # request of each client, answered after the end, does not count); a shared CI machine
    # adds a few ms a request, a stalled client (40 ms of delayed ACK) half of it.
    assert 0.7 * 3 / PAUSE <= got["rps"] <= 3 / PAUSE
    assert got["spread"] == [3]  # every client connected before the round opened
    # The server sleeps: this process (clients and server) used a small part of a core, and
    # psutil's count for it agrees with the clients' own over the same window.
    assert len(got["cpu"]) == 1 and got["cpu"][0] < 0.5
    assert abs(got["clients_cpu"] - got["cpu"][0]) < 0.1


def test_a_failed_answer_ends_the_round_with_its_status(server):
    server.fail = True
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with pytest.raises(RuntimeError, match=r"^HTTP 500: b'broken'$"):
        concurrent(url, "{}", clients=2, seconds=0.5, workers=[psutil.Process()])
