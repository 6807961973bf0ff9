"""Prepare: one text field per ticket (subject + body + tags), exact duplicates out, a stratified split.

The training split is the *reference snapshot* that later drift checks compare live traffic against.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ticketflow.components.ingest import TICKET_ID, ColumnMapping

log = logging.getLogger(__name__)

TEXT = "text"
TEXT_HASH = "text_hash"
RESOLUTION = "resolution"
SPLIT = "split"

# Exports often carry literal "\n" sequences inside quoted fields; "\t" is left alone (paths like \\fs01\team).
_ESCAPED_BREAKS = re.compile(r"\\r\\n|\\n")
_WHITESPACE = re.compile(r"\s+")
_TAG_SEPARATORS = re.compile(r"\s*[;,|]\s*")


def normalise_whitespace(text: str) -> str:
    """Collapses escaped and real line breaks, tabs and runs of spaces into single spaces."""
    return _WHITESPACE.sub(" ", _ESCAPED_BREAKS.sub(" ", text)).strip()


def merge_text(row: pd.Series, mapping: ColumnMapping) -> str:
    """Merges a ticket's text fields into one string: subject, body, then tags as words.

    Args:
        row: One ticket.
        mapping: Which columns hold text and which of them holds tags.

    Returns:
        The merged, whitespace-normalised text.
    """
    parts = []
    for column in mapping.text_columns:
        value = row[column]
        if value is None or (isinstance(value, float) and pd.isna(value)):
            continue
        if isinstance(value, (list, tuple, np.ndarray)):  # tags as a JSON list or a Parquet list column
            value = " ".join(map(str, value))
        value = str(value)
        if column == mapping.tags_column:
            value = " ".join(t for t in _TAG_SEPARATORS.split(value) if t)
        parts.append(value)
    return normalise_whitespace(" ".join(parts))


def text_hash(text: str) -> str:
    """The key under which a text's embedding is stored: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class PreparedTickets:
    """Train and test frames with `ticket_id`, `text`, `text_hash`, the labels and `resolution`."""

    train: pd.DataFrame
    test: pd.DataFrame
    duplicates_dropped: int


def prepare_tickets(
    tickets: pd.DataFrame, mapping: ColumnMapping, test_size: float, random_state: int
) -> PreparedTickets:
    """Builds the model's text, drops exact duplicates and splits stratified on the category.

    Args:
        tickets: Valid tickets from ingest.
        mapping: The column mapping ingest used.
        test_size: Fraction held out for evaluation, 0–1.
        random_state: Seed of the split.

    Returns:
        The train and test frames.
    """
    frame = pd.DataFrame({TICKET_ID: tickets[TICKET_ID].astype(str)})
    frame[TEXT] = tickets.apply(merge_text, axis=1, mapping=mapping)
    for column in mapping.label_columns:
        frame[column] = tickets[column].astype(str)
    if mapping.resolution_column:
        frame[RESOLUTION] = tickets[mapping.resolution_column].fillna("").astype(str).map(normalise_whitespace)
    duplicated = frame.duplicated(subset=[TEXT], keep="first")
    if duplicated.any():
        conflicting = (
            frame[frame[TEXT].isin(frame.loc[duplicated, TEXT])]
            .groupby(TEXT)[list(mapping.label_columns)]
            .nunique()
            .gt(1)
            .any(axis=1)
            .sum()
        )
        log.info(
            "prepare: %d exact duplicate texts dropped (%d with conflicting labels, first kept)",
            int(duplicated.sum()),
            int(conflicting),
        )
    frame = frame[~duplicated].reset_index(drop=True)
    frame[TEXT_HASH] = frame[TEXT].map(text_hash)
    train, test = train_test_split(
        frame, test_size=test_size, stratify=frame[mapping.category_column], random_state=random_state
    )
    train = train.reset_index(drop=True).assign(**{SPLIT: "train"})
    test = test.reset_index(drop=True).assign(**{SPLIT: "test"})
    log.info("prepare: %d train / %d test tickets", len(train), len(test))
    return PreparedTickets(train, test, int(duplicated.sum()))


def dataset_fingerprint(train: pd.DataFrame, test: pd.DataFrame, label_columns: tuple[str, ...]) -> dict[str, object]:
    """Content hash, row count and label counts of the prepared data (logged with the model).

    Args:
        train: Training split.
        test: Test split.
        label_columns: Label columns to count.

    Returns:
        A JSON-ready dict with `content_sha256`, `rows`, `train_rows`, `test_rows` and `label_counts`.
    """
    both = pd.concat([train, test], ignore_index=True).sort_values(TICKET_ID)
    digest = hashlib.sha256()
    # Resolutions count too: the similarity collection named from this digest serves suggested replies.
    columns = [TICKET_ID, TEXT, *label_columns, *([RESOLUTION] if RESOLUTION in both.columns else [])]
    for row in both[columns].itertuples(index=False):
        digest.update("\x1f".join(map(str, row)).encode("utf-8") + b"\x1e")
    return {
        "content_sha256": digest.hexdigest(),
        "rows": len(both),
        "train_rows": len(train),
        "test_rows": len(test),
        "label_counts": {c: {str(k): int(v) for k, v in both[c].value_counts().items()} for c in label_columns},
    }
