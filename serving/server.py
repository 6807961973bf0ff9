"""The HTTP server around the predictor: KServe's own app and data plane, run by uvicorn on a chosen host.

KServe's `ModelServer.start()` binds 0.0.0.0 with no way to change it. A laptop must not expose the model
by default, so this module builds the same application with kserve's factory and runs uvicorn itself (see
../shared/notes/kserve.md). It adds what stock KServe lacks:
- a request body limit (stock KServe accepts any size);
- blocked model-repository endpoints (`/v2/repository/.../unload` would otherwise let anyone stop serving);
- a JSON content type for bodies sent without one (tritonclient does that);
- the V2 infer route without FastAPI's per-request body model and response encoding (`serving/v2_infer.py`);
- one error body on the whole port, KServe's `{"error": "<message>"}`, for every 4xx and 5xx (FastAPI's own
  answers, `{"detail": ...}`, included); client errors logged at INFO, server errors at ERROR with traceback;
- a count of every 4xx by reason, for `/metrics`;
- `POST /v1/models/<name>/reload`, protected by a bearer token when `TICKETFLOW_API_TOKEN` is set;
- agents' feedback and the review queue (`serving/feedback_routes.py`) when given a feedback store;
- readiness that means a model answers: `/v2/health/ready` (stock KServe answers ready whenever no predictor host
  is set) and every not-ready 503 (`/v2/models/<name>/ready`, `/v1/models/<name>`, predict) say why;
- a background task that loads the model, retrying until it can (the server is live meanwhile, not ready), then
  picks up a new champion; and a clean shutdown that flushes the prediction log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve import ModelServer
from kserve import model_server as kserve_server
from kserve.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotLive,
    ServerNotReady,
    UnsupportedProtocol,
)
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import RESTServer
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException

from ticketflow.serving.accounting import FAILED, REJECTED, begin_request
from ticketflow.serving.auth import authorise
from ticketflow.serving.feedback_routes import feedback_router
from ticketflow.serving.predictor import TicketClassifier
from ticketflow.serving.v2_infer import install_v2_infer

if TYPE_CHECKING:
    from ticketflow.monitoring.feedback import FeedbackStore

log = logging.getLogger(__name__)

# Reasons for 4xx answers produced before our model code runs (kserve's own checks, routing, schema).
STATUS_REASONS = {
    400: "malformed_request",
    401: "unauthorized",
    403: "forbidden",
    404: "unknown_model",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request_schema",
}
BLOCKED_PREFIXES = ("/v2/repository",)
# The status of each error kserve registers a handler for (kserve/protocol/rest/server.py). Its handlers log
# every one of them at ERROR with a traceback, a caller's bad input included, so ours replace them.
KSERVE_ERROR_STATUS: dict[type[Exception], int] = {
    InvalidInput: 400,
    ModelNotFound: 404,
    InferenceError: 500,
    NotImplementedError: 501,
    UnsupportedProtocol: 501,
    ModelNotReady: 503,
    ServerNotLive: 503,
    ServerNotReady: 503,
}
MAX_VALIDATION_ERRORS_SHOWN = 5


def log_error_answer(method: str, path: str, status: int, message: str, exc: BaseException | None = None) -> None:
    """Logs one error answer: a client error (4xx) at INFO without a traceback, a server error at ERROR with one.

    Args:
        method: The request's HTTP method.
        path: The request's path.
        status: The answered status code.
        message: The message of the answer's body.
        exc: The exception behind a server error; its traceback is logged.
    """
    if status < 500:
        log.info("%s %s -> %d: %s", method, path, status, message)
    else:
        log.error("%s %s -> %d: %s", method, path, status, message, exc_info=exc)


def error_response(
    request: Request,
    status: int,
    message: str,
    exc: BaseException | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Logs an error answer and returns it in KServe's shape, `{"error": "<message>"}`.

    Args:
        request: The request answered.
        status: The HTTP status code.
        message: What went wrong, for the caller.
        exc: The exception behind a server error; its traceback is logged.
        headers: Extra response headers (the `Allow` of a 405, say).

    Returns:
        The JSON response.
    """
    log_error_answer(request.method, request.url.path, status, message, exc)
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


async def _http_exception_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if exc.status_code == 404 and detail == HTTPStatus.NOT_FOUND.phrase:  # the router's own: no route matched
        message = f"no endpoint {request.url.path} on this server"
    elif exc.status_code == 405 and detail == HTTPStatus.METHOD_NOT_ALLOWED.phrase:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return error_response(request, exc.status_code, message, headers=exc.headers)


