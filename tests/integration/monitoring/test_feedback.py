"""Agents' feedback in the prediction log's database, on a real SQLite file and a real PostgreSQL server: recording,
atomicity, the review queue, live accuracy, the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from ticketflow.monitoring.feedback import (
    COLUMNS,
    FeedbackStore,
    InvalidFeedbackError,
    UnknownTicketError,
    review_items,
)
from ticketflow.monitoring.request_log import PredictionLog, PredictionRecord
from ticketflow.pipelines.cli import main as cli_main

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)

# ticket id -> (category, priority, category confidence, priority confidence, needs_review)
TICKETS = {
    "req-0": ("Network", "high", 0.95, 0.90, False),
    "req-1": ("Hardware", "low", 0.40, 0.80, True),  # min 0.40
    "req-2": ("Access", "medium", 0.70, 0.20, True),  # min 0.20: least confident
    "req-3": ("Billing", "low", 0.60, 0.55, True),  # min 0.55
    "req-4": ("Network", "high", 0.40, 0.90, True),  # min 0.40, answered after req-1
    "req-5": ("Hardware", "medium", 0.99, 0.97, False),
}


def prediction(ticket_id: str, minutes: int) -> PredictionRecord:
    category, priority, c_conf, p_conf, review = TICKETS[ticket_id]
    return PredictionRecord(
        ticket_id=ticket_id,
        request_id="req",
        text=f"ticket {ticket_id}: the printer on floor {minutes} is jammed",
        labels={"category": category, "priority": priority},
        confidences={"category": c_conf, "priority": p_conf},
        needs_review=review,
        model_name="ticket-classifier",
        model_version="3",
        timestamp=T0 + timedelta(minutes=minutes),
    )


def make_log(uri: str) -> PredictionLog:
    with PredictionLog(uri, flush_interval=0.05) as prediction_log:
        prediction_log.append([prediction(ticket_id, i) for i, ticket_id in enumerate(TICKETS)])
    return PredictionLog(uri)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path: Path) -> str:
    """The URL of an empty database that holds the prediction log and the feedback."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'state' / 'predictions.db'}"


@pytest.fixture
def prediction_log(database: str) -> PredictionLog:
    return make_log(database)


@pytest.fixture
def store(database: str) -> FeedbackStore:
    return FeedbackStore(database)


def rows(store: FeedbackStore) -> list[tuple]:
    return [tuple(r) for r in store.read()[["ticket_id", "target", "label"]].itertuples(index=False)]


def test_record_stores_the_correction_with_a_snapshot_of_the_prediction(
    store: FeedbackStore, prediction_log: PredictionLog
) -> None:
    record = store.record("req-1", {"category": "  Network "}, prediction_log=prediction_log)
    assert record.ticket_id == "req-1" and record.labels == {"category": "Network"}
    assert record.predicted == {"category": "Hardware"} and record.correct == {"category": False}
    assert record.source == "agent" and record.model_version == "3" and "req-1" in record.text
    assert record.created_at == record.updated_at and record.created_at.tzinfo is not None
    assert store.get("req-1") == record and store.get("req-0") is None
    frame = store.read()
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 1
    row = frame.iloc[0]
    assert (row["target"], row["label"], row["predicted_label"], bool(row["correct"])) == (
        "category",
        "Network",
        "Hardware",
        False,
    )
    assert row["confidence"] == pytest.approx(0.40)
    assert row["predicted_at"] == pd.Timestamp(T0 + timedelta(minutes=1))
    assert json.loads(json.dumps(record.to_dict()))["labels"] == {"category": "Network"}


