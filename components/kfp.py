"""Thin KFP v2 wrappers of the training steps, in flow order: ingest → prepare → embed → train → evaluate → register.

Each wrapper turns artifact paths into in-memory objects, calls the step's logic from `ticketflow.components.*`
and writes the results back. The logic is imported inside each body because a lightweight component ships only
its function's source; the image named by `base_image` (our Dockerfile's) contains the project. The drift
steps' wrappers live one floor up, in `ticketflow.monitoring.kfp`, and share `component` and the pod sizes
from here. (No `from __future__ import annotations` here: KFP reads the annotations at decoration time.)
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from ticketflow.components.config import TicketflowConfig

# Compile-time choice of image; kfp.local's SubprocessRunner ignores it and runs in this environment.
BASE_IMAGE = TicketflowConfig.from_env().image
component = dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)


class StepResources(NamedTuple):
    """What a step's pod asks the scheduler for (requests) and may not exceed (limits), as Kubernetes quantities.

    Attributes:
        cpu_request: CPUs reserved for the pod, e.g. "500m".
        cpu_limit: CPUs the pod is throttled to.
        memory_request: Memory reserved for the pod, e.g. "2Gi".
        memory_limit: Memory past which the pod is OOM-killed.
    """

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


# Sized for a small Minikube (2 CPUs, 8 GiB shared with Kubeflow and our services), where a run's pods come one at
# a time. Requests reserve what a step needs, so that the scheduler waits for room instead of the kernel killing a
# step half-way; limits leave headroom for exports larger than the bundled sample. Peak memory of each step on the
# sample (kfp.local, the integration tests): ingest 150 MiB, prepare 230, train 240, evaluate 265, assembling the
# retraining data 350, register 375; the two steps that load the sentence-transformers model (PyTorch) 870 (embed)
# and 1200 (the drift check).
LIGHT_STEP = StepResources(cpu_request="250m", cpu_limit="1", memory_request="512Mi", memory_limit="1Gi")
MODEL_STEP = StepResources(cpu_request="500m", cpu_limit="2", memory_request="1Gi", memory_limit="2Gi")
TORCH_STEP = StepResources(cpu_request="500m", cpu_limit="2", memory_request="2Gi", memory_limit="3Gi")


def sized(task: dsl.PipelineTask, resources: StepResources) -> dsl.PipelineTask:
    """Sets a container task's CPU and memory requests and limits (kfp.local ignores them).

    Args:
        task: A task of a lightweight component (not a nested pipeline: those have no container).
        resources: Its pod's size, e.g. `TORCH_STEP`.

    Returns:
        The task.
    """
    return (
        task.set_cpu_request(resources.cpu_request)
        .set_cpu_limit(resources.cpu_limit)
        .set_memory_request(resources.memory_request)
        .set_memory_limit(resources.memory_limit)
    )


@component
def ingest_tickets(
    raw_tickets: Input[Dataset],
    text_columns: str,
    category_column: str,
    priority_column: str,
    id_column: str,
    min_class_examples: int,
    tickets: Output[Dataset],
    rejected_rows: Output[Dataset],
    ingest_report: Output[Artifact],
    ingest_metrics: Output[Metrics],
):
    """Reads a ticket export (CSV, JSON lines or Parquet), validates it and keeps bad rows aside.

    Args:
        raw_tickets: The ticket export (CSV, JSON lines or Parquet): its file suffix names the format, else its
            `format` metadata (an artifact written by another step has no suffix).
        text_columns: Comma-separated text columns merged into the model's text; empty means auto-detect.
        category_column: Category/queue label column; empty means auto-detect.
        priority_column: Priority label column; empty means auto-detect, "none" disables it.
        id_column: Ticket id column; empty means auto-detect, else ids are derived from content.
        min_class_examples: Classes with fewer tickets are reported and left out of training.
        tickets: Valid tickets, with a `ticket_id` (Parquet).
        rejected_rows: Rows kept aside, each with `reject_reason` and `source_row` (CSV).
        ingest_report: Counts, reasons, rare classes and the column mapping (JSON).
        ingest_metrics: Rows read, valid and rejected.
    """
    import logging

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.components.ingest import FILE_FORMAT_KEY
    from ticketflow.components.ingest import ingest_tickets as run_ingest

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    columns = tuple(c.strip() for c in text_columns.split(",") if c.strip())
    cfg = TicketflowConfig.from_env(
        text_columns=columns,
        category_column=category_column,
        priority_column=priority_column,
        id_column=id_column,
        min_class_examples=min_class_examples,
    )
    file_format = raw_tickets.metadata.get(FILE_FORMAT_KEY, "")
    result = run_ingest(raw_tickets.path, cfg, file_format=file_format, source=raw_tickets.uri)
    result.tickets.to_parquet(tickets.path, index=False)
    result.rejected.astype(str).to_csv(rejected_rows.path, index=False)
    with open(ingest_report.path, "w") as f:
        f.write(result.report.to_json())
    for name in ("rows_read", "rows_valid", "rows_rejected"):
        ingest_metrics.log_metric(name, getattr(result.report, name))


@component
def prepare_text(
    tickets: Input[Dataset],
    ingest_report: Input[Artifact],
    test_size: float,
    seed: int,
    train_set: Output[Dataset],
    test_set: Output[Dataset],
):
    """Merges subject, body and tags into one text, drops exact duplicates and splits stratified.

    Args:
        tickets: Valid tickets from ingest.
        ingest_report: Ingest's report (holds the column mapping).
        test_size: Fraction of tickets held out for evaluation, 0–1.
        seed: Seed of the stratified split.
        train_set: Training split, also the reference snapshot for drift checks (Parquet).
        test_set: Test split (Parquet).
    """
    import logging

    import pandas as pd

    from ticketflow.components.ingest import load_mapping
    from ticketflow.components.prepare import prepare_tickets

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    mapping = load_mapping(ingest_report.path)
    prepared = prepare_tickets(pd.read_parquet(tickets.path), mapping, test_size, seed)
    prepared.train.to_parquet(train_set.path, index=False)
    prepared.test.to_parquet(test_set.path, index=False)
    train_set.metadata["rows"] = len(prepared.train)
    test_set.metadata["rows"] = len(prepared.test)
    train_set.metadata["duplicates_dropped"] = prepared.duplicates_dropped


@component
def embed_tickets(
    train_set: Input[Dataset],
    test_set: Input[Dataset],
    ingest_report: Input[Artifact],
    embedding_model: str,
    embedding_precision: str,
    embedding_max_tokens: int,
    batch_size: int,
    vector_store_uri: str,
    embeddings: Output[Dataset],
) -> str:
    """Embeds every ticket with sentence-transformers and stores the vectors in ChromaDB.

    Args:
        train_set: Training split.
        test_set: Test split.
        ingest_report: Ingest's report (holds the label columns).
        embedding_model: sentence-transformers model name or path; empty means the bundled all-MiniLM-L6-v2.
        embedding_precision: The encoder's precision, `int8` or `fp32` (part of the vector cache key).
        embedding_max_tokens: Tokens of a ticket the encoder reads; 0 means the model's own limit.
        batch_size: Tickets encoded per batch.
        vector_store_uri: ChromaDB folder or http://host:port; empty means the configured default.
        embeddings: Vectors of both splits (NumPy .npz content with arrays `train` and `test`).

    Returns:
        Name of the ChromaDB collection holding the training tickets.
    """
    import logging

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.components.embed import embed_split_tickets

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TicketflowConfig.from_env(
        embedding_model=embedding_model,
        embedding_precision=embedding_precision,
        embedding_max_tokens=embedding_max_tokens,
        embed_batch_size=batch_size,
        vector_store_uri=vector_store_uri,
    )
    result = embed_split_tickets(train_set.path, test_set.path, ingest_report.path, embeddings.path, cfg)
    embeddings.metadata.update(result)
    return result["collection"]


@component
def train_classifier(
    train_set: Input[Dataset],
    embeddings: Input[Dataset],
    ingest_report: Input[Artifact],
    collection: str,
    embedding_model: str,
    embedding_precision: str,
    embedding_max_tokens: int,
    batch_size: int,
    seed: int,
    target_precision: float,
    tuning_trials: int,
    model: Output[Model],
    label_issues: Output[Dataset],
):
    """Trains a calibrated classifier per labelled target (category, and priority when labelled).

    Args:
        train_set: Training split.
        embeddings: Vectors of both splits.
        ingest_report: Ingest's report (holds the column mapping).
        collection: ChromaDB collection of the training tickets (stored in the model).
        embedding_model: The embedding model used (stored in the model; empty means the bundled one).
        embedding_precision: The encoder's precision (stored in the model, which predicts with the same encoder).
        embedding_max_tokens: The encoder's token limit (stored in the model likewise).
        batch_size: Tickets encoded per batch at prediction time.
        seed: Seed of the hyperparameter search, the folds and the models.
        target_precision: Precision, 0–1, each class's tickets above its review threshold reach on out-of-fold
            predictions (the thresholds travel with the model).
        tuning_trials: Meta-model configurations the seeded tuner tries per target, the configured one included;
            1 means no search.
        model: The fitted `TicketModel` (joblib), predicting from raw text.
        label_issues: Training tickets whose label the model confidently disputes out of fold, per target (CSV).
    """
    import logging

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.components.train import train_from_files

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TicketflowConfig.from_env(
        embedding_model=embedding_model,
        embedding_precision=embedding_precision,
        embedding_max_tokens=embedding_max_tokens,
        embed_batch_size=batch_size,
        seed=seed,
        target_precision=target_precision,
        tuning_trials=tuning_trials,
    )
    info = train_from_files(
        train_set.path, embeddings.path, ingest_report.path, collection, cfg, model.path, label_issues.path
    )
    model.metadata.update(info)


@component
def evaluate_classifier(
    model: Input[Model],
    test_set: Input[Dataset],
    embeddings: Input[Dataset],
    target_precision: float,
    metrics: Output[Metrics],
    category_metrics: Output[ClassificationMetrics],
    priority_metrics: Output[ClassificationMetrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
    label_issues: Input[Dataset],
    mask_personal_data: bool = True,
):
    """Scores the model on the test split: metrics, confusion matrices, calibration, routing under its thresholds.

    Args:
        model: The trained model, with the per-class review thresholds chosen in training.
        test_set: Test split.
        embeddings: Vectors of both splits.
        target_precision: Precision the model's review thresholds were chosen to reach, 0–1; the report compares
            the test split's routed precision with it.
        metrics: Per target: accuracy, macro-F1, calibration error, routed precision and coverage under the
            model's thresholds, and the lowest routed precision of a class.
        category_metrics: Confusion matrix of the category.
        priority_metrics: Confusion matrix of the priority (empty when the data has no priority).
        report: HTML report: routing per class with precision-coverage curves, reliability diagrams, per-class
            scores and confusion matrices.
        evaluation: The evaluation as JSON, for the register step.
        label_issues: The train step's label issues: the report lists each target's most disputed training tickets.
        mask_personal_data: Mask e-mail addresses and phone numbers in the test tickets the report quotes.
    """
    import logging

    from ticketflow.components.evaluate import evaluate_from_files

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = evaluate_from_files(
        model.path,
        test_set.path,
        embeddings.path,
        target_precision,
        report.path,
        evaluation.path,
        mask_personal_data=mask_personal_data,
        label_issues_path=label_issues.path,
    )
    for name, value in result.flat_metrics().items():
        metrics.log_metric(name, value)
    boards = dict(zip(result.targets, (category_metrics, priority_metrics), strict=False))
    for target, board in boards.items():
        t = result.targets[target]
        board.log_confusion_matrix(t.classes, t.confusion)
        board.metadata["target"] = target
    if len(boards) < 2:
        priority_metrics.metadata["note"] = "the data has no priority label"


@component
def register_classifier(
    model: Input[Model],
    evaluation: Input[Artifact],
    train_set: Input[Dataset],
    test_set: Input[Dataset],
    embeddings: Input[Dataset],
    ingest_report: Input[Artifact],
    rejected_rows: Input[Dataset],
    report: Input[HTML],
    registered_model_name: str,
    mlflow_tracking_uri: str,
    vector_store_uri: str,
    target_precision: float,
    label_issues: Input[Dataset],
) -> str:
    """Logs the run and model to MLflow and moves `champion` only to a better model (quality gate).

    Args:
        model: The trained model.
        evaluation: Its test-set evaluation.
        train_set: Training split (logged as the reference snapshot for drift checks).
        test_set: Test split (the champion is scored on it too).
        embeddings: Vectors of both splits (the champion is scored on the test ones when it uses the same model).
        ingest_report: Ingest's report (row counts).
        rejected_rows: Rows kept aside by ingest (logged with the run).
        report: The HTML evaluation report.
        registered_model_name: MLflow registered model name (also the KServe model name).
        mlflow_tracking_uri: MLflow tracking URI; empty means MLFLOW_TRACKING_URI or the embedded sqlite file.
        vector_store_uri: ChromaDB folder or http://host:port; empty means the configured default (used only
            when the champion embeds with another model).
        target_precision: Precision the review thresholds were chosen to reach (the champion's report compares to it).
        label_issues: The train step's label issues (logged with the run, with a count per target).

    Returns:
        JSON summary: rows, metrics, MLflow run and version, and the gate's decision.
    """
    import json
    import logging

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.components.register import register_from_files

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TicketflowConfig.from_env(
        registered_model_name=registered_model_name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        vector_store_uri=vector_store_uri,
        target_precision=target_precision,
    )
    summary = register_from_files(
        model.path,
        evaluation.path,
        train_set.path,
        test_set.path,
        embeddings.path,
        ingest_report.path,
        rejected_rows.path,
        report.path,
        cfg,
        label_issues_path=label_issues.path,
    )
    summary["report_html"] = report.uri
    return json.dumps(summary)
