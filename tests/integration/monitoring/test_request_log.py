"""The prediction log on a real SQLite file and a real PostgreSQL server: round trips, windows, retention,
durability, failures, a bounded buffer while the database is down, and several writing processes."""

from __future__ import annotations

import dataclasses
import logging
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from ticketflow.monitoring import database
from ticketflow.monitoring.metrics import LOG_DROPPED
from ticketflow.monitoring.request_log import BASE_COLUMNS, PredictionLog, PredictionRecord
from ticketflow.pipelines.local_services import PostgresServer, find_postgres_bin

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
FAST = 0.05  # flush interval of the tests, seconds


def record(i: int, timestamp: datetime | None = None, request: str = "req", **changes) -> PredictionRecord:
    fields = {
        "ticket_id": f"{request}-{i}",
        "request_id": request,
        "text": f"printer {i} on floor 3 is jammed",
        "labels": {"category": "Hardware" if i % 2 else "Access", "priority": "high" if i % 3 == 0 else "low"},
        "confidences": {"category": 0.5 + i / 1000, "priority": 0.9 - i / 1000},
        "needs_review": i % 4 == 0,
        "model_name": "ticket-classifier",
        "model_version": "3",
        "timestamp": timestamp or T0 + timedelta(minutes=i),
    }
    return PredictionRecord(**{**fields, **changes})


def uri_for(kind: str, tmp_path: Path) -> str:
    # tmp_path is absolute, so this is sqlite:////… (three slashes, then /tmp/…).
    assert kind == "sqlite"
    return f"sqlite:///{tmp_path / 'logs' / 'predictions.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def uri(request, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return uri_for(request.param, tmp_path)


@pytest.fixture
def sqlite_uri(tmp_path) -> str:
    return uri_for("sqlite", tmp_path)


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "prediction-log-writer"]


def test_constructing_a_log_creates_nothing_and_starts_no_thread(uri, tmp_path):
    before = len(writer_threads())
    plog = PredictionLog(uri)
    assert not (tmp_path / "logs").exists()
    assert len(writer_threads()) == before
    # Reading creates the tables (the drift check may come first) and finds no records.
    frame = plog.read()
    assert list(frame.columns) == list(BASE_COLUMNS)
    assert len(frame) == 0
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert len(plog) == 0
    assert plog.get("req-1") is None
    assert plog.purge() == 0
    assert plog  # truthy even when empty
    plog.close()
    assert len(writer_threads()) == before


def test_round_trip_with_two_targets(uri):
    records = [record(i) for i in range(12)]
    with PredictionLog(uri, flush_interval=FAST) as plog:
        plog.append(records)
        plog.flush()
        frame = plog.read()
        assert len(plog) == 12

    assert list(frame.columns) == [
        *BASE_COLUMNS,
        "label_category",
        "confidence_category",
        "label_priority",
        "confidence_priority",
    ]
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert frame["needs_review"].dtype == bool
    assert frame["ticket_id"].tolist() == [r.ticket_id for r in records]
    assert frame["timestamp"].tolist() == [pd.Timestamp(r.timestamp) for r in records]
    assert frame["label_category"].tolist() == [r.labels["category"] for r in records]
    assert frame["label_priority"].tolist() == [r.labels["priority"] for r in records]
    np.testing.assert_allclose(frame["confidence_category"], [r.confidences["category"] for r in records])
    np.testing.assert_allclose(frame["confidence_priority"], [r.confidences["priority"] for r in records])
    assert frame["needs_review"].tolist() == [r.needs_review for r in records]
    assert set(frame["model_version"]) == {"3"}
    assert frame["text"].iloc[5] == records[5].text


def test_records_with_different_targets_share_the_table(uri):
    only_category = record(1, labels={"category": "Network"}, confidences={"category": 0.8})
    with PredictionLog(uri, flush_interval=FAST) as plog:
        plog.append([record(0), only_category])
        plog.flush()
        frame = plog.read()
    assert frame.loc[1, "label_category"] == "Network"
    assert frame.loc[1, "label_priority"] is None
    assert np.isnan(frame.loc[1, "confidence_priority"])
    assert frame.loc[0, "label_priority"] == "high"


