"""The prediction log: every ticket the server answers, kept durably for drift checks and agents' feedback.

The predictor calls `PredictionLog.append`, which only puts the records on a queue; a daemon writer thread
writes them in batches (up to `batch_size` records, at the latest `flush_interval` seconds after they arrived).
Drift checks read the log later as the "current" data (`read`), and feedback refers to its `ticket_id`s (`get`).

Two backends, chosen by the URI:

- `sqlite:///path/to/file.db`: one table `predictions` in WAL mode. The writer thread has its own connection;
  `read`, `get`, `len` and `purge` open their own, so other threads and processes can read while the server
  writes. `INSERT OR REPLACE` on the `ticket_id` primary key makes a retried write idempotent.
- `parquet:///path/to/folder`: one Parquet file per written batch, named so the files sort by the time they
  were written; `read` concatenates them and keeps the last written row of a `ticket_id`. Meant for a single
  writing process; with a steady trickle of requests, a longer `flush_interval` keeps the number of files down.

As with SQLAlchemy and MLflow URIs, three slashes are followed by the path, so `sqlite:///logs/p.db` is relative
to the working folder and `sqlite:////var/log/p.db` is absolute.

Why one module of ~770 lines: both backends share the record schema, the masking hook, the batching writer
thread and its flush-on-shutdown contract, and splitting them would spread one write path over three files. The
next step (one SQLAlchemy store for SQLite and PostgreSQL, with the Parquet backend gone) shrinks it.

Nothing happens at import, and constructing a log creates no files: the parent folder is created and the
writer thread started when the first records are appended.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

# Columns of `PredictionLog.read` before the per-target `label_<target>` and `confidence_<target>` columns.
BASE_COLUMNS = ("timestamp", "ticket_id", "request_id", "text", "model_name", "model_version", "needs_review")
# Columns as stored: labels and confidences as JSON objects, so records with other targets fit the same table.
_STORED_COLUMNS = (*BASE_COLUMNS, "labels", "confidences")

PURGE_INTERVAL_SECONDS = 3600.0  # the writer thread purges old records at start, then at most this often
_MAX_RETRY_DELAY_SECONDS = 30.0  # failed writes are retried with a doubling delay up to this
_CLOSE_TIMEOUT_SECONDS = 10.0  # how long close() waits for the queue to drain

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    ticket_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,  -- ISO-8601 UTC with microseconds, fixed width: text order is time order
    text TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    needs_review INTEGER NOT NULL,
    labels TEXT NOT NULL,  -- JSON object: target -> predicted label
    confidences TEXT NOT NULL  -- JSON object: target -> confidence, 0-1
);
CREATE INDEX IF NOT EXISTS predictions_timestamp ON predictions (timestamp);
"""
_SQLITE_INSERT = f"INSERT OR REPLACE INTO predictions ({', '.join(_STORED_COLUMNS)}) VALUES ({', '.join('?' * 9)})"