async def _validation_exception_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    problems = [
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
        for error in errors[:MAX_VALIDATION_ERRORS_SHOWN]
    ]
    more = len(errors) - len(problems)
    message = "invalid request: " + "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
    return error_response(request, HTTPStatus.UNPROCESSABLE_ENTITY, message)


def _kserve_error_handler(status: int):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, status, str(exc) or type(exc).__name__, exc if status >= 500 else None)

    return handle


async def _unhandled_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    return error_response(request, HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}", exc)


def install_error_handlers(app: Starlette) -> None:
    """Makes every error the application answers KServe's `{"error": "<message>"}`, logged once.

    Replaces FastAPI's handlers (`{"detail": ...}` for HTTPException, unknown routes, wrong methods and request
    validation) and kserve's (which log a caller's mistake at ERROR with a traceback).

    Args:
        app: The application, after kserve registered its handlers.
    """
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_exception_handler)
    for error_class, status in KSERVE_ERROR_STATUS.items():
        app.add_exception_handler(error_class, _kserve_error_handler(status))
    app.add_exception_handler(Exception, _unhandled_exception_handler)


async def _send_error(scope, send, status: int, message: str, exc: BaseException | None = None) -> None:
    """Answers `{"error": message}` from the middleware itself, logged like the handlers' answers."""
    log_error_answer(scope["method"], scope["path"], status, message, exc)
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Pure ASGI middleware: body limit, blocked endpoints, default content type, error counting, last-resort 500.

    Args:
        app: The wrapped ASGI app.
        max_body_bytes: Largest accepted request body.
    """

    def __init__(self, app, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        """Handles one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(BLOCKED_PREFIXES):
            REJECTED.labels(reason="blocked_endpoint").inc()
            refusal = "model repository endpoints are disabled on this server; use POST /v1/models/<name>/reload"
            await _send_error(scope, send, HTTPStatus.FORBIDDEN, refusal)
            return
        headers = dict(scope["headers"])
        if scope["method"] in ("POST", "PUT", "PATCH"):
            declared = headers.get(b"content-length", b"")
            too_big = declared.isdigit() and int(declared) > self.max_body_bytes
            if not too_big and not declared.isdigit():
                # No declared length (chunked): count the body as it comes, then hand it on. A declared length
                # needs none of this: the HTTP parser delivers exactly that many bytes.
                body, more = b"", True
                while more and not too_big:
                    chunk = await receive()
                    body += chunk.get("body", b"")
                    more = chunk.get("more_body", False)
                    too_big = len(body) > self.max_body_bytes
                replayed = False

                async def receive():
                    nonlocal replayed
                    if replayed:
                        return {"type": "http.disconnect"}
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}

            if too_big:
                REJECTED.labels(reason="body_too_large").inc()
                refusal = f"request body over {self.max_body_bytes} bytes"
                await _send_error(scope, send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, refusal)
                return
            if b"content-type" not in headers and b"inference-header-content-length" not in headers:
                # tritonclient posts JSON without a content type; kserve would then take it for binary data.
                scope = {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}

        state = begin_request()
        started = False

        async def counting_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                if 400 <= status < 500 and not state.counted:
                    REJECTED.labels(reason=STATUS_REASONS.get(status, f"http_{status}")).inc()
                elif status >= 500:
                    FAILED.labels(status=str(status)).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception as exc:
            # Starlette answers an unhandled exception and then re-raises it, so uvicorn logs it a second time and
            # closes the keep-alive connection under the client's next request. Answered here, neither happens.
            if started:
                raise
            failure = f"internal error: {type(exc).__name__}"
            await _send_error(scope, counting_send, HTTPStatus.INTERNAL_SERVER_ERROR, failure, exc)


class ModelsReadyDataPlane(DataPlane):
    """KServe's data plane whose server readiness (`/v2/health/ready`) is that of its models.

    Stock KServe answers ready whenever no predictor host is configured, even with no model loaded: a pod would
    get traffic it can only answer with 503.
    """

    async def ready(self) -> bool:
        """Whether every registered model is ready (the V2 server-ready route answers 503 otherwise)."""
        for model in self.model_registry.get_models().values():
            if not await model.healthy():
                return False
        return True


