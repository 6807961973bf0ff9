"""Train: one calibrated `NeighbourStackClassifier` per labelled target, wrapped in a `TicketModel`."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ticketflow.components.config import TicketflowConfig
from ticketflow.components.ingest import ColumnMapping
from ticketflow.components.model import NeighbourStackClassifier, TicketModel
from ticketflow.components.neighbours import NeighbourIndex
from ticketflow.components.prepare import TEXT

log = logging.getLogger(__name__)


def fit_ticket_model(
    train: pd.DataFrame, vectors: np.ndarray, mapping: ColumnMapping, cfg: TicketflowConfig, collection: str = ""
) -> TicketModel:
    """Fits a classifier for the category and, when labelled, the priority.

    Args:
        train: Training split (`text` plus the label columns).
        vectors: Embeddings of `train`, row-aligned.
        mapping: Column roles (the label columns are the targets).
        cfg: Configuration (seed, folds, search grid, tuning trials, neighbourhoods, target precision, embedding model).
        collection: ChromaDB collection holding these tickets.

    Returns:
        The fitted model, with each class's review threshold; its `info` holds per target the chosen
        hyperparameters (`hyperparameters`) and the tuner's trials (`tuning`).
    """
    if len(train) != len(vectors):
        raise ValueError(f"{len(train)} training tickets but {len(vectors)} vectors")
    index = NeighbourIndex(vectors)
    # Every training ticket's neighbours but itself: the votes it learns from are the votes an unseen ticket gets.
    neighbours = index.search(index.matrix, max(cfg.neighbour_ks), exclude_rows=np.arange(len(index)))
    texts = train[TEXT].astype(str).tolist()
    classifiers = {}
    for target in mapping.label_columns:
        log.info("train: fitting %s on %d tickets, %d classes", target, len(train), train[target].nunique())
        classifiers[target] = NeighbourStackClassifier(
            sgd_alphas=cfg.sgd_alphas,
            sgd_average=cfg.sgd_average,
            logistic_cs=cfg.logistic_cs,
            char_ngrams=cfg.char_ngrams,
            tfidf_min_dfs=cfg.tfidf_min_dfs,
            neighbour_ks=cfg.neighbour_ks,
            booster_iterations=cfg.booster_iterations,
            booster_learning_rate=cfg.booster_learning_rate,
            review_precision=cfg.target_precision,
            forms=cfg.classifier_forms,
            cv=cfg.cv_folds,
            random_state=cfg.seed,
            tuning_trials=cfg.tuning_trials,
            tuning_max_seconds=cfg.tuning_max_seconds,
        ).fit(texts, train[target].to_numpy(), neighbours)
    info = {
        target: {
            "form": c.form_,
            "text_model": str(c.text_spec_),
            "text_cv_macro_f1": c.text_cv_macro_f1_,  # the text model's, which is also the `text` form's score
            "temperature": c.temperature_,
            **{f"{form}_cv_macro_f1": score for form, score in c.form_cv_macro_f1_.items() if form != "text"},
            **{f"min_df_{min_df}_cv_macro_f1": score for min_df, score in c.min_df_cv_macro_f1_.items()},
            "cv_macro_f1": c.cv_macro_f1_,
            # KFP's metadata and MLflow's params take no None: class_weight=None reads "none".
            **{f"booster.{k}": "none" if v is None else v for k, v in c.booster_params_.items()},
        }
        for target, c in classifiers.items()
    }
    return TicketModel(
        mapping=mapping,
        embedding_model=cfg.embedding_model,
        embed_batch_size=cfg.embed_batch_size,
        embedding_precision=cfg.embedding_precision,
        embedding_max_tokens=cfg.embedding_max_tokens,
        classifiers=classifiers,
        collection=collection,
        review_thresholds={target: c.review_thresholds_ for target, c in classifiers.items()},
        info={"hyperparameters": info, "tuning": {target: c.tuning_ for target, c in classifiers.items()}},
        neighbour_index=index,
    )


def train_from_files(
    train_path: str,
    embeddings_path: str,
    report_path: str,
    collection: str,
    cfg: TicketflowConfig,
    model_path: str,
    label_issues_path: str = "",
) -> dict[str, object]:
    """The train step on files: fits the model and writes it with joblib, and the training labels it disputes.

    Args:
        train_path: Parquet of the training split.
        embeddings_path: The embed step's vectors.
        report_path: Ingest report (holds the column mapping).
        collection: ChromaDB collection of the training tickets.
        cfg: Configuration.
        model_path: Where the model goes (joblib).
        label_issues_path: Where the label issues go (CSV, `audit.label_issues_frame`); empty writes none.

    Returns:
        Flat facts for the model artifact's metadata: chosen hyperparameters per target and, with
        `label_issues_path`, the training tickets flagged per target (`<target>.label_issues`).
    """
    import joblib

    from ticketflow.components.audit import issue_counts, label_issues_frame, write_label_issues
    from ticketflow.components.embed import load_split_vectors
    from ticketflow.components.ingest import load_mapping

    train_vectors, _ = load_split_vectors(embeddings_path)
    train = pd.read_parquet(train_path)
    model = fit_ticket_model(train, train_vectors, load_mapping(report_path), cfg, collection)
    joblib.dump(model, model_path)
    facts = {f"{t}.{k}": v for t, hp in model.info["hyperparameters"].items() for k, v in hp.items()}
    if label_issues_path:
        issues = label_issues_frame(train, model.classifiers)
        write_label_issues(issues, label_issues_path)
        facts.update({f"{t}.label_issues": n for t, n in issue_counts(issues, model.targets).items()})
    return facts