_PARQUET_SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("ticket_id", pa.string()),
        ("request_id", pa.string()),
        ("text", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("needs_review", pa.bool_()),
        ("labels", pa.string()),
        ("confidences", pa.string()),
    ]
)


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
    """The durable log of answered tickets, written in the background.

    `append` never waits for I/O. No record is lost on a clean shutdown: `close()` (also called on leaving a
    `with` block, and by an `atexit` hook when the interpreter exits) writes everything still queued. A failed
    write (say, a full disk) is logged, counted in `write_failures` and retried with the same records, first at
    the next flush and then with a doubling delay; records are never dropped while the log is open.

    Args:
        uri: `sqlite:///path/to/file.db` or `parquet:///path/to/folder` (three slashes, then a relative path or an
            absolute one starting with `/`). Any other form raises ValueError.
        retention_days: Records older than this many days are deleted by `purge`, which the writer thread runs
            when it starts and then at most hourly.
        batch_size: Most records written in one transaction (SQLite) or one file (Parquet).
        flush_interval: Seconds a record waits at most in the queue before the writer writes it.

    Raises:
        ValueError: For an unknown URI or a non-positive setting.
    """

    def __init__(self, uri: str, retention_days: int = 90, batch_size: int = 256, flush_interval: float = 0.5) -> None:
        if retention_days <= 0:
            raise ValueError(f"retention_days must be positive, not {retention_days!r}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, not {batch_size!r}")
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be positive, not {flush_interval!r}")
        self.uri = uri
        self.retention_days = retention_days
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._store = _open_store(uri)
        self._lock = threading.Lock()
        self._writer: _Writer | None = None
        self._finalizer: weakref.finalize | None = None
        self._closed = False
        # A weak reference, so the hook does not keep the log alive; close() unregisters it.
        self._atexit_hook = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit_hook)

    def __repr__(self) -> str:
        return f"PredictionLog({self.uri!r})"

    def __bool__(self) -> bool:
        """A log is truthy even when empty, so `if log:` tests whether there is one."""
        return True

    def __len__(self) -> int:
        """Number of records written (queued ones count once they are written)."""
        return self._store.count()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    @property
    def write_failures(self) -> int:
        """How many batch writes have failed (and were kept for a retry) since the writer started."""
        writer = self._writer
        return writer.failures if writer is not None else 0

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Queues records for writing and returns at once; the writer thread starts on the first call.

        Args:
            records: The answered tickets of one request.

        Raises:
            TypeError: When an element is not a PredictionRecord.
            RuntimeError: When the log is closed.
        """
        batch = tuple(records)
        for record in batch:
            if not isinstance(record, PredictionRecord):
                raise TypeError(f"prediction log {self.uri}: expected PredictionRecord, got {type(record).__name__}")
        if not batch:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError(f"prediction log {self.uri} is closed; records can no longer be appended")
            writer = self._writer
            # First append, in a forked child, or after the writer stopped on an unexpected error (logged).
            if writer is None or writer.pid != os.getpid() or not writer.thread.is_alive():
                writer = self._start_writer()
            writer.queue.put(batch)

    def flush(self, timeout: float | None = 10.0) -> None:
        """Waits until every record appended before this call is written durably.

        Args:
            timeout: Most seconds to wait; None waits for as long as it takes.

        Raises:
            TimeoutError: When the records are not written in time (for instance while writes keep failing;
                they stay queued and are retried).
        """
        with self._lock:
            writer, closed = self._writer, self._closed
        if closed or writer is None or writer.pid != os.getpid():
            return  # nothing appended here, or close() already drained the queue
        marker = _Flush()
        writer.queue.put(marker)
        if marker.done.wait(timeout):
            return
        if self._closed and not writer.thread.is_alive():
            return  # a concurrent close() drained the queue and stopped the writer before it saw the marker
        raise TimeoutError(
            f"prediction log {self.uri}: records not written within {timeout} s "
            f"({writer.pending} waiting, {writer.failures} failed writes so far; see the logged errors)"
        )

    def close(self) -> None:
        """Writes everything queued and stops the writer thread; later calls do nothing.

        Raises:
            TimeoutError: When the queued records could not be written within 10 seconds (the error is logged
                with the number of records lost).
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
            writer.stop(_CLOSE_TIMEOUT_SECONDS)

    def purge(self, now: datetime | None = None) -> int:
        """Deletes the records older than `retention_days`.

        Args:
            now: Reference time (timezone-aware); defaults to the current time.

        Returns:
            How many records were deleted.
        """
        now = datetime.now(UTC) if now is None else _aware(now, "now")
        return self._store.purge(now - timedelta(days=self.retention_days))

    def read(self, since: datetime | None = None, last_n: int | None = None) -> pd.DataFrame:
        """Reads the written records as a table, oldest first.

        Records still queued are not included; call `flush()` first to see them.

        Args:
            since: Only records at or after this time (timezone-aware).
            last_n: Only the most recent n records (of those at or after `since`).

        Returns:
            Columns `timestamp` (UTC), `ticket_id`, `request_id`, `text`, `model_name`, `model_version`,
            `needs_review` (bool), then `label_<target>` and `confidence_<target>` for every target seen, in
            alphabetical order of the targets; a record without a target has None and NaN there.
        """
        if since is not None:
            since = _aware(since, "since")
        if last_n is not None and last_n < 0:
            raise ValueError(f"last_n must be zero or positive, not {last_n!r}")
        return _widen(self._store.read(since, last_n))

    def get(self, ticket_id: str) -> dict[str, Any] | None:
        """Looks up one written record.

        Args:
            ticket_id: The ticket's id as answered (`"<request id>-<index>"`).

        Returns:
            The record's fields as a dict (the keys of PredictionRecord, so `PredictionRecord(**row)` rebuilds
            it), or None when there is no such record.
        """
        row = self._store.get(ticket_id)
        if row is None:
            return None
        return {
            "ticket_id": row["ticket_id"],
            "request_id": row["request_id"],
            "text": row["text"],
            "labels": json.loads(row["labels"]),
            "confidences": json.loads(row["confidences"]),
            "needs_review": bool(row["needs_review"]),
            "model_name": row["model_name"],
            "model_version": row["model_version"],
            "timestamp": _parse_timestamp(row["timestamp"]),
        }

    def _start_writer(self) -> _Writer:
        """Starts the writer thread (called under the lock)."""
        writer = _Writer(self.uri, self._store, self.retention_days, self.batch_size, self.flush_interval)
        self._writer = writer
        # When the log is garbage-collected without close(), the writer still drains its queue and stops.
        # At interpreter exit the atexit hook closes the log instead, so this one must not also run then.
        self._finalizer = weakref.finalize(self, writer.request_stop)
        self._finalizer.atexit = False
        writer.thread.start()
        log.info("prediction log: writing to %s", self.uri)
        return writer