def not_ready_handler(model: TicketClassifier):
    """The handler of kserve's `ModelNotReady` and `ServerNotReady`: a 503 that says why the model is not ready.

    Readiness probes (GET) are logged at DEBUG: a probe every few seconds would fill the log; the reason is
    already logged once per change (WARNING, by the predictor).

    Args:
        model: The served model.

    Returns:
        The exception handler.
    """

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        message = f"model {model.name} is not ready: {model.not_ready_detail}"
        if request.method == "GET":
            log.debug("%s %s -> 503: %s", request.method, request.url.path, message)
        else:
            log.info("%s %s -> 503: %s", request.method, request.url.path, message)
        return JSONResponse(status_code=HTTPStatus.SERVICE_UNAVAILABLE, content={"error": message})

    return handle


def control_router(model: TicketClassifier, api_token: str | None) -> APIRouter:
    """Routes that change server state; they need `Authorization: Bearer <token>` when a token is set.

    Args:
        model: The served model.
        api_token: The expected bearer token, or None for no authentication (local use).

    Returns:
        The router.
    """
    router = APIRouter()

    @router.post("/v1/models/{name}/reload")
    async def reload(name: str, request: Request, force: bool = False) -> dict:
        authorise(request, api_token)
        if name != model.name:
            raise HTTPException(status_code=404, detail=f"model {name!r} is not served here")
        result = await model.reload(force=force)
        if "error" in result:
            serving = f"still serving version {result['version']}" if result["version"] else "nothing loaded yet"
            raise HTTPException(status_code=503, detail=f"reload failed, {serving}: {result['error']}")
        return result

    return router


def build_app(
    model: TicketClassifier,
    port: int,
    api_token: str | None,
    reload_interval: float,
    feedback_store: FeedbackStore | None = None,
) -> FastAPI:
    """Builds KServe's application for one model, plus our middleware, error handlers and routes.

    KServe's application is one object per process (`kserve.model_server.app`): call this once. The model need
    not be loaded: a background task started with the server loads it, retrying until it can, and the server
    answers live but not ready meanwhile.

    Args:
        model: A `TicketClassifier`, loaded or not.
        port: The HTTP port (KServe records it).
        api_token: Bearer token for state-changing routes, or None.
        reload_interval: Seconds between champion checks, and between load attempts while nothing is loaded; 0
            disables the champion checks (load attempts then come every `predictor.WAIT_RETRY_SECONDS`).
        feedback_store: Where agents' corrections go; given, the feedback and review-queue routes are served
            (they need the model's prediction log).

    Returns:
        The FastAPI application.

    Raises:
        ValueError: A feedback store is given but the model has no prediction log.
    """
    server = ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False)
    server.dataplane = ModelsReadyDataPlane(model_registry=server.registered_models)
    server.register_model(model)
    RESTServer(
        kserve_server.FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension, port
    ).create_application()
    app: FastAPI = kserve_server.app
    # KServe's TimingMiddleware writes two INFO lines (wall and CPU time) to the `kserve.trace` log for every request,
    # readiness probes included, and matches each request's route a second time to name them: about a tenth of the
    # server's own work on one ticket. Its Prometheus histograms (`request_predict_seconds`, ...) time every request
    # already, and our probes log at DEBUG so that they do not fill the log. (By name: timing_asgi is kserve's
    # dependency, not ours.)
    app.user_middleware = [entry for entry in app.user_middleware if entry.cls.__name__ != "TimingMiddleware"]
    install_v2_infer(app, server.dataplane)
    install_error_handlers(app)
    for error_class in (ModelNotReady, ServerNotReady):
        app.add_exception_handler(error_class, not_ready_handler(model))
    app.include_router(control_router(model, api_token))
    if feedback_store is not None:
        if model.request_log is None:
            raise ValueError("the feedback routes need the prediction log, and the model has none")
        app.include_router(feedback_router(model.request_log, feedback_store, api_token))
    app.add_middleware(GuardMiddleware, max_body_bytes=model.cfg.max_body_bytes)
    tasks: list[asyncio.Task] = []

    async def start_watch() -> None:
        tasks.append(asyncio.create_task(model.watch_champion(reload_interval)))

    async def shutdown() -> None:
        for task in tasks:
            task.cancel()
        model.stop()  # flushes the prediction log: nothing answered is lost on a clean shutdown
        log.info("predictor stopped; prediction log flushed")

    app.router.add_event_handler("startup", start_watch)
    app.router.add_event_handler("shutdown", shutdown)
    return app


def serve(app: FastAPI, host: str, port: int) -> None:
    """Runs the application with uvicorn on `host:port` until SIGINT/SIGTERM (graceful, 30 s)."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=30, access_log=False)
    uvicorn.Server(config).run()
