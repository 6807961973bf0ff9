"""Logic tests of ingest: column detection, reading the three formats, and row validation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from ticketflow.components.config import TicketflowConfig
from ticketflow.components.ingest import (
    REJECT_REASON,
    SOURCE_ROW,
    TICKET_ID,
    ColumnMapping,
    TicketDataError,
    detect_columns,
    ingest_tickets,
    read_tickets,
    validate_tickets,
)

CFG = TicketflowConfig()
# Small classes are fine in these tiny files; the rare-class tests set their own minimum.
SMALL = TicketflowConfig(min_class_examples=1)


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def no_malformed() -> pd.DataFrame:
    return pd.DataFrame(columns=[SOURCE_ROW, REJECT_REASON, "raw"])


def frame_of(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, dtype=object)
    frame[SOURCE_ROW] = range(1, len(frame) + 1)
    return frame


# A few valid lines of two classes, to which each test adds the rows it is about.
GOOD_LINES = [
    "Printer jammed,Paper stuck in tray 2,Hardware",
    "Monitor flickers,Screen goes black every minute,Hardware",
    "Invoice wrong,I was charged twice this month,Billing",
    "Refund please,Please refund the duplicate payment,Billing",
]


def csv_bytes(header: str, lines: list[str | bytes]) -> bytes:
    encoded = [line.encode("utf-8") if isinstance(line, str) else line for line in [header, *lines]]
    return b"\n".join(encoded) + b"\n"


# --- detect_columns ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (
            ["Subject", "Body", "Tags", "Category"],
            ColumnMapping(("Subject", "Body", "Tags"), "Category", tags_column="Tags"),
        ),
        (["title", "DESCRIPTION", "queue"], ColumnMapping(("title", "DESCRIPTION"), "queue")),
        (["Text", "Topic"], ColumnMapping(("Text",), "Topic")),
        (["Document", "Topic_group"], ColumnMapping(("Document",), "Topic_group")),
        # spaces and dashes read as underscores; topic_group wins over topic
        (["document", "Topic", "Topic Group"], ColumnMapping(("document",), "Topic Group")),
        (["body", "category", "Urgency"], ColumnMapping(("body",), "category", priority_column="Urgency")),
        (["body", "category", "PRIORITY"], ColumnMapping(("body",), "category", priority_column="PRIORITY")),
        (["Ticket ID", "body", "category"], ColumnMapping(("body",), "category", id_column="Ticket ID")),
        (["id", "text", "queue"], ColumnMapping(("text",), "queue", id_column="id")),
        (
            ["subject", "body", "answer", "type", "queue", "priority", "language", "tags"],
            ColumnMapping(
                ("subject", "body", "tags"), "queue", "priority", tags_column="tags", resolution_column="answer"
            ),
        ),
        (["text", "Resolution", "queue"], ColumnMapping(("text",), "queue", resolution_column="Resolution")),
    ],
)
def test_detect_columns_by_common_names(columns, expected):
    assert detect_columns(columns, CFG) == expected


@pytest.mark.parametrize("resolution", ["answer", "Resolution", "ANSWER"])
def test_resolution_column_is_never_detected_as_text(resolution):
    mapping = detect_columns(["subject", resolution, "category"], CFG)
    assert mapping.resolution_column == resolution
    assert resolution not in mapping.text_columns
    assert mapping.text_columns == ("subject",)


@pytest.mark.parametrize("resolution", ["answer", "resolution"])
def test_resolution_alone_is_not_a_text_column(resolution):
    with pytest.raises(TicketDataError, match="no text column"):
        detect_columns([resolution, "category"], CFG)


def test_resolution_configured_as_text_is_refused():
    cfg = TicketflowConfig(text_columns=("subject", "answer"))
    with pytest.raises(TicketDataError, match="'answer'"):
        detect_columns(["subject", "answer", "category"], cfg)


@pytest.mark.parametrize(
    ("overrides", "attribute", "expected"),
    [
        ({"category_column": "queue"}, "category_column", "queue"),
        ({"text_columns": ("body",)}, "text_columns", ("body",)),
        ({"text_columns": ("my_notes", "body")}, "text_columns", ("my_notes", "body")),
        ({"priority_column": "severity"}, "priority_column", "severity"),
        ({"id_column": "ref"}, "id_column", "ref"),
    ],
)
def test_explicit_configuration_wins(overrides, attribute, expected):
    columns = ["ref", "id", "subject", "body", "my_notes", "category", "queue", "priority", "severity"]
    mapping = detect_columns(columns, TicketflowConfig(**overrides))
    assert getattr(mapping, attribute) == expected


def test_explicit_text_columns_keep_tags_role():
    mapping = detect_columns(["body", "Tags", "category"], TicketflowConfig(text_columns=("body", "Tags")))
    assert mapping.tags_column == "Tags"


@pytest.mark.parametrize("none", ["none", "None", "NONE"])
def test_priority_none_disables_priority(none):
    mapping = detect_columns(["body", "category", "priority"], TicketflowConfig(priority_column=none))
    assert mapping.priority_column == ""
    assert mapping.label_columns == ("category",)


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({"category_column": "queue"}, "queue"),
        ({"priority_column": "urgency"}, "urgency"),
        ({"id_column": "case_number"}, "case_number"),
        ({"text_columns": ("subject", "description")}, "description"),
    ],
)
def test_configured_column_missing_raises_naming_it(overrides, missing):
    with pytest.raises(TicketDataError, match=f"'{missing}'"):
        detect_columns(["subject", "body", "category", "priority"], TicketflowConfig(**overrides))


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["category", "priority"], "no text column"),
        (["id", "answer", "queue"], "no text column"),
        (["subject", "body"], "no category/queue label column"),
        (["subject", "body", "priority"], "no category/queue label column"),
    ],
)
def test_no_text_or_category_column_raises(columns, message):
    with pytest.raises(TicketDataError, match=message):
        detect_columns(columns, CFG)


# --- read_tickets --------------------------------------------------------------------------------------------


def test_read_csv(tmp_path):
    path = write(
        tmp_path / "t.csv",
        'subject,body,category\nPrinter,"Jammed, again\nand again",Hardware\nInvoice,Charged twice,Billing\n',
    )
    frame, malformed = read_tickets(path)
    assert list(frame.columns) == ["subject", "body", "category", SOURCE_ROW]
    assert frame["body"].tolist() == ["Jammed, again\nand again", "Charged twice"]
    assert frame[SOURCE_ROW].tolist() == [1, 2]
    assert malformed.empty


def test_read_csv_strips_utf8_bom(tmp_path):
    path = write(tmp_path / "t.csv", b"\xef\xbb\xbfsubject,category\nPrinter,Hardware\n")
    frame, _ = read_tickets(path)
    assert list(frame.columns) == ["subject", "category", SOURCE_ROW]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".ndjson", ".JSONL"])
def test_read_json_lines(tmp_path, suffix):
    records = [{"subject": "Printer", "category": "Hardware"}, {"subject": "Invoice", "category": "Billing"}]
    path = write(tmp_path / f"t{suffix}", "\n".join(json.dumps(r) for r in records) + "\n")
    frame, malformed = read_tickets(path)
    assert frame[["subject", "category"]].to_dict("records") == records
    assert frame[SOURCE_ROW].tolist() == [1, 2]
    assert malformed.empty


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_read_parquet(tmp_path, suffix):
    source = pd.DataFrame({"subject": ["Printer", "Invoice", "VPN"], "category": ["Hardware", "Billing", "Network"]})
    path = tmp_path / f"t{suffix}"
    source.to_parquet(path)
    frame, malformed = read_tickets(path)
    pd.testing.assert_frame_equal(frame.drop(columns=SOURCE_ROW), source)
    assert frame[SOURCE_ROW].tolist() == [1, 2, 3]
    assert malformed.empty


@pytest.mark.parametrize(
    "bad_line",
    [
        "Too few fields",  # 1 of 3 fields
        "Too,many,fields,here",  # 4 of 3 fields
    ],
)
def test_malformed_csv_line_is_kept_with_reason_and_row(tmp_path, bad_line):
    path = write(tmp_path / "t.csv", f"subject,body,category\nA,a,X\n{bad_line}\nB,b,Y\n")
    frame, malformed = read_tickets(path)
    assert frame[SOURCE_ROW].tolist() == [1, 3]
    assert malformed[SOURCE_ROW].tolist() == [2]
    assert malformed[REJECT_REASON].tolist() == ["malformed line"]
    assert malformed["raw"].tolist() == [bad_line]


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"subject": "A", "category": ', "malformed line: "),
        ("not json at all", "malformed line: "),
        ('["a", "list"]', "malformed line: not an object"),
    ],
)
def test_malformed_json_line_is_kept_with_reason_and_row(tmp_path, bad_line, reason):
    good = json.dumps({"subject": "B", "category": "Y"})
    path = write(tmp_path / "t.jsonl", f"{good}\n{bad_line}\n{good}\n")
    frame, malformed = read_tickets(path)
    assert frame[SOURCE_ROW].tolist() == [1, 3]
    assert malformed[SOURCE_ROW].tolist() == [2]
    assert malformed[REJECT_REASON].iloc[0].startswith(reason)
    assert malformed["raw"].tolist() == [bad_line]


@pytest.mark.parametrize("name", ["tickets.xlsx", "tickets.tsv", "tickets"])
def test_unsupported_suffix_raises(tmp_path, name):
    path = write(tmp_path / name, "subject,category\nA,X\n")
    with pytest.raises(TicketDataError, match="unsupported"):
        read_tickets(path)


def test_missing_file_raises_file_not_found(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_tickets(missing)
    with pytest.raises(FileNotFoundError):
        ingest_tickets(missing, CFG)


# --- validate_tickets / ingest_tickets -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("header_only.csv", b"subject,body,category\n"),
        ("zero.csv", b""),
        ("blank_lines.csv", b"subject,body,category\n\n\n"),
        ("zero.jsonl", b""),
        ("blank.jsonl", b"\n  \n"),
    ],
)
def test_empty_file_raises(tmp_path, name, content):
    path = write(tmp_path / name, content)
    with pytest.raises(TicketDataError, match="empty"):
        ingest_tickets(path, CFG)


def test_file_with_only_malformed_lines_raises(tmp_path):
    path = write(tmp_path / "t.csv", "subject,body,category\nonly one field\nand,too,many,fields\n")
    with pytest.raises(TicketDataError, match="2 malformed lines"):
        ingest_tickets(path, CFG)


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        (b",,Hardware", "empty text"),
        (b"  ,   ,Hardware", "empty text"),
        (b"Laptop slow,Takes ages to boot,", "missing label: category"),
        (b"Laptop slow,Takes ages to boot,   ", "missing label: category"),
        (b"Laptop slow,Takes \xff\xfe ages,Hardware", "unreadable encoding"),
        (b"Laptop \xc3 slow,Takes ages,Hardware", "unreadable encoding"),
        (b"Laptop slow,Takes ages,Hard\xffware", "unreadable encoding"),
    ],
)
def test_bad_rows_are_rejected_with_reason_and_counted(tmp_path, bad_line, reason):
    path = write(tmp_path / "t.csv", csv_bytes("subject,body,category", [*GOOD_LINES[:2], bad_line, *GOOD_LINES[2:]]))
    result = ingest_tickets(path, SMALL)
    assert result.rejected[REJECT_REASON].tolist() == [reason]
    assert result.rejected[SOURCE_ROW].tolist() == [3]
    assert result.tickets[SOURCE_ROW].tolist() == [1, 2, 4, 5]
    assert result.report.rejected_by_reason == {reason: 1}
    assert (result.report.rows_read, result.report.rows_valid, result.report.rows_rejected) == (5, 4, 1)


def test_missing_priority_label_is_rejected(tmp_path):
    lines = [f"{line},{p}" for line, p in zip(GOOD_LINES, ["high", "low", "low", "high"], strict=True)]
    path = write(
        tmp_path / "t.csv", csv_bytes("subject,body,category,priority", [*lines, "VPN down,No tunnel,Billing,"])
    )
    result = ingest_tickets(path, SMALL)
    assert result.mapping.priority_column == "priority"
    assert result.rejected[REJECT_REASON].tolist() == ["missing label: priority"]
    assert result.report.rejected_by_reason == {"missing label: priority": 1}


def test_json_null_and_absent_labels_are_missing(tmp_path):
    records = [
        {"subject": "Printer jammed", "category": "Hardware"},
        {"subject": "Monitor flickers", "category": "Hardware"},
        {"subject": "Invoice wrong", "category": "Billing"},
        {"subject": "Refund please", "category": "Billing"},
        {"subject": "Null label", "category": None},
        {"subject": "No label"},
    ]
    path = write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in records))
    result = ingest_tickets(path, SMALL)
    assert result.rejected[SOURCE_ROW].tolist() == [5, 6]
    assert set(result.rejected[REJECT_REASON]) == {"missing label: category"}


def test_duplicate_ids_are_rejected(tmp_path):
    lines = [f"T-{i},{line}" for i, line in enumerate(GOOD_LINES)]
    lines.append("T-1,Another ticket,Reusing an id,Billing")
    path = write(tmp_path / "t.csv", csv_bytes("ticket_id,subject,body,category", lines))
    result = ingest_tickets(path, SMALL)
    assert result.mapping.id_column == "ticket_id"
    assert result.rejected[REJECT_REASON].tolist() == ["duplicate id: ticket_id"]
    assert result.rejected[SOURCE_ROW].tolist() == [5]
    assert result.tickets[TICKET_ID].tolist() == ["T-0", "T-1", "T-2", "T-3"]
    assert result.report.rejected_by_reason == {"duplicate id: ticket_id": 1}


def test_missing_id_is_rejected(tmp_path):
    lines = [f"T-{i},{line}" for i, line in enumerate(GOOD_LINES)] + [",No id here,Some body,Billing"]
    path = write(tmp_path / "t.csv", csv_bytes("ticket_id,subject,body,category", lines))
    result = ingest_tickets(path, SMALL)
    assert result.rejected[REJECT_REASON].tolist() == ["missing id: ticket_id"]


def test_numeric_ids_keep_their_form_when_some_are_missing(tmp_path):
    records = [
        {"ticket_id": 1001, "subject": "Printer jammed", "category": "Hardware"},
        {"ticket_id": 1002, "subject": "Monitor flickers", "category": "Hardware"},
        {"ticket_id": 1003, "subject": "Invoice wrong", "category": "Billing"},
        {"ticket_id": 1004, "subject": "Refund please", "category": "Billing"},
        {"subject": "No id", "category": "Billing"},
    ]
    path = write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in records))
    result = ingest_tickets(path, SMALL)
    assert result.rejected[REJECT_REASON].tolist() == ["missing id: ticket_id"]
    assert result.tickets[TICKET_ID].tolist() == ["1001", "1002", "1003", "1004"]


def test_rare_classes_are_rejected_reported_and_logged(caplog):
    categories = ["Hardware"] * 3 + ["Billing"] * 3 + ["Network"] * 2 + ["HR"]
    frame = frame_of([{"body": f"ticket number {i}", "category": c} for i, c in enumerate(categories)])
    cfg = TicketflowConfig(min_class_examples=3)
    with caplog.at_level(logging.WARNING, logger="ticketflow.components.ingest"):
        result = validate_tickets(frame, no_malformed(), cfg)
    assert result.report.rare_classes == {"category": {"Network": 2, "HR": 1}}
    rejected = result.rejected.set_index(SOURCE_ROW)[REJECT_REASON]
    assert rejected.to_dict() == {7: "rare class: category", 8: "rare class: category", 9: "rare class: category"}
    assert result.report.rejected_by_reason == {"rare class: category": 3}
    assert sorted(result.tickets["category"].unique()) == ["Billing", "Hardware"]
    assert result.report.label_counts == {"category": {"Hardware": 3, "Billing": 3}}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Network" in r.getMessage() and "HR" in r.getMessage() for r in warnings)


def test_rare_classes_count_only_rows_that_are_otherwise_valid():
    # Three "Network" rows, but one has no text: two usable examples, below the minimum of three.
    rows = [{"body": f"hw {i}", "category": "Hardware"} for i in range(3)]
    rows += [{"body": f"bill {i}", "category": "Billing"} for i in range(3)]
    rows += [{"body": "vpn 1", "category": "Network"}, {"body": "vpn 2", "category": "Network"}]
    rows += [{"body": "", "category": "Network"}]
    result = validate_tickets(frame_of(rows), no_malformed(), TicketflowConfig(min_class_examples=3))
    assert result.report.rare_classes == {"category": {"Network": 2}}
    assert result.report.rejected_by_reason == {"rare class: category": 2, "empty text": 1}


@pytest.mark.parametrize(
    "categories",
    [
        ["Hardware"] * 5,  # one class only
        ["Hardware"] * 5 + ["Billing"],  # the second class is rare
        ["Hardware", "Billing", "Network"],  # every class is rare
    ],
)
def test_fewer_than_two_usable_classes_raises(categories):
    frame = frame_of([{"body": f"ticket {i}", "category": c} for i, c in enumerate(categories)])
    with pytest.raises(TicketDataError, match="fewer than two usable classes"):
        validate_tickets(frame, no_malformed(), TicketflowConfig(min_class_examples=2))


def test_single_priority_class_drops_the_priority_target(caplog):
    rows = [{"body": f"t {i}", "category": c, "priority": "high"} for i, c in enumerate(["A", "A", "B", "B"])]
    with caplog.at_level(logging.WARNING, logger="ticketflow.components.ingest"):
        result = validate_tickets(frame_of(rows), no_malformed(), SMALL)
    assert result.mapping.priority_column == ""
    assert result.mapping.label_columns == ("category",)
    assert "priority" in caplog.text


def test_content_ids_are_stable_and_unique(tmp_path):
    lines = [*GOOD_LINES, GOOD_LINES[0], GOOD_LINES[0]]  # the same ticket three times
    path = write(tmp_path / "t.csv", csv_bytes("subject,body,category", lines))
    first = ingest_tickets(path, SMALL).tickets[TICKET_ID].tolist()
    second = ingest_tickets(path, SMALL).tickets[TICKET_ID].tolist()
    assert first == second
    assert len(set(first)) == len(first) == 6
    # A ticket keeps its id when other tickets are added before it.
    path2 = write(tmp_path / "t2.csv", csv_bytes("subject,body,category", ["New one,Brand new,Billing", *lines]))
    shifted = ingest_tickets(path2, SMALL).tickets[TICKET_ID].tolist()
    assert shifted[1:] == first
    # Different content, different id.
    assert len({first[0], first[1], first[2], first[3]}) == 4


def test_every_row_is_accounted_for(tmp_path):
    content = (
        b"ticket_id,subject,body,category,priority\n"
        b"1,Printer jammed,Tray 2,Hardware,high\n"
        b"2,Monitor,Flickers,Hardware,low\n"
        b"3,only,three\n"  # malformed
        b"4,Invoice,Charged twice,Billing,low\n"
        b"\n"  # blank line: not a ticket
        b"5,Refund,Duplicate payment,Billing,high\n"
        b"6,,,Billing,low\n"  # empty text
        b"7,Laptop,\xff\xfe,Hardware,low\n"  # unreadable encoding
        b"7,Laptop,Slow,Hardware,high\n"  # duplicate id
        b"8,VPN,Down,,high\n"  # missing category
        b"9,VPN,Down,Network,high\n"  # rare class
        b"10,Keyboard,Sticky keys,Hardware,low\n"
        b"11,Refund,Where is it,Billing,\n"  # missing priority
        b"12,Too,many,fields,here,!\n"  # malformed
    )
    path = write(tmp_path / "t.csv", content)
    result = ingest_tickets(path, TicketflowConfig(min_class_examples=2))
    report = result.report
    assert report.rows_read == 13
    assert report.rows_read == report.rows_valid + report.rows_rejected
    assert report.rows_valid == len(result.tickets) == 5
    assert report.rows_rejected == len(result.rejected) == 8
    assert sum(report.rejected_by_reason.values()) == report.rows_rejected
    seen = sorted(result.tickets[SOURCE_ROW].tolist() + result.rejected[SOURCE_ROW].tolist())
    assert seen == [r for r in range(1, 15) if r != 5]  # every non-blank data row, exactly once
    assert report.rejected_by_reason == {
        "malformed line": 2,
        "empty text": 1,
        "unreadable encoding": 1,
        "duplicate id: ticket_id": 1,
        "missing label: category": 1,
        "missing label: priority": 1,
        "rare class: category": 1,
    }
    assert json.loads(report.to_json())["rows_read"] == 13