def _close_at_exit(ref: weakref.ref[PredictionLog]) -> None:
    """Closes a log that is still open when the interpreter exits, so a last burst of appends is written."""
    prediction_log = ref()
    if prediction_log is None:
        return
    try:
        prediction_log.close()
    except Exception:
        log.exception("prediction log %s: closing at exit failed", prediction_log.uri)


class _Flush:
    """A queue marker: everything queued before it is to be written; `done` is set once it is."""

    __slots__ = ("done", "stop")

    def __init__(self, stop: bool = False) -> None:
        self.done = threading.Event()
        self.stop = stop


_WAKE = object()  # a queue item that only wakes the writer up


class _Writer:
    """The writer thread of one PredictionLog, kept apart so the thread holds no reference to the log."""

    def __init__(self, uri: str, store: _Store, retention_days: int, batch_size: int, flush_interval: float) -> None:
        self.uri = uri
        self.store = store
        self.retention_days = retention_days
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.pid = os.getpid()
        self.failures = 0
        self.written = 0
        self.pending = 0
        self.abandon = threading.Event()
        self.thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)

    def request_stop(self) -> None:
        self.queue.put(_Flush(stop=True))

    def stop(self, timeout: float) -> None:
        marker = _Flush(stop=True)
        self.queue.put(marker)
        if marker.done.wait(timeout):
            self.thread.join(timeout)
            log.info("prediction log %s: closed, %d records written", self.uri, self.written)
            return
        self.abandon.set()
        self.queue.put(_WAKE)
        self.thread.join(1.0)
        message = (
            f"prediction log {self.uri}: {self.pending} records could not be written within {timeout} s and are "
            f"lost ({self.failures} failed writes; see the logged errors)"
        )
        log.error(message)
        raise TimeoutError(message)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("prediction log %s: the writer thread stopped unexpectedly", self.uri)

    def _loop(self) -> None:
        pending: list[PredictionRecord] = []
        waiting: list[_Flush] = []
        stopping = False
        oldest = retry_at = next_purge = 0.0
        delay = self.flush_interval
        while True:
            now = time.monotonic()
            if now >= next_purge:
                self._purge()
                next_purge = now + PURGE_INTERVAL_SECONDS
            timeout = next_purge - now
            if pending:
                timeout = min(timeout, max(0.0, max(oldest + self.flush_interval, retry_at) - now))
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            forced = False  # a flush or close is waiting: write now, even while backing off
            while item is not None:
                if isinstance(item, _Flush):
                    waiting.append(item)
                    forced = True
                    stopping = stopping or item.stop
                elif item is not _WAKE:
                    if not pending:
                        oldest = time.monotonic()
                    pending.extend(item)
                if len(pending) >= self.batch_size:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    item = None
            self.pending = len(pending)
            now = time.monotonic()
            due = len(pending) >= self.batch_size or now >= oldest + self.flush_interval
            if pending and (forced or (due and now >= retry_at)):
                if self._write(pending):
                    retry_at, delay = 0.0, self.flush_interval
                else:
                    retry_at, delay = now + delay, min(2 * delay, _MAX_RETRY_DELAY_SECONDS)
                self.pending = len(pending)
            if not pending:
                for marker in waiting:
                    marker.done.set()
                waiting.clear()
                if stopping:
                    return
            elif self.abandon.is_set():
                return

    def _write(self, pending: list[PredictionRecord]) -> bool:
        """Writes pending records batch by batch, removing the written ones; False when a write failed."""
        while pending:
            batch = pending[: self.batch_size]
            try:
                self.store.write(batch)
            except Exception:
                self.failures += 1
                log.exception(
                    "prediction log %s: writing %d records failed (failure %d); keeping %d records for a retry",
                    self.uri,
                    len(batch),
                    self.failures,
                    len(pending),
                )
                return False
            del pending[: len(batch)]
            self.written += len(batch)
        return True

    def _purge(self) -> None:
        try:
            deleted = self.store.purge(datetime.now(UTC) - timedelta(days=self.retention_days))
        except Exception:
            log.exception("prediction log %s: purging records older than %d days failed", self.uri, self.retention_days)
        else:
            if deleted:
                log.info(
                    "prediction log %s: purged %d records older than %d days", self.uri, deleted, self.retention_days
                )


