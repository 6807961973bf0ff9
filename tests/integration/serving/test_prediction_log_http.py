"""The predictor over HTTP with PostgreSQL as its prediction log: an outage in a burst, two predictors at once.

Real parts: a model trained by the real pipeline (kfp.local), the real `ticketflow serve` in subprocesses on
loopback ports, a real PostgreSQL server of this module's own (stopped and started again), `/metrics`.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.serving.test_server import V1, Server
from ticketflow.monitoring.request_log import PredictionLog
from ticketflow.pipelines.local_services import PostgresServer, find_postgres_bin

TEXTS = [
    "My laptop cannot connect to the VPN since this morning",
    "I was charged twice for invoice 4471, please refund",
    "The printer on floor 3 is jammed again",
    "Please reset my password for the HR portal",
]


@pytest.fixture
def own_postgres(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, so stopping it disturbs no other test."""
    request.getfixturevalue("postgres_server")  # skips, or fails under CI, when PostgreSQL is absent
    server = PostgresServer(find_postgres_bin()).start()
    yield server
    server.cleanup()


def metric(server: Server, name: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")


def wait_until_written(server: Server, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while metric(server, "ticketflow_prediction_log_buffered") > 0:
        assert time.time() < deadline, "the prediction log's buffer did not drain"
        time.sleep(0.3)


def send(server: Server, request_id: str, text: str) -> requests.Response:
    return requests.post(server.url + V1, json={"instances": [text]}, headers={"x-request-id": request_id}, timeout=60)


def test_postgresql_stopped_in_a_burst_costs_no_answer_and_no_silent_loss(home: Path, own_postgres) -> None:
    url = own_postgres.create_database("outage")
    # A small buffer, so the outage overflows it: what cannot be kept must be counted.
    server = Server(home, TICKETFLOW_PREDICTION_LOG=url, TICKETFLOW_LOG_BUFFER_RECORDS="30")
    answered = 0
    try:
        for i in range(60):
            assert send(server, f"before-{i}", TEXTS[i % 4]).status_code == 200
            answered += 1
            if i % 20 == 19:  # never more than the buffer holds, however slowly a busy machine writes
                wait_until_written(server)
        assert metric(server, "ticketflow_prediction_log_dropped_total") == 0
        own_postgres.stop()
        for i in range(80):  # the database is down: every request still gets its answer
            response = send(server, f"during-{i}", TEXTS[i % 4])
            assert response.status_code == 200, response.text
            answered += 1
        assert metric(server, "ticketflow_prediction_log_dropped_total") >= 50  # 80 answered, 30 kept
        own_postgres.start()
        wait_until_written(server)  # the writer retries with a doubling delay, up to 30 s
        for i in range(20):
            assert send(server, f"after-{i}", TEXTS[i % 4]).status_code == 200
            answered += 1
        wait_until_written(server)
        dropped = metric(server, "ticketflow_prediction_log_dropped_total")
    finally:
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn shuts down gracefully, then re-raises SIGTERM
    frame = PredictionLog(url).read()
    assert len(frame) + dropped == answered  # every answered ticket is a row or a counted drop
    assert dropped == 50
    ids = set(frame["request_id"])
    assert {f"before-{i}" for i in range(60)} <= ids and {f"after-{i}" for i in range(20)} <= ids
    assert len({i for i in ids if i.startswith("during-")}) == 30  # the buffer's worth, written after the restart
    assert "ticketflow_prediction_log_dropped_total" in server.log_path.read_text()


def test_two_predictors_writing_at_once_lose_no_record(home: Path, postgres_url: str, tmp_path: Path) -> None:
    vector_stores = [tmp_path / f"chroma-{n}" for n in range(2)]  # one ChromaDB folder per process
    for vector_store in vector_stores:
        shutil.copytree(home / "chroma", vector_store)
    servers = [  # both start loading at once
        Server(home, wait=False, TICKETFLOW_PREDICTION_LOG=postgres_url, TICKETFLOW_VECTOR_STORE=str(vector_store))
        for vector_store in vector_stores
    ]
    failures: list[str] = []

    def burst(server: Server, name: str) -> None:
        for i in range(60):
            response = send(server, f"{name}-{i}", TEXTS[i % 4])
            if response.status_code != 200:
                failures.append(response.text)

    threads = [
        threading.Thread(target=burst, args=(server, f"p{n}-t{t}"))
        for n, server in enumerate(servers)
        for t in range(2)
    ]
    try:
        for server in servers:
            server.wait_until_ready()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        codes = [server.stop() for server in servers]  # a clean shutdown writes what is buffered
    assert failures == [] and set(codes) <= {0, -signal.SIGTERM}
    frame = PredictionLog(postgres_url).read()
    assert len(frame) == 240 and frame["ticket_id"].is_unique
    assert {request_id.rsplit("-", 1)[0] for request_id in frame["request_id"]} == {
        "p0-t0",
        "p0-t1",
        "p1-t0",
        "p1-t1",
    }
