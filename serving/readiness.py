"""Why the predictor is not ready yet, and how a failed load is sorted into one reason.

`ticketflow serve` stays up when it cannot load a model (no champion yet, its vectors missing, MLflow, ChromaDB
or the database out of reach): live but not ready, retrying on its reload interval. Each failed load is sorted
into one of `NOT_READY_REASONS` (monitoring/metrics.py), so the log, `/metrics` and the 503 answers say why.

The loader marks each step with the service it talks to (`talking_to`): a refused connection means that service
is unreachable, anything else is a `load_error`. A missing champion or an empty vector collection are raised as
`NoChampionError` and `NoVectorsError`; the prediction log's `DatabaseUnavailableError` means the database.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import httpx
import requests
import urllib3.exceptions
from kserve.errors import ModelMissingError

from ticketflow.monitoring.database import DatabaseUnavailableError
from ticketflow.monitoring.metrics import NOT_READY_REASON, NOT_READY_REASONS, READY

NO_CHAMPION = "no_champion"
NO_VECTORS = "no_vectors"
MLFLOW_UNREACHABLE = "mlflow_unreachable"
CHROMA_UNREACHABLE = "chroma_unreachable"
DATABASE_UNREACHABLE = "database_unreachable"
LOAD_ERROR = "load_error"

Service = Literal["mlflow", "chroma", "database"]
MLFLOW: Service = "mlflow"
CHROMA: Service = "chroma"
DATABASE: Service = "database"
UNREACHABLE: dict[Service, str] = {
    MLFLOW: MLFLOW_UNREACHABLE,
    CHROMA: CHROMA_UNREACHABLE,
    DATABASE: DATABASE_UNREACHABLE,
}

# What a client raises (or chains) when it gets no usable answer: refused, unresolvable, timed out, or (MLflow's
# retries exhausted on 5xx) answered only with errors. MLflow wraps requests' errors in an MlflowException and
# ChromaDB httpx's in a ValueError, keeping them as the cause, so the whole chain is searched.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.RetryError,
    urllib3.exceptions.ConnectTimeoutError,  # NewConnectionError and NameResolutionError included
    httpx.NetworkError,
    httpx.TimeoutException,
)


class NoChampionError(ModelMissingError):
    """Nothing to serve yet: no version behind the alias, or no model directory."""


class NoVectorsError(ModelMissingError):
    """The model's vector collection is missing or empty."""


class NotReadyError(Exception):
    """A failed load attempt, sorted into its not-ready reason; the original error is its cause.

    Args:
        reason: One of `NOT_READY_REASONS`.
        error: What the load raised.
    """

    def __init__(self, reason: str, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.reason = reason
        self.error = error


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error, then what it was raised from or while handling, as Python prints them."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def is_connection_error(error: BaseException) -> bool:
    """Whether the error, or one it came from, says a service could not be reached."""
    return any(isinstance(cause, CONNECTION_ERRORS) for cause in _causes(error))


def not_ready_reason(error: BaseException, service: Service | None = None) -> str:
    """The reason a failed load counts under, one of `NOT_READY_REASONS`.

    Args:
        error: What the load attempt raised.
        service: The service the failing step talked to: `mlflow` (alias lookup, model download), `chroma`
            (the vector collection) or `database` (the prediction log's check, whose every failure means the
            database cannot be used); None when unknown.

    Returns:
        `no_champion`, `no_vectors`, `<service>_unreachable`, or `load_error` for anything else.
    """
    if isinstance(error, NotReadyError):
        return error.reason
    causes = list(_causes(error))
    if any(isinstance(cause, NoVectorsError) for cause in causes):
        return NO_VECTORS
    if any(isinstance(cause, ModelMissingError) for cause in causes):
        return NO_CHAMPION
    if service == DATABASE or any(isinstance(cause, DatabaseUnavailableError) for cause in causes):
        return DATABASE_UNREACHABLE
    if service is not None and is_connection_error(error):
        return UNREACHABLE[service]
    return LOAD_ERROR


def as_not_ready_error(error: BaseException, service: Service | None = None) -> NotReadyError:
    """The error as a `NotReadyError` (unchanged when it already is one)."""
    return error if isinstance(error, NotReadyError) else NotReadyError(not_ready_reason(error, service), error)


@contextmanager
def talking_to(service: Service) -> Iterator[None]:
    """Re-raises a failure inside the block as a `NotReadyError` sorted as one while talking to `service`.

    Args:
        service: The service the block talks to.
    """
    try:
        yield
    except NotReadyError:
        raise
    except Exception as exc:
        raise NotReadyError(not_ready_reason(exc, service), exc) from exc


def probe_tracking_server(tracking_uri: str, timeout: float) -> None:
    """Fails fast when an HTTP(S) MLflow tracking server does not answer; other tracking URIs pass.

    MLflow's client retries a refused connection for about four minutes before it gives up; a waiting
    predictor would learn nothing for that long.

    Args:
        tracking_uri: The MLflow tracking URI.
        timeout: Seconds to wait for an answer.

    Raises:
        requests.ConnectionError: Nothing answers (refused, unresolvable host).
        requests.Timeout: No answer within `timeout`.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout)  # any status: something answered
    except requests.exceptions.SSLError:
        return  # it answered; whether MLflow's client accepts its certificate is MLflow's settings' business


def publish_readiness(ready: bool, reason: str | None) -> None:
    """Sets the readiness metrics: `ticketflow_predictor_ready`, and 1 for the current reason, 0 for the others.

    Args:
        ready: Whether a model is loaded and answers.
        reason: The current not-ready reason, or None (ready, or the first attempt still running).
    """
    READY.set(1 if ready else 0)
    for known in NOT_READY_REASONS:
        NOT_READY_REASON.labels(reason=known).set(1 if known == reason else 0)
