"""Agents' feedback: the true labels of logged tickets, the review queue, and live accuracy.

Agents correct the served model's answers by ticket id (`"<request id>-<index>"`, as answered and logged in the
prediction log). `FeedbackStore.record` checks that the ticket was logged and that every corrected target is one
the model predicted for it, then writes all the corrections of the call in one transaction: all of them or none.
A label the model has never predicted is accepted as it is: it becomes a class at the next retraining once it has
`min_class_examples` tickets (ingest leaves rarer classes out, with a warning).

Every correction keeps a snapshot of what it corrects (the ticket's text, the predicted label and its confidence,
the model version and the time of the prediction), so feedback outlives the prediction log's retention and stays
right when a client reuses a request id and its tickets are logged again.

The table `feedback` (one row per ticket and target) lives in the prediction log's database (`database.py`: a
SQLite file or PostgreSQL, one URL for both), so the review queue is one SQL query joining the two tables and live
accuracy one `GROUP BY`. Nothing happens at import, and constructing a store does not connect.
"""

from __future__ import annotations

import contextlib
import logging
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ticketflow.monitoring.database import (
    DatabaseUnavailableError,
    ensure_schema,
    feedback,
    forget_schema,
    parse_url,
    predictions,
    redacted,
    write_transaction,
)

if TYPE_CHECKING:
    from ticketflow.monitoring.request_log import PredictionLog

log = logging.getLogger(__name__)

MAX_LABEL_CHARS = 200  # longest accepted label, after stripping
MAX_SOURCE_CHARS = 100  # longest accepted source name
LOG_FLUSH_TIMEOUT_SECONDS = 5.0  # how long `record` waits for the log's buffered records before calling an id unknown

# Columns of `FeedbackStore.read`, in order.
COLUMNS = (
    "ticket_id",
    "text",
    "target",
    "label",
    "predicted_label",
    "correct",
    "confidence",
    "model_version",
    "predicted_at",
    "created_at",
    "updated_at",
    "source",
    "served",
)
_STORED = tuple(c for c in COLUMNS if c != "correct")
_TIME_COLUMNS = ("predicted_at", "created_at", "updated_at")


class UnknownTicketError(KeyError):
    """The ticket id is not in the prediction log (never answered, not yet written, or purged)."""

    def __str__(self) -> str:  # KeyError's own str() quotes the message
        return str(self.args[0]) if self.args else ""


class InvalidFeedbackError(ValueError):
    """The feedback itself is malformed: no labels, a target the ticket has no prediction for, a bad label."""


