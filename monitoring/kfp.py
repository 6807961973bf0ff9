"""Thin KFP v2 wrappers of the drift steps: check for drift, read the verdict, assemble data, count retraining runs.

The drift pipeline (`ticketflow.pipelines.drift`) chains them and, on drift, runs the training pipeline on
the assembled data, with `count_retrain_run` as the exit task of those retraining steps. As with the training
steps' wrappers (`ticketflow.components.kfp`, whose `component` decorator and base image these share), each
body imports its logic because a lightweight component ships only its function's source. (No
`from __future__ import annotations` here: KFP reads the annotations at decoration time.)
"""

from kfp.dsl import HTML, Artifact, Metrics, Output, PipelineTaskFinalStatus

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
    report: Output[HTML],
    summary: Output[Artifact],
    drift_metrics: Output[Metrics],
) -> str:
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
        report: HTML drift report (summary, per-queue attribution, Evidently's report).
        summary: The verdict as JSON.
        drift_metrics: Per-signal scores and the verdict.

    Returns:
        The verdict as JSON: drift_detected, per-signal scores and thresholds, per-queue attribution, window.
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
    cfg = TicketflowConfig.from_env()
    result, page = run_drift_check(cfg, window_hours, window_records, thresholds)
    with open(report.path, "w", encoding="utf-8") as f:
        f.write(page)
    text = json.dumps(result.to_dict())
    with open(summary.path, "w") as f:
        f.write(text)
    drift_metrics.log_metric("drift_detected", int(result.drift_detected))
    for signal, values in result.scores.items():
        drift_metrics.log_metric(f"{signal}_score", float(values["score"]))
    export_drift_metrics(result, cfg.home, pushgateway)
    return text


@component
def read_drift_verdict(summary_json: str) -> bool:
    """Reads the verdict out of the drift check's summary (the retraining branch's condition).

    Args:
        summary_json: The drift check's JSON summary.

    Returns:
        Whether drift was detected.
    """
    import json

    return bool(json.loads(summary_json)["drift_detected"])


@component
def assemble_retraining_data(data_dir: str) -> str:
    """Writes the retraining data: the champion's training data plus the tickets agents corrected.

    Args:
        data_dir: Folder (shared with the training steps) to write the data into; empty means the state folder.

    Returns:
        Path of the Parquet file the nested training pipeline reads.
    """
    import logging
    import time
    from pathlib import Path

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.monitoring.retraining import assemble_retraining_data as assemble

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TicketflowConfig.from_env()
    folder = Path(data_dir or Path(cfg.home) / "retraining")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"retraining-{time.strftime('%Y%m%d-%H%M%S')}.parquet"
    assemble(cfg, str(path))
    return str(path)


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