def test_since_and_last_n_windows_come_sorted_by_time(uri):
    # Appended out of order and in three batches (three transactions or three files).
    minutes = [7, 2, 9, 0, 5, 1, 8, 3, 6, 4]
    records = [record(i, timestamp=T0 + timedelta(minutes=m)) for i, m in enumerate(minutes)]
    by_time = [r.ticket_id for r in sorted(records, key=lambda r: r.timestamp)]
    with PredictionLog(uri, flush_interval=FAST) as plog:
        for start in (0, 4, 7):
            plog.append(records[start : start + 4 if start < 7 else None])
            plog.flush()
        assert plog.read()["ticket_id"].tolist() == by_time
        assert plog.read(since=T0 + timedelta(minutes=6))["ticket_id"].tolist() == by_time[6:]  # inclusive
        assert plog.read(last_n=3)["ticket_id"].tolist() == by_time[-3:]
        assert plog.read(since=T0 + timedelta(minutes=2), last_n=20)["ticket_id"].tolist() == by_time[2:]
        assert plog.read(since=T0, last_n=0).empty
        # A since in another timezone means the same instant.
        berlin = T0.astimezone(pd.Timestamp("2024-05-01", tz="Europe/Berlin").tzinfo) + timedelta(minutes=8)
        assert plog.read(since=berlin)["ticket_id"].tolist() == by_time[8:]
        with pytest.raises(ValueError, match="timezone-aware"):
            plog.read(since=datetime(2024, 5, 1))
        with pytest.raises(ValueError, match="last_n"):
            plog.read(last_n=-1)


def test_get_returns_the_record_or_none(uri):
    wanted = record(3, confidences={"category": np.float32(0.75), "priority": np.float64(0.5)}, model_version=7)
    with PredictionLog(uri, flush_interval=FAST) as plog:
        plog.append([record(1), wanted, record(5)])
        plog.flush()
        row = plog.get("req-3")
        assert plog.get("req-4") is None
    assert row == dataclasses.asdict(wanted)
    assert PredictionRecord(**row) == wanted
    assert row["timestamp"].tzinfo is not None
    assert row["model_version"] == "7"
    assert row["confidences"] == {"category": 0.75, "priority": 0.5}


def test_re_appending_a_ticket_id_keeps_one_record(uri):
    with PredictionLog(uri, flush_interval=FAST) as plog:
        plog.append([record(1), record(2)])
        plog.flush()
        plog.append([record(1, text="printer 1 retried")])  # a retried write of the same ticket
        plog.flush()
        assert len(plog) == 2
        frame = plog.read()
        assert frame["ticket_id"].tolist() == ["req-1", "req-2"]
        assert plog.get("req-1")["text"] == "printer 1 retried"


def test_purge_deletes_exactly_the_records_past_retention(uri):
    now = datetime(2024, 8, 1, 12, 0, tzinfo=UTC)
    ages = {"a": 120, "b": 91, "c": 90.01, "d": 89.99, "e": 30, "f": 0}  # days
    records = [
        record(i, request=name, timestamp=now - timedelta(days=age)) for i, (name, age) in enumerate(ages.items())
    ]
    with PredictionLog(uri, retention_days=90, flush_interval=FAST) as plog:
        plog.append(records[:4])  # one batch (file) of old and kept records: partly purged
        plog.flush()
        plog.append(records[4:])
        plog.flush()
        plog.append([record(9, request="z", timestamp=now - timedelta(days=200))])  # a batch of old ones only
        plog.flush()
        assert len(plog) == 7
        assert plog.purge(now=now) == 4
        assert plog.read()["request_id"].tolist() == ["d", "e", "f"]
        assert plog.purge(now=now) == 0
        assert len(plog) == 3


