"""The training pipeline: import the ticket export, then ingest → prepare → embed → train → evaluate → register.

Compile with `python -m ticketflow.pipelines.training` (or `make compile`): writes `pipelines/training.yaml`,
which a user uploads in the Kubeflow dashboard. The same function runs on the embedded default through
`kfp.local` (`make run`).

The data comes in as an artifact. `data_uri` names the export in an object store: on Kubeflow, the MinIO that KFP
itself runs (bucket `mlpipeline`, e.g. `minio://mlpipeline/tickets/export.csv`, where the runbook uploads it),
or `s3://` / `gs://` with credentials in the pods' environment. `dsl.importer` makes it a `Dataset`, which KFP
downloads into the ingest pod; through kfp.local the URI is a local file's path. Every step after it is a pod of
its own, and hands data on as artifacts only.

The steps themselves are `training_from_dataset`, a pipeline taking the tickets as a `Dataset`: this pipeline
runs it on the imported export, the drift pipeline's retraining branch on the data it assembles.

Caching is off for every step, set inside `training_from_dataset` so that it holds wherever the steps run
(a run's `enable_caching` reaches only the top-level tasks, not a nested pipeline's): ingest reads an export
that may change under the same URI, embed writes the vector store, register reads the live registry and moves
`champion`, and the steps in between only ever see ingest's fresh artifacts, so they could never hit the cache.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input

from ticketflow.components.config import TicketflowConfig
from ticketflow.components.kfp import (
    LIGHT_STEP,
    MODEL_STEP,
    TORCH_STEP,
    embed_tickets,
    evaluate_classifier,
    ingest_tickets,
    prepare_text,
    register_classifier,
    sized,
    train_classifier,
)
from ticketflow.pipelines.compile_yaml import compile_to

DEFAULTS = TicketflowConfig()
PIPELINE_NAME = "ticketflow-training"
STEPS_PIPELINE_NAME = "ticketflow-training-steps"
# Where the runbook uploads the export: KFP's own MinIO, whose bucket `mlpipeline` every pipeline pod can read.
DATA_URI = "minio://mlpipeline/tickets/export.csv"


@dsl.pipeline(name=STEPS_PIPELINE_NAME)
def training_from_dataset(
    raw_tickets: Input[Dataset],
    text_columns: str = "",
    category_column: str = DEFAULTS.category_column,
    priority_column: str = DEFAULTS.priority_column,
    id_column: str = DEFAULTS.id_column,
    min_class_examples: int = DEFAULTS.min_class_examples,
    test_size: float = DEFAULTS.test_size,
    seed: int = DEFAULTS.seed,
    embedding_model: str = DEFAULTS.embedding_model,
    embedding_precision: str = DEFAULTS.embedding_precision,
    embedding_max_tokens: int = DEFAULTS.embedding_max_tokens,
    embed_batch_size: int = DEFAULTS.embed_batch_size,
    target_precision: float = DEFAULTS.target_precision,
    registered_model_name: str = DEFAULTS.registered_model_name,
    mlflow_tracking_uri: str = DEFAULTS.mlflow_tracking_uri,
    vector_store_uri: str = DEFAULTS.vector_store_uri,
    tuning_trials: int = DEFAULTS.tuning_trials,
    mask_personal_data: bool = DEFAULTS.mask_personal_data,
) -> str:
    """Trains and registers the classifiers on a ticket export that is already an artifact (the pipeline's steps).

    Args:
        raw_tickets: The ticket export (CSV, JSON lines or Parquet).
        text_columns: Comma-separated text columns merged into one text; empty means auto-detect.
        category_column: Category/queue label column; empty means auto-detect.
        priority_column: Priority label column; empty means auto-detect, "none" disables it.
        id_column: Ticket id column; empty means auto-detect, else ids are derived from each ticket's content.
        min_class_examples: Classes with fewer tickets than this are reported and left out of training.
        test_size: Fraction of tickets held out for evaluation and for the quality gate, 0–1.
        seed: Seed of the split, the hyperparameter search and the models.
        embedding_model: sentence-transformers model name or path; the default is the bundled all-MiniLM-L6-v2.
        embedding_precision: The encoder's precision: int8 (ONNX Runtime, int8 weights; several times faster) or
            fp32. The model records it and the predictor encodes the same way.
        embedding_max_tokens: Tokens of a ticket the encoder reads (the rest is cut); 0 means the model's limit.
        embed_batch_size: Tickets encoded per batch.
        target_precision: Precision, 0–1, each class's tickets routed without review reach out of fold (per-class
            review thresholds, chosen in training, travel with the model).
        registered_model_name: MLflow registered model name, also the KServe model name.
        mlflow_tracking_uri: MLflow tracking URI; empty means the configured default.
        vector_store_uri: ChromaDB folder or http://host:port; empty means the configured default.
        tuning_trials: Configurations of the classifier's boosted meta-model tried per target by a seeded
            successive-halving search (the configured one included; 1 means no search). Each trial and its score
            go to the MLflow run.
        mask_personal_data: Mask e-mail addresses and phone numbers in the test tickets the HTML report quotes.

    Returns:
        JSON summary of the run: rows read and rejected, metrics, MLflow run and version, gate decision.
    """
    ingest = ingest_tickets(
        raw_tickets=raw_tickets,
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
        embedding_precision=embedding_precision,
        embedding_max_tokens=embedding_max_tokens,
        batch_size=embed_batch_size,
        vector_store_uri=vector_store_uri,
    )
    train = train_classifier(
        train_set=prepare.outputs["train_set"],
        embeddings=embed.outputs["embeddings"],
        ingest_report=ingest.outputs["ingest_report"],
        collection=embed.outputs["Output"],
        embedding_model=embedding_model,
        embedding_precision=embedding_precision,
        embedding_max_tokens=embedding_max_tokens,
        batch_size=embed_batch_size,
        seed=seed,
        target_precision=target_precision,
        tuning_trials=tuning_trials,
    )
    evaluate = evaluate_classifier(
        model=train.outputs["model"],
        test_set=prepare.outputs["test_set"],
        embeddings=embed.outputs["embeddings"],
        target_precision=target_precision,
        label_issues=train.outputs["label_issues"],
        mask_personal_data=mask_personal_data,
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
        label_issues=train.outputs["label_issues"],
    )
    for task, resources in (
        (ingest, LIGHT_STEP),
        (prepare, LIGHT_STEP),
        (embed, TORCH_STEP),
        (train, MODEL_STEP),
        (evaluate, MODEL_STEP),
        (register, MODEL_STEP),  # it embeds too, with the champion's encoder, when the champion encodes another way
    ):
        sized(task, resources).set_caching_options(False)  # why no caching: the module's docstring
    return register.output


@dsl.pipeline(name=PIPELINE_NAME)
def training_pipeline(
    data_uri: str = DATA_URI,
    text_columns: str = "",
    category_column: str = DEFAULTS.category_column,
    priority_column: str = DEFAULTS.priority_column,
    id_column: str = DEFAULTS.id_column,
    min_class_examples: int = DEFAULTS.min_class_examples,
    test_size: float = DEFAULTS.test_size,
    seed: int = DEFAULTS.seed,
    embedding_model: str = DEFAULTS.embedding_model,
    embedding_precision: str = DEFAULTS.embedding_precision,
    embedding_max_tokens: int = DEFAULTS.embedding_max_tokens,
    embed_batch_size: int = DEFAULTS.embed_batch_size,
    target_precision: float = DEFAULTS.target_precision,
    registered_model_name: str = DEFAULTS.registered_model_name,
    mlflow_tracking_uri: str = DEFAULTS.mlflow_tracking_uri,
    vector_store_uri: str = DEFAULTS.vector_store_uri,
    tuning_trials: int = DEFAULTS.tuning_trials,
    mask_personal_data: bool = DEFAULTS.mask_personal_data,
) -> str:
    """Trains ticket category and priority classifiers and registers them in MLflow behind a quality gate.

    Args:
        data_uri: The ticket export (CSV, JSON lines or Parquet; its file suffix names the format) in an object
            store, e.g. minio://mlpipeline/tickets/export.csv in Kubeflow's own MinIO; with kfp.local, a file path.
        text_columns: Comma-separated text columns merged into one text, e.g. "subject,body,tags"; empty
            means auto-detect (subject/title, body/description/text/document, tags).
        category_column: Category/queue label column; empty means auto-detect (category, queue, topic_group…).
        priority_column: Priority label column; empty means auto-detect (priority, urgency), "none" disables it.
        id_column: Ticket id column; empty means auto-detect, else ids are derived from each ticket's content.
        min_class_examples: Classes with fewer tickets than this are reported and left out of training.
        test_size: Fraction of tickets held out for evaluation and for the quality gate, 0–1.
        seed: Seed of the split, the hyperparameter search and the models.
        embedding_model: sentence-transformers model name or path; the default is the bundled all-MiniLM-L6-v2.
        embedding_precision: The encoder's precision: int8 (ONNX Runtime, int8 weights; several times faster) or
            fp32. The model records it and the predictor encodes the same way.
        embedding_max_tokens: Tokens of a ticket the encoder reads (the rest is cut); 0 means the model's limit.
        embed_batch_size: Tickets encoded per batch.
        target_precision: Precision, 0–1, each class's tickets routed without review reach out of fold (per-class
            review thresholds, chosen in training, travel with the model).
        registered_model_name: MLflow registered model name, also the KServe model name.
        mlflow_tracking_uri: MLflow tracking URI; empty means MLFLOW_TRACKING_URI, else the image's cluster
            default (the MLflow Service), or a local sqlite file.
        vector_store_uri: ChromaDB http://host:port or folder; empty means TICKETFLOW_VECTOR_STORE, else the
            image's cluster default (the ChromaDB Service), or a local folder.
        tuning_trials: Configurations of the classifier's boosted meta-model tried per target by a seeded
            successive-halving search (the configured one included; 1 means no search). Each trial and its score
            go to the MLflow run.
        mask_personal_data: Mask e-mail addresses and phone numbers in the test tickets the HTML report quotes.

    Returns:
        JSON summary of the run: rows read and rejected, metrics, MLflow run and version, gate decision.
    """
    # reimport: a new artifact per run, since the object at the URI may have been replaced since the last one.
    export = dsl.importer(artifact_uri=data_uri, artifact_class=Dataset, reimport=True)
    export.set_caching_options(False)
    steps = training_from_dataset(
        raw_tickets=export.output,
        text_columns=text_columns,
        category_column=category_column,
        priority_column=priority_column,
        id_column=id_column,
        min_class_examples=min_class_examples,
        test_size=test_size,
        seed=seed,
        embedding_model=embedding_model,
        embedding_precision=embedding_precision,
        embedding_max_tokens=embedding_max_tokens,
        embed_batch_size=embed_batch_size,
        target_precision=target_precision,
        registered_model_name=registered_model_name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        vector_store_uri=vector_store_uri,
        tuning_trials=tuning_trials,
        mask_personal_data=mask_personal_data,
    )
    steps.set_caching_options(False)
    return steps.output


if __name__ == "__main__":
    print(compile_to(training_pipeline, "pipelines/training.yaml"))
