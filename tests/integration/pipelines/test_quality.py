"""Quality on real tickets (../shared/data): the pipeline's model against a fixed TF-IDF baseline.

The baseline is the issue's: TF-IDF word 1–2 grams with sublinear tf, LogisticRegression with balanced class
weights and C chosen from {1, 4, 16} by 3-fold CV, trained on the same split in the same run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from ticketflow.components.config import TicketflowConfig
from ticketflow.components.embed import EncoderSpec, embed_with_cache
from ticketflow.components.evaluate import evaluate_model
from ticketflow.components.ingest import ingest_tickets, read_tickets, validate_tickets
from ticketflow.components.prepare import TEXT, TEXT_HASH, prepare_tickets
from ticketflow.components.store import VectorStore
from ticketflow.components.train import fit_ticket_model

ROWS = 4000


def baseline_macro_f1(train: pd.DataFrame, test: pd.DataFrame, target: str, seed: int) -> float:
    search = GridSearchCV(
        Pipeline(
            [
                ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                ("clf", LogisticRegression(class_weight="balanced", max_iter=3000, random_state=seed)),
            ]
        ),
        {"clf__C": [1, 4, 16]},
        cv=3,
        scoring="f1_macro",
    ).fit(train[TEXT], train[target])
    return float(f1_score(test[target], search.predict(test[TEXT]), average="macro"))


def test_pipeline_model_is_not_worse_than_the_tfidf_baseline(it_service_csv: Path, tmp_path: Path) -> None:
    cfg = TicketflowConfig(home=str(tmp_path))
    source = pd.read_csv(it_service_csv)
    # A few thousand rows, stratified, so the test stays quick; seeded, so it is the same every run.
    subset = source.groupby("Topic_group", group_keys=False).sample(frac=ROWS / len(source), random_state=cfg.seed)
    path = tmp_path / "it_subset.csv"
    subset.to_csv(path, index=False)
    ingested = ingest_tickets(path, cfg)
    assert ingested.mapping.text_columns == ("Document",) and ingested.mapping.category_column == "Topic_group"
    prepared = prepare_tickets(ingested.tickets, ingested.mapping, cfg.test_size, cfg.seed)
    store = VectorStore(cfg.vector_store)
    vectors = {}
    for name, frame in (("train", prepared.train), ("test", prepared.test)):
        vectors[name], _ = embed_with_cache(
            frame[TEXT].tolist(), frame[TEXT_HASH].tolist(), EncoderSpec.from_config(cfg), store, cfg.embed_batch_size
        )
    model = fit_ticket_model(prepared.train, vectors["train"], ingested.mapping, cfg)
    ours = evaluate_model(model, prepared.test, vectors["test"], cfg.target_precision).targets["Topic_group"]
    baseline = baseline_macro_f1(prepared.train, prepared.test, "Topic_group", cfg.seed)
    print(f"pipeline macro-F1 {ours.macro_f1:.4f} vs baseline {baseline:.4f} on {len(prepared.test)} test tickets")
    assert ours.macro_f1 >= baseline - 0.01
    assert ours.ece < 0.1  # temperature calibration keeps confidences honest


def test_customer_support_columns_are_detected_without_arguments(customer_support_csv: Path) -> None:
    frame, malformed = read_tickets(customer_support_csv)
    result = validate_tickets(frame, malformed, TicketflowConfig(), source=str(customer_support_csv))
    mapping = result.mapping
    assert mapping.text_columns == ("subject", "body", "tags")
    assert mapping.category_column == "queue" and mapping.priority_column == "priority"
    assert mapping.resolution_column == "answer" and "answer" not in mapping.text_columns  # it leaks the label
    assert result.report.rows_read == result.report.rows_valid + result.report.rows_rejected
    assert result.report.rows_valid > 3000


def test_it_service_columns_are_detected_without_arguments(it_service_csv: Path) -> None:
    frame, malformed = read_tickets(it_service_csv)
    result = validate_tickets(frame, malformed, TicketflowConfig(), source=str(it_service_csv))
    assert result.mapping.text_columns == ("Document",)
    assert result.mapping.category_column == "Topic_group" and result.mapping.priority_column == ""
    assert len(result.report.label_counts["Topic_group"]) == 8


@pytest.mark.parametrize("column", ["queue", "priority"])
def test_customer_support_labels_keep_their_classes(customer_support_csv: Path, column: str) -> None:
    result = ingest_tickets(customer_support_csv, TicketflowConfig())
    assert len(result.report.label_counts[column]) >= 3
