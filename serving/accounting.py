"""What the predictor, the extra routes and the server's middleware share about a request's outcome.

The counters of refused (4xx) and failed (5xx) requests, and a per-request flag that lets whoever refuses a
request count it under a precise reason (`count_rejected`) so that the middleware, which sees every 4xx,
does not count it a second time under a generic one. This module sits below `predictor`, `auth`,
`feedback_routes` and `server`, and imports none of them.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from ticketflow.monitoring.metrics import FAILED, REJECTED

__all__ = ["FAILED", "REJECTED", "begin_request", "count_rejected", "mark_counted"]


@dataclass
class RequestState:
    """Per-request flags shared between the middleware and the code answering the request.

    Attributes:
        counted: The request's rejection is already counted in `REJECTED`.
    """

    counted: bool = False


REQUEST_STATE: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar("request_state", default=None)


def begin_request() -> RequestState:
    """Starts the state of a new request (called by the middleware, once per HTTP request).

    Returns:
        The state the middleware reads when the answer goes out.
    """
    state = RequestState()
    REQUEST_STATE.set(state)
    return state


def mark_counted() -> None:
    """Tells the middleware that this request's rejection is already counted."""
    state = REQUEST_STATE.get()
    if state is not None:
        state.counted = True


def count_rejected(reason: str) -> None:
    """Counts the current request as rejected under `reason`, once (the middleware then leaves it alone).

    Args:
        reason: The `reason` label of `ticketflow_requests_rejected_total`.
    """
    REJECTED.labels(reason=reason).inc()
    mark_counted()
