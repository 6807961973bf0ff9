"""Batch scoring: a ticket file in, the same rows out with predictions from the `champion` model."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient

from ticketflow.components.champion import load_champion
from ticketflow.components.config import TicketflowConfig
from ticketflow.components.ingest import SOURCE_ROW, read_tickets
from ticketflow.components.model import TicketModel

log = logging.getLogger(__name__)


def score_frame(model: TicketModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Adds `predicted_<label>`, `confidence_<label>` and `needs_review` to a frame of tickets.

    Args:
        model: The model to score with.
        frame: Tickets with the training data's text columns (or a `text` column).

    Returns:
        The input columns followed by the prediction columns.
    """
    predictions = model.predict_frame(model.texts_from_frame(frame))
    predictions.index = frame.index
    return pd.concat([frame, predictions], axis=1)


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Writes CSV, JSON lines or Parquet by the file's suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, index=False)


def score_file(data: str | Path, out: str | Path, cfg: TicketflowConfig) -> dict[str, object]:
    """Scores a file with the champion.

    Args:
        data: Input tickets.
        out: Output file.
        cfg: Configuration (tracking URI, model name, alias).

    Returns:
        Facts: rows scored, malformed lines skipped, model version, output path, share needing review.

    Raises:
        ValueError: There is no champion yet, or the input lacks text columns.
    """
    mlflow.set_tracking_uri(cfg.tracking_uri)
    champion = load_champion(MlflowClient(), cfg.registered_model_name, cfg.champion_alias)
    if champion is None:
        raise ValueError(f"no {cfg.champion_alias} for {cfg.registered_model_name}: run `make run` first")
    version, model = champion
    frame, malformed = read_tickets(data)
    if len(malformed):
        log.warning(
            "predict: %d malformed lines in %s not scored (first at line %d)",
            len(malformed),
            data,
            int(malformed[SOURCE_ROW].iloc[0]),
        )
    frame = frame.drop(columns=[SOURCE_ROW], errors="ignore")
    scored = score_frame(model, frame)
    write_table(scored, out)
    return {
        "rows_scored": len(scored),
        "malformed_lines": len(malformed),
        "model_name": cfg.registered_model_name,
        "model_version": version,
        "needs_review": int(scored["needs_review"].sum()),
        "out": str(out),
    }
