"""Agents' feedback: the true labels of logged tickets, the review queue, and live accuracy.

Agents correct the served model's answers by ticket id (`"<request id>-<index>"`, as answered and logged in the
prediction log). `FeedbackStore.record` checks that the ticket was logged and that every corrected target is one
the model predicted for it, then writes all the corrections of the call in one SQLite transaction: all of them or
none. A label the model has never predicted is accepted as it is: it becomes a class at the next retraining once
it has `min_class_examples` tickets (ingest leaves rarer classes out, with a warning).

Every correction keeps a snapshot of what it corrects (the ticket's text, the predicted label and its confidence,
the model version and the time of the prediction), so feedback outlives the prediction log's retention and stays
right when a client reuses a request id and its tickets are logged again.

One table `feedback`, one row per (ticket, target), in a SQLite file named by the URI (`sqlite:///path.db`, three
slashes then a relative path, or four for an absolute one). It can be the prediction log's own file: the log's
table is `predictions`. Every call opens its own connection, so threads and processes can share the store.

Why one module of ~480 lines: the store, its review queue and the live-accuracy query read the same table and
share its validation; they move to SQLAlchemy together with the prediction log.
Nothing happens at import, and constructing a store creates no file: the first `record` does.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ticketflow.components.config import TicketflowConfig
    from ticketflow.monitoring.request_log import PredictionLog

log = logging.getLogger(__name__)

MAX_LABEL_CHARS = 200  # longest accepted label, after stripping
MAX_SOURCE_CHARS = 100  # longest accepted source name
LOG_FLUSH_TIMEOUT_SECONDS = 5.0  # how long `record` waits for the log's queued records before calling an id unknown

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
)
_STORED = tuple(c for c in COLUMNS if c != "correct")
_TIME_COLUMNS = ("predicted_at", "created_at", "updated_at")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS feedback (
    ticket_id TEXT NOT NULL CHECK (length(ticket_id) > 0),
    target TEXT NOT NULL CHECK (length(target) > 0),
    label TEXT NOT NULL CHECK (length(label) BETWEEN 1 AND {MAX_LABEL_CHARS}),  -- the true label
    text TEXT NOT NULL,  -- the ticket's text as logged (masked), snapshotted at the correction
    predicted_label TEXT NOT NULL,  -- what the model answered
    confidence REAL,  -- its confidence in that answer, 0-1
    model_version TEXT NOT NULL,
    predicted_at TEXT NOT NULL,  -- ISO-8601 UTC, fixed width: text order is time order
    created_at TEXT NOT NULL,  -- first correction of this ticket and target
    updated_at TEXT NOT NULL,  -- latest correction
    source TEXT NOT NULL,  -- who corrected it (agent, cli, an integration's name)
    PRIMARY KEY (ticket_id, target)
);
CREATE INDEX IF NOT EXISTS feedback_predicted_at ON feedback (predicted_at);
"""
_UPSERT = f"""
INSERT INTO feedback ({", ".join(_STORED)}) VALUES ({", ".join("?" * len(_STORED))})
ON CONFLICT (ticket_id, target) DO UPDATE SET
    label = excluded.label,
    text = excluded.text,
    predicted_label = excluded.predicted_label,
    confidence = excluded.confidence,
    model_version = excluded.model_version,
    predicted_at = excluded.predicted_at,
    updated_at = excluded.updated_at,
    source = excluded.source
"""  # nosec B608  # column names are module constants; values are bound parameters


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
        model_version: The model version that answered.
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
        }


def feedback_uri(cfg: TicketflowConfig) -> str:
    """The feedback store's URI: `TICKETFLOW_FEEDBACK`, else `sqlite:///<absolute home>/feedback.db`."""
    return cfg.feedback_store


