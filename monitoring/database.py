"""The database of the prediction log and the agents' feedback: its URL, its tables and their schema versions.

One SQLAlchemy URL names it (`TICKETFLOW_PREDICTION_LOG`):

- `sqlite:///path/to/file.db` (the embedded default; three slashes then a relative path, four for an absolute one),
- `postgresql+psycopg://user:password@host:5432/database` (a cluster: the predictor writes, pipeline pods read).
  `postgresql://` means the same (psycopg 3 is the driver ticketflow installs).

The predictor and the pipelines create the tables when absent (`ensure_schema`), through Alembic migrations kept in
`migrations/`, so a later schema change is one more migration, applied by whichever process connects first.
Two processes starting at once are safe: the upgrade runs in one transaction under a lock that PostgreSQL (an
advisory lock) or SQLite (`BEGIN IMMEDIATE`) gives to one of them; the other then finds the schema current. The
version table is `ticketflow_schema_version`, not Alembic's default `alembic_version`, so the database can be the
one MLflow uses as its backend store.

Engines are made once per process and URL (`engine_for`); nothing connects at import or when a URL is parsed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

log = logging.getLogger(__name__)

VERSION_TABLE = "ticketflow_schema_version"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CONNECT_TIMEOUT_SECONDS = 5  # an unreachable PostgreSQL fails fast: requests never wait on it, the writer retries
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0  # how long a SQLite writer waits for another one's lock
_ADVISORY_LOCK_KEY = zlib.crc32(b"ticketflow schema migration")  # the same key in every process


class DatabaseUnavailableError(RuntimeError):
    """The database cannot be reached or its tables cannot be created (the message says which and why)."""


class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps `timestamptz`; SQLite keeps naive UTC text of fixed width, so comparing the text compares the
    times. Binding a naive datetime raises: the log never guesses a timezone.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Converts to UTC (naive on SQLite); refuses a naive datetime."""
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"a timezone-aware datetime is required, not {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Returns an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


metadata = sa.MetaData()

# One row per answered ticket. Labels and confidences are JSON objects (target -> value), so models with other
# targets share the table; `min_confidence` (their lowest confidence) is stored so the review queue sorts in SQL.
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("ticket_id", sa.String(200), primary_key=True),
    sa.Column("request_id", sa.String(200), nullable=False),
    sa.Column("timestamp", UTCDateTime(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(50), nullable=False),
    sa.Column("needs_review", sa.Boolean(), nullable=False),
    sa.Column("min_confidence", sa.Float(), nullable=True),
    sa.Column("labels", sa.JSON(), nullable=False),
    sa.Column("confidences", sa.JSON(), nullable=False),
    # The drift window (newest first, LIMIT n) and retention (DELETE older than) walk this index.
    sa.Index("predictions_timestamp", "timestamp", "ticket_id"),
    # The review queue: flagged tickets, least confident first, read in index order.
    sa.Index("predictions_review", "needs_review", "min_confidence", "timestamp", "ticket_id"),
)