def test_the_writer_purges_when_it_starts(uri):
    old = record(1, timestamp=datetime.now(UTC) - timedelta(days=100))
    with PredictionLog(uri, retention_days=90, flush_interval=FAST) as plog:
        plog.append([old])
    with PredictionLog(uri, retention_days=90, flush_interval=FAST) as plog:
        assert len(plog) == 1
        plog.append([record(2, timestamp=datetime.now(UTC))])  # starts the writer, which purges first
        plog.flush()
        assert plog.read()["ticket_id"].tolist() == ["req-2"]


def test_an_idle_writer_wakes_for_the_next_record(uri):
    with PredictionLog(uri, flush_interval=FAST) as plog:
        plog.append([record(1)])
        plog.flush()
        time.sleep(0.3)  # the writer has nothing to do and sleeps (until its next hourly purge)
        plog.append([record(2)])
        deadline = time.time() + 5
        while len(plog) < 2 and time.time() < deadline:  # no flush: the writer must wake by itself
            time.sleep(0.05)
        assert len(plog) == 2


def test_append_only_enqueues(sqlite_uri):
    records = [record(i, timestamp=T0) for i in range(10_000)]
    plog = PredictionLog(sqlite_uri)
    start = time.perf_counter()
    for r in records:
        plog.append([r])
    elapsed = time.perf_counter() - start
    plog.close()
    assert elapsed < 0.5, f"10,000 appends took {elapsed:.3f} s of the caller's time"
    assert len(PredictionLog(sqlite_uri)) == 10_000


def test_a_burst_followed_by_close_is_all_written(uri):
    plog = PredictionLog(uri, flush_interval=10.0)  # only close() can write what is below one batch
    for i in range(5_000):
        plog.append([record(i)])
    plog.close()
    assert len(PredictionLog(uri)) == 5_000


