"""The prediction log: every ticket the server answers, kept in the shared database for drift checks and feedback.

The predictor calls `PredictionLog.append`, which only puts the records in a bounded buffer; a daemon writer thread
writes them in batches (up to `batch_size` records, at the latest `flush_interval` seconds after they arrived), so
an answer never waits for the database. Drift checks read the log later as the "current" data (`read`), agents'
feedback refers to its `ticket_id`s (`get`), and the review queue joins it with the feedback in SQL
(`feedback.FeedbackStore.review_queue`).

The database is any URL `database.parse_url` accepts: a SQLite file (the embedded default) or PostgreSQL (a
cluster, where the predictor and the pipeline pods share it). Its tables are created when absent
(`database.ensure_schema`, versioned with Alembic) by whichever process needs them first.

When the database is unreachable, answers go on: records wait in the buffer (at most `max_buffered`) and are
written once it is back, retried with a doubling delay up to 30 s. What does not fit is counted in
`ticketflow_prediction_log_dropped_total` and logged, never lost silently; so are records still buffered when a
shutdown gives up waiting. A clean shutdown (`close()`, a `with` block, or the `atexit` hook) writes everything
buffered. Writing a `ticket_id` again replaces its row (an upsert), so a retried batch is harmless and several
processes can write at once.

Nothing happens at import, and constructing a log neither connects nor creates a file: the first append, read or
`check()` does.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import functools
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ticketflow.monitoring.database import (
    DatabaseUnavailableError,
    ensure_schema,
    forget_schema,
    parse_url,
    predictions,
    redacted,
    write_transaction,
)
from ticketflow.monitoring.metrics import LOG_BUFFERED, LOG_DROPPED, LOG_WRITE_FAILURES, LOG_WRITTEN

log = logging.getLogger(__name__)

# Columns of `PredictionLog.read` before the per-target `label_<target>` and `confidence_<target>` columns.
BASE_COLUMNS = ("timestamp", "ticket_id", "request_id", "text", "model_name", "model_version", "needs_review")
_STORED_COLUMNS = (*BASE_COLUMNS, "labels", "confidences")

PURGE_INTERVAL_SECONDS = 3600.0  # the writer thread purges old records at start, then at most this often
DROP_WARNING_INTERVAL_SECONDS = 60.0  # while records are dropped, a warning at most this often
_MAX_RETRY_DELAY_SECONDS = 30.0  # failed writes are retried with a doubling delay up to this
_CLOSE_TIMEOUT_SECONDS = 10.0  # how long close() waits for the buffer to drain


@dataclass(frozen=True)
class PredictionRecord:
    """One answered ticket, as logged.

    Construction normalises the values, so a record can always be written: the timestamp is converted to UTC
    (a naive one is refused), labels to strings, confidences to floats (numpy scalars are fine) and the ids,
    model name and version to strings.

    Attributes:
        ticket_id: `"<request id>-<index>"`, unique per answered ticket; agents' feedback refers to it.
        request_id: Id of the request that carried the ticket.
        text: Ticket text as logged (already masked by the caller when masking is on).
        labels: Target (label column name) -> predicted label.
        confidences: Target -> calibrated confidence of the predicted label, 0–1.
        needs_review: True when any target's confidence is below its review threshold.
        model_name: Registered model that answered.
        model_version: Its version.
        timestamp: When the ticket was answered, timezone-aware UTC; defaults to now.
    """

    ticket_id: str
    request_id: str
    text: str
    labels: dict[str, str]
    confidences: dict[str, float]
    needs_review: bool
    model_name: str
    model_version: str
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if not isinstance(self.timestamp, datetime) or self.timestamp.utcoffset() is None:
            raise ValueError(
                f"PredictionRecord {self.ticket_id!r}: timestamp {self.timestamp!r} must be a timezone-aware datetime"
            )
        if not isinstance(self.text, str):
            raise TypeError(f"PredictionRecord {self.ticket_id!r}: text must be a str, not {type(self.text).__name__}")
        normalised = {
            "ticket_id": str(self.ticket_id),
            "request_id": str(self.request_id),
            "labels": {str(target): str(label) for target, label in self.labels.items()},
            "confidences": {str(target): float(value) for target, value in self.confidences.items()},
            "needs_review": bool(self.needs_review),
            "model_name": str(self.model_name),
            "model_version": str(self.model_version),
            "timestamp": self.timestamp.astimezone(UTC),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)


class PredictionLog:
    """The log of answered tickets in the shared database, written in the background.

    `append` never waits for I/O. No record is lost on a clean shutdown: `close()` (also called on leaving a
    `with` block, and by an `atexit` hook when the interpreter exits) writes everything buffered. A failed write
    (the database down, a full disk) is logged, counted in `write_failures` and retried with the same records;
    while it lasts the buffer holds up to `max_buffered` records and counts what overflows in `dropped` and in
    `ticketflow_prediction_log_dropped_total`.

    Args:
        uri: The database URL: `sqlite:///path/to/file.db` or `postgresql+psycopg://user:password@host:5432/db`.
        retention_days: Records older than this many days are deleted by `purge`, which the writer thread runs
            when it starts and then at most hourly.
        batch_size: Most records written in one transaction.
        flush_interval: Seconds a record waits at most in the buffer before the writer writes it.
        max_buffered: Most records waiting to be written; appends beyond it are dropped and counted.

    Raises:
        ValueError: For a URL `database.parse_url` refuses, or a non-positive setting.
    """

    def __init__(
        self,
        uri: str,
        retention_days: int = 90,
        batch_size: int = 256,
        flush_interval: float = 0.5,
        max_buffered: int = 10_000,
    ) -> None:
        for name, value in (
            ("retention_days", retention_days),
            ("batch_size", batch_size),
            ("flush_interval", flush_interval),
            ("max_buffered", max_buffered),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        self.url = parse_url(uri)
        self.uri = uri
        self.retention_days = retention_days
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffered = max_buffered
        self._lock = threading.Lock()
        self._writer: _Writer | None = None
        self._finalizer: weakref.finalize | None = None
        self._closed = False
        # A weak reference, so the hook does not keep the log alive; close() unregisters it.
        self._atexit_hook = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit_hook)

    def __repr__(self) -> str:
        return f"PredictionLog({redacted(self.url)!r})"

    def __bool__(self) -> bool:
        """A log is truthy even when empty, so `if log:` tests whether there is one."""
        return True

    def __len__(self) -> int:
        """Number of records written (buffered ones count once they are written)."""
        with self._connection() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar_one())

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    @property
    def name(self) -> str:
        """The database URL with its password hidden, for messages."""
        return redacted(self.url)

    @property
    def write_failures(self) -> int:
        """How many batch writes have failed (and were kept for a retry) since the writer started."""
        writer = self._writer
        return writer.failures if writer is not None else 0

    @property
    def dropped(self) -> int:
        """How many appended records were never written: the buffer was full, or a shutdown gave up on them."""
        writer = self._writer
        return writer.dropped if writer is not None else 0

    def check(self) -> None:
        """Connects, creating the tables when absent; the predictor calls it before it reports ready.

        Raises:
            DatabaseUnavailableError: The database cannot be reached or its tables cannot be created.
        """
        with self._connection() as connection:
            connection.execute(sa.text("SELECT 1"))

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Buffers records for writing and returns at once; the writer thread starts on the first call.

        When the buffer is full (the database has been unreachable for a while), the records that do not fit are
        dropped, counted and logged; the caller is never blocked.

        Args:
            records: The answered tickets of one request.

        Raises:
            TypeError: When an element is not a PredictionRecord.
            RuntimeError: When the log is closed.
        """
        batch = tuple(records)
        for record in batch:
            if not isinstance(record, PredictionRecord):
                raise TypeError(f"prediction log {self.name}: expected PredictionRecord, got {type(record).__name__}")
        if not batch:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError(f"prediction log {self.name} is closed; records can no longer be appended")
            writer = self._writer
            # First append, in a forked child, or after the writer stopped on an unexpected error (logged).
            if writer is None or writer.pid != os.getpid() or not writer.thread.is_alive():
                writer = self._start_writer()
        writer.offer(batch)

    def flush(self, timeout: float | None = 10.0) -> None:
        """Waits until every record appended before this call is written (or counted as dropped).

        Args:
            timeout: Most seconds to wait; None waits for as long as it takes.

        Raises:
            TimeoutError: When the records are not written in time (for instance while the database is down;
                they stay buffered and are retried).
        """
        with self._lock:
            writer = self._writer
        if writer is None or writer.pid != os.getpid():
            return  # nothing appended in this process
        if not writer.wait_written(timeout):
            raise TimeoutError(
                f"prediction log {self.name}: records not written within {timeout} s "
                f"({writer.buffered} waiting, {writer.failures} failed writes so far; see the logged errors)"
            )

    def close(self, timeout: float = _CLOSE_TIMEOUT_SECONDS) -> None:
        """Writes everything buffered and stops the writer thread; later calls do nothing.

        Args:
            timeout: Most seconds to wait for the buffered records to be written.

        Raises:
            TimeoutError: When the buffered records could not be written in time; they are counted as dropped and
                the error is logged with their number.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            writer = self._writer
        atexit.unregister(self._atexit_hook)
        if self._finalizer is not None:
            self._finalizer.detach()
        if writer is not None and writer.pid == os.getpid():
            writer.stop(timeout)

    def purge(self, now: datetime | None = None) -> int:
        """Deletes the records older than `retention_days` (one `DELETE`, on the timestamp index).

        Args:
            now: Reference time (timezone-aware); defaults to the current time.

        Returns:
            How many records were deleted.
        """
        now = datetime.now(UTC) if now is None else _aware(now, "now")
        cutoff = now - timedelta(days=self.retention_days)
        engine = self._engine()
        with write_transaction(engine) as connection:
            return connection.execute(sa.delete(predictions).where(predictions.c.timestamp < cutoff)).rowcount

    def read(self, since: datetime | None = None, last_n: int | None = None) -> pd.DataFrame:
        """Reads the written records as a table, oldest first: the drift check's window.

        Both limits are applied in SQL (`ORDER BY timestamp DESC LIMIT n` on the timestamp index), so a window
        costs the same at a million rows as at a thousand. Buffered records are not included; `flush()` first.

        Args:
            since: Only records at or after this time (timezone-aware).
            last_n: Only the most recent n records (of those at or after `since`).

        Returns:
            Columns `timestamp` (UTC), `ticket_id`, `request_id`, `text`, `model_name`, `model_version`,
            `needs_review` (bool), then `label_<target>` and `confidence_<target>` for every target seen, in
            alphabetical order of the targets; a record without a target has None and NaN there.

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
        """
        if since is not None:
            since = _aware(since, "since")
        if last_n is not None and (isinstance(last_n, bool) or last_n < 0):
            raise ValueError(f"last_n must be zero or positive, not {last_n!r}")
        columns = [predictions.c[name] for name in _STORED_COLUMNS]
        query = sa.select(*columns)
        if since is not None:
            query = query.where(predictions.c.timestamp >= since)
        if last_n is None:
            query = query.order_by(predictions.c.timestamp, predictions.c.ticket_id)
        else:
            query = query.order_by(predictions.c.timestamp.desc(), predictions.c.ticket_id.desc()).limit(last_n)
        with self._connection() as connection:
            rows = connection.execute(query).all()
        if last_n is not None:
            rows.reverse()
        return _widen(rows)

    def get(self, ticket_id: str) -> dict[str, Any] | None:
        """Looks up one written record.

        Args:
            ticket_id: The ticket's id as answered (`"<request id>-<index>"`).

        Returns:
            The record's fields as a dict (the keys of PredictionRecord, so `PredictionRecord(**row)` rebuilds
            it), or None when there is no such record.
        """
        query = sa.select(*(predictions.c[name] for name in _STORED_COLUMNS)).where(
            predictions.c.ticket_id == str(ticket_id)
        )
        with self._connection() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        values = row._asdict()
        return {
            "ticket_id": values["ticket_id"],
            "request_id": values["request_id"],
            "text": values["text"],
            "labels": dict(values["labels"]),
            "confidences": dict(values["confidences"]),
            "needs_review": bool(values["needs_review"]),
            "model_name": values["model_name"],
            "model_version": values["model_version"],
            "timestamp": values["timestamp"],
        }

    def _engine(self) -> sa.Engine:
        return ensure_schema(self.url)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        """A connection for reading; an unreachable database raises DatabaseUnavailableError naming it."""
        engine = self._engine()
        try:
            with engine.connect() as connection:
                yield connection
        except sa.exc.OperationalError as exc:
            forget_schema(self.url)  # the database may come back empty: check the tables again next time
            raise DatabaseUnavailableError(f"database {self.name} is unavailable: {exc.orig or exc}") from exc

    def _start_writer(self) -> _Writer:
        """Starts the writer thread (called under the lock)."""
        writer = _Writer(self, self.retention_days, self.batch_size, self.flush_interval, self.max_buffered)
        self._writer = writer
        # When the log is garbage-collected without close(), the writer still drains its buffer and stops.
        # At interpreter exit the atexit hook closes the log instead, so this one must not also run then.
        self._finalizer = weakref.finalize(self, writer.request_stop)
        self._finalizer.atexit = False
        writer.thread.start()
        log.info("prediction log: writing to %s", self.name)
        return writer


def _close_at_exit(ref: weakref.ref[PredictionLog]) -> None:
    """Closes a log that is still open when the interpreter exits, so a last burst of appends is written."""
    prediction_log = ref()
    if prediction_log is None:
        return
    try:
        prediction_log.close()
    except Exception:
        log.exception("prediction log %s: closing at exit failed", prediction_log.name)


class _Writer:
    """The writer thread of one PredictionLog and its bounded buffer.

    The thread holds the log's URL and settings, not the log, so an unreferenced log can be collected (its
    finalizer then stops the thread after a last write). `appended` and `settled` count records in and out of the
    buffer (written or dropped there); `flush` waits for `settled` to reach the `appended` it saw.
    """

    def __init__(
        self, owner: PredictionLog, retention_days: int, batch_size: int, flush_interval: float, max_buffered: int
    ) -> None:
        self.url = owner.url
        self.name = owner.name
        self.retention_days = retention_days
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffered = max_buffered
        self.pid = os.getpid()
        self.condition = threading.Condition()
        self.buffer: collections.deque[PredictionRecord] = collections.deque()
        self.appended = self.settled = self.written = self.dropped = self.failures = 0
        self.first_buffered_at = 0.0  # monotonic time the oldest buffered record arrived
        self.retry_at = 0.0  # no write before this (backing off after a failure)
        self.flush_target = 0  # a flush waits for `settled` to reach this: write without waiting for the interval
        self.stopping = False
        self.abandon = False
        self.last_drop_warning = -DROP_WARNING_INTERVAL_SECONDS
        self.dropped_since_warning = 0
        self.thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)

    @property
    def buffered(self) -> int:
        return len(self.buffer)

    # ---- the callers' side ---------------------------------------------------------------------------------
    def offer(self, batch: tuple[PredictionRecord, ...]) -> None:
        with self.condition:
            room = self.max_buffered - len(self.buffer)
            accepted = batch[: max(room, 0)]
            if accepted:
                was_empty = not self.buffer
                if was_empty:
                    self.first_buffered_at = time.monotonic()
                self.buffer.extend(accepted)
                self.appended += len(accepted)
                # An idle writer sleeps until the next purge: wake it to time the first record's flush, and when
                # a batch is full.
                if was_empty or len(self.buffer) >= self.batch_size:
                    self.condition.notify_all()
            rejected = len(batch) - len(accepted)
            if rejected:
                self.dropped += rejected
            LOG_BUFFERED.set(len(self.buffer))
        if rejected:
            self._count_dropped(rejected, "the buffer is full")

    def wait_written(self, timeout: float | None) -> bool:
        with self.condition:
            target = self.appended
            self.flush_target = max(self.flush_target, target)  # what is buffered up to here is due now
            self.retry_at = 0.0  # a flush tries now, even while backing off
            self.condition.notify_all()
            return self.condition.wait_for(lambda: self.settled >= target or not self.thread.is_alive(), timeout)

    def request_stop(self) -> None:
        with self.condition:
            self.stopping = True
            self.retry_at = 0.0
            self.condition.notify_all()

    def stop(self, timeout: float) -> None:
        self.request_stop()
        self.thread.join(timeout)
        if not self.thread.is_alive():
            log.info("prediction log %s: closed, %d records written", self.name, self.written)
            return
        with self.condition:
            self.abandon = True
            lost = len(self.buffer)
            self.buffer.clear()
            self.dropped += lost
            self.settled += lost
            LOG_BUFFERED.set(0)
            self.condition.notify_all()
        LOG_DROPPED.inc(lost)
        message = (
            f"prediction log {self.name}: {lost} records could not be written within {timeout} s and are lost "
            f"({self.failures} failed writes, see the logged errors; counted in "
            "ticketflow_prediction_log_dropped_total)"
        )
        log.error(message)
        raise TimeoutError(message)

    def _count_dropped(self, count: int, why: str) -> None:
        LOG_DROPPED.inc(count)
        now = time.monotonic()
        with self.condition:
            self.dropped_since_warning += count
            if now - self.last_drop_warning < DROP_WARNING_INTERVAL_SECONDS:
                return
            count, self.dropped_since_warning, self.last_drop_warning = self.dropped_since_warning, 0, now
        log.warning(
            "prediction log %s: %s (%d records waiting, %d write failures so far); dropped %d records "
            "(counted in ticketflow_prediction_log_dropped_total)",
            self.name,
            why,
            len(self.buffer),
            self.failures,
            count,
        )

    # ---- the thread ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("prediction log %s: the writer thread stopped unexpectedly", self.name)
        finally:
            with self.condition:
                self.condition.notify_all()  # a waiting flush sees the thread gone

    def _next_batch(self, next_purge: float) -> list[PredictionRecord] | None:
        """Waits until a batch is due (returned) or a purge is (an empty list); None when the thread should end."""
        with self.condition:
            while True:
                if self.abandon or (self.stopping and not self.buffer):
                    return None
                now = time.monotonic()
                if now >= next_purge:
                    return []
                wake_at = next_purge
                if self.buffer:
                    due_at = self.first_buffered_at + self.flush_interval
                    if len(self.buffer) >= self.batch_size or self.stopping or self.settled < self.flush_target:
                        due_at = now
                    due_at = max(due_at, self.retry_at)
                    if now >= due_at:
                        return list(itertools.islice(self.buffer, self.batch_size))
                    wake_at = min(wake_at, due_at)
                self.condition.wait(wake_at - now)

    def _loop(self) -> None:
        next_purge = 0.0
        delay = self.flush_interval
        while True:
            batch = self._next_batch(next_purge)
            if batch is None:
                return
            if not batch:
                self._purge()
                next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
                continue
            written = self._write(batch)
            with self.condition:
                if written:
                    for _ in batch:
                        self.buffer.popleft()
                    self.written += len(batch)
                    self.settled += len(batch)
                    self.retry_at, delay = 0.0, self.flush_interval
                    # What is left arrived while this batch was written (or did not fit in it): write it next.
                    self.first_buffered_at = time.monotonic() - self.flush_interval
                else:
                    self.retry_at = time.monotonic() + delay
                    delay = min(2 * delay, _MAX_RETRY_DELAY_SECONDS)
                LOG_BUFFERED.set(len(self.buffer))
                self.condition.notify_all()

    def _write(self, batch: list[PredictionRecord]) -> bool:
        """Writes one batch in one transaction; False (logged, counted) when it failed."""
        latest = {record.ticket_id: record for record in batch}  # one statement may not upsert a key twice
        try:
            engine = ensure_schema(self.url)
            with write_transaction(engine) as connection:
                connection.execute(_upsert(engine.dialect.name), [_row(record) for record in latest.values()])
        except Exception:
            # Logged before it is counted: whoever sees the count (a test, a metric scrape) finds the log line too.
            log.exception(
                "prediction log %s: writing %d records failed (failure %d); keeping %d records for a retry",
                self.name,
                len(batch),
                self.failures + 1,
                len(self.buffer),
            )
            forget_schema(self.url)  # the database may come back empty: check the tables again before the retry
            LOG_WRITE_FAILURES.inc()
            self.failures += 1
            return False
        LOG_WRITTEN.inc(len(batch))
        return True

    def _purge(self) -> None:
        days = self.retention_days
        cutoff = datetime.now(UTC) - timedelta(days=days)
        try:
            engine = ensure_schema(self.url)
            with write_transaction(engine) as connection:
                deleted = connection.execute(sa.delete(predictions).where(predictions.c.timestamp < cutoff)).rowcount
        except Exception as exc:
            log.warning("prediction log %s: purging records older than %d days failed: %s", self.name, days, exc)
        else:
            if deleted:
                log.info("prediction log %s: purged %d records older than %d days", self.name, deleted, days)


@functools.cache
def _upsert(dialect: str) -> sa.Insert:
    """`INSERT ... ON CONFLICT (ticket_id) DO UPDATE`: a ticket written again (a retried batch) replaces its row."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(predictions)
    updated = {c.name: insert.excluded[c.name] for c in predictions.columns if c.name != "ticket_id"}
    return insert.on_conflict_do_update(index_elements=[predictions.c.ticket_id], set_=updated)