def test_a_ticket_the_log_never_saw_is_recorded_from_the_known_tickets_lookup(
    store: FeedbackStore, prediction_log: PredictionLog
) -> None:
    """A training ticket from the label audit: the caller's lookup supplies what the correction keeps."""
    asked: list[str] = []
    audited = {
        "TCK-7": {
            "text": "printer jammed on floor 3",
            "labels": {"category": "Hardware"},  # the audit's suggestion
            "confidences": {"category": 0.83},
            "model_version": "5",
            "timestamp": T0,
        }
    }

    def known(ticket_id: str) -> dict | None:
        asked.append(ticket_id)
        return audited.get(ticket_id)

    record = store.record("TCK-7", {"category": "Hardware"}, prediction_log=prediction_log, known_tickets=known)
    assert record.labels == record.predicted == {"category": "Hardware"} and record.model_version == "5"
    assert record.served is False and record.to_dict()["served"] is False
    assert record.text == "printer jammed on floor 3"
    row = store.read().iloc[0]
    assert row["confidence"] == pytest.approx(0.83) and row["predicted_at"] == pd.Timestamp(T0)
    # The log comes first: a logged ticket never reaches the lookup.
    store.record("req-1", {"category": "Network"}, prediction_log=prediction_log, known_tickets=known)
    assert asked == ["TCK-7"]
    assert store.get("req-1").served is True
    assert store.read().set_index("ticket_id")["served"].to_dict() == {"TCK-7": False, "req-1": True}
    with pytest.raises(InvalidFeedbackError, match="has no prediction for 'priority'; valid targets: category"):
        store.record("TCK-7", {"priority": "high"}, prediction_log=prediction_log, known_tickets=known)
    # Live accuracy scores served answers only: the audited training ticket is not one.
    assert store.live_accuracy() == {"category": {"accuracy": 0.0, "n": 1}}  # req-1: predicted Hardware, was Network
    with pytest.raises(UnknownTicketError, match="nor among the known tickets"):
        store.record("TCK-8", {"category": "Network"}, prediction_log=prediction_log, known_tickets=known)
    with pytest.raises(UnknownTicketError, match="is not in the prediction log"):  # without a lookup, as before
        store.record("TCK-7", {"category": "Network"}, prediction_log=prediction_log)
    assert sorted(store.labelled_ticket_ids()) == ["TCK-7", "req-1"]


def test_recording_again_overwrites_and_keeps_the_first_time(
    store: FeedbackStore, prediction_log: PredictionLog
) -> None:
    first = store.record("req-1", {"category": "Network", "priority": "low"}, prediction_log=prediction_log)
    second = store.record("req-1", {"category": "Access"}, source="lead", prediction_log=prediction_log)
    assert second.labels == {"category": "Access", "priority": "low"}  # priority untouched
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert second.source == "lead"
    assert sorted(rows(store)) == [("req-1", "category", "Access"), ("req-1", "priority", "low")]
    frame = store.read().set_index("target")
    assert frame.loc["category", "created_at"] == frame.loc["priority", "created_at"]
    assert frame.loc["category", "updated_at"] > frame.loc["priority", "updated_at"]


def test_an_unknown_id_raises_a_clear_key_error_and_writes_nothing(
    store: FeedbackStore, prediction_log: PredictionLog
) -> None:
    with pytest.raises(UnknownTicketError, match="'nope-0' is not in the prediction log") as caught:
        store.record("nope-0", {"category": "Network"}, prediction_log=prediction_log)
    assert isinstance(caught.value, KeyError)
    assert store.read().empty  # nothing written
    store.record("req-0", {"category": "Network"}, prediction_log=prediction_log)
    with pytest.raises(UnknownTicketError):
        store.record("req-99", {"category": "Network"}, prediction_log=prediction_log)
    assert rows(store) == [("req-0", "category", "Network")]


def test_a_target_without_a_prediction_is_refused_naming_the_valid_ones(
    store: FeedbackStore, prediction_log: PredictionLog
) -> None:
    with pytest.raises(InvalidFeedbackError, match="no prediction for 'team'; valid targets: category, priority"):
        store.record("req-1", {"category": "Network", "team": "blue"}, prediction_log=prediction_log)
    assert store.get("req-1") is None and rows(store) == []


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({}, "no labels given"),
        ({"category": ""}, "is empty"),
        ({"category": "   "}, "is empty"),
        ({"category": "x" * 201}, "201 characters; the maximum is 200"),
        ({"category": 5}, "must be a string"),
        ({"category": None}, "must be a string"),
        ({"": "Network"}, "target name is empty"),
        ({"category": "Net\nwork"}, "control characters"),
        ({"category": "Network", " category ": "Access"}, "given twice"),
        (["category", "Network"], "mapping"),
    ],
)
def test_bad_labels_are_refused_and_nothing_is_written(
    store: FeedbackStore, prediction_log: PredictionLog, labels: object, message: str
) -> None:
    with pytest.raises(InvalidFeedbackError, match=message):
        store.record("req-1", labels, prediction_log=prediction_log)  # type: ignore[arg-type]
    assert store.get("req-1") is None


