"""Logic tests of prepare: merged text, whitespace, duplicates, the stratified split and the fingerprint."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from ticketflow.components.ingest import TICKET_ID, ColumnMapping
from ticketflow.components.prepare import (
    RESOLUTION,
    SPLIT,
    TEXT,
    TEXT_HASH,
    dataset_fingerprint,
    merge_text,
    normalise_whitespace,
    prepare_tickets,
)

MAPPING = ColumnMapping(("subject", "body", "tags"), "category", tags_column="tags")
WITH_RESOLUTION = ColumnMapping(("subject", "body"), "category", "priority", resolution_column="answer")
CLASS_SIZES = {"Access": 20, "Billing": 12, "Network": 28}


def row(subject, body, tags) -> pd.Series:
    return pd.Series({"subject": subject, "body": body, "tags": tags})


@pytest.mark.parametrize(
    ("subject", "body", "tags", "expected"),
    [
        ("Printer", "Paper is jammed", "printer;hardware", "Printer Paper is jammed printer hardware"),
        ("Printer", "Paper is jammed", "printer, hardware ,paper", "Printer Paper is jammed printer hardware paper"),
        ("Printer", "Paper is jammed", "printer; hardware;", "Printer Paper is jammed printer hardware"),
        ("Printer", "Paper is jammed", "docking-station", "Printer Paper is jammed docking-station"),
        (None, "Paper is jammed", "printer", "Paper is jammed printer"),
        ("Printer", float("nan"), "printer", "Printer printer"),
        ("Printer", "Paper is jammed", None, "Printer Paper is jammed"),
        ("Printer", np.nan, np.nan, "Printer"),
        ("Printer", "", "", "Printer"),
        ("  Printer\n", "Paper\\nis\tjammed", "a;b", "Printer Paper is jammed a b"),
    ],
)
def test_merge_text(subject, body, tags, expected):
    assert merge_text(row(subject, body, tags), MAPPING) == expected


def test_merge_text_splits_only_the_tags_column():
    # Commas in the body are text, not tag separators.
    mapping = ColumnMapping(("subject", "body", "tags"), "category", tags_column="tags")
    assert merge_text(row("Hi", "one,two;three", "x,y"), mapping) == "Hi one,two;three x y"
    no_tags = ColumnMapping(("subject", "body", "tags"), "category", tags_column="")
    assert merge_text(row("Hi", "body", "x,y"), no_tags) == "Hi body x,y"


def test_merge_text_follows_the_mapping_order():
    mapping = ColumnMapping(("body", "subject"), "category")
    assert merge_text(row("Subject", "Body", "t"), mapping) == "Body Subject"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello\\nworld", "Hello world"),  # literal backslash-n from an export
        ("Hello\\r\\nworld", "Hello world"),
        ("open \\\\fs01\\team share", "open \\\\fs01\\team share"),  # a literal backslash-t stays: UNC paths
        ("Hello\nworld", "Hello world"),  # real line break
        ("Hello\r\n\r\nworld", "Hello world"),
        ("Hello\tworld", "Hello world"),
        ("Hello     world", "Hello world"),
        ("  Hello \\n\\n  world \t ", "Hello world"),
        ("Hello world", "Hello world"),
        ("", ""),
        ("   \n\t ", ""),
    ],
)
def test_normalise_whitespace(text, expected):
    assert normalise_whitespace(text) == expected


def tickets(sizes: dict[str, int] = CLASS_SIZES) -> pd.DataFrame:
    rows = []
    for category, size in sizes.items():
        for i in range(size):
            rows.append(
                {
                    TICKET_ID: f"{category[:3]}-{i}",
                    "subject": f"{category} issue {i}",
                    "body": f"Details about {category.lower()} problem number {i}",
                    "category": category,
                    "priority": "high" if i % 3 == 0 else "low",
                    "answer": f"Resolved\\n{category} case {i} by the desk",
                }
            )
    return pd.DataFrame(rows)


def test_exact_duplicate_texts_are_dropped_and_counted():
    frame = tickets()
    duplicates = pd.DataFrame(
        [
            {**frame.iloc[0].to_dict(), TICKET_ID: "dup-1"},  # same subject and body
            {**frame.iloc[0].to_dict(), TICKET_ID: "dup-2", "category": "Billing"},  # same text, other label
            {**frame.iloc[5].to_dict(), TICKET_ID: "dup-3", "body": frame.iloc[5]["body"].replace(" ", "  ")},
        ]
    )
    prepared = prepare_tickets(pd.concat([frame, duplicates], ignore_index=True), WITH_RESOLUTION, 0.25, 0)
    both = pd.concat([prepared.train, prepared.test])
    assert prepared.duplicates_dropped == 3
    assert len(both) == len(frame)
    assert both[TEXT].is_unique
    assert not {"dup-1", "dup-2", "dup-3"} & set(both[TICKET_ID])
    # the first occurrence is kept, with its own label
    assert both.set_index(TICKET_ID).loc[frame.iloc[0][TICKET_ID], "category"] == frame.iloc[0]["category"]


def test_no_duplicates_means_nothing_dropped():
    prepared = prepare_tickets(tickets(), WITH_RESOLUTION, 0.25, 0)
    assert prepared.duplicates_dropped == 0
    assert len(prepared.train) + len(prepared.test) == sum(CLASS_SIZES.values())


@pytest.mark.parametrize("test_size", [0.2, 0.25, 0.5])
def test_split_is_stratified_on_the_category(test_size):
    prepared = prepare_tickets(tickets(), WITH_RESOLUTION, test_size, 7)
    total = sum(CLASS_SIZES.values())
    assert abs(len(prepared.test) - test_size * total) <= 1
    test_counts = prepared.test["category"].value_counts()
    train_counts = prepared.train["category"].value_counts()
    for category, size in CLASS_SIZES.items():
        assert train_counts[category] > 0
        assert test_counts[category] > 0
        assert abs(test_counts[category] - test_size * size) <= 1
        assert train_counts[category] + test_counts[category] == size
    assert set(prepared.train[SPLIT]) == {"train"}
    assert set(prepared.test[SPLIT]) == {"test"}
    assert not set(prepared.train[TICKET_ID]) & set(prepared.test[TICKET_ID])


def test_split_is_deterministic_for_a_random_state():
    first = prepare_tickets(tickets(), WITH_RESOLUTION, 0.25, 42)
    again = prepare_tickets(tickets(), WITH_RESOLUTION, 0.25, 42)
    other = prepare_tickets(tickets(), WITH_RESOLUTION, 0.25, 43)
    pd.testing.assert_frame_equal(first.train, again.train)
    pd.testing.assert_frame_equal(first.test, again.test)
    assert set(first.test[TICKET_ID]) != set(other.test[TICKET_ID])


def test_prepared_columns_text_hash_and_resolution():
    source = tickets()
    prepared = prepare_tickets(source, WITH_RESOLUTION, 0.25, 0)
    both = pd.concat([prepared.train, prepared.test], ignore_index=True)
    assert set(both.columns) == {TICKET_ID, TEXT, "category", "priority", RESOLUTION, TEXT_HASH, SPLIT}
    for text, digest in zip(both[TEXT], both[TEXT_HASH], strict=True):
        assert digest == hashlib.sha256(text.encode("utf-8")).hexdigest()
    by_id = source.set_index(TICKET_ID)
    for _, ticket in both.iterrows():
        original = by_id.loc[ticket[TICKET_ID]]
        assert ticket[TEXT] == f"{original['subject']} {original['body']}"
        assert ticket[RESOLUTION] == original["answer"].replace("\\n", " ")
        assert "Resolved" not in ticket[TEXT]
        assert ticket["category"] == original["category"]
        assert ticket["priority"] == original["priority"]


def test_missing_resolution_becomes_empty_and_no_resolution_column_without_one():
    source = tickets()
    source.loc[0, "answer"] = None
    prepared = prepare_tickets(source, WITH_RESOLUTION, 0.25, 0)
    both = pd.concat([prepared.train, prepared.test]).set_index(TICKET_ID)
    assert both.loc[source.loc[0, TICKET_ID], RESOLUTION] == ""
    plain = prepare_tickets(source, ColumnMapping(("subject", "body"), "category"), 0.25, 0)
    assert RESOLUTION not in plain.train.columns
    assert "priority" not in plain.train.columns


def test_dataset_fingerprint_is_stable_and_counts_right():
    prepared = prepare_tickets(tickets(), WITH_RESOLUTION, 0.25, 0)
    labels = ("category", "priority")
    fingerprint = dataset_fingerprint(prepared.train, prepared.test, labels)
    assert fingerprint == dataset_fingerprint(prepared.train.copy(), prepared.test.copy(), labels)
    # Row order does not matter: the same tickets give the same hash.
    shuffled = prepared.train.sample(frac=1.0, random_state=1)
    assert dataset_fingerprint(shuffled, prepared.test, labels)["content_sha256"] == fingerprint["content_sha256"]
    total = sum(CLASS_SIZES.values())
    assert fingerprint["rows"] == total
    assert fingerprint["train_rows"] == len(prepared.train)
    assert fingerprint["test_rows"] == len(prepared.test)
    assert fingerprint["train_rows"] + fingerprint["test_rows"] == total
    assert fingerprint["label_counts"]["category"] == CLASS_SIZES
    high = sum(len(range(0, size, 3)) for size in CLASS_SIZES.values())
    assert fingerprint["label_counts"]["priority"] == {"high": high, "low": total - high}
    assert len(fingerprint["content_sha256"]) == 64


@pytest.mark.parametrize(
    ("column", "value"),
    [("category", "Hardware"), ("priority", "urgent"), (TEXT, "changed text"), (TICKET_ID, "renamed-id")],
)
def test_dataset_fingerprint_changes_with_content(column, value):
    prepared = prepare_tickets(tickets(), WITH_RESOLUTION, 0.25, 0)
    labels = ("category", "priority")
    before = dataset_fingerprint(prepared.train, prepared.test, labels)["content_sha256"]
    changed = prepared.test.copy()
    changed.loc[0, column] = value
    assert dataset_fingerprint(prepared.train, changed, labels)["content_sha256"] != before