def _row(record: PredictionRecord) -> dict[str, Any]:
    return {
        "ticket_id": record.ticket_id,
        "request_id": record.request_id,
        "timestamp": record.timestamp,
        "text": record.text,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "needs_review": record.needs_review,
        "min_confidence": _min_confidence(record.confidences),
        "labels": record.labels,
        "confidences": {target: _finite(value) for target, value in record.confidences.items()},
    }


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None  # JSON has no NaN


def _min_confidence(confidences: dict[str, float]) -> float | None:
    finite = [value for value in confidences.values() if np.isfinite(value)]
    return min(finite) if finite else None


def _aware(value: datetime, name: str) -> datetime:
    """Checks that a datetime argument has a timezone and converts it to UTC."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {value!r}")
    return value.astimezone(UTC)


def _widen(rows: Sequence[sa.Row]) -> pd.DataFrame:
    """Turns stored rows into the table `read` returns: one label and one confidence column per target."""
    # Column-wise, positionally: building a dict per row cost a third of a 10,000-row window (BENCHMARKS.md).
    stored = dict(zip(_STORED_COLUMNS, zip(*rows, strict=True), strict=True)) if rows else {}
    empty: tuple[Any, ...] = ()
    labels, confidences = stored.get("labels", empty), stored.get("confidences", empty)
    targets = sorted(set().union(*labels, *confidences))
    columns: dict[str, Any] = {
        "timestamp": pd.to_datetime(list(stored.get("timestamp", empty)), utc=True).astype("datetime64[ns, UTC]"),
        **{name: np.array(stored.get(name, empty), dtype=object) for name in BASE_COLUMNS[1:-1]},
        "needs_review": np.array(stored.get("needs_review", empty), dtype=bool),
    }
    for target in targets:
        columns[f"label_{target}"] = np.array([row.get(target) for row in labels], dtype=object)
        columns[f"confidence_{target}"] = np.array(
            [np.nan if row.get(target) is None else row[target] for row in confidences], dtype=float
        )
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))