# One row per corrected (ticket, target), with a snapshot of what it corrects: it outlives the log's retention.
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("ticket_id", sa.String(200), primary_key=True),
    sa.Column("target", sa.String(200), primary_key=True),
    sa.Column("label", sa.String(200), nullable=False),  # the true label
    sa.Column("text", sa.Text(), nullable=False),  # the ticket's text as logged (masked)
    sa.Column("predicted_label", sa.String(200), nullable=False),
    sa.Column("confidence", sa.Float(), nullable=True),
    sa.Column("model_version", sa.String(50), nullable=False),
    sa.Column("predicted_at", UTCDateTime(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),  # first correction of this ticket and target
    sa.Column("updated_at", UTCDateTime(), nullable=False),  # latest correction
    sa.Column("source", sa.String(100), nullable=False),  # who corrected it
    # False for a training ticket the label audit disputes: it corrects no answer, so live accuracy leaves it out.
    sa.Column("served", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Index("feedback_predicted_at", "predicted_at"),
)


def parse_url(url: str) -> URL:
    """Checks a database URL and returns it in the form the engine uses.

    Args:
        url: `sqlite:///path.db` or `postgresql[+psycopg]://user:password@host:port/database`.

    Returns:
        The parsed URL; `postgresql://` gets the psycopg (3) driver, a SQLite path has `~` expanded.

    Raises:
        ValueError: Not a URL, another database kind, an in-memory SQLite (it cannot be shared), or no database name.
    """
    hint = (
        "use sqlite:///path/to/file.db (three slashes, then a relative path, or an absolute one starting with /) "
        "or postgresql+psycopg://user:password@host:5432/database"
    )
    try:
        parsed = make_url(url) if isinstance(url, str) else None
    except ArgumentError:
        parsed = None
    if parsed is None:
        raise ValueError(f"database URL {url!r} is not a URL: {hint}")
    if parsed.get_backend_name() == "sqlite":
        if parsed.get_driver_name() != "pysqlite" or not parsed.database or parsed.database == ":memory:":
            raise ValueError(f"database URL {url!r} names no SQLite file (an in-memory one cannot be shared): {hint}")
        return parsed.set(database=str(Path(parsed.database).expanduser()))
    if parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg2") or parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_driver_name() != "psycopg":
            raise ValueError(f"database URL {url!r}: ticketflow installs psycopg 3, use postgresql+psycopg://")
        if not parsed.database:
            raise ValueError(f"database URL {url!r} names no database: {hint}")
        return parsed
    raise ValueError(f"database URL {url!r}: {parsed.get_backend_name()} is not supported: {hint}")


def redacted(url: str | URL) -> str:
    """The URL as it may appear in logs and errors: the password replaced by `***`."""
    try:
        return (url if isinstance(url, URL) else make_url(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a URL>"


_engines: dict[tuple[int, str], Engine] = {}
_schema_ready: set[tuple[int, str]] = set()
_engines_lock = threading.Lock()


def engine_for(url: str | URL) -> Engine:
    """The process's engine for a database URL, made on first use (no connection is opened here).

    SQLite connections use WAL (readers never wait for the writer) and wait up to 30 s for a lock; PostgreSQL
    connections time out after 5 s and are checked before use, so a restarted server is reconnected.

    Args:
        url: A URL `parse_url` accepts.

    Returns:
        The engine, shared by the threads of this process (a forked child makes its own).
    """
    parsed = url if isinstance(url, URL) else parse_url(url)
    key = (os.getpid(), parsed.render_as_string(hide_password=False))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _make_engine(parsed)
            _engines[key] = engine
        return engine


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        folder = Path(url.database).parent

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # The driver's own transaction handling defers BEGIN and cannot take the write lock up front; SQLAlchemy's
            # documented recipe: turn it off and emit BEGIN ourselves (below).
            dbapi_connection.isolation_level = None
            _use_wal(dbapi_connection)

        @sa.event.listens_for(engine, "begin")
        def _on_begin(connection: sa.Connection) -> None:
            # IMMEDIATE: a writing transaction takes the lock at its start, so two writers queue on the busy timeout
            # instead of one failing with "database is locked" when it upgrades its read lock.
            connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.info.get("write") else "BEGIN")

        @sa.event.listens_for(engine, "do_connect")
        def _make_folder(*_args: Any) -> None:
            folder.mkdir(parents=True, exist_ok=True)

        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


def _use_wal(dbapi_connection: Any) -> None:
    """Puts a SQLite file in WAL mode (readers never wait for the writer), once: the mode is stored in the file.

    Switching needs the file to itself, and SQLite answers "database is locked" at once, without its busy timeout,
    while another process holds a lock (two processes creating the file together): wait and retry.
    """
    cursor = dbapi_connection.cursor()
    try:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
        while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        cursor.close()


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[sa.Connection]:
    """Opens a transaction that writes, as a context manager yielding its connection.

    On SQLite it begins with `BEGIN IMMEDIATE` (see `engine_for`); elsewhere it is `engine.begin()`. It commits when
    the block ends and rolls back when it raises.
    """
    with engine.connect() as connection:
        connection.info["write"] = True
        try:
            with connection.begin():
                yield connection
        finally:
            connection.info.pop("write", None)


def ensure_schema(url: str | URL) -> Engine:
    """Creates or upgrades the tables to the newest schema version, once per process; returns the engine.

    Safe to call from several processes at once (see the module's docstring). Later calls in the same process
    return at once; `forget_schema` makes the next call check again (after the database was replaced).

    Args:
        url: The database URL.

    Returns:
        The engine of the URL.

    Raises:
        DatabaseUnavailableError: The database cannot be reached or upgraded; the message names it (password hidden)
            and the cause.
    """
    engine = engine_for(url)
    key = (os.getpid(), engine.url.render_as_string(hide_password=False))
    if key in _schema_ready:
        return engine
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with write_transaction(engine) as connection:
            if engine.dialect.name == "postgresql":
                # Held until the transaction ends: a second process waits here, then finds the schema current.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except Exception as exc:
        raise DatabaseUnavailableError(
            f"database {redacted(engine.url)} is unavailable: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    _schema_ready.add(key)
    return engine


def forget_schema(url: str | URL) -> None:
    """Makes the next `ensure_schema` of this URL check the database again."""
    engine = engine_for(url)
    _schema_ready.discard((os.getpid(), engine.url.render_as_string(hide_password=False)))


def schema_version(url: str | URL) -> str | None:
    """The schema version the database is at (an Alembic revision id), or None before any."""
    from alembic.runtime.migration import MigrationContext

    with engine_for(url).connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