@pytest.mark.parametrize("ticket_id", ["", "   ", None, 17])
def test_a_malformed_ticket_id_is_invalid_feedback(
    store: FeedbackStore, prediction_log: PredictionLog, ticket_id: object
) -> None:
    with pytest.raises(InvalidFeedbackError, match="ticket id must be a non-empty string"):
        store.record(ticket_id, {"category": "Network"}, prediction_log=prediction_log)  # type: ignore[arg-type]


def test_a_label_never_seen_before_is_accepted(store: FeedbackStore, prediction_log: PredictionLog) -> None:
    label = "Facilities – 3rd floor " + "y" * 170  # new, non-ASCII, 193 characters
    record = store.record("req-2", {"category": label}, prediction_log=prediction_log)
    assert record.labels["category"] == label and record.correct == {"category": False}
    assert store.labelled_tickets()["category"].tolist() == [label]


def test_a_failure_inside_the_transaction_rolls_back_every_target(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'predictions.db'}"
    prediction_log, store = make_log(uri), FeedbackStore(uri)
    store.record("req-3", {"category": "Old"}, prediction_log=prediction_log)
    # Make the database itself refuse the second row of the next write, after the first row went in.
    path = tmp_path / "predictions.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TRIGGER refuse_priority BEFORE INSERT ON feedback WHEN NEW.target = 'priority' "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    for ticket_id in ("req-3", "req-4"):  # an overwrite and a fresh ticket
        with pytest.raises(sa.exc.DBAPIError, match="disk on fire"):
            store.record(ticket_id, {"category": "New", "priority": "high"}, prediction_log=prediction_log)
    assert rows(store) == [("req-3", "category", "Old")]
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TRIGGER refuse_priority")
    store.record("req-4", {"category": "New", "priority": "high"}, prediction_log=prediction_log)
    assert store.get("req-4").labels == {"category": "New", "priority": "high"}


def test_live_accuracy_over_corrected_tickets(store: FeedbackStore, prediction_log: PredictionLog) -> None:
    assert store.live_accuracy() == {}
    store.record("req-0", {"category": "Network", "priority": "low"}, prediction_log=prediction_log)  # right, wrong
    store.record("req-1", {"category": "Hardware"}, prediction_log=prediction_log)  # right
    store.record("req-2", {"category": "Billing", "priority": "medium"}, prediction_log=prediction_log)  # wrong, right
    store.record("req-3", {"category": "Billing"}, prediction_log=prediction_log)  # right
    accuracy = store.live_accuracy()
    assert accuracy == {"category": {"accuracy": 0.75, "n": 4}, "priority": {"accuracy": 0.5, "n": 2}}
    later = store.live_accuracy(since=T0 + timedelta(minutes=2))  # answered at minutes 2 and 3
    assert later == {"category": {"accuracy": 0.5, "n": 2}, "priority": {"accuracy": 1.0, "n": 1}}
    assert store.live_accuracy(model_version="4") == {}
    with pytest.raises(ValueError, match="timezone-aware"):
        store.live_accuracy(since=datetime(2024, 5, 1))


def test_review_queue_is_least_confident_first_and_drops_labelled_tickets(
    store: FeedbackStore, prediction_log: PredictionLog
) -> None:
    queue = store.review_queue(prediction_log)
    # needs_review only; min confidence ascending; req-1 and req-4 tie at 0.40 and the older one comes first.
    assert queue["ticket_id"].tolist() == ["req-2", "req-1", "req-4", "req-3"]
    assert queue["min_confidence"].tolist() == pytest.approx([0.20, 0.40, 0.40, 0.55])
    assert list(queue.columns) == [
        "ticket_id",
        "text",
        "timestamp",
        "model_version",
        "min_confidence",
        "label_category",
        "confidence_category",
        "label_priority",
        "confidence_priority",
    ]
    assert store.review_queue(prediction_log, limit=2)["ticket_id"].tolist() == ["req-2", "req-1"]
    store.record("req-2", {"priority": "high"}, prediction_log=prediction_log)  # any correction counts
    store.record("req-0", {"category": "Access"}, prediction_log=prediction_log)  # not flagged anyway
    assert store.review_queue(prediction_log)["ticket_id"].tolist() == ["req-1", "req-4", "req-3"]
    items = review_items(store.review_queue(prediction_log, limit=1))
    assert items == [
        {
            "ticket_id": "req-1",
            "text": "ticket req-1: the printer on floor 1 is jammed",
            "timestamp": (T0 + timedelta(minutes=1)).isoformat(),
            "model_version": "3",
            "min_confidence": pytest.approx(0.40),
            "labels": {
                "category": {"label": "Hardware", "confidence": pytest.approx(0.40)},
                "priority": {"label": "low", "confidence": pytest.approx(0.80)},
            },
        }
    ]
    json.dumps(items)
    for limit in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="limit must be a positive integer"):
            store.review_queue(prediction_log, limit=limit)  # type: ignore[arg-type]


