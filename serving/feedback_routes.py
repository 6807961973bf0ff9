"""HTTP routes for agents' feedback, served beside the predictor.

- `POST /v1/feedback` with `{"ticket_id": "<request id>-<i>", "labels": {"category": "Network"}, "source": "…"}`
  (`source` optional, default `agent`) records the true labels of a logged ticket and answers the stored record.
  It needs `Authorization: Bearer <token>` when `TICKETFLOW_API_TOKEN` is set. Answers: 401 for a missing or
  wrong token, 400 for a body that is not JSON, 422 for a body of the wrong shape or labels that do not fit the
  ticket, 404 for a ticket id the prediction log does not hold; nothing is written on any of them.
- `GET /v1/review-queue?limit=N` (1–1000, default 50) lists the logged tickets flagged `needs_review` that have
  no correction yet, least confident first. Read-only, no token.

Every 4xx is counted in `ticketflow_requests_rejected_total` by reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from ticketflow.monitoring.feedback import FeedbackStore, InvalidFeedbackError, UnknownTicketError, review_items
from ticketflow.monitoring.request_log import PredictionLog
from ticketflow.serving.accounting import count_rejected
from ticketflow.serving.auth import authorise

log = logging.getLogger(__name__)

BODY_FIELDS = ("ticket_id", "labels", "source")
MAX_QUEUE_LIMIT = 1000
QUEUE_FLUSH_TIMEOUT_SECONDS = 2.0  # the queue waits this long at most for answers not yet in the log


def _reject(status: int, reason: str, message: str) -> HTTPException:
    """Counts a rejected request under `reason` and returns the error to raise."""
    count_rejected(reason)
    return HTTPException(status_code=status, detail=message)


def _feedback_body(raw: bytes) -> dict[str, Any]:
    """Parses and shape-checks the body; the values themselves are checked by `FeedbackStore.record`."""
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _reject(400, "malformed_request", f"the body is not JSON: {exc}") from exc
    example = '{"ticket_id": "<request id>-<index>", "labels": {"category": "Network"}}'
    if not isinstance(payload, dict):
        raise _reject(422, "invalid_feedback", f"the body must be a JSON object like {example}")
    unknown = sorted(set(payload) - set(BODY_FIELDS))
    if unknown:
        raise _reject(
            422, "invalid_feedback", f"unknown fields {unknown[:10]}; the body takes {', '.join(BODY_FIELDS)}"
        )
    missing = [name for name in BODY_FIELDS[:2] if name not in payload]
    if missing:
        raise _reject(422, "invalid_feedback", f"the body lacks {' and '.join(missing)}; e.g. {example}")
    return payload


def feedback_router(prediction_log: PredictionLog, feedback_store: FeedbackStore, api_token: str | None) -> APIRouter:
    """The feedback and review-queue routes.

    Args:
        prediction_log: The log the server answers into (ticket ids are checked against it).
        feedback_store: Where corrections are written.
        api_token: Bearer token `POST /v1/feedback` needs, or None for no authentication (local use).

    Returns:
        The router.
    """
    router = APIRouter()

    @router.post("/v1/feedback")
    async def post_feedback(request: Request) -> dict[str, Any]:
        authorise(request, api_token)  # before reading the body: no token, no parsing
        payload = _feedback_body(await request.body())
        try:
            record = await run_in_threadpool(
                feedback_store.record,
                payload["ticket_id"],
                payload["labels"],
                payload.get("source", "agent"),
                prediction_log=prediction_log,
            )
        except UnknownTicketError as exc:
            raise _reject(404, "unknown_ticket", str(exc)) from exc
        except InvalidFeedbackError as exc:
            raise _reject(422, "invalid_feedback", str(exc)) from exc
        except (TimeoutError, sqlite3.OperationalError) as exc:  # log not written yet, store locked or unwritable
            log.exception("feedback for %r could not be recorded", payload.get("ticket_id"))
            raise HTTPException(status_code=503, detail=f"feedback could not be recorded now, retry: {exc}") from exc
        return record.to_dict()

    @router.get("/v1/review-queue")
    async def review_queue(limit: int = Query(50, ge=1, le=MAX_QUEUE_LIMIT)) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            with contextlib.suppress(TimeoutError):  # show what is written; the rest comes on the next call
                prediction_log.flush(timeout=QUEUE_FLUSH_TIMEOUT_SECONDS)
            return review_items(feedback_store.review_queue(prediction_log, limit=limit))

        return await run_in_threadpool(read)

    return router
