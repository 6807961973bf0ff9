"""The bearer-token check of the routes that change server state (reload, feedback)."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from ticketflow.serving.accounting import count_rejected


def authorise(request: Request, api_token: str | None) -> None:
    """Checks `Authorization: Bearer <api_token>` on a state-changing route; no token set means no check.

    Args:
        request: The incoming request.
        api_token: The expected token, or None for no authentication (local use).

    Raises:
        HTTPException: 401 when the header is missing or wrong (counted as `unauthorized`).
    """
    if not api_token:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {api_token}".encode()):
        count_rejected("unauthorized")
        raise HTTPException(status_code=401, detail="missing or wrong bearer token")
