"""Ingest + validate: read a ticket export, map its columns, and keep bad rows aside with a reason.

Nothing is dropped silently: every row read ends up either in the valid tickets or in the rejected rows,
each rejected row carrying its `reject_reason` and its `source_row` (1-based data row of the source file).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ticketflow.components.config import TicketflowConfig

log = logging.getLogger(__name__)

# Common names, most specific first; matched case-insensitively with spaces/dashes read as underscores.
SUBJECT_NAMES = ("subject", "title", "summary", "short_description")
BODY_NAMES = ("body", "description", "text", "document", "content", "message", "ticket_text")
TAG_NAMES = ("tags", "tag", "labels_text", "keywords")
CATEGORY_NAMES = ("category", "queue", "topic_group", "topic", "department", "team", "type_of_issue")
PRIORITY_NAMES = ("priority", "urgency", "severity")
ID_NAMES = ("ticket_id", "id", "ticket", "ticket_number", "case_id", "key")
# Written after resolution: never a model input (it leaks the label), kept for suggested replies.
RESOLUTION_NAMES = ("answer", "resolution", "response", "reply", "solution")

SOURCE_ROW = "source_row"
REJECT_REASON = "reject_reason"
TICKET_ID = "ticket_id"
# The metadata key of a KFP artifact that names its file's format ("csv", "jsonl", "parquet"): a file another step
# writes is named after its output, without a suffix (the retraining data), while an imported export keeps its own.
FILE_FORMAT_KEY = "format"


class TicketDataError(ValueError):
    """The ticket export cannot be used at all (missing columns, empty file, too few classes)."""


@dataclass(frozen=True)
class ColumnMapping:
    """Which source columns play which role.

    Attributes:
        text_columns: Columns merged into the model's text, in order (subject, body, tags).
        category_column: Label column for the category/queue.
        priority_column: Label column for priority, or "" when the data has none.
        id_column: Ticket id column, or "" when ids are derived from content.
        tags_column: The text column holding tags (split on ';' or ','), or "".
        resolution_column: Column with the agent's resolution, or "" (never a model input).
    """

    text_columns: tuple[str, ...]
    category_column: str
    priority_column: str = ""
    id_column: str = ""
    tags_column: str = ""
    resolution_column: str = ""

    @property
    def label_columns(self) -> tuple[str, ...]:
        """The label columns the model predicts: category first, then priority when present."""
        return tuple(c for c in (self.category_column, self.priority_column) if c)


@dataclass
class IngestReport:
    """What ingest saw: counts, reasons and the mapping it used."""

    source: str
    rows_read: int
    rows_valid: int
    rows_rejected: int
    rejected_by_reason: dict[str, int]
    rare_classes: dict[str, dict[str, int]]
    label_counts: dict[str, dict[str, int]]
    mapping: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialises the report."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)


@dataclass
class IngestResult:
    """Valid tickets (with `ticket_id`), rejected rows (with reasons) and the report."""

    tickets: pd.DataFrame
    rejected: pd.DataFrame
    mapping: ColumnMapping
    report: IngestReport


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _find(columns: list[str], names: tuple[str, ...], exclude: set[str]) -> str:
    by_key = {_key(c): c for c in columns if c not in exclude}
    for name in names:
        if name in by_key:
            return by_key[name]
    return ""


def _require(columns: list[str], name: str, role: str) -> str:
    if name not in columns:
        raise TicketDataError(f"{role} column {name!r} is not in the data; columns are {columns}")
    return name


def detect_columns(columns: list[str], cfg: TicketflowConfig) -> ColumnMapping:
    """Maps source columns to roles, from configuration or by common names.

    Args:
        columns: The source's column names.
        cfg: Configuration; explicit column names there win over detection.

    Returns:
        The column mapping.

    Raises:
        TicketDataError: A configured column is missing, or no text or category column can be found.
    """
    columns = [str(c) for c in columns]
    used: set[str] = set()
    id_column = _require(columns, cfg.id_column, "id") if cfg.id_column else _find(columns, ID_NAMES, used)
    used.add(id_column)
    resolution = _find(columns, RESOLUTION_NAMES, used)
    used.add(resolution)
    if cfg.category_column:
        category = _require(columns, cfg.category_column, "category")
    else:
        category = _find(columns, CATEGORY_NAMES, used)
    used.add(category)
    if cfg.priority_column.lower() == "none":
        priority = ""
    elif cfg.priority_column:
        priority = _require(columns, cfg.priority_column, "priority")
    else:
        priority = _find(columns, PRIORITY_NAMES, used)
    used.add(priority)
    tags = ""
    if cfg.text_columns:
        text_columns = tuple(_require(columns, c, "text") for c in cfg.text_columns)
        tags = next((c for c in text_columns if _key(c) in TAG_NAMES), "")
    else:
        subject = _find(columns, SUBJECT_NAMES, used)
        body = _find(columns, BODY_NAMES, used | {subject})
        tags = _find(columns, TAG_NAMES, used | {subject, body})
        text_columns = tuple(c for c in (subject, body, tags) if c)
    if not text_columns:
        raise TicketDataError(f"no text column found among {columns}; name one with text_columns (e.g. 'subject,body')")
    if not category:
        raise TicketDataError(f"no category/queue label column found among {columns}; name one with category_column")
    if resolution in text_columns:
        raise TicketDataError(f"{resolution!r} is written after resolution and cannot be a model input")
    return ColumnMapping(text_columns, category, priority, id_column or "", tags, resolution or "")


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    malformed: list[dict[str, object]] = []
    raw = path.read_bytes()
    # Undecodable bytes become U+FFFD here so that the row can be rejected on its own, not the whole file.
    text = raw.decode("utf-8-sig", errors="replace")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or not any(cell.strip() for cell in rows[0]):
        return pd.DataFrame(), malformed
    header, body = rows[0], rows[1:]
    good: list[list[str]] = []
    good_rows: list[int] = []
    for number, cells in enumerate(body, start=1):
        if not any(cell.strip() for cell in cells):
            continue  # a blank line is not a ticket
        if len(cells) != len(header):
            malformed.append({SOURCE_ROW: number, REJECT_REASON: "malformed line", "raw": ",".join(cells)})
            continue
        good.append(cells)
        good_rows.append(number)
    frame = pd.DataFrame(good, columns=header, dtype=object)
    frame[SOURCE_ROW] = good_rows
    return frame, malformed


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    malformed: list[dict[str, object]] = []
    records: list[dict[str, object]] = []
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    if text.lstrip().startswith("["):
        return _read_json_array(text, path)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            malformed.append({SOURCE_ROW: number, REJECT_REASON: f"malformed line: {exc.msg}", "raw": line})
            continue
        if not isinstance(record, dict):
            malformed.append({SOURCE_ROW: number, REJECT_REASON: "malformed line: not an object", "raw": line})
            continue
        records.append({**record, SOURCE_ROW: number})
    return pd.DataFrame.from_records(records), malformed


def _read_json_array(text: str, path: Path) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TicketDataError(f"{path} starts like a JSON array but is not valid JSON: {exc}") from exc
    malformed: list[dict[str, object]] = []
    records: list[dict[str, object]] = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, dict):
            records.append({**item, SOURCE_ROW: number})
        else:
            malformed.append(
                {SOURCE_ROW: number, REJECT_REASON: "malformed line: not an object", "raw": json.dumps(item)}
            )
    return pd.DataFrame.from_records(records), malformed


def read_tickets(path: str | Path, file_format: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reads a CSV, JSON-lines or Parquet export.

    Args:
        path: The file; its suffix picks the format (.csv, .jsonl/.json/.ndjson — JSON lines or one JSON array
            of objects —, .parquet/.pq).
        file_format: The format when the suffix does not say it, as a suffix without its dot (e.g. "parquet");
            empty means the suffix.

    Returns:
        The rows that parsed (with `source_row`) and the lines that did not (with `reject_reason`, `raw`).

    Raises:
        FileNotFoundError: The file does not exist.
        TicketDataError: The format is not supported.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ticket export not found: {path}")
    suffix = f".{file_format.lower().lstrip('.')}" if file_format else path.suffix.lower()
    if suffix in (".csv", ".txt"):
        frame, malformed = _read_csv(path)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        frame, malformed = _read_jsonl(path)
    elif suffix in (".parquet", ".pq"):
        frame, malformed = pd.read_parquet(path), []
        frame[SOURCE_ROW] = range(1, len(frame) + 1)
    else:
        raise TicketDataError(f"unsupported file type {suffix!r} for {path}: use .csv, .jsonl or .parquet")
    return frame, pd.DataFrame(malformed, columns=[SOURCE_ROW, REJECT_REASON, "raw"])


def _as_text(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an integer column with gaps is read as floats: keep "1001", not "1001.0"
    return str(value).strip()


def content_id(parts: list[str]) -> str:
    """A stable ticket id derived from the ticket's content."""
    return "t-" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def validate_tickets(
    frame: pd.DataFrame, malformed: pd.DataFrame, cfg: TicketflowConfig, source: str = ""
) -> IngestResult:
    """Checks every row and splits the export into valid tickets and rejected rows.

    Rejected, with a reason: malformed lines, empty text, missing labels, unreadable encoding (U+FFFD after
    decoding), duplicate ids (when the data has an id column), and tickets of classes with fewer than
    `cfg.min_class_examples` examples ("rare class", left out of training with a warning).

    Args:
        frame: Parsed rows with `source_row`.
        malformed: Lines that did not parse, from `read_tickets`.
        cfg: Configuration (column names, minimum class size).
        source: Where the rows came from, for the report.

    Returns:
        The valid tickets (with `ticket_id`), the rejected rows and the report.

    Raises:
        TicketDataError: The file has no rows, required columns are missing, or fewer than two usable
            classes remain.
    """
    if frame.empty and malformed.empty:
        raise TicketDataError(f"the ticket export {source or ''} is empty: no rows to train on".replace("  ", " "))
    if frame.empty:
        raise TicketDataError(f"no row of {source} could be parsed ({len(malformed)} malformed lines)")
    mapping = detect_columns([c for c in frame.columns if c != SOURCE_ROW], cfg)
    frame = frame.copy()
    reasons = pd.Series("", index=frame.index, dtype=object)

    def reject(mask: pd.Series, reason: str) -> None:
        reasons[mask & (reasons == "")] = reason

    text = frame[list(mapping.text_columns)].map(_as_text)
    labels = frame[list(mapping.label_columns)].map(_as_text)
    decoded_badly = pd.concat([text, labels], axis=1).apply(lambda col: col.str.contains("\ufffd", regex=False))
    reject(decoded_badly.any(axis=1), "unreadable encoding")
    reject(text.apply(lambda col: col == "").all(axis=1), "empty text")
    for column in mapping.label_columns:
        reject(labels[column] == "", f"missing label: {column}")
    if mapping.id_column:
        ids = frame[mapping.id_column].map(_as_text)
        reject(ids == "", f"missing id: {mapping.id_column}")
        reject(ids.duplicated(keep="first") & (ids != ""), f"duplicate id: {mapping.id_column}")
        frame[TICKET_ID] = ids
    else:
        base = [content_id(list(row)) for row in pd.concat([text, labels], axis=1).itertuples(index=False)]
        # Identical tickets share content: number repeats so every id stays unique and stable.
        counts: dict[str, int] = {}
        unique = []
        for ticket_id in base:
            counts[ticket_id] = counts.get(ticket_id, 0) + 1
            unique.append(ticket_id if counts[ticket_id] == 1 else f"{ticket_id}-{counts[ticket_id]}")
        frame[TICKET_ID] = unique
    for column in mapping.label_columns:
        frame[column] = labels[column]

    rare_classes: dict[str, dict[str, int]] = {}
    for column in mapping.label_columns:
        counts_ok = frame.loc[reasons == "", column].value_counts()
        rare = counts_ok[counts_ok < cfg.min_class_examples]
        if len(rare):
            rare_classes[column] = {str(k): int(v) for k, v in rare.items()}
            log.warning(
                "%s: %d class(es) with fewer than %d examples left out of training: %s",
                column,
                len(rare),
                cfg.min_class_examples,
                dict(rare),
            )
            reject(frame[column].isin(rare.index), f"rare class: {column}")

    valid = frame[reasons == ""].reset_index(drop=True)
    rejected_rows = frame[reasons != ""].assign(**{REJECT_REASON: reasons[reasons != ""]})
    rejected = pd.concat([rejected_rows, malformed], ignore_index=True).astype({SOURCE_ROW: "int64"})
    rejected = rejected.sort_values(SOURCE_ROW).reset_index(drop=True)

    label_counts = {c: {str(k): int(v) for k, v in valid[c].value_counts().items()} for c in mapping.label_columns}
    usable = label_counts.get(mapping.category_column, {})
    if len(usable) < 2:
        raise TicketDataError(
            f"fewer than two usable classes remain in {mapping.category_column!r} "
            f"(usable: {sorted(usable)}; rare: {rare_classes.get(mapping.category_column, {})}; "
            f"rows rejected: {len(rejected)} of {len(frame) + len(malformed)})"
        )
    if mapping.priority_column and len(label_counts[mapping.priority_column]) < 2:
        log.warning("priority column %r has fewer than two classes: not predicted", mapping.priority_column)
        mapping = ColumnMapping(**{**asdict(mapping), "priority_column": ""})

    report = IngestReport(
        source=source,
        rows_read=len(frame) + len(malformed),
        rows_valid=len(valid),
        rows_rejected=len(rejected),
        rejected_by_reason={str(k): int(v) for k, v in rejected[REJECT_REASON].value_counts().items()},
        rare_classes=rare_classes,
        label_counts=label_counts,
        mapping=asdict(mapping),
    )
    log.info(
        "ingest: %d rows read, %d valid, %d rejected %s",
        report.rows_read,
        report.rows_valid,
        report.rows_rejected,
        report.rejected_by_reason,
    )
    return IngestResult(valid, rejected, mapping, report)


def ingest_tickets(path: str | Path, cfg: TicketflowConfig, file_format: str = "", source: str = "") -> IngestResult:
    """Reads and validates a ticket export (the whole ingest step).

    Args:
        path: CSV, JSON-lines or Parquet file.
        cfg: Configuration.
        file_format: The format when the file's suffix does not say it (see `read_tickets`).
        source: Where the export came from, for the report (e.g. its object-store URI); empty means `path`.

    Returns:
        Valid tickets, rejected rows and the report.
    """
    frame, malformed = read_tickets(path, file_format)
    return validate_tickets(frame, malformed, cfg, source=source or str(path))


def load_mapping(report_path: str | Path) -> ColumnMapping:
    """Reads the column mapping from an ingest report file."""
    data = json.loads(Path(report_path).read_text())["mapping"]
    return ColumnMapping(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
