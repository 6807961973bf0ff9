"""Thin KFP v2 wrappers of the drift steps: check for drift, assemble the retraining data, count retraining runs.

The drift pipeline (`ticketflow.pipelines.drift`) branches on the check's typed `bool` output and, on drift,
runs the training steps (`ticketflow.pipelines.training.training_from_dataset`) on the assembled data, which
goes from step to step as a `Dataset` artifact, never as a path: each step is a pod of its own, and KFP moves
artifacts between them through its object store. `count_retrain_run` is the exit task of those retraining steps.
As with the training steps' wrappers (`ticketflow.components.kfp`, whose `component` decorator and base image
these share), each body imports its logic because a lightweight component ships only its function's source. (No
`from __future__ import annotations` here: KFP reads the annotations at decoration time.)
"""

from kfp.dsl import HTML, Dataset, Metrics, Output, OutputPath, PipelineTaskFinalStatus

from ticketflow.components.kfp import component


@component
def check_for_drift(
    window_hours: float,
    window_records: int,
    min_tickets: int,
    descriptor_threshold: float,
    prediction_threshold: float,
    embedding_quantile: float,
    confidence_drop: float,
    pushgateway: str,
    mlflow_tracking_uri: str,
    vector_store_uri: str,
    report: Output[HTML],
    drift_metrics: Output[Metrics],
    summary: OutputPath(str),
) -> bool:
    """Compares a window of served tickets with the champion's training reference (Evidently).

    Args:
        window_hours: Window of the prediction log to check, in hours (when window_records is 0).
        window_records: Check the last N served tickets instead of a time window; 0 uses window_hours.
        min_tickets: Fewer tickets in the window give "not enough data" instead of a verdict.
        descriptor_threshold: Wasserstein distance (normed) above which a text descriptor drifted.
        prediction_threshold: Jensen-Shannon distance above which the predicted category mix drifted.
        embedding_quantile: Bootstrap quantile, 0–1, the embedding distance must exceed.
        confidence_drop: Drop of the mean confidence, 0–1, that counts as drift.
        pushgateway: Prometheus Pushgateway host:port; empty writes a text file under the state folder.
        mlflow_tracking_uri: MLflow tracking URI (the champion and its reference); empty means the configured default.
        vector_store_uri: ChromaDB folder or http://host:port (cached vectors); empty means the configured default.
        report: HTML drift report (summary, per-queue attribution, Evidently's report).
        drift_metrics: Per-signal scores and the verdict.
        summary: The verdict as JSON: drift_detected, per-signal scores and thresholds, per-queue attribution,
            window, live accuracy.

    Returns:
        Whether drift was detected (the condition of the retraining branch).
    """
    import json
    import logging

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.monitoring.drift import DriftThresholds
    from ticketflow.monitoring.drift_check import export_drift_metrics, run_drift_check

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    thresholds = DriftThresholds(
        descriptor=descriptor_threshold,
        prediction=prediction_threshold,
        embedding_quantile=embedding_quantile,
        confidence_drop=confidence_drop,
        min_tickets=min_tickets,
    )
    cfg = TicketflowConfig.from_env(mlflow_tracking_uri=mlflow_tracking_uri, vector_store_uri=vector_store_uri)
    result, page = run_drift_check(cfg, window_hours, window_records, thresholds)
    with open(report.path, "w", encoding="utf-8") as f:
        f.write(page)
    with open(summary, "w", encoding="utf-8") as f:
        f.write(json.dumps(result.to_dict()))
    drift_metrics.log_metric("drift_detected", int(result.drift_detected))
    for signal, values in result.scores.items():
        drift_metrics.log_metric(f"{signal}_score", float(values["score"]))
    export_drift_metrics(result, cfg.home, pushgateway)
    return bool(result.drift_detected)


@component
def assemble_retraining_data(mlflow_tracking_uri: str, retraining_data: Output[Dataset]):
    """Writes the retraining data: the champion's training data plus the tickets agents corrected.

    Args:
        mlflow_tracking_uri: MLflow tracking URI (the champion and its data); empty means the configured default.
        retraining_data: The tickets to retrain on (Parquet, named in its `format` metadata: the file has no
            suffix), with the row counts in its metadata.
    """
    import logging

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.components.ingest import FILE_FORMAT_KEY
    from ticketflow.monitoring.retraining import assemble_retraining_data as assemble

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    counts = assemble(TicketflowConfig.from_env(mlflow_tracking_uri=mlflow_tracking_uri), retraining_data.path)
    retraining_data.metadata.update(counts)
    retraining_data.metadata[FILE_FORMAT_KEY] = "parquet"


@component
def count_retrain_run(status: PipelineTaskFinalStatus, pushgateway: str) -> str:
    """Counts a finished retraining run in ticketflow_retrain_runs_total by how it ended (the exit task).

    Args:
        status: Final status of the retraining steps, filled in by KFP.
        pushgateway: Prometheus Pushgateway host:port; empty writes a text file under the state folder.

    Returns:
        The result counted: succeeded or failed.
    """
    import logging

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.monitoring.retraining import count_retrain_run as count
    from ticketflow.monitoring.retraining import retrain_result

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    count(status.state, TicketflowConfig.from_env().home, pushgateway)
    return retrain_result(status.state)
