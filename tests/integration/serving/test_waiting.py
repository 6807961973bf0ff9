"""`ticketflow serve` waits instead of exiting: live, not ready, saying why, until it can load a model.

Real parts: the predictor as a subprocess on a free loopback port, called over HTTP; an empty sqlite MLflow
registry into which a champion is then registered (the model trained by `test_server`'s fixture, the real
pipeline); a model directory that appears later; a tracking server and a database on closed ports; the real
clients (MLflow, ChromaDB, SQLAlchemy) failing against closed ports for the classification.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from kserve.errors import ModelMissingError
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.integration.serving.test_server import MODEL, V1, V2, free_port
from ticketflow.components.store import VectorStore
from ticketflow.monitoring.database import DatabaseUnavailableError
from ticketflow.monitoring.metrics import NOT_READY_REASONS
from ticketflow.monitoring.request_log import PredictionLog
from ticketflow.serving.readiness import (
    CHROMA_UNREACHABLE,
    DATABASE_UNREACHABLE,
    LOAD_ERROR,
    MLFLOW_UNREACHABLE,
    NO_CHAMPION,
    NO_VECTORS,
    NoChampionError,
    NotReadyError,
    NoVectorsError,
    not_ready_reason,
    probe_tracking_server,
    talking_to,
)

V2_BODY = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["printer jammed"]}]}
READINESS_ROUTES = ["/v2/health/ready", f"/v2/models/{MODEL}/ready", f"/v1/models/{MODEL}"]


# ---- the classification, with the real clients' real errors ----------------------------------------------------
def raised_by(action) -> BaseException:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("expected an error")


def test_the_reasons_are_the_ones_metrics_publish() -> None:
    reasons = {NO_CHAMPION, NO_VECTORS, MLFLOW_UNREACHABLE, CHROMA_UNREACHABLE, DATABASE_UNREACHABLE, LOAD_ERROR}
    assert reasons == set(NOT_READY_REASONS)


@pytest.mark.parametrize("service", [None, "mlflow", "chroma"])
def test_missing_models_and_vectors_are_their_own_reasons_whatever_the_service(service) -> None:
    assert not_ready_reason(NoChampionError("models:/m@champion"), service) == NO_CHAMPION
    assert not_ready_reason(ModelMissingError("/mnt/models"), service) == NO_CHAMPION  # kserve's own
    assert not_ready_reason(NoVectorsError("collection 'tickets-x'"), service) == NO_VECTORS


def test_a_refused_mlflow_connection_is_mlflow_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries take about 4 minutes
    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")
    refused = raised_by(lambda: client.get_model_version_by_alias(MODEL, "champion"))
    assert isinstance(refused, MlflowException)  # requests' ConnectionError is its cause
    assert not_ready_reason(refused, "mlflow") == MLFLOW_UNREACHABLE
    assert not_ready_reason(refused) == LOAD_ERROR  # no service named: nothing says which one is down
    probed = raised_by(lambda: probe_tracking_server(f"http://127.0.0.1:{free_port()}", timeout=5))
    assert not_ready_reason(probed, "mlflow") == MLFLOW_UNREACHABLE


def test_an_mlflow_that_answers_with_an_error_is_a_load_error(tmp_path: Path) -> None:
    answered = MlflowException("Model Version (name=m, version=7) not found", error_code="RESOURCE_DOES_NOT_EXIST")
    assert not_ready_reason(answered, "mlflow") == LOAD_ERROR
    assert not_ready_reason(ValueError("not: [a valid model"), "mlflow") == LOAD_ERROR
    probe_tracking_server(f"sqlite:///{tmp_path / 'mlflow.db'}", timeout=5)  # not HTTP: nothing to probe


def test_a_refused_chroma_connection_is_chroma_unreachable() -> None:
    refused = raised_by(lambda: VectorStore(f"http://127.0.0.1:{free_port()}"))
    assert isinstance(refused, ValueError)  # "Could not connect to a Chroma server", httpx's error its cause
    assert not_ready_reason(refused, "chroma") == CHROMA_UNREACHABLE
    with pytest.raises(NotReadyError) as caught, talking_to("chroma"):
        raise refused
    assert caught.value.reason == CHROMA_UNREACHABLE and caught.value.__cause__ is refused
    assert str(caught.value).startswith("ValueError: Could not connect to a Chroma server")


def test_a_database_check_that_fails_is_database_unreachable(tmp_path: Path) -> None:
    closed = PredictionLog(f"postgresql+psycopg://ticketflow:secret@127.0.0.1:{free_port()}/ticketflow")
    refused = raised_by(closed.check)
    assert isinstance(refused, DatabaseUnavailableError)
    assert not_ready_reason(refused) == DATABASE_UNREACHABLE  # recognised without being told the service
    assert not_ready_reason(PermissionError("tables"), "database") == DATABASE_UNREACHABLE
    with pytest.raises(NotReadyError) as caught, talking_to("database"):
        closed.check()
    assert caught.value.reason == DATABASE_UNREACHABLE


def test_anything_else_is_a_load_error() -> None:
    assert not_ready_reason(RuntimeError("boom")) == LOAD_ERROR
    assert not_ready_reason(KeyError("category"), "chroma") == LOAD_ERROR
    with pytest.raises(NotReadyError) as caught, talking_to("mlflow"):
        raise NotReadyError(NO_VECTORS, NoVectorsError("x"))  # already sorted: kept as it is
    assert caught.value.reason == NO_VECTORS


# ---- the waiting server, over HTTP ------------------------------------------------------------------------------
class WaitingServer:
    """A predictor subprocess that must come up live whether or not it can load a model."""

    def __init__(self, home: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / f"waiting-{self.port}.log"
        command = [sys.executable, "-m", "ticketflow.serving", "--port", str(self.port), "--reload-interval", "1"]
        self.proc = subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            env={**os.environ, "TICKETFLOW_HOME": str(home), **env},
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def readiness(self) -> tuple[float, dict[str, float]]:
        """`ticketflow_predictor_ready` and `ticketflow_predictor_not_ready` by reason, as `/metrics` shows them."""
        families = {family.name: family for family in text_string_to_metric_families(self.get("/metrics").text)}
        ready = families["ticketflow_predictor_ready"].samples[0].value
        reasons = families["ticketflow_predictor_not_ready"].samples
        return ready, {sample.labels["reason"]: sample.value for sample in reasons}

    def wait_until(self, condition, what: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"server exited while waiting for {what}: {self.log()[-3000:]}"
            try:
                if condition():
                    return
            except requests.ConnectionError:
                pass  # not listening yet
            time.sleep(0.3)
        raise AssertionError(f"no {what} within {timeout} s: {self.log()[-3000:]}")

    def wait_for_reason(self, reason: str) -> None:
        self.wait_until(lambda: self.readiness() == (0, {r: float(r == reason) for r in NOT_READY_REASONS}), reason)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def not_ready_warnings(server: WaitingServer) -> list[str]:
    warning = f" WARNING ticketflow.serving.predictor: {MODEL} is not ready"
    return [line for line in server.log().splitlines() if warning in line]


def assert_live_not_ready(server: WaitingServer, reason: str, says: str) -> None:
    """Live routes answer 200; readiness routes and predictions a 503 `{"error": ...}` naming the reason."""
    assert server.get("/").status_code == 200
    assert server.get("/v2/health/live").json() == {"live": True}
    answers = [server.get(path) for path in READINESS_ROUTES]
    answers.append(requests.post(server.url + V1, json={"instances": ["vpn is down"]}, timeout=10))
    answers.append(requests.post(server.url + V2, json=V2_BODY, timeout=10))
    for answer in answers:
        assert answer.status_code == 503, (answer.request.url, answer.text)
        body = answer.json()
        assert list(body) == ["error"], body
        assert f"model {MODEL} is not ready: {reason}: " in body["error"] and says in body["error"], body


def test_no_champion_and_no_model_directory_wait_then_serve_what_appears(home: Path, tmp_path: Path) -> None:
    # An MLflow whose registry is empty: the trained home's store, copied (creating a new one runs MLflow's
    # migrations, a minute on a busy machine), with its registered model deleted.
    shutil.copyfile(home / "mlflow.db", tmp_path / "mlflow.db")
    empty_registry = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=empty_registry, registry_uri=empty_registry)
    model_files = urlparse(client.get_model_version_download_uri(MODEL, "1")).path
    client.delete_registered_model(MODEL)
    model_dir = tmp_path / "mnt-models"  # what a storageUri would deliver, not there yet
    vectors_copy = tmp_path / "chroma"  # one ChromaDB folder per process
    shutil.copytree(home / "chroma", vectors_copy)
    registry = WaitingServer(
        home,
        MLFLOW_TRACKING_URI=empty_registry,
        TICKETFLOW_PREDICTION_LOG=f"sqlite:///{tmp_path / 'registry-log.db'}",
    )
    directory = WaitingServer(
        home,
        "--model-dir",
        str(model_dir),
        TICKETFLOW_VECTOR_STORE=str(vectors_copy),
        TICKETFLOW_PREDICTION_LOG=f"sqlite:///{tmp_path / 'directory-log.db'}",
    )
    try:
        registry.wait_for_reason(NO_CHAMPION)
        directory.wait_for_reason(NO_CHAMPION)
        assert_live_not_ready(registry, NO_CHAMPION, f"no champion in {empty_registry}")
        assert_live_not_ready(directory, NO_CHAMPION, f"model directory {model_dir}")
        time.sleep(3)  # three more attempts, one a second: still one WARNING line, the reason did not change
        for server in (registry, directory):
            assert server.proc.poll() is None
            warnings = not_ready_warnings(server)
            assert len(warnings) == 1, warnings
            assert f"is not ready ({NO_CHAMPION}): NoChampionError: " in warnings[0]

        # A champion appears in the empty registry: the trained model's files, registered and aliased there.
        client.create_registered_model(MODEL)
        version = str(client.create_model_version(MODEL, model_files).version)
        client.set_registered_model_alias(MODEL, "champion", version)
        # And the model directory appears, filled whole in one rename (a storage initializer's download).
        shutil.copytree(model_files, tmp_path / "download")
        (tmp_path / "download").rename(model_dir)

        for server in (registry, directory):
            server.wait_until(lambda s=server: s.get("/v2/health/ready").status_code == 200, "readiness")
            assert server.readiness() == (1, dict.fromkeys(NOT_READY_REASONS, 0.0))
            for path in READINESS_ROUTES:
                assert server.get(path).status_code == 200, path
            ticket = {"instances": ["My laptop cannot connect to the VPN since this morning"]}
            answer = requests.post(server.url + V1, json=ticket, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"][0]["labels"]["category"]["label"] == "Network"
            assert f"{MODEL} is ready: serving version " in server.log()
            assert f"(was not ready: {NO_CHAMPION})" in server.log()
            assert len(not_ready_warnings(server)) == 1
        answer = requests.post(registry.url + V1, json={"instances": ["printer jammed"]}, timeout=30).json()
        assert answer["predictions"][0]["model"] == {"name": MODEL, "version": version}
    finally:
        codes = [registry.stop(), directory.stop()]
    assert all(code in (0, -signal.SIGTERM) for code in codes), codes


def test_unreachable_mlflow_and_database_are_waited_for(tmp_path: Path) -> None:
    closed_mlflow = f"http://127.0.0.1:{free_port()}"
    closed_database = f"postgresql+psycopg://ticketflow:secret@127.0.0.1:{free_port()}/ticketflow"
    mlflow_down = WaitingServer(tmp_path, MLFLOW_TRACKING_URI=closed_mlflow)
    database_down = WaitingServer(tmp_path, TICKETFLOW_PREDICTION_LOG=closed_database)
    try:
        mlflow_down.wait_for_reason(MLFLOW_UNREACHABLE)
        database_down.wait_for_reason(DATABASE_UNREACHABLE)
        assert_live_not_ready(mlflow_down, MLFLOW_UNREACHABLE, "Connection refused")
        assert_live_not_ready(database_down, DATABASE_UNREACHABLE, "DatabaseUnavailableError: ")
        assert "secret" not in database_down.get("/v2/health/ready").text  # the URL's password stays hidden
        time.sleep(2)
        for server, reason in ((mlflow_down, MLFLOW_UNREACHABLE), (database_down, DATABASE_UNREACHABLE)):
            assert server.proc.poll() is None
            warnings = not_ready_warnings(server)
            assert len(warnings) == 1 and f"is not ready ({reason}): " in warnings[0], warnings
            assert "Traceback" not in server.log()
    finally:
        codes = [mlflow_down.stop(), database_down.stop()]
    assert all(code in (0, -signal.SIGTERM) for code in codes), codes