class FeedbackStore:
    """Corrections of logged tickets, in one SQLite table.

    Args:
        uri: `sqlite:///path/to/file.db` (three slashes, then a relative path or an absolute one starting
            with `/`). Any other form raises ValueError.

    Raises:
        ValueError: For a URI that is not a SQLite file.
    """

    def __init__(self, uri: str) -> None:
        scheme = "sqlite:///"
        path = uri.removeprefix(scheme) if isinstance(uri, str) and uri.startswith(scheme) else ""
        if not path or path == ":memory:":
            raise ValueError(
                f"feedback URI {uri!r} is not a SQLite file: use sqlite:///path/to/file.db "
                "(three slashes, then a relative path, or an absolute one starting with /)"
            )
        self.uri = uri
        self.path = Path(path).expanduser()

    # ---- writing -------------------------------------------------------------------------------------------
    def record(
        self,
        ticket_id: str,
        labels: Mapping[str, str],
        source: str = "agent",
        *,
        prediction_log: PredictionLog,
    ) -> FeedbackRecord:
        """Records the true labels of one logged ticket, all targets in one transaction.

        Recording a target again replaces its label and keeps the time it was first corrected.

        Args:
            ticket_id: The ticket's id as answered and logged.
            labels: Target (a label column the model predicts, e.g. `category`) -> the true label. Labels are
                stripped; new labels, never predicted before, are accepted.
            source: Who corrects (default `agent`).
            prediction_log: The log the ticket was answered into. When the id is not there yet, records still
                queued by this process are written first (the server answers before its log is written).

        Returns:
            Every correction now stored for the ticket.

        Raises:
            InvalidFeedbackError: No labels, a target the ticket has no prediction for (the message names the
                valid ones), or a label that is not a non-empty single-line string of at most 200 characters.
            UnknownTicketError: The ticket is not in the prediction log. Nothing is written.
            TimeoutError: The log's queued records could not be written in time (it keeps retrying).
            sqlite3.Error: The store could not be written; nothing of this call is.
        """
        ticket_id = _ticket_id(ticket_id)
        source = _clean(source, "source", MAX_SOURCE_CHARS)
        cleaned = _clean_labels(labels)
        logged = prediction_log.get(ticket_id)
        if logged is None:
            prediction_log.flush(timeout=LOG_FLUSH_TIMEOUT_SECONDS)  # returns at once unless this process writes
            logged = prediction_log.get(ticket_id)
        if logged is None:
            raise UnknownTicketError(
                f"ticket {_shorten(ticket_id)} is not in the prediction log {prediction_log.uri}: no ticket was "
                "answered with this id, or it is older than the log's retention"
            )
        predicted: dict[str, str] = logged["labels"]
        unknown = sorted(set(cleaned) - set(predicted))
        if unknown:
            raise InvalidFeedbackError(
                f"ticket {ticket_id!r} has no prediction for {', '.join(map(repr, unknown))}; "
                f"valid targets: {', '.join(sorted(predicted)) or 'none'}"
            )
        now = _time_text(datetime.now(UTC))
        rows = [
            (
                ticket_id,
                logged["text"],
                target,
                label,
                predicted[target],
                _confidence(logged["confidences"].get(target)),
                logged["model_version"],
                _time_text(logged["timestamp"]),
                now,
                now,
                source,
            )
            for target, label in cleaned.items()
        ]
        with self._writer() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(_UPSERT, rows)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        log.info("feedback for %s from %s: %s", ticket_id, source, cleaned)
        stored = self.get(ticket_id)
        if stored is None:  # just written in the same transaction: only a broken store gets here
            raise RuntimeError(f"feedback for {ticket_id} was written but cannot be read back")
        return stored

    @contextlib.contextmanager
    def _writer(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)  # transactions by hand
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
            yield connection
        finally:
            connection.close()

    # ---- reading -------------------------------------------------------------------------------------------
    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Runs a read; no file or no table yet reads as no rows (and creates nothing)."""
        if not self.path.exists():
            return []
        connection = sqlite3.connect(self.path, timeout=30.0)
        try:
            return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            connection.close()

    def get(self, ticket_id: str) -> FeedbackRecord | None:
        """The corrections of one ticket, or None when it has none."""
        rows = self._query(
            f"SELECT {', '.join(_STORED)} FROM feedback WHERE ticket_id = ? ORDER BY target",  # nosec B608  # column names are module constants; values are bound parameters
            (str(ticket_id),),
        )
        if not rows:
            return None
        values = [dict(zip(_STORED, row, strict=True)) for row in rows]
        latest = max(values, key=lambda v: v["updated_at"])
        return FeedbackRecord(
            ticket_id=latest["ticket_id"],
            text=latest["text"],
            labels={v["target"]: v["label"] for v in values},
            predicted={v["target"]: v["predicted_label"] for v in values},
            model_version=latest["model_version"],
            source=latest["source"],
            created_at=datetime.fromisoformat(min(v["created_at"] for v in values)),
            updated_at=datetime.fromisoformat(latest["updated_at"]),
        )

    def read(self) -> pd.DataFrame:
        """Every correction, one row per ticket and target, oldest correction first.

        Returns:
            Columns `ticket_id`, `text`, `target`, `label` (the true one), `predicted_label`, `correct` (bool),
            `confidence` (of the prediction), `model_version`, `predicted_at`, `created_at`, `updated_at` (UTC
            datetimes) and `source`.
        """
        rows = self._query(
            f"SELECT {', '.join(_STORED)} FROM feedback ORDER BY created_at, ticket_id, target"  # nosec B608  # column names are module constants; values are bound parameters
        )
        frame = pd.DataFrame(rows, columns=list(_STORED))
        for column in _TIME_COLUMNS:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
        frame["confidence"] = frame["confidence"].astype(float)
        frame["correct"] = (frame["label"] == frame["predicted_label"]).astype(bool)
        return frame[list(COLUMNS)]

    def labelled_ticket_ids(self) -> set[str]:
        """Ids of the tickets with at least one correction."""
        return {row[0] for row in self._query("SELECT DISTINCT ticket_id FROM feedback")}

    def labelled_tickets(self) -> pd.DataFrame:
        """The corrected tickets in the shape of training data, oldest correction first.

        A ticket corrected for only some targets has NaN for the others: the model's prediction is not a
        label, and whether to drop such tickets or train each target on what it has is the retraining's call.

        Returns:
            Columns `ticket_id`, `text`, then one column per corrected target (alphabetical) with the true label.
        """
        feedback = self.read()
        targets = sorted(feedback["target"].unique())
        latest = feedback.sort_values("updated_at", kind="stable")  # a ticket's latest text snapshot wins
        tickets = latest.groupby("ticket_id", sort=False).agg(text=("text", "last"), first=("created_at", "min"))
        labels = feedback.pivot(index="ticket_id", columns="target", values="label")
        frame = tickets.join(labels).sort_values("first", kind="stable").reset_index()
        return pd.DataFrame(
            {"ticket_id": frame["ticket_id"], "text": frame["text"], **{t: frame[t] for t in targets}},
            index=pd.RangeIndex(len(frame)),
        )

    def live_accuracy(
        self, *, since: datetime | None = None, model_version: str | None = None
    ) -> dict[str, dict[str, float | int]]:
        """Accuracy of the served predictions on the corrected tickets, per target.

        Corrected tickets are not a random sample (agents mostly correct what the review queue shows, the
        least confident answers), so this is a floor to watch move, not the model's accuracy on all traffic.

        Args:
            since: Only tickets answered at or after this time (timezone-aware).
            model_version: Only tickets answered by this model version.

        Returns:
            Target -> `{"accuracy": 0–1, "n": corrected tickets}`, for targets with at least one correction.
        """
        frame = self.read()
        if since is not None:
            if since.utcoffset() is None:
                raise ValueError(f"since must be a timezone-aware datetime, not {since!r}")
            frame = frame[frame["predicted_at"] >= pd.Timestamp(since).tz_convert(UTC)]
        if model_version is not None:
            frame = frame[frame["model_version"] == str(model_version)]
        return {
            str(target): {"accuracy": float(group["correct"].mean()), "n": len(group)}
            for target, group in frame.groupby("target", sort=True)
        }

    def review_queue(self, prediction_log: PredictionLog, limit: int = 50) -> pd.DataFrame:
        """Logged tickets flagged `needs_review` that have no correction yet, least confident first.

        Args:
            prediction_log: The prediction log (only its written records are seen).
            limit: Most tickets returned, at least 1.

        Returns:
            Columns `ticket_id`, `text`, `timestamp`, `model_version`, `min_confidence` (the lowest confidence
            across the ticket's targets, the sort key; ties go oldest first), then `label_<target>` and
            `confidence_<target>` per target.
        """
        if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        logged = prediction_log.read()
        pending = logged[logged["needs_review"] & ~logged["ticket_id"].isin(self.labelled_ticket_ids())].copy()
        confidence_columns = [c for c in pending.columns if c.startswith("confidence_")]
        label_columns = [c for c in pending.columns if c.startswith("label_")]
        pending["min_confidence"] = pending[confidence_columns].min(axis=1) if confidence_columns else np.nan
        pending = pending.sort_values(
            ["min_confidence", "timestamp", "ticket_id"], kind="stable", na_position="last"
        ).head(int(limit))
        per_target = [c for pair in zip(label_columns, confidence_columns, strict=True) for c in pair]
        columns = ["ticket_id", "text", "timestamp", "model_version", "min_confidence", *per_target]
        return pending[columns].reset_index(drop=True)


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


def _time_text(value: datetime) -> str:
    """Fixed-width ISO-8601 in UTC with microseconds, so comparing the text compares the times."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _shorten(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
