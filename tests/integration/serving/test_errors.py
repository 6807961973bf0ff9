"""The server's error handling in-process: one body shape, client errors quiet, server errors with a traceback.

A small FastAPI app gets the same handlers and middleware as the predictor's (kserve's application is one
object per process, so the real one is tested over HTTP in test_server.py).
"""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from kserve.errors import InferenceError, InvalidInput, ModelNotFound
from kserve.protocol.rest.server import RESTServer

from ticketflow.serving.accounting import FAILED, REJECTED
from ticketflow.serving.server import KSERVE_ERROR_STATUS, GuardMiddleware, install_error_handlers

SERVER_LOGGER = "ticketflow.serving.server"
MAX_BODY = 100


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()

    @app.get("/invalid")
    async def invalid() -> None:
        raise InvalidInput("ticket 0 has empty text")

    @app.get("/missing")
    async def missing() -> None:
        raise ModelNotFound("nope")

    @app.get("/inference")
    async def inference() -> None:
        try:
            {}["model"]
        except KeyError as exc:
            raise InferenceError("prediction failed: KeyError: 'model'") from exc

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("a bug")

    @app.get("/conflict")
    async def conflict() -> None:
        raise HTTPException(status_code=409, detail={"why": "already there"})

    @app.get("/typed")
    async def typed(limit: int) -> dict:
        return {"limit": limit}

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return body

    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, max_body_bytes=MAX_BODY)
    return TestClient(app)  # raises any exception that escapes the app: none may


def counter_value(counter, **labels: str) -> float:
    return counter.labels(**labels)._value.get()


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/invalid", {}, 400),
        ("GET", "/missing", {}, 404),
        ("GET", "/conflict", {}, 409),
        ("GET", "/typed", {}, 422),
        ("GET", "/typed?limit=many", {}, 422),
        ("POST", "/echo", {"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 422),
        ("POST", "/echo", {"content": b"x" * (MAX_BODY + 1), "headers": {"content-type": "application/json"}}, 413),
        ("GET", "/nowhere", {}, 404),
        ("PUT", "/typed", {}, 405),
        ("GET", "/inference", {}, 500),
        ("GET", "/crash", {}, 500),
    ],
)
def test_every_error_is_one_error_string(client: TestClient, method: str, path: str, kwargs: dict, status: int) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == status
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body


def test_messages_say_what_went_wrong(client: TestClient) -> None:
    assert client.get("/invalid").json() == {"error": "ticket 0 has empty text"}
    assert client.get("/conflict").json() == {"error": '{"why": "already there"}'}
    assert client.get("/typed").json() == {"error": "invalid request: query.limit: Field required"}
    assert client.get("/nowhere").json() == {"error": "no endpoint /nowhere on this server"}
    wrong_method = client.put("/typed")
    assert wrong_method.json() == {"error": "method PUT is not allowed on /typed"}
    assert wrong_method.headers["allow"] == "GET"
    assert client.get("/crash").json() == {"error": "internal error: RuntimeError"}  # details go to the log only


def test_client_errors_are_logged_at_info_without_a_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=SERVER_LOGGER):  # others still show from WARNING up
        for path in ("/invalid", "/missing", "/conflict", "/typed", "/nowhere"):
            client.get(path)
        client.put("/typed")
        client.post("/echo", content=b"x" * (MAX_BODY + 1))
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [(r.name, r.levelname) for r in records] == [(SERVER_LOGGER, "INFO")] * 7
    assert all(r.exc_info is None and r.exc_text is None for r in records)
    assert records[0].getMessage() == "GET /invalid -> 400: ticket 0 has empty text"
    assert records[-1].getMessage() == f"POST /echo -> 413: request body over {MAX_BODY} bytes"


@pytest.mark.parametrize(("path", "error"), [("/crash", RuntimeError), ("/inference", InferenceError)])
def test_server_errors_are_logged_once_at_error_with_their_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture, path: str, error: type[Exception]
) -> None:
    failed_before = counter_value(FAILED, status="500")
    with caplog.at_level(logging.INFO, logger=SERVER_LOGGER):  # others still show from WARNING up
        assert client.get(path).status_code == 500
    [record] = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert (record.name, record.levelname) == (SERVER_LOGGER, "ERROR")
    assert record.getMessage().startswith(f"GET {path} -> 500: ")
    assert record.exc_info is not None and record.exc_info[0] is error
    assert counter_value(FAILED, status="500") == failed_before + 1


def test_a_client_error_is_counted_once(client: TestClient) -> None:
    before = counter_value(REJECTED, reason="http_409")
    client.get("/conflict")
    assert counter_value(REJECTED, reason="http_409") == before + 1


def test_an_unhandled_error_does_not_escape_the_app(client: TestClient) -> None:
    """Escaping, it would be logged again by uvicorn, which then closes the client's keep-alive connection."""
    assert client.get("/crash").status_code == 500  # TestClient re-raises what escapes the app
    assert client.get("/typed?limit=3").json() == {"limit": 3}


def test_every_error_kserve_handles_has_our_handler() -> None:
    """A kserve upgrade that adds an error handler must not bring back its ERROR-with-traceback logging."""
    app = FastAPI()
    fastapi_errors = set(app.exception_handlers)
    RESTServer._add_exception_handlers(None, app)  # kserve's own registration, on a spare app
    kserve_errors = set(app.exception_handlers) - fastapi_errors - {Exception}
    assert InvalidInput in kserve_errors
    assert kserve_errors - set(KSERVE_ERROR_STATUS) == set()
