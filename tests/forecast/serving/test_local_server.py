"""The real server: `mlflow models serve` of models:/NAME@champion on 127.0.0.1 answers
/invocations with the in-process forecasts, 400s that name the problem, and stays up under
sixteen concurrent clients."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import numpy as np
import pandas as pd
import psutil
import pytest
import requests

from forecast.serving.forecaster import Forecaster
from forecast.serving.http import forecasts_from_json, request_json
from forecast.serving.local_server import ModelServer
from tests.forecast.serving.test_pyfunc import (
    ELEC_BAD,
    STOCK_BAD,
    TOL,
    assert_same_forecasts,
    elec_request,
    log_both,
    stock_request,
    trained_forecaster,
)

pytestmark = pytest.mark.slow

JSON = {"Content-Type": "application/json"}


class Served:
    """A running server with the forecaster it serves, for in-process expectations."""

    def __init__(self, server: ModelServer, forecaster: Forecaster) -> None:
        self.server, self.forecaster = server, forecaster

    def post(self, body: str, session: requests.Session | None = None) -> requests.Response:
        poster = session or requests
        return poster.post(f"{self.server.url}/invocations", data=body, headers=JSON, timeout=60)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Both champions served at once, each by its own real server; always stopped after."""
    elec = trained_forecaster("elec", tmp_path_factory)
    stocks = trained_forecaster("stocks", tmp_path_factory)
    store = log_both(elec, stocks, tmp_path_factory.mktemp("server-store"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": store.uri, "MLFLOW_REGISTRY_URI": store.uri}
    with contextlib.ExitStack() as stack:
        served = {}
        for name, forecaster in (("elec", elec), ("stocks", stocks)):
            server = ModelServer(f"models:/{name}@champion", env=env, cwd=store.root)
            stack.callback(server.stop)
            served[name] = Served(server.start(), forecaster)
        for s in served.values():  # runs first: both shut down at the same time
            stack.callback(s.server.terminate)
        for s in served.values():  # both boot at the same time
            s.server.wait_ready(timeout=150)
        yield served
    assert not any(s.server.alive for s in served.values()), "a server outlived the tests"


def test_server_listens_on_loopback_only(servers):
    for s in servers.values():
        port = int(s.server.url.rsplit(":", 1)[1])
        bound = {
            c.laddr.ip
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        assert bound == {"127.0.0.1"}, bound


@pytest.mark.parametrize("orient", ["split", "records"])
def test_invocations_return_the_in_process_forecasts(servers, orient):
    s = servers["elec"]
    request = elec_request(end=1200)
    response = s.post(request_json(request, orient=orient))
    assert response.status_code == 200, response.text[-2000:]
    assert_same_forecasts(forecasts_from_json(response.text), s.forecaster.predict(request))


def test_future_rows_may_leave_the_target_out_entirely(servers):
    s = servers["elec"]
    request = elec_request(end=1300)
    records = json.loads(request_json(request, orient="records"))["dataframe_records"]
    for row in records[-24:]:
        del row["Demand"]  # no key at all, not even null
    response = s.post(json.dumps({"dataframe_records": records}))
    assert response.status_code == 200, response.text[-2000:]
    assert_same_forecasts(forecasts_from_json(response.text), s.forecaster.predict(request))


def test_several_series_of_dynamic_lengths_in_one_request(servers):
    s = servers["stocks"]
    request = stock_request({"DAX": 40, "SMI": 8, "CAC": 17, "FTSE": 32})
    response = s.post(request_json(request))
    assert response.status_code == 200, response.text[-2000:]
    got = forecasts_from_json(response.text)
    assert_same_forecasts(got, s.forecaster.predict(request))
    assert got.groupby("series").size().to_dict() == {"CAC": 5, "DAX": 5, "FTSE": 5, "SMI": 5}


def test_static_model_refuses_a_short_history_saying_how_many_rows_it_needs(servers):
    response = servers["elec"].post(request_json(elec_request().iloc[50:]))
    assert response.status_code == 400
    assert (
        "History too short: 'series_0' has 50 rows. This static model needs at least 64 rows "
        "per series" in response.json()["message"]
    )


def test_a_csv_body_as_pandas_writes_it_is_served_like_the_typed_request(servers):
    s = servers["elec"]
    request = elec_request(end=1250)
    rounded = request.assign(Temperature=request["Temperature"].round())
    ints = rounded.astype({"Temperature": np.int64, "WorkDay": np.int64})
    body = ints.assign(note="x").to_csv(index=False)
    response = requests.post(
        f"{s.server.url}/invocations", data=body, headers={"Content-Type": "text/csv"}, timeout=60
    )
    assert response.status_code == 200, response.text[-2000:]
    assert_same_forecasts(forecasts_from_json(response.text), s.forecaster.predict(rounded))


def test_timestamps_with_a_utc_offset_are_served_in_that_offset(servers):
    s = servers["elec"]
    request = elec_request(end=1250)
    local = request.assign(timestamp=request["timestamp"].dt.tz_localize("+10:00"))
    body = request_json(local.assign(timestamp=local["timestamp"].map(pd.Timestamp.isoformat)))
    assert '"2014-01-' in body and '+10:00"' in body
    response = s.post(body)
    assert response.status_code == 200, response.text[-2000:]
    got = forecasts_from_json(response.text)
    want = s.forecaster.predict(request)
    assert str(got["timestamp"].dt.tz) == "UTC+10:00"
    assert (got["timestamp"] == want["timestamp"].dt.tz_localize("+10:00")).all()
    np.testing.assert_allclose(got["forecast"], want["forecast"], rtol=0, atol=TOL)


BAD = [("elec", case) for case in ELEC_BAD] + [("stocks", case) for case in STOCK_BAD]


@pytest.mark.parametrize(("model", "case"), BAD, ids=[f"{m}-{c}" for m, c in BAD])
def test_bad_payload_gets_400_naming_the_problem(servers, model, case):
    make, message = (ELEC_BAD if model == "elec" else STOCK_BAD)[case]
    good = elec_request() if model == "elec" else stock_request({"DAX": 30, "FTSE": 12, "SMI": 10})
    response = servers[model].post(request_json(make(good)))
    assert response.status_code == 400, response.text[-2000:]
    body = response.json()
    assert body["error_code"] in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST")
    assert message in body["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "Ensure that input is a valid JSON formatted string"),
        ('{"rows": []}', "dataframe_split"),
        ('{"dataframe_records": []}', "The request holds no rows"),
    ],
)
def test_malformed_bodies_get_400(servers, body, message):
    response = servers["elec"].post(body)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_server_keeps_serving_after_bad_requests(servers):
    s = servers["elec"]
    for make, _ in ELEC_BAD.values():
        assert s.post(request_json(make(elec_request()))).status_code == 400
    request = elec_request(end=1400)
    response = s.post(request_json(request))
    assert response.status_code == 200
    assert_same_forecasts(forecasts_from_json(response.text), s.forecaster.predict(request))


def test_sixteen_concurrent_clients_get_correct_answers(servers):
    s = servers["elec"]
    histories = [elec_request(end=end) for end in (700, 900, 1100, 1300)]
    bodies = [request_json(h, orient=o) for h in histories for o in ("split", "records")]
    # Checked with plain json + numpy: the clients share this process's GIL with nothing else.
    expected = []
    for h in histories:
        want = s.forecaster.predict(h)
        stamps = [t.isoformat() for t in want["timestamp"]]
        expected += [(stamps, want[["forecast", "p10", "p50", "p90"]].to_numpy())] * 2
    clients, per_client = 16, 20  # 320 requests
    outcomes: list[str] = []
    lock = threading.Lock()

    def check(text: str, j: int) -> None:
        rows = json.loads(text)["predictions"]
        stamps, values = expected[j]
        assert [r["timestamp"] for r in rows] == stamps
        got = [[r["forecast"], r["p10"], r["p50"], r["p90"]] for r in rows]
        np.testing.assert_allclose(got, values, rtol=0, atol=TOL)

    def client(k: int) -> None:
        with requests.Session() as session:
            for i in range(per_client):
                j = (k + i) % len(bodies)
                try:
                    response = s.post(bodies[j], session)
                    assert response.status_code == 200, response.text[-300:]
                    check(response.text, j)
                    result = "ok"
                except Exception as exc:  # recorded, so one failure does not hide the others
                    result = f"client {k} request {i}: {type(exc).__name__}: {exc}"[:300]
                with lock:
                    outcomes.append(result)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, 240 - (time.monotonic() - start)))
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), f"clients still running after {elapsed:.0f} s"
    failures = [o for o in outcomes if o != "ok"]
    assert failures == [], failures[:5]
    assert len(outcomes) == clients * per_client