def test_review_queue_of_an_empty_log(database: str) -> None:
    queue = FeedbackStore(database).review_queue(PredictionLog(database))
    assert queue.empty and review_items(queue) == []


def test_review_queue_needs_the_log_in_the_same_database(store: FeedbackStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="in one database"):
        store.review_queue(PredictionLog(f"sqlite:///{tmp_path / 'elsewhere.db'}"))


def test_labelled_tickets_have_the_training_data_shape(store: FeedbackStore, prediction_log: PredictionLog) -> None:
    assert list(store.labelled_tickets().columns) == ["ticket_id", "text"]
    store.record("req-3", {"category": "Billing", "priority": "high"}, prediction_log=prediction_log)
    store.record("req-1", {"priority": "medium"}, prediction_log=prediction_log)  # priority only
    store.record("req-3", {"priority": "low"}, prediction_log=prediction_log)  # an overwrite keeps its place
    frame = store.labelled_tickets()
    assert list(frame.columns) == ["ticket_id", "text", "category", "priority"]
    assert frame["ticket_id"].tolist() == ["req-3", "req-1"]  # first corrected first
    assert frame["text"].tolist() == [
        "ticket req-3: the printer on floor 3 is jammed",
        "ticket req-1: the printer on floor 1 is jammed",
    ]
    assert frame.loc[0, "category"] == "Billing" and frame.loc[0, "priority"] == "low"
    assert pd.isna(frame.loc[1, "category"]) and frame.loc[1, "priority"] == "medium"  # not the prediction


def test_record_waits_for_tickets_still_queued_in_the_log(store: FeedbackStore, tmp_path: Path) -> None:
    prediction_log = PredictionLog(f"sqlite:///{tmp_path / 'slow.db'}", flush_interval=60.0)
    try:
        prediction_log.append([prediction("req-1", 1)])  # answered, not yet written
        assert prediction_log.get("req-1") is None
        assert store.record("req-1", {"category": "Network"}, prediction_log=prediction_log).labels
    finally:
        prediction_log.close()


def test_concurrent_records_from_threads_all_land(store: FeedbackStore, prediction_log: PredictionLog) -> None:
    errors: list[BaseException] = []

    def label(ticket_id: str, i: int) -> None:
        try:
            for j in range(5):
                store.record(ticket_id, {"category": f"C{i}-{j}", "priority": "low"}, prediction_log=prediction_log)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=label, args=(t, i)) for i, t in enumerate(TICKETS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    frame = store.labelled_tickets().set_index("ticket_id")
    assert {t: frame.loc[t, "category"] for t in TICKETS} == {t: f"C{i}-4" for i, t in enumerate(TICKETS)}


def test_bad_urls_are_refused() -> None:
    for bad in ("parquet:///x", "sqlite:///", "sqlite:///:memory:", "feedback.db", "", "mysql://u@h/db"):
        with pytest.raises(ValueError, match="database URL"):
            FeedbackStore(bad)


def test_the_feedback_shares_the_prediction_logs_database(database: str) -> None:
    prediction_log = make_log(database)
    store = FeedbackStore(database)
    store.record("req-1", {"category": "Network"}, prediction_log=prediction_log)
    assert len(prediction_log) == len(TICKETS) and rows(store) == [("req-1", "category", "Network")]
    tables = sa.inspect(sa.create_engine(prediction_log.url)).get_table_names()
    assert {"predictions", "feedback", "ticketflow_schema_version"} <= set(tables)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture) -> Callable[..., subprocess.CompletedProcess]:
    """`ticketflow --home HOME ...` through the CLI's entry point in this process: its exit code and output.

    Eight interpreters importing the CLI would prove nothing more; the console script's own exit codes are
    tests/unit/pipelines/test_cli.py's. No TICKETFLOW_ variable is set (the autouse `isolated_environment`).
    """

    def run(home: Path, *args: str) -> subprocess.CompletedProcess:
        argv = ["--home", str(home), *args]
        capsys.readouterr()  # only this command's output
        try:
            code = cli_main(argv)
        except SystemExit as exited:  # argparse's wrong usage
            code = exited.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out, err)

    return run


