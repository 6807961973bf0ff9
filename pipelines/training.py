"""The training pipeline: ingest → prepare → embed → train → evaluate → register.

Compile with `python -m ticketflow.pipelines.training` (or `make compile`): writes
`pipelines/training.yaml`, which a user uploads in the Kubeflow dashboard. The same function runs on the
embedded default through `kfp.local`.
"""

from kfp import dsl

from ticketflow.components.config import TicketflowConfig
from ticketflow.components.kfp import (
    embed_tickets,
    evaluate_classifier,
    ingest_tickets,
    prepare_text,
    register_classifier,
    train_classifier,
)
from ticketflow.pipelines.compile_yaml import compile_to

DEFAULTS = TicketflowConfig()
PIPELINE_NAME = "ticketflow-training"
SAMPLE_DATA = "data/sample_tickets.csv"


@dsl.pipeline(name=PIPELINE_NAME)
def training_pipeline(
    data_path: str = SAMPLE_DATA,
    text_columns: str = "",
    category_column: str = DEFAULTS.category_column,
    priority_column: str = DEFAULTS.priority_column,
    id_column: str = DEFAULTS.id_column,
    min_class_examples: int = DEFAULTS.min_class_examples,
    test_size: float = DEFAULTS.test_size,
    seed: int = DEFAULTS.seed,
    embedding_model: str = DEFAULTS.embedding_model,
    embed_batch_size: int = DEFAULTS.embed_batch_size,
    target_precision: float = DEFAULTS.target_precision,
    registered_model_name: str = DEFAULTS.registered_model_name,
    mlflow_tracking_uri: str = DEFAULTS.mlflow_tracking_uri,
    vector_store_uri: str = DEFAULTS.vector_store_uri,
) -> str:
    """Trains ticket category and priority classifiers and registers them in MLflow behind a quality gate.

    Args:
        data_path: Path of the ticket export (CSV, JSON lines or Parquet) as the pipeline's pods see it.
        text_columns: Comma-separated text columns merged into one text, e.g. "subject,body,tags"; empty
            means auto-detect (subject/title, body/description/text/document, tags).
        category_column: Category/queue label column; empty means auto-detect (category, queue, topic_group…).
        priority_column: Priority label column; empty means auto-detect (priority, urgency), "none" disables it.
        id_column: Ticket id column; empty means auto-detect, else ids are derived from each ticket's content.
        min_class_examples: Classes with fewer tickets than this are reported and left out of training.
        test_size: Fraction of tickets held out for evaluation and for the quality gate, 0–1.
        seed: Seed of the split, the hyperparameter search and the models.
        embedding_model: sentence-transformers model name or path; the default is the bundled all-MiniLM-L6-v2.
        embed_batch_size: Tickets encoded per batch.
        target_precision: Precision, 0–1, that predictions above each target's review threshold must reach.
        registered_model_name: MLflow registered model name, also the KServe model name.
        mlflow_tracking_uri: MLflow tracking URI; empty means MLFLOW_TRACKING_URI, else a local sqlite file.
        vector_store_uri: ChromaDB folder or http://host:port; empty means TICKETFLOW_VECTOR_STORE or a folder.

    Returns:
        JSON summary of the run: rows read and rejected, metrics, MLflow run and version, gate decision.
    """
    ingest = ingest_tickets(
        data_path=data_path,
        text_columns=text_columns,
        category_column=category_column,
        priority_column=priority_column,
        id_column=id_column,
        min_class_examples=min_class_examples,
    )
    prepare = prepare_text(
        tickets=ingest.outputs["tickets"],
        ingest_report=ingest.outputs["ingest_report"],
        test_size=test_size,
        seed=seed,
    )
    embed = embed_tickets(
        train_set=prepare.outputs["train_set"],
        test_set=prepare.outputs["test_set"],
        ingest_report=ingest.outputs["ingest_report"],
        embedding_model=embedding_model,
        batch_size=embed_batch_size,
        vector_store_uri=vector_store_uri,
    )
    train = train_classifier(
        train_set=prepare.outputs["train_set"],
        embeddings=embed.outputs["embeddings"],
        ingest_report=ingest.outputs["ingest_report"],
        collection=embed.outputs["Output"],
        embedding_model=embedding_model,
        batch_size=embed_batch_size,
        seed=seed,
    )
    evaluate = evaluate_classifier(
        model=train.outputs["model"],
        test_set=prepare.outputs["test_set"],
        embeddings=embed.outputs["embeddings"],
        target_precision=target_precision,
    )
    register = register_classifier(
        model=train.outputs["model"],
        evaluation=evaluate.outputs["evaluation"],
        train_set=prepare.outputs["train_set"],
        test_set=prepare.outputs["test_set"],
        embeddings=embed.outputs["embeddings"],
        ingest_report=ingest.outputs["ingest_report"],
        rejected_rows=ingest.outputs["rejected_rows"],
        report=evaluate.outputs["report"],
        registered_model_name=registered_model_name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        vector_store_uri=vector_store_uri,
        target_precision=target_precision,
    )
    # The gate reads the live registry: never serve a cached decision.
    register.set_caching_options(False)
    return register.output


if __name__ == "__main__":
    print(compile_to(training_pipeline, "pipelines/training.yaml"))
