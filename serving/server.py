"""The HTTP server around the predictor: KServe's own app and data plane, run by uvicorn on a chosen host.

KServe's `ModelServer.start()` binds 0.0.0.0 with no way to change it. A laptop must not expose the model
by default, so this module builds the same application with kserve's factory and runs uvicorn itself (see
../shared/notes/kserve.md). It adds what stock KServe lacks:
- a request body limit (stock KServe accepts any size);
- blocked model-repository endpoints (`/v2/repository/.../unload` would otherwise let anyone stop serving);
- a JSON content type for bodies sent without one (tritonclient does that);
- a count of every 4xx by reason, for `/metrics`;
- `POST /v1/models/<name>/reload`, protected by a bearer token when `TICKETFLOW_API_TOKEN` is set;
- agents' feedback and the review queue (`serving/feedback_routes.py`) when given a feedback store;
- a background task that picks up a new champion, and a clean shutdown that flushes the prediction log.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Request

from ticketflow.serving.predictor import FAILED, REJECTED, TicketClassifier

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


@dataclass
class RequestState:
    """Per-request flags shared between the middleware and the model."""

    counted: bool = False


REQUEST_STATE: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar("request_state", default=None)


def mark_counted() -> None:
    """Tells the middleware that the model already counted this request's rejection."""
    state = REQUEST_STATE.get()
    if state is not None:
        state.counted = True


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Pure ASGI middleware: body limit, blocked endpoints, default content type, 4xx counting.

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
            await _send_json(
                send,
                403,
                {"error": "model repository endpoints are disabled on this server; use POST /v1/models/<name>/reload"},
            )
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
                    message = await receive()
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
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
                await _send_json(send, 413, {"error": f"request body over {self.max_body_bytes} bytes"})
                return
            if b"content-type" not in headers and b"inference-header-content-length" not in headers:
                # tritonclient posts JSON without a content type; kserve would then take it for binary data.
                scope = {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}

        state = RequestState()
        REQUEST_STATE.set(state)

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if 400 <= status < 500 and not state.counted:
                    REJECTED.labels(reason=STATUS_REASONS.get(status, f"http_{status}")).inc()
                elif status >= 500:
                    FAILED.labels(status=str(status)).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


def authorise(request: Request, api_token: str | None) -> None:
    """Checks `Authorization: Bearer <api_token>` on a state-changing route; no token set means no check.

    Raises:
        HTTPException: 401 when the header is missing or wrong (counted as `unauthorized`).
    """
    if not api_token:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {api_token}".encode()):
        mark_counted()
        REJECTED.labels(reason="unauthorized").inc()
        raise HTTPException(status_code=401, detail="missing or wrong bearer token")


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
            raise HTTPException(status_code=503, detail=result)
        return result

    return router


def build_app(
    model: TicketClassifier,
    port: int,
    api_token: str | None,
    reload_interval: float,
    feedback_store: FeedbackStore | None = None,
) -> FastAPI:
    """Builds KServe's application for one loaded model, plus our middleware and routes.

    Args:
        model: A loaded `TicketClassifier`.
        port: The HTTP port (KServe records it).
        api_token: Bearer token for state-changing routes, or None.
        reload_interval: Seconds between champion checks; 0 disables the background check.
        feedback_store: Where agents' corrections go; given, the feedback and review-queue routes are served
            (they need the model's prediction log).

    Returns:
        The FastAPI application.

    Raises:
        ValueError: A feedback store is given but the model has no prediction log.
    """
    from kserve import ModelServer
    from kserve import model_server as kserve_server
    from kserve.protocol.rest.server import RESTServer

    server = ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False)
    server.register_model(model)
    RESTServer(
        kserve_server.FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension, port
    ).create_application()
    app: FastAPI = kserve_server.app
    app.include_router(control_router(model, api_token))
    if feedback_store is not None:
        from ticketflow.serving.feedback_routes import feedback_router  # it imports this module

        if model.request_log is None:
            raise ValueError("the feedback routes need the prediction log, and the model has none")
        app.include_router(feedback_router(model.request_log, feedback_store, api_token))
    app.add_middleware(GuardMiddleware, max_body_bytes=model.cfg.max_body_bytes)
    tasks: list[asyncio.Task] = []

    async def start_watch() -> None:
        if reload_interval > 0 and not model.model_dir:
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