def test_cli_feedback_and_review_queue(tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess]) -> None:
    home = tmp_path / "home"
    make_log(f"sqlite:///{home / 'predictions.db'}")

    queued = cli(home, "review-queue", "--json")
    assert queued.returncode == 0, queued.stderr
    answer = json.loads(queued.stdout.strip().splitlines()[-1])
    assert answer["count"] == 4 and [t["ticket_id"] for t in answer["tickets"]] == ["req-2", "req-1", "req-4", "req-3"]

    done = cli(home, "feedback", "--ticket-id", "req-2", "--label", "category=Network", "--label", "priority=high")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["labels"] == {"category": "Network", "priority": "high"}
    assert record["predicted"] == {"category": "Access", "priority": "medium"}
    assert FeedbackStore(f"sqlite:///{home / 'predictions.db'}").get("req-2").labels == record["labels"]

    limited = json.loads(cli(home, "review-queue", "--json", "--limit", "2").stdout)
    assert [t["ticket_id"] for t in limited["tickets"]] == ["req-1", "req-4"]
    table = cli(home, "review-queue")
    assert table.returncode == 0 and "req-1" in table.stdout and "req-2" not in table.stdout
    assert "category=Hardware (0.40)" in table.stdout

    unknown = cli(home, "feedback", "--ticket-id", "nope-0", "--label", "category=Network")
    assert unknown.returncode == 1
    assert "error: ticket 'nope-0' is not in the prediction log" in unknown.stderr
    invalid = cli(home, "feedback", "--ticket-id", "req-1", "--label", "team=blue")
    assert invalid.returncode == 1 and "valid targets: category, priority" in invalid.stderr
    malformed = cli(home, "feedback", "--ticket-id", "req-1", "--label", "Network")
    assert malformed.returncode == 2 and "TARGET=LABEL" in malformed.stderr
    bad_limit = cli(home, "review-queue", "--limit", "0")
    assert bad_limit.returncode == 1 and "error: limit must be a positive integer" in bad_limit.stderr
    assert FeedbackStore(f"sqlite:///{home / 'predictions.db'}").labelled_ticket_ids() == {"req-2"}


def test_schema_0002_turns_the_label_audits_version_prefix_into_the_served_column(database: str) -> None:
    """Schema 0001 marked a correction of a training ticket by its version, `label-audit:<v>`; 0002 has a column."""
    from alembic import command
    from alembic.config import Config

    from ticketflow.monitoring import database as db

    engine = db.engine_for(database)
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    with db.write_transaction(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    legacy = sa.table("feedback", *(sa.column(c.name, c.type) for c in db.feedback.columns if c.name != "served"))
    row = {
        "target": "category",
        "label": "Hardware",
        "text": "printer jammed",
        "predicted_label": "Network",
        "confidence": 0.5,
        "predicted_at": T0,
        "created_at": T0,
        "updated_at": T0,
        "source": "agent",
    }
    with engine.begin() as connection:
        connection.execute(
            legacy.insert(),
            [
                {**row, "ticket_id": "req-1", "model_version": "3"},
                {**row, "ticket_id": "TCK-7", "model_version": "label-audit:5"},
            ],
        )
    db.forget_schema(database)
    store = FeedbackStore(database)
    stored = store.read().set_index("ticket_id")
    assert db.schema_version(database) == "0002"
    assert stored["model_version"].to_dict() == {"req-1": "3", "TCK-7": "5"}
    assert stored["served"].to_dict() == {"req-1": True, "TCK-7": False}
    assert store.live_accuracy() == {"category": {"accuracy": 0.0, "n": 1}}  # the served answer only
    with db.write_transaction(engine) as connection:  # and back: the prefix returns, the column goes
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    with engine.connect() as connection:
        versions = dict(connection.execute(sa.select(legacy.c.ticket_id, legacy.c.model_version)).all())
    assert versions == {"req-1": "3", "TCK-7": "label-audit:5"}
    db.forget_schema(database)