@dataclass(frozen=True)
class FeedbackRecord:
    """Every correction recorded for one ticket.

    Attributes:
        ticket_id: The ticket's id as answered (`"<request id>-<index>"`).
        text: The ticket's text as logged (masked when the server masks personal data).
        labels: Target -> the true label, for every target corrected so far.
        predicted: Target -> the label the model predicted, for the same targets.
        model_version: The model version that answered (or, not served, whose label audit disputed the ticket).
        source: Who made the latest correction.
        created_at: When the ticket was first corrected (UTC).
        updated_at: When it was last corrected (UTC).
    """

    ticket_id: str
    text: str
    labels: dict[str, str]
    predicted: dict[str, str]
    model_version: str
    source: str
    created_at: datetime
    updated_at: datetime
    served: bool = True

    @property
    def correct(self) -> dict[str, bool]:
        """Target -> whether the model's prediction was right."""
        return {target: label == self.predicted.get(target) for target, label in self.labels.items()}

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (times as ISO-8601 text)."""
        return {
            "ticket_id": self.ticket_id,
            "text": self.text,
            "labels": dict(self.labels),
            "predicted": dict(self.predicted),
            "correct": self.correct,
            "model_version": self.model_version,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "served": self.served,
        }


class FeedbackStore:
    """Corrections of logged tickets, in the `feedback` table of the prediction log's database.

    Args:
        uri: The database URL, the prediction log's (`sqlite:///path/to/file.db` or
            `postgresql+psycopg://user:password@host:5432/db`).

    Raises:
        ValueError: For a URL `database.parse_url` refuses.
    """

    def __init__(self, uri: str) -> None:
        self.url = parse_url(uri)
        self.uri = uri

    @property
    def name(self) -> str:
        """The database URL with its password hidden, for messages."""
        return redacted(self.url)

    # ---- writing -------------------------------------------------------------------------------------------
    def record(
        self,
        ticket_id: str,
        labels: Mapping[str, str],
        source: str = "agent",
        *,
        prediction_log: PredictionLog,
        known_tickets: Callable[[str], Mapping[str, Any] | None] | None = None,
    ) -> FeedbackRecord:
        """Records the true labels of one logged ticket, all targets in one transaction.

        Recording a target again replaces its label and keeps the time it was first corrected. A ticket the log
        never saw is accepted when `known_tickets` knows it: a training ticket whose label the model disputes
        (`ticketflow review-queue --label-issues`), whose correction replaces its row at the next retraining.

        Args:
            ticket_id: The ticket's id as answered and logged.
            labels: Target (a label column the model predicts, e.g. `category`) -> the true label. Labels are
                stripped; new labels, never predicted before, are accepted.
            source: Who corrects (default `agent`).
            prediction_log: The log the ticket was answered into. When the id is not there yet, records still
                buffered by this process are written first (the server answers before its log is written).
            known_tickets: Looked up with the ticket id when the log does not have it: the record to correct in the
                log's shape (`text`, `labels` and `confidences` per target, `model_version`, `timestamp`), or None.
                The caller fills it (the CLI: the champion's label issues), so this store needs no registry. Such a
                correction is stored with `served` false: it corrects no answer.

        Returns:
            Every correction now stored for the ticket.

        Raises:
            InvalidFeedbackError: No labels, a target the ticket has no prediction for (the message names the
                valid ones), or a label that is not a non-empty single-line string of at most 200 characters.
            UnknownTicketError: The ticket is not in the prediction log. Nothing is written.
            TimeoutError: The log's buffered records could not be written in time (it keeps retrying).
            DatabaseUnavailableError: The database cannot be reached; nothing of this call is written.
        """
        ticket_id = _ticket_id(ticket_id)
        source = _clean(source, "source", MAX_SOURCE_CHARS)
        cleaned = _clean_labels(labels)
        logged = prediction_log.get(ticket_id)
        if logged is None:
            prediction_log.flush(timeout=LOG_FLUSH_TIMEOUT_SECONDS)  # returns at once unless this process writes
            logged = prediction_log.get(ticket_id)
        served = logged is not None
        if logged is None and known_tickets is not None:
            logged = known_tickets(ticket_id)  # never served: live accuracy, which scores answers, leaves it out
        if logged is None:
            raise UnknownTicketError(
                f"ticket {_shorten(ticket_id)} is not in the prediction log {prediction_log.name}: no ticket was "
                "answered with this id, or it is older than the log's retention"
                + ("; nor among the known tickets (the champion's label issues)" if known_tickets is not None else "")
            )
        predicted: dict[str, str] = logged["labels"]
        unknown = sorted(set(cleaned) - set(predicted))
        if unknown:
            raise InvalidFeedbackError(
                f"ticket {ticket_id!r} has no prediction for {', '.join(map(repr, unknown))}; "
                f"valid targets: {', '.join(sorted(predicted)) or 'none'}"
            )
        now = datetime.now(UTC)
        rows = [
            {
                "ticket_id": ticket_id,
                "text": logged["text"],
                "target": target,
                "label": label,
                "predicted_label": predicted[target],
                "confidence": _confidence(logged["confidences"].get(target)),
                "model_version": logged["model_version"],
                "predicted_at": logged["timestamp"],
                "created_at": now,
                "updated_at": now,
                "source": source,
                "served": served,
            }
            for target, label in cleaned.items()
        ]
        with self._connection(write=True) as connection:
            connection.execute(_upsert(connection.dialect.name), rows)
        log.info("feedback for %s from %s: %s", ticket_id, source, cleaned)
        stored = self.get(ticket_id)
        if stored is None:  # just written in the same transaction: only a broken store gets here
            raise RuntimeError(f"feedback for {ticket_id} was written but cannot be read back")
        return stored

    @contextlib.contextmanager
    def _connection(self, write: bool = False) -> Iterator[sa.Connection]:
        """A connection (in a transaction when writing); an unreachable database raises DatabaseUnavailableError."""
        engine = ensure_schema(self.url)
        try:
            with write_transaction(engine) if write else engine.connect() as connection:
                yield connection
        except sa.exc.OperationalError as exc:
            forget_schema(self.url)  # the database may come back empty: check the tables again next time
            raise DatabaseUnavailableError(f"database {self.name} is unavailable: {exc.orig or exc}") from exc

    # ---- reading -------------------------------------------------------------------------------------------
    def _rows(self, query: sa.Select) -> list[dict[str, Any]]:
        with self._connection() as connection:
            return [row._asdict() for row in connection.execute(query)]

    def get(self, ticket_id: str) -> FeedbackRecord | None:
        """The corrections of one ticket, or None when it has none."""
        values = self._rows(
            sa.select(*(feedback.c[name] for name in _STORED))
            .where(feedback.c.ticket_id == str(ticket_id))
            .order_by(feedback.c.target)
        )
        if not values:
            return None
        latest = max(values, key=lambda v: v["updated_at"])
        return FeedbackRecord(
            ticket_id=latest["ticket_id"],
            text=latest["text"],
            labels={v["target"]: v["label"] for v in values},
            predicted={v["target"]: v["predicted_label"] for v in values},
            model_version=latest["model_version"],
            source=latest["source"],
            created_at=min(v["created_at"] for v in values),
            updated_at=latest["updated_at"],
            served=bool(latest["served"]),
        )

    def read(self) -> pd.DataFrame:
        """Every correction, one row per ticket and target, oldest correction first.

        Returns:
            Columns `ticket_id`, `text`, `target`, `label` (the true one), `predicted_label`, `correct` (bool),
            `confidence` (of the prediction), `model_version`, `predicted_at`, `created_at`, `updated_at` (UTC
            datetimes), `source` and `served` (false for a training ticket the label audit disputed).
        """
        rows = self._rows(
            sa.select(*(feedback.c[name] for name in _STORED)).order_by(
                feedback.c.created_at, feedback.c.ticket_id, feedback.c.target
            )
        )
        frame = pd.DataFrame(rows, columns=list(_STORED))
        for column in _TIME_COLUMNS:
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ns, UTC]")
        frame["confidence"] = frame["confidence"].astype(float)
        frame["correct"] = (frame["label"] == frame["predicted_label"]).astype(bool)
        frame["served"] = frame["served"].astype(bool)
        return frame[list(COLUMNS)]

    def labelled_ticket_ids(self) -> set[str]:
        """Ids of the tickets with at least one correction."""
        return {row["ticket_id"] for row in self._rows(sa.select(feedback.c.ticket_id).distinct())}

    def labelled_tickets(self) -> pd.DataFrame:
        """The corrected tickets in the shape of training data, oldest correction first.

        A ticket corrected for only some targets has NaN for the others: the model's prediction is not a
        label, and whether to drop such tickets or train each target on what it has is the retraining's call.

        Returns:
            Columns `ticket_id`, `text`, then one column per corrected target (alphabetical) with the true label.
        """
        frame = self.read()
        targets = sorted(frame["target"].unique())
        latest = frame.sort_values("updated_at", kind="stable")  # a ticket's latest text snapshot wins
        tickets = latest.groupby("ticket_id", sort=False).agg(text=("text", "last"), first=("created_at", "min"))
        labels = frame.pivot(index="ticket_id", columns="target", values="label")
        joined = tickets.join(labels).sort_values("first", kind="stable").reset_index()
        return pd.DataFrame(
            {"ticket_id": joined["ticket_id"], "text": joined["text"], **{t: joined[t] for t in targets}},
            index=pd.RangeIndex(len(joined)),
        )

    def live_accuracy(
        self, *, since: datetime | None = None, model_version: str | None = None
    ) -> dict[str, dict[str, float | int]]:
        """Accuracy of the served predictions on the corrected tickets, per target (one `GROUP BY` in SQL).

        Corrected tickets are not a random sample (agents mostly correct what the review queue shows, the
        least confident answers), so this is a floor to watch move, not the model's accuracy on all traffic.
        Corrections of training tickets from the label audit were never served answers and are left out.

        Args:
            since: Only tickets answered at or after this time (timezone-aware).
            model_version: Only tickets answered by this model version.

        Returns:
            Target -> `{"accuracy": 0–1, "n": corrected tickets}`, for targets with at least one correction.
        """
        correct = sa.case((feedback.c.label == feedback.c.predicted_label, 1.0), else_=0.0)
        query = sa.select(feedback.c.target, sa.func.avg(correct), sa.func.count()).group_by(feedback.c.target)
        query = query.where(feedback.c.served == sa.true())
        if since is not None:
            if not isinstance(since, datetime) or since.utcoffset() is None:
                raise ValueError(f"since must be a timezone-aware datetime, not {since!r}")
            query = query.where(feedback.c.predicted_at >= since)
        if model_version is not None:
            query = query.where(feedback.c.model_version == str(model_version))
        with self._connection() as connection:
            rows = connection.execute(query.order_by(feedback.c.target)).all()
        return {str(target): {"accuracy": float(accuracy), "n": int(n)} for target, accuracy, n in rows}

    def review_queue(self, prediction_log: PredictionLog, limit: int = 50) -> pd.DataFrame:
        """Logged tickets flagged `needs_review` that have no correction yet, least confident first.

        One SQL query over both tables (they share a database): the flagged tickets in the order of the
        `predictions_review` index, without a row in `feedback`, first `limit` of them.

        Args:
            prediction_log: The prediction log (only its written records are seen); it must use this store's
                database.
            limit: Most tickets returned, at least 1.

        Returns:
            Columns `ticket_id`, `text`, `timestamp`, `model_version`, `min_confidence` (the lowest confidence
            across the ticket's targets, the sort key; ties go oldest first), then `label_<target>` and
            `confidence_<target>` per target.

        Raises:
            ValueError: A bad limit, or a prediction log in another database.
        """
        if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        if prediction_log.url != self.url:
            raise ValueError(
                f"the review queue needs the prediction log and the feedback in one database; the log is in "
                f"{prediction_log.name}, the feedback in {self.name}"
            )
        corrected = sa.exists().where(feedback.c.ticket_id == predictions.c.ticket_id)
        query = (
            sa.select(
                predictions.c.ticket_id,
                predictions.c.text,
                predictions.c.timestamp,
                predictions.c.model_version,
                predictions.c.min_confidence,
                predictions.c.labels,
                predictions.c.confidences,
            )
            .where(predictions.c.needs_review == sa.true(), ~corrected)
            .order_by(predictions.c.min_confidence, predictions.c.timestamp, predictions.c.ticket_id)
            .limit(int(limit))
        )
        rows = self._rows(query)
        targets = sorted({target for row in rows for target in (*row["labels"], *row["confidences"])})
        columns: dict[str, Any] = {
            "ticket_id": [row["ticket_id"] for row in rows],
            "text": [row["text"] for row in rows],
            "timestamp": pd.to_datetime([row["timestamp"] for row in rows], utc=True).astype("datetime64[ns, UTC]"),
            "model_version": [row["model_version"] for row in rows],
            "min_confidence": np.array(
                [np.nan if row["min_confidence"] is None else row["min_confidence"] for row in rows], dtype=float
            ),
        }
        for target in targets:
            columns[f"label_{target}"] = np.array([row["labels"].get(target) for row in rows], dtype=object)
            columns[f"confidence_{target}"] = np.array(
                [np.nan if row["confidences"].get(target) is None else row["confidences"][target] for row in rows],
                dtype=float,
            )
        return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))


def _upsert(dialect: str) -> sa.Insert:
    """`INSERT ... ON CONFLICT (ticket_id, target) DO UPDATE`, keeping the first correction's `created_at`."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(feedback)
    kept = {"ticket_id", "target", "created_at"}
    updated = {c.name: insert.excluded[c.name] for c in feedback.columns if c.name not in kept}
    return insert.on_conflict_do_update(index_elements=[feedback.c.ticket_id, feedback.c.target], set_=updated)


def review_items(queue: pd.DataFrame) -> list[dict[str, Any]]:
    """Turns `FeedbackStore.review_queue`'s table into JSON-ready objects (the HTTP and CLI answer).

    Returns:
        One object per ticket: `ticket_id`, `text`, `timestamp` (ISO-8601), `model_version`, `min_confidence`
        and `labels` (target -> `{"label", "confidence"}`, for the targets the ticket was answered for).
    """
    targets = [c.removeprefix("label_") for c in queue.columns if c.startswith("label_")]
    items = []
    for row in queue.to_dict("records"):
        labels = {
            target: {"label": row[f"label_{target}"], "confidence": float(row[f"confidence_{target}"])}
            for target in targets
            if isinstance(row[f"label_{target}"], str)
        }
        minimum = row["min_confidence"]
        items.append(
            {
                "ticket_id": row["ticket_id"],
                "text": row["text"],
                "timestamp": row["timestamp"].isoformat(),
                "model_version": row["model_version"],
                "min_confidence": None if pd.isna(minimum) else float(minimum),
                "labels": labels,
            }
        )
    return items


def _ticket_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidFeedbackError(f"the ticket id must be a non-empty string, not {_shorten(value)}")
    return value.strip()


def _clean(value: object, what: str, max_chars: int) -> str:
    """A stripped, non-empty, single-line string of at most `max_chars` characters."""
    if not isinstance(value, str):
        raise InvalidFeedbackError(f"{what} must be a string, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise InvalidFeedbackError(f"{what} is empty")
    if len(text) > max_chars:
        raise InvalidFeedbackError(f"{what} has {len(text)} characters; the maximum is {max_chars}")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise InvalidFeedbackError(f"{what} {_shorten(text)} contains control characters (line breaks, tabs, …)")
    return text


def _clean_labels(labels: object) -> dict[str, str]:
    if not isinstance(labels, Mapping):
        raise InvalidFeedbackError(f"labels must be a mapping of target to label, not {type(labels).__name__}")
    if not labels:
        raise InvalidFeedbackError("no labels given: name at least one target, e.g. category=Network")
    cleaned: dict[str, str] = {}
    for target, label in labels.items():
        name = _clean(target, "a target name", MAX_LABEL_CHARS)
        if name in cleaned:
            raise InvalidFeedbackError(f"target {name!r} is given twice")
        cleaned[name] = _clean(label, f"the label of {name!r}", MAX_LABEL_CHARS)
    return cleaned


def _confidence(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _shorten(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