class _Store(Protocol):
    """What a backend does. `read` and `get` return stored columns (`_STORED_COLUMNS`)."""

    def write(self, records: Sequence[PredictionRecord]) -> None: ...

    def read(self, since: datetime | None, last_n: int | None) -> pd.DataFrame: ...

    def get(self, ticket_id: str) -> dict[str, Any] | None: ...

    def count(self) -> int: ...

    def purge(self, cutoff: datetime) -> int: ...


def _open_store(uri: str) -> _Store:
    """Picks the backend for a URI."""
    for scheme, store in (("sqlite:///", _SqliteStore), ("parquet:///", _ParquetStore)):
        if isinstance(uri, str) and uri.startswith(scheme):
            path = uri.removeprefix(scheme)
            if not path or path == ":memory:":
                raise ValueError(f"prediction-log URI {uri!r} names no file (an in-memory database cannot be shared)")
            return store(Path(path).expanduser())
    raise ValueError(
        f"unknown prediction-log URI {uri!r}: use sqlite:///path/to/file.db or parquet:///path/to/folder "
        "(three slashes, then a relative path, or an absolute one starting with /)"
    )


class _SqliteStore:
    """One SQLite table; the writer thread keeps its connection, every other call opens its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None  # the writer thread's
        self._owner: int | None = None  # ... and which thread that is (a new writer after a fork gets its own)

    def write(self, records: Sequence[PredictionRecord]) -> None:
        rows = [
            (
                _timestamp_text(r.timestamp),
                r.ticket_id,
                r.request_id,
                r.text,
                r.model_name,
                r.model_version,
                int(r.needs_review),
                json.dumps(r.labels, ensure_ascii=False),
                json.dumps(r.confidences),
            )
            for r in records
        ]
        connection = self._writer_connection()
        try:
            with connection:  # one transaction, committed on success, rolled back on error
                connection.executemany(_SQLITE_INSERT, rows)
        except Exception:
            # Reconnect next time: the file may have been replaced, or the connection broken by the error.
            self._connection = None
            with contextlib.suppress(Exception):
                connection.close()
            raise

    def _writer_connection(self) -> sqlite3.Connection:
        if self._connection is None or self._owner != threading.get_ident():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30.0)
            try:
                connection.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer, nor it for them
                connection.executescript(_SQLITE_SCHEMA)
            except Exception:
                connection.close()
                raise
            self._connection, self._owner = connection, threading.get_ident()
        return self._connection

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection | None]:
        """A connection of the caller's own, or None while there is no database (creates no file)."""
        if not self.path.exists():
            yield None
            return
        connection = sqlite3.connect(self.path, timeout=30.0)
        try:
            yield connection
        finally:
            connection.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reader() as connection:
            if connection is None:
                return []
            try:
                return connection.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # the writer created the file but not yet the table
                    return []
                raise

    def read(self, since: datetime | None, last_n: int | None) -> pd.DataFrame:
        columns = ", ".join(_STORED_COLUMNS)
        where, params = "", []
        if since is not None:
            where, params = "WHERE timestamp >= ?", [_timestamp_text(since)]
        if last_n is None:
            sql = f"SELECT {columns} FROM predictions {where} ORDER BY timestamp, rowid"  # nosec B608  # column names are module constants; values are bound parameters
        else:
            sql = (
                f"SELECT {columns} FROM (SELECT *, rowid AS row_order FROM predictions {where} "  # nosec B608  # column names are module constants; values are bound parameters
                "ORDER BY timestamp DESC, rowid DESC LIMIT ?) ORDER BY timestamp, row_order"
            )
            params.append(last_n)
        return pd.DataFrame(self._query(sql, params), columns=list(_STORED_COLUMNS))

    def get(self, ticket_id: str) -> dict[str, Any] | None:
        rows = self._query(
            f"SELECT {', '.join(_STORED_COLUMNS)} FROM predictions WHERE ticket_id = ?",  # nosec B608  # column names are module constants; values are bound parameters
            [ticket_id],
        )
        return dict(zip(_STORED_COLUMNS, rows[0], strict=True)) if rows else None

    def count(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM predictions")
        return rows[0][0] if rows else 0

    def purge(self, cutoff: datetime) -> int:
        with self._reader() as connection:
            if connection is None:
                return 0
            try:
                with connection:
                    return connection.execute(
                        "DELETE FROM predictions WHERE timestamp < ?", [_timestamp_text(cutoff)]
                    ).rowcount
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return 0
                raise


class _ParquetStore:
    """A folder of Parquet files, one per written batch; files are only ever added, replaced whole or deleted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sequence = 0
        self._purge_lock = threading.Lock()  # the writer thread's hourly purge and a caller's purge()
        # pyarrow loads its pandas shim lazily, and that import registers an atexit hook: done first from the
        # writer thread while the interpreter exits, it fails ("can't register atexit after shutdown").
        # Trigger it here, on the caller's thread, at construction.
        pa.scalar(datetime.now(UTC), type=_PARQUET_SCHEMA.field("timestamp").type)

    def _files(self) -> list[Path]:
        # Files being written start with a dot and are not matched.
        return sorted(self.folder.glob("predictions-*.parquet")) if self.folder.is_dir() else []

    def write(self, records: Sequence[PredictionRecord]) -> None:
        table = pa.Table.from_pydict(
            {
                "timestamp": [r.timestamp for r in records],
                "ticket_id": [r.ticket_id for r in records],
                "request_id": [r.request_id for r in records],
                "text": [r.text for r in records],
                "model_name": [r.model_name for r in records],
                "model_version": [r.model_version for r in records],
                "needs_review": [r.needs_review for r in records],
                "labels": [json.dumps(r.labels, ensure_ascii=False) for r in records],
                "confidences": [json.dumps(r.confidences) for r in records],
            },
            schema=_PARQUET_SCHEMA,
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        # UTC write time first, so names sort by time; pid and sequence keep names unique.
        name = f"predictions-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}-{self._sequence:06d}.parquet"
        self._replace(self.folder / name, table)

    def _replace(self, path: Path, table: pa.Table) -> None:
        """Writes a file atomically and durably: a temporary file, fsync, rename, fsync of the folder."""
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            pq.write_table(table, temporary)
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # folders cannot be opened for fsync on every platform
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    def _read(
        self, columns: Sequence[str] | None = None, filters: list[tuple[str, str, Any]] | None = None
    ) -> pd.DataFrame:
        tables = []
        for path in self._files():
            try:
                tables.append(pq.read_table(path, columns=columns, filters=filters or None, schema=_PARQUET_SCHEMA))
            except FileNotFoundError:  # purged since it was listed
                continue
        schema = _PARQUET_SCHEMA if columns is None else pa.schema([_PARQUET_SCHEMA.field(c) for c in columns])
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        # Files are in write order, so the last row of a ticket_id is the latest write (as INSERT OR REPLACE).
        return table.to_pandas().drop_duplicates("ticket_id", keep="last")

    def read(self, since: datetime | None, last_n: int | None) -> pd.DataFrame:
        frame = self._read(filters=[("timestamp", ">=", since)] if since is not None else None)
        frame = frame.sort_values("timestamp", kind="stable")
        if last_n is not None:
            frame = frame.tail(last_n)
        return frame.reset_index(drop=True)

    def get(self, ticket_id: str) -> dict[str, Any] | None:
        frame = self._read(filters=[("ticket_id", "==", ticket_id)])
        return frame.iloc[-1].to_dict() if len(frame) else None

    def count(self) -> int:
        return len(self._read(columns=["ticket_id"]))

    def purge(self, cutoff: datetime) -> int:
        limit = pa.scalar(cutoff, type=_PARQUET_SCHEMA.field("timestamp").type)
        deleted = 0
        with self._purge_lock:
            for path in self._files():
                try:
                    timestamps = pq.read_table(path, columns=["timestamp"])["timestamp"]
                except FileNotFoundError:
                    continue
                old = pc.sum(pc.less(timestamps, limit)).as_py() or 0
                if old == len(timestamps):
                    path.unlink(missing_ok=True)
                elif old:
                    table = pq.read_table(path, schema=_PARQUET_SCHEMA)
                    self._replace(path, table.filter(pc.greater_equal(table["timestamp"], limit)))
                deleted += old
        return deleted


def _aware(value: datetime, name: str) -> datetime:
    """Checks that a datetime argument has a timezone and converts it to UTC."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {value!r}")
    return value.astimezone(UTC)


