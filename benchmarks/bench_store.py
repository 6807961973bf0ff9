"""Prediction-log benchmark: the queries of issue 11 at a million logged tickets, with and without their indexes.

    python -m benchmarks.bench_store            # 1,000,000 rows, SQLite and PostgreSQL (when installed)
    python -m benchmarks.bench_store --quick    # 20,000 rows, SQLite only; writes to a temp folder

Per backend, one database gets the schema (`ensure_schema`), loses its secondary indexes (`DROP INDEX`; primary keys
stay), is filled by bulk insert (SQLAlchemy Core, chunks of 10,000 rows; `PredictionLog.append` would take far
longer) and copied (a file copy; `CREATE DATABASE … TEMPLATE` on PostgreSQL, a throwaway server made by
`tests/postgres_server.py`); the copy gets the indexes back. So two databases hold the same rows, one with the
schema's indexes, one without. Each question is asked through the public API, as the product asks it:

- the drift check's window, `PredictionLog.read(last_n=5000)` and `read(since=now - 24 h)`,
- the review queue, `FeedbackStore.review_queue(log, limit=50)`,
- live accuracy on the corrected tickets, `FeedbackStore.live_accuracy()`,
- retention, `PredictionLog.purge(now=...)` deleting about 1 % of the rows (re-inserted, untimed, after each call).

Each call runs once untimed on both databases, then in interleaved rounds (rotating which database goes first), so
both sides of a speed-up (no-index median / indexed median) see the same moments of the machine's load. The review
queue is also answered once the way ticketflow did before issue 11: the whole log read into pandas, then filtered
and sorted there. The query plans (EXPLAIN) of both databases are stored with the figures, and a line is printed
when an indexed plan still reads the whole log.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from tqdm import tqdm

from benchmarks.common import (
    ROOT,
    figure,
    measure,
    median,
    merged_rows,
    output_arguments,
    output_paths,
    run_facts,
    save,
    say,
)

SAMPLE = ROOT / "data" / "sample_tickets.csv"
ROWS, QUICK_ROWS = 1_000_000, 20_000
FEEDBACK_ROWS, QUICK_FEEDBACK_ROWS = 5_000, 1_000
REPEATS, QUICK_REPEATS = 7, 2
CHUNK = 10_000  # rows per INSERT (one executemany, one transaction)
DAYS = 90  # the timestamps spread over this many days before `now`, the log's default retention
FLAGGED_SHARE = 0.2  # of the tickets flagged needs_review
PURGE_SHARE = 0.01  # of the rows older than the retention when the purge runs
WINDOW = 5_000  # read(last_n=...)
SINCE = timedelta(hours=24)  # read(since=now - ...)
QUEUE = 50  # review_queue(limit=...)
MODEL_VERSIONS = 5  # a new model version every DAYS / MODEL_VERSIONS days
QUERIES = ("read(last_n=5000)", "read(since=now-24h)", "review_queue(limit=50)", "live_accuracy()", "purge() of 1%")
ARMS = ("indexed", "no index")
TABLE_COLUMNS = ("query", "backend", "indexed (ms)", "no index (ms)", "speed-up", "SQL alone: indexed / no index (ms)")


# --------------------------------------------------------------------------------------------- the rows


@dataclass
class Synthetic:
    """A logged month's worth of tickets as columns (oldest first, the order the log is written in)."""

    now: datetime
    timestamps: list[datetime]
    ticket_ids: list[str]
    request_ids: list[str]
    texts: list[str]
    categories: list[str]
    priorities: list[str]
    category_confidence: list[float]
    priority_confidence: list[float]
    min_confidence: list[float]
    needs_review: list[bool]
    model_versions: list[str]

    def __len__(self) -> int:
        return len(self.ticket_ids)

    def rows(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Rows `start` … `stop - 1` of the `predictions` table, as the log's writer writes them."""
        return [
            {
                "ticket_id": self.ticket_ids[i],
                "request_id": self.request_ids[i],
                "timestamp": self.timestamps[i],
                "text": self.texts[i],
                "model_name": "ticket-classifier",
                "model_version": self.model_versions[i],
                "needs_review": self.needs_review[i],
                "min_confidence": self.min_confidence[i],
                "labels": {"category": self.categories[i], "priority": self.priorities[i]},
                "confidences": {"category": self.category_confidence[i], "priority": self.priority_confidence[i]},
            }
            for i in range(start, min(stop, len(self)))
        ]


def sample_tickets(path: Path) -> list[tuple[str, str, str]]:
    """(text, category, priority) of the sample's tickets, the text merged as the server merges it."""
    return [
        (text, row["category"], row["priority"])
        for text, row in merged_rows(path)
        if row.get("category") and row.get("priority")
    ]


def synthetic_log(size: int, now: datetime, seed: int = 0) -> Synthetic:
    """Tickets answered over the last DAYS days: sample texts, two targets, a fifth of them flagged.

    Requests carry one ticket mostly, sometimes a few (ids `"<16 hex>-<index>"` as the server makes them);
    confidences are skewed high, and the least confident fifth is flagged `needs_review`, as per-target review
    thresholds would flag them.
    """
    rng = np.random.default_rng(seed)
    tickets = sample_tickets(SAMPLE)
    start = np.datetime64(now.replace(tzinfo=None), "us") - np.timedelta64(DAYS * 86_400_000_000, "us")
    offsets = np.sort(rng.integers(0, DAYS * 86_400_000_000, size))
    stamps = (start + offsets.astype("timedelta64[us]")).astype(datetime)
    new_request = rng.random(size) < 0.7
    new_request[0] = True
    request_of = np.cumsum(new_request) - 1
    first_of_request = np.flatnonzero(new_request)
    index_in_request = np.arange(size) - first_of_request[request_of]
    request_hex = [f"{value:016x}" for value in rng.integers(0, 2**63, len(first_of_request))]
    picked = rng.integers(0, len(tickets), size)
    category_confidence = rng.beta(6.0, 1.5, size)
    priority_confidence = rng.beta(4.0, 1.5, size)
    lowest = np.minimum(category_confidence, priority_confidence)
    flagged = lowest < np.quantile(lowest, FLAGGED_SHARE)
    version = np.minimum(offsets * MODEL_VERSIONS // (DAYS * 86_400_000_000), MODEL_VERSIONS - 1) + 1
    return Synthetic(
        now=now,
        timestamps=[stamp.replace(tzinfo=UTC) for stamp in stamps],
        ticket_ids=[
            f"{request_hex[r]}-{i}" for r, i in zip(request_of.tolist(), index_in_request.tolist(), strict=True)
        ],
        request_ids=[request_hex[r] for r in request_of.tolist()],
        texts=[tickets[p][0] for p in picked.tolist()],
        categories=[tickets[p][1] for p in picked.tolist()],
        priorities=[tickets[p][2] for p in picked.tolist()],
        category_confidence=category_confidence.tolist(),
        priority_confidence=priority_confidence.tolist(),
        min_confidence=lowest.tolist(),
        needs_review=flagged.tolist(),
        model_versions=[str(v) for v in version.tolist()],
    )


def synthetic_feedback(log: Synthetic, size: int, seed: int = 1) -> list[dict[str, Any]]:
    """About `size` corrections of logged tickets, as agents would make them.

    Most go to the least confident flagged tickets (what the review queue showed agents first), the rest anywhere;
    every ticket gets its category corrected, two in five also its priority; 70 % confirm the model's label.
    """
    rng = np.random.default_rng(seed)
    tickets = size * 5 // 7
    flagged = np.flatnonzero(np.asarray(log.needs_review))
    least_confident = flagged[np.argsort(np.asarray(log.min_confidence)[flagged], kind="stable")]
    reviewed = least_confident[: tickets * 3 // 5]
    others = np.setdiff1d(np.arange(len(log)), reviewed)
    chosen = np.concatenate([reviewed, rng.choice(others, tickets - len(reviewed), replace=False)])
    categories, priorities = sorted(set(log.categories)), sorted(set(log.priorities))

    def other(labels: list[str], predicted: str) -> str:
        return str(rng.choice([label for label in labels if label != predicted]))

    rows = []
    for n, i in enumerate(chosen.tolist()):
        corrected_at = min(log.timestamps[i] + timedelta(hours=float(rng.uniform(0.1, 48.0))), log.now)
        targets = [("category", log.categories[i], log.category_confidence[i], categories)]
        if n < size - tickets:
            targets.append(("priority", log.priorities[i], log.priority_confidence[i], priorities))
        for target, predicted, confidence, labels in targets:
            rows.append(
                {
                    "ticket_id": log.ticket_ids[i],
                    "target": target,
                    "label": predicted
                    if rng.random() < 0.7
                    else str(rng.choice([x for x in labels if x != predicted])),
                    "text": log.texts[i],
                    "predicted_label": predicted,
                    "confidence": confidence,
                    "model_version": log.model_versions[i],
                    "predicted_at": log.timestamps[i],
                    "created_at": corrected_at,
                    "updated_at": corrected_at,
                    "source": "agent",
                }
            )
    return rows


# --------------------------------------------------------------------------------------------- the databases


def secondary_indexes() -> list[sa.Index]:
    """The indexes the schema adds beside the primary keys: the ones a baseline database goes without."""
    from ticketflow.monitoring.database import feedback, predictions

    return [*sorted(predictions.indexes, key=lambda i: i.name), *sorted(feedback.indexes, key=lambda i: i.name)]


def fill(url: str, log: Synthetic, feedback_rows: list[dict[str, Any]], backend: str) -> float:
    """Creates the schema in an empty database, drops its secondary indexes and bulk-inserts the rows.

    Returns:
        Seconds the inserts took.
    """
    from ticketflow.monitoring.database import ensure_schema, feedback, predictions, write_transaction

    engine = ensure_schema(url)
    with write_transaction(engine) as connection:
        for index in secondary_indexes():
            index.drop(connection)
    started = time.perf_counter()
    with tqdm(total=len(log), unit=" rows", unit_scale=True, desc=f"filling {backend}", disable=None) as bar:
        for start in range(0, len(log), CHUNK):
            rows = log.rows(start, start + CHUNK)
            with write_transaction(engine) as connection:
                connection.execute(predictions.insert(), rows)
            bar.update(len(rows))
    with write_transaction(engine) as connection:
        connection.execute(feedback.insert(), feedback_rows)
    return time.perf_counter() - started


def add_indexes(url: str) -> float:
    """Creates the schema's secondary indexes (the copy that has them); returns the seconds it took."""
    from ticketflow.monitoring.database import engine_for, write_transaction

    started = time.perf_counter()
    with write_transaction(engine_for(url)) as connection:
        for index in secondary_indexes():
            index.create(connection)
    return time.perf_counter() - started


@contextlib.contextmanager
def sqlite_databases(folder: Path, log: Synthetic, feedback_rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Two SQLite files with the same rows, with and without the indexes (a file copy).

    Yields:
        `urls` (arm -> URL), `fill_seconds`, `index_seconds`, `megabytes` (arm -> file size).
    """
    from ticketflow.monitoring.database import engine_for

    urls = {"no index": f"sqlite:///{folder / 'no_index.db'}", "indexed": f"sqlite:///{folder / 'indexed.db'}"}
    seconds = fill(urls["no index"], log, feedback_rows, "SQLite")
    engine_for(urls["no index"]).dispose()  # closing the last connection checkpoints the write-ahead log
    shutil.copyfile(folder / "no_index.db", folder / "indexed.db")
    index_seconds = add_indexes(urls["indexed"])
    engine_for(urls["indexed"]).dispose()  # the last connection's close moves the write-ahead log into the file
    megabytes = {arm: round((folder / f"{arm.replace(' ', '_')}.db").stat().st_size / 1e6, 1) for arm in urls}
    try:
        yield {"urls": urls, "fill_seconds": seconds, "index_seconds": index_seconds, "megabytes": megabytes}
    finally:
        for url in urls.values():
            engine_for(url).dispose()


@contextlib.contextmanager
def postgres_databases(log: Synthetic, feedback_rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Two databases on a throwaway PostgreSQL server, the second made from the first (`CREATE DATABASE … TEMPLATE`).

    The server is the tests' (`tests/postgres_server.py`: initdb in a temp folder, fsync off, 127.0.0.1); both
    databases are `VACUUM ANALYZE`d after loading, as autovacuum would do shortly after such a load.

    Yields:
        As `sqlite_databases`, plus `server` (the PostgresServer) and `version`.
    """
    import psycopg
    from psycopg import sql

    from ticketflow.monitoring.database import engine_for
    from ticketflow.pipelines.local_services import PostgresServer

    server, urls = PostgresServer(), {}
    try:
        server.start()
        urls["no index"] = server.create_database("no_index")
        seconds = fill(urls["no index"], log, feedback_rows, "PostgreSQL")
        engine_for(urls["no index"]).dispose()  # a template database must have no connections
        with psycopg.connect(server.conninfo(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE indexed TEMPLATE no_index"))
            version = connection.execute("SHOW server_version").fetchone()[0].split()[0]
        urls["indexed"] = server.url("indexed")
        index_seconds = add_indexes(urls["indexed"])
        megabytes = {}
        for arm, name in (("no index", "no_index"), ("indexed", "indexed")):
            with psycopg.connect(server.conninfo(name), autocommit=True) as connection:
                connection.execute("VACUUM ANALYZE")
                size = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
                megabytes[arm] = round(size / 1e6, 1)
        yield {
            "urls": urls,
            "fill_seconds": seconds,
            "index_seconds": index_seconds,
            "megabytes": megabytes,
            "server": server,
            "version": version,
        }
    finally:
        for url in urls.values():
            if url:
                engine_for(url).dispose()
        server.cleanup()


def postgres_pids(server: Any) -> list[int]:
    """The server's processes (the postmaster and its children): their CPU is the benchmark's own."""
    try:
        postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
    return pids


# --------------------------------------------------------------------------------------------- the questions


def review_queue_in_pandas(prediction_log: Any, store: Any, limit: int) -> pd.DataFrame:
    """The review queue as ticketflow answered it before issue 11: the whole log into pandas, filtered, sorted."""
    logged = prediction_log.read()
    pending = logged[logged["needs_review"] & ~logged["ticket_id"].isin(store.labelled_ticket_ids())].copy()
    confidence_columns = [c for c in pending.columns if c.startswith("confidence_")]
    pending["min_confidence"] = pending[confidence_columns].min(axis=1) if confidence_columns else np.nan
    pending = pending.sort_values(["min_confidence", "timestamp", "ticket_id"], kind="stable", na_position="last")
    return pending.head(limit).reset_index(drop=True)


@contextlib.contextmanager
def statements(url: str) -> Iterator[list[tuple[str, Any]]]:
    """Collects the SQL statements (and their parameters) sent to a database while the block runs."""
    from ticketflow.monitoring.database import engine_for

    engine, seen = engine_for(url), []

    def collect(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", collect)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", collect)


def questions(seen: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The statements among `seen` that read or delete rows of the log or the feedback."""
    return [
        (statement, parameters)
        for statement, parameters in seen
        if ("predictions" in statement or "feedback" in statement)
        and statement.lstrip().upper().startswith(("SELECT", "DELETE"))
    ]


def query_plan(url: str, sql: Sequence[tuple[str, Any]]) -> list[str]:
    """The plans of statements on a database (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL; not run)."""
    from ticketflow.monitoring.database import engine_for

    engine, lines = engine_for(url), []
    with engine.connect() as connection:
        for statement, parameters in sql:
            if engine.dialect.name == "sqlite":
                plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
                lines += [row[-1] for row in plan]
            else:
                lines += [row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()]
        connection.rollback()
    return lines


def run_sql(url: str, sql: Sequence[tuple[str, Any]]) -> int:
    """Runs read-only statements and fetches their raw rows (no conversion to Python types beyond the driver's)."""
    from ticketflow.monitoring.database import engine_for

    with engine_for(url).connect() as connection:
        return sum(len(connection.exec_driver_sql(statement, parameters).all()) for statement, parameters in sql)


def rounds(
    call: Callable[[str], object], repeats: int, after: Callable[[str], None] | None = None
) -> dict[str, list[float]]:
    """Seconds of `repeats` calls on each database, round by round, alternating which one goes first.

    Args:
        call: Asks the question of one database ("indexed" or "no index").
        repeats: Timed calls per database.
        after: Runs untimed after each call (puts purged rows back).

    Returns:
        Database -> seconds of each call.
    """
    seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for i in range(repeats):
        for arm in ARMS[i % 2 :] + ARMS[: i % 2]:
            started = time.perf_counter()
            call(arm)
            seconds[arm].append(time.perf_counter() - started)
            if after is not None:
                after(arm)
    return seconds


def full_scans(plan: Sequence[str]) -> list[str]:
    """The lines of a plan that read the whole log (no index): what the indexes are there to avoid.

    A sort after an index range scan (PostgreSQL may sort a day's window) sorts the window only, not the log.
    """
    return [
        line.strip()
        for line in plan
        if (line.strip().startswith("SCAN predictions") and "USING" not in line) or "Seq Scan on predictions" in line
    ]


def measure_backend(
    name: str, urls: dict[str, str], log: Synthetic, purged: int, repeats: int, pandas_baseline: bool
) -> dict[str, Any]:
    """Times every question on both databases of one backend.

    Args:
        name: The backend, for progress lines.
        urls: Arm ("indexed", "no index") -> database URL.
        log: The rows both databases hold.
        purged: How many of the oldest rows the purge deletes (put back after each purge).
        repeats: Timed calls per query and database.
        pandas_baseline: Whether to answer the review queue the old way too (once).

    Returns:
        `seconds` (query -> database -> timed calls), `sql_seconds` (the same for the statements run bare; not
        for the purge), `plans` and `plans_without_indexes` (query -> plan lines), `rows` (query -> rows returned
        or deleted) and, with `pandas_baseline`, `pandas_review_queue_seconds`.
    """
    from ticketflow.monitoring.database import engine_for, predictions, write_transaction
    from ticketflow.monitoring.feedback import FeedbackStore
    from ticketflow.monitoring.request_log import PredictionLog

    logs = {arm: PredictionLog(url, retention_days=DAYS) for arm, url in urls.items()}
    stores = {arm: FeedbackStore(url) for arm, url in urls.items()}
    purge_now = log.now + timedelta(days=DAYS * PURGE_SHARE)  # older than DAYS then: the oldest PURGE_SHARE
    calls: dict[str, Callable[[str], object]] = {
        QUERIES[0]: lambda arm: logs[arm].read(last_n=WINDOW),
        QUERIES[1]: lambda arm: logs[arm].read(since=log.now - SINCE),
        QUERIES[2]: lambda arm: stores[arm].review_queue(logs[arm], limit=QUEUE),
        QUERIES[3]: lambda arm: stores[arm].live_accuracy(),
        QUERIES[4]: lambda arm: logs[arm].purge(now=purge_now),
    }

    def restore(arm: str) -> None:
        """Puts the purged rows back, so every purge deletes the same rows from the same table."""
        engine = engine_for(urls[arm])
        with write_transaction(engine) as connection:
            connection.execute(predictions.insert(), log.rows(0, purged))
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("VACUUM predictions")

    result: dict[str, Any] = {"seconds": {}, "sql_seconds": {}, "plans": {}, "plans_without_indexes": {}, "rows": {}}
    for query, call in calls.items():
        purging = query == QUERIES[4]
        answers: dict[str, object] = {}
        for arm in ARMS:  # the untimed call of each side, and a check that both sides answer alike
            with statements(urls[arm]) as seen:
                answers[arm] = call(arm)
            sql = questions(seen)
            if purging:
                restore(arm)
        if not _same_answer(answers["indexed"], answers["no index"]):
            raise AssertionError(f"{name} {query}: the indexed and the unindexed database answer differently")
        rows = answers["indexed"]
        result["rows"][query] = rows if isinstance(rows, int) else len(rows)  # type: ignore[arg-type]
        result["plans"][query] = query_plan(urls["indexed"], sql)
        result["plans_without_indexes"][query] = query_plan(urls["no index"], sql)
        result["seconds"][query] = rounds(call, repeats, after=restore if purging else None)
        if not purging:  # the same statements without the Python around them (a DELETE is nothing else)
            result["sql_seconds"][query] = rounds(lambda arm: run_sql(urls[arm], sql), repeats)  # noqa: B023
        medians = {arm: median(values) * 1e3 for arm, values in result["seconds"][query].items()}
        say(
            f"{name} {query}: indexed {medians['indexed']:.1f} ms, no index {medians['no index']:.1f} ms "
            f"({result['rows'][query]} rows)"
        )
        if scans := full_scans(result["plans"][query]):
            say(f"{name} {query}: the indexed plan reads the whole log: {scans}")
    if pandas_baseline:
        say(f"{name}: the review queue the old way (whole log into pandas), once")
        started = time.perf_counter()
        old = review_queue_in_pandas(logs["indexed"], stores["indexed"], QUEUE)
        result["pandas_review_queue_seconds"] = time.perf_counter() - started
        new = calls[QUERIES[2]]("indexed")
        if old["ticket_id"].tolist() != new["ticket_id"].tolist():
            say(f"{name}: warning: the pandas review queue differs from the SQL one")
        say(f"{name}: whole log into pandas: {result['pandas_review_queue_seconds']:.1f} s")
    for prediction_log in logs.values():
        prediction_log.close()
    return result


def _same_answer(a: object, b: object) -> bool:
    if isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame):
        return a.equals(b)
    return a == b


# --------------------------------------------------------------------------------------------- the report


def _ms(seconds: float) -> str:
    milliseconds = seconds * 1e3
    return f"{milliseconds:,.0f}" if milliseconds >= 100 else f"{milliseconds:.1f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def report(details: dict[str, Any]) -> dict[str, Any]:
    """The store part: two summary rows without a goal (SQLite), a table of every query and backend, and notes."""
    rows = []
    for backend, measured in details["backends"].items():
        for query in QUERIES:
            medians = measured["median_seconds"][query]
            speed_up = medians["no index"] / medians["indexed"]
            sql = measured["median_sql_seconds"].get(query)
            bare = f"{_ms(sql['indexed'])} / {_ms(sql['no index'])}" if sql else "—"
            rows.append(
                [f"`{query}`", backend, _ms(medians["indexed"]), _ms(medians["no index"]), f"{speed_up:,.1f}×", bare]
            )
    size = details["rows"]
    title = f"{size / 1e6:g}M" if size >= 1_000_000 else f"{size:,}"
    sqlite = details["backends"].get("SQLite", {})
    notes = [
        f"- {size:,} logged tickets ({FLAGGED_SHARE:.0%} flagged `needs_review`, over {DAYS} days, texts of "
        f"`data/sample_tickets.csv`, two targets) and {details['feedback_rows']:,} corrections, bulk-inserted into "
        "one database per backend and copied: one with the schema's indexes, one without (primary keys kept). "
        f"Calls through `PredictionLog` / `FeedbackStore`; medians of {details['repeats']} interleaved rounds after "
        "one untimed call; speed-up = no-index median / indexed median. *SQL alone*: the statements the call sent, "
        "run bare (rows fetched, not turned into a DataFrame). The purge deletes "
        f"{details['purged_rows']:,} rows (re-inserted untimed after each call). `live_accuracy()` reads the "
        "corrections only, so no index of the log is involved.",
    ]
    if "pandas_review_queue_seconds" in sqlite:
        old, new = sqlite["pandas_review_queue_seconds"], sqlite["median_seconds"][QUERIES[2]]["indexed"]
        notes.append(
            f"- Before issue 11 the review queue read the whole log into pandas and sorted it there: {old:,.1f} s on "
            f"SQLite (one run), {old / new:,.0f}× the indexed query."
        )
    fills = ", ".join(
        f"{backend} {measured['fill_seconds']:.0f} s (+ {measured['index_seconds']:.0f} s to index)"
        for backend, measured in details["backends"].items()
    )
    notes.append(
        f"- Filling took {fills}; the whole run {_duration(details['seconds_total'])}. "
        f"{details.get('postgres_note', '')}".rstrip()
    )
    if scans := {f"{b} {q}" for b, m in details["backends"].items() for q, lines in m["full_scans"].items() if lines}:
        notes.append(f"- **Indexed plans that still scan or sort the log**: {', '.join(sorted(scans))} (see the JSON).")
    summary = []
    for query, what in ((QUERIES[2], "review queue (50 least confident)"), (QUERIES[0], "drift window (last 5,000)")):
        medians = sqlite["median_seconds"][query]
        summary.append(
            figure(
                f"{what}, {title}-row log, SQLite, indexed",
                medians["indexed"] * 1e3,
                "ms",
                baseline=medians["no index"] * 1e3,
                baseline_label="no index",
            )
        )
    return {
        "title": f"Prediction log at {title} rows",
        "summary": summary,
        "figures": [],
        "table": {"columns": [*TABLE_COLUMNS], "rows": rows},
        "notes": notes,
    }


def summarised(measured: dict[str, Any], made: dict[str, Any]) -> dict[str, Any]:
    """One backend's part of the details: how its databases were made, then the timings with their medians."""
    for key in ("seconds", "sql_seconds"):
        measured[f"median_{key}"] = {
            query: {arm: median(values) for arm, values in timed.items()} for query, timed in measured[key].items()
        }
        for timed in measured[key].values():
            for arm, values in timed.items():
                timed[arm] = [round(value, 5) for value in values]  # to 10 µs, for the JSON
    measured["full_scans"] = {query: full_scans(plan) for query, plan in measured["plans"].items()}
    return {
        "fill_seconds": round(made["fill_seconds"], 1),
        "index_seconds": round(made["index_seconds"], 1),
        "megabytes": made["megabytes"],
        **measured,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_store", description=__doc__.split("\n")[0])
    output_arguments(parser)
    parser.add_argument("--rows", type=int, help=f"logged tickets (default {ROWS:,}; quick {QUICK_ROWS:,})")
    parser.add_argument("--repeats", type=int, help=f"timed calls per query and database (default {REPEATS})")
    args = parser.parse_args(argv)
    results, report_path = output_paths(args)
    size = args.rows or (QUICK_ROWS if args.quick else ROWS)
    repeats = args.repeats or (QUICK_REPEATS if args.quick else REPEATS)
    feedback_size = min(QUICK_FEEDBACK_ROWS if args.quick else FEEDBACK_ROWS, size // 10)
    command = "python -m benchmarks.bench_store" + (" --quick" if args.quick else "")
    run = run_facts(command, args.quick, ("sqlalchemy", "psycopg", "pandas"))
    from ticketflow.pipelines.local_services import find_postgres_bin

    postgres = not args.quick and find_postgres_bin() is not None
    details: dict[str, Any] = {"rows": size, "feedback_rows": feedback_size, "repeats": repeats, "backends": {}}
    if args.quick:
        details["postgres_note"] = "Quick mode: SQLite only."
    elif not postgres:
        details["postgres_note"] = "PostgreSQL is not installed here: SQLite only."
        say("PostgreSQL is not installed (no initdb/pg_ctl): measuring SQLite only")
    say(f"making {size:,} logged tickets and {feedback_size:,} corrections")
    now = datetime.now(UTC).replace(microsecond=0)
    log = synthetic_log(size, now)
    feedback_rows = synthetic_feedback(log, feedback_size)
    purged = bisect.bisect_left(log.timestamps, now - timedelta(days=DAYS * (1 - PURGE_SHARE)))  # oldest first
    details["purged_rows"] = purged
    started, spans = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="ticketflow-bench-store-") as tmp:
        backends: list[tuple[str, Callable[[], contextlib.AbstractContextManager[dict[str, Any]]]]] = [
            ("SQLite", lambda: sqlite_databases(Path(tmp), log, feedback_rows))
        ]
        if postgres:
            backends.append(("PostgreSQL", lambda: postgres_databases(log, feedback_rows)))
        for name, databases in backends:
            say(f"{name}: filling one database, then copying it")
            with databases() as made:
                server = made.get("server")
                if server is not None:
                    details["postgres_note"] = f"PostgreSQL {made['version']}, a throwaway server (fsync off)."
                say(f"{name}: filled in {made['fill_seconds']:.0f} s, indexed in {made['index_seconds']:.0f} s")
                # The server's processes work for the benchmark: their CPU is not "other processes'".
                with measure(lambda server=server: postgres_pids(server) if server else []) as span:
                    measured = measure_backend(name, made["urls"], log, purged, repeats, name == "SQLite")
            spans.append(span)
            details["backends"][name] = summarised(measured, made) | {"other_cores": span.other_cores}
    details["seconds_total"] = round(time.perf_counter() - started, 1)
    loads = [(span.seconds, span.other_cores) for span in spans if span.other_cores is not None]
    other_cores = round(sum(s * c for s, c in loads) / sum(s for s, _ in loads), 2) if loads else None
    run |= {"finished": datetime.now(UTC).isoformat(timespec="seconds"), "other_cores": other_cores}
    save("store", {"run": run, **report(details), "details": details}, results, report_path)
    say(f"wrote the store part of {results} and {report_path} ({details['seconds_total']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