def test_exiting_without_close_still_writes_the_burst(uri):
    # batch_size and flush_interval keep the writer from writing on its own: only the atexit hook can.
    script = textwrap.dedent(
        f"""
        import sys
        from datetime import datetime, timedelta, UTC
        from ticketflow.monitoring.request_log import PredictionLog, PredictionRecord

        plog = PredictionLog({uri!r}, batch_size=100_000, flush_interval=60.0)
        t0 = datetime(2024, 5, 1, tzinfo=UTC)
        for i in range(5_000):
            plog.append([PredictionRecord(f"req-{{i}}", "req", "printer jammed", {{"category": "Hardware"}},
                                          {{"category": 0.9}}, False, "ticket-classifier", "3",
                                          t0 + timedelta(seconds=i))])
        print("appended", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "appended"
    assert "Traceback" not in done.stderr
    frame = PredictionLog(uri).read()
    assert len(frame) == 5_000
    assert frame["ticket_id"].iloc[-1] == "req-4999"


def test_readers_work_while_the_writer_writes(sqlite_uri, tmp_path):
    plog = PredictionLog(sqlite_uri, batch_size=50, flush_interval=0.01)
    other = PredictionLog(sqlite_uri)  # as a drift job in another process would open it
    seen, errors = [], []
    stop = threading.Event()

    def read_repeatedly():
        try:
            while not stop.is_set():
                seen.append(len(other))
                other.read(last_n=20)
                plog.get("req-0")
                with sqlite3.connect(tmp_path / "logs" / "predictions.db") as connection:
                    connection.execute("SELECT COUNT(*) FROM predictions").fetchone()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    plog.append([record(0)])
    plog.flush()
    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    for i in range(1, 3_000):
        plog.append([record(i)])
        if i % 500 == 0:
            time.sleep(0.02)
    plog.close()
    stop.set()
    reader.join()
    assert not errors
    assert len(seen) > 3
    assert seen == sorted(seen)  # the readers saw the log grow, never shrink or fail
    assert len(other) == 3_000


@pytest.mark.parametrize(
    "bad",
    [
        "predictions.db",
        "/tmp/predictions.db",
        "sqlite://predictions.db",
        "sqlite:///",
        "sqlite:///:memory:",
        "parquet:///logs/predictions",
        "mysql://user@host/db",
        "postgresql+psycopg://user@host:5432",
    ],
)
def test_unknown_uris_are_refused(bad):
    with pytest.raises(ValueError, match="database URL") as caught:
        PredictionLog(bad)
    assert repr(bad) in str(caught.value)


def test_postgresql_urls_get_the_installed_driver_and_hide_the_password():
    plog = PredictionLog("postgresql://ticketflow:s3cret@db.example:5432/ticketflow")
    assert plog.url.drivername == "postgresql+psycopg"
    assert "s3cret" not in plog.name and "s3cret" not in repr(plog)
    plog.close()


def test_append_after_close_raises_and_close_is_idempotent(uri):
    plog = PredictionLog(uri, flush_interval=FAST)
    plog.append([record(1)])
    plog.close()
    plog.close()
    with pytest.raises(RuntimeError, match="closed"):
        plog.append([record(2)])
    assert len(plog) == 1
    assert plog.read()["ticket_id"].tolist() == ["req-1"]  # reading a closed log still works


def test_bad_input_is_refused(uri):
    with pytest.raises(ValueError, match="timezone-aware"):
        record(1, timestamp=datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="retention_days"):
        PredictionLog(uri, retention_days=0)
    plog = PredictionLog(uri)
    with pytest.raises(TypeError, match="PredictionRecord"):
        plog.append([{"ticket_id": "req-1"}])
    plog.close()


def test_a_failed_write_is_retried_and_nothing_is_lost(sqlite_uri, tmp_path, caplog):
    uri = sqlite_uri
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log's folder should be")  # makes creating the log fail, even as root
    plog = PredictionLog(uri, flush_interval=FAST)
    with caplog.at_level(logging.ERROR, logger="ticketflow.monitoring.request_log"):
        plog.append([record(i) for i in range(10)])
        with pytest.raises(TimeoutError, match="not written"):
            plog.flush(timeout=0.5)
    assert plog.write_failures >= 1
    failures = [r for r in caplog.records if "writing 10 records failed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None  # logged with the traceback

    blocker.unlink()  # the "disk" is back
    plog.append([record(10)])
    plog.flush(timeout=10)
    assert len(plog) == 11
    failures_so_far = plog.write_failures
    plog.append([record(11)])
    plog.close()
    assert plog.write_failures == failures_so_far  # counted once per failed write, not per record
    assert len(plog) == 12


def test_timestamps_are_stored_in_utc(uri):
    eastern = record(1, timestamp=datetime(2024, 5, 1, 5, 0, tzinfo=pd.Timestamp("2024-05-01", tz="US/Eastern").tzinfo))
    assert eastern.timestamp.tzinfo == UTC
    assert eastern.timestamp == datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    with PredictionLog(uri, flush_interval=FAST) as plog:
        plog.append([eastern])
        plog.flush()
        assert plog.get("req-1")["timestamp"] == datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
        assert plog.read()["timestamp"].iloc[0] == pd.Timestamp("2024-05-01 09:00", tz="UTC")


# ---- the schema, a bounded buffer while the database is down, several writers ------------------------------------
def test_check_creates_the_versioned_schema_once(uri):
    plog = PredictionLog(uri)
    plog.check()
    plog.check()  # idempotent
    assert database.schema_version(uri) == "0002"
    tables = set(sa.inspect(sa.create_engine(plog.url)).get_table_names())
    assert {"predictions", "feedback", database.VERSION_TABLE} <= tables
    assert "alembic_version" not in tables  # MLflow's own version table may share the database


def test_an_unreachable_database_is_a_clear_error_naming_it_without_the_password():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plog = PredictionLog(f"postgresql+psycopg://ticketflow:s3cret@127.0.0.1:{port}/ticketflow")
    for call in (plog.check, plog.read, lambda: plog.get("req-1"), plog.__len__):
        with pytest.raises(database.DatabaseUnavailableError, match=f"127.0.0.1:{port}/ticketflow") as caught:
            call()
        assert "s3cret" not in str(caught.value)
    plog.close()


def test_a_full_buffer_drops_and_counts_and_the_rest_is_written_later(sqlite_uri, tmp_path, caplog):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log's folder should be")  # the database cannot be opened
    dropped_before = LOG_DROPPED._value.get()
    plog = PredictionLog(sqlite_uri, flush_interval=FAST, max_buffered=100)
    with caplog.at_level(logging.WARNING, logger="ticketflow.monitoring.request_log"):
        for i in range(150):
            plog.append([record(i)])  # never blocks, never raises
    assert plog.dropped == 50
    assert LOG_DROPPED._value.get() - dropped_before == 50
    assert any("dropped" in r.getMessage() and "buffer is full" in r.getMessage() for r in caplog.records)

    blocker.unlink()  # the database is back
    plog.flush(timeout=10)
    assert len(plog) == 100
    assert plog.read()["ticket_id"].tolist() == [f"req-{i}" for i in range(100)]  # the first 100 kept, in order
    plog.close()
    assert len(plog) + plog.dropped == 150  # every answered ticket is written or counted


def test_close_counts_what_it_could_not_write(sqlite_uri, tmp_path):
    (tmp_path / "logs").write_text("not a folder")
    dropped_before = LOG_DROPPED._value.get()
    plog = PredictionLog(sqlite_uri, flush_interval=FAST)
    plog.append([record(i) for i in range(7)])
    with pytest.raises(TimeoutError, match="7 records could not be written"):
        plog.close(timeout=1.0)
    assert plog.dropped == 7 and LOG_DROPPED._value.get() - dropped_before == 7
    plog.close()  # closed: nothing more to do


@pytest.fixture
def own_postgres(request):
    """A PostgreSQL server of this test's own, so stopping it disturbs no other test."""
    request.getfixturevalue("postgres_server")  # skips, or fails under CI, when PostgreSQL is absent
    server = PostgresServer(find_postgres_bin()).start()
    yield server
    server.cleanup()


def test_postgresql_stopped_in_a_burst_loses_nothing(own_postgres):
    uri = own_postgres.create_database("burst")
    plog = PredictionLog(uri, batch_size=50, flush_interval=FAST)
    plog.append([record(i) for i in range(200)])
    plog.flush(timeout=10)
    own_postgres.stop()
    started = time.perf_counter()
    for i in range(200, 700):
        plog.append([record(i)])  # while the database is down
    assert time.perf_counter() - started < 0.5  # appending never waits for the database
    time.sleep(1.0)  # let the writer fail at least once
    assert plog.write_failures >= 1
    assert plog.dropped == 0
    own_postgres.start()
    plog.flush(timeout=60)
    plog.close()
    assert len(PredictionLog(uri)) == 700
    assert plog.dropped == 0


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_processes_creating_and_writing_at_once_lose_nothing(kind, tmp_path, request):
    uri = uri_for("sqlite", tmp_path) if kind == "sqlite" else request.getfixturevalue("postgres_url")
    script = textwrap.dedent(
        """
        import sys, time
        from datetime import UTC, datetime, timedelta
        from ticketflow.monitoring.request_log import PredictionLog, PredictionRecord

        uri, name, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
        while time.time() < start_at:  # both processes create the tables at the same moment
            time.sleep(0.001)
        t0 = datetime.now(UTC)  # recent: each writer purges what is past retention when it starts
        with PredictionLog(uri, batch_size=64, flush_interval=0.01) as plog:
            plog.check()
            for i in range(2_000):
                plog.append([PredictionRecord(f"{name}-{i}", name, "printer jammed", {"category": "Hardware"},
                                              {"category": 0.9}, False, "ticket-classifier", "3",
                                              t0 + timedelta(milliseconds=i))])
        print(plog.dropped, plog.write_failures)
        """
    )
    start_at = time.time() + 4.0  # after both interpreters have imported everything
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", script, uri, name, str(start_at)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        assert out.split() == ["0", "0"], err  # nothing dropped, no failed write
    frame = PredictionLog(uri).read()
    assert len(frame) == 4_000
    assert set(frame["request_id"]) == {"a", "b"}
    assert database.schema_version(uri) == "0002"