def _timestamp_text(value: datetime) -> str:
    """Fixed-width ISO-8601 in UTC with microseconds, so comparing the text compares the times."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return pd.Timestamp(value).tz_convert(UTC).to_pydatetime()


def _widen(stored: pd.DataFrame) -> pd.DataFrame:
    """Turns stored rows into the table `read` returns: one label and one confidence column per target."""
    labels = [json.loads(text) for text in stored["labels"]]
    confidences = [json.loads(text) for text in stored["confidences"]]
    targets = sorted(set().union(*labels, *confidences))
    timestamps = stored["timestamp"]
    if timestamps.dtype == object:  # SQLite keeps ISO-8601 text
        timestamps = pd.to_datetime(timestamps, utc=True, format="ISO8601")
    columns: dict[str, Any] = {
        "timestamp": timestamps.astype("datetime64[ns, UTC]").reset_index(drop=True),
        **{name: stored[name].to_numpy(dtype=object) for name in BASE_COLUMNS[1:-1]},
        "needs_review": stored["needs_review"].to_numpy(dtype=bool),
    }
    for target in targets:
        columns[f"label_{target}"] = np.array([row.get(target) for row in labels], dtype=object)
        columns[f"confidence_{target}"] = np.array([row.get(target, np.nan) for row in confidences], dtype=float)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(stored)))
