"""Retraining: the data a retrain learns from, and the count of retraining runs by how they ended.

The drift pipeline (`ticketflow.pipelines.drift`) retrains when a check finds drift: `assemble_retraining_data`
writes the champion's data plus the tickets agents corrected, the training pipeline trains on it behind the
quality gate, and an exit task calls `count_retrain_run` with the final state of those steps, whatever it was.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from ticketflow.monitoring import metrics

log = logging.getLogger(__name__)

# Final states of the retraining steps that count as a succeeded run. kfp.local and current KFP backends say
# SUCCEEDED; backends that read the state from ML Metadata say COMPLETE (or CACHED for a cached DAG). Anything
# else (FAILED, CANCELED, CANCELLED, a state a backend bug leaves at RUNNING) counts as failed: an alert too many
# beats a failure nobody hears of.
SUCCEEDED_STATES = frozenset({"SUCCEEDED", "COMPLETE", "CACHED"})


def assemble_retraining_data(cfg, out_path: str) -> dict[str, int]:
    """Training data for a retrain: the champion's data (train and test) plus tickets agents corrected.

    A corrected ticket replaces the row with its ticket id. When it lacks a correction for some target, it takes
    that target from its own row in the champion's data when it has one (a training ticket corrected from the
    label audit, which the prediction log never saw), else the served prediction: so a category-only correction
    still teaches the category.

    Args:
        cfg: Configuration.
        out_path: Parquet file to write.

    Returns:
        Row counts: reference, corrected, total.

    Raises:
        LookupError: There is no champion yet.
    """
    import mlflow
    from mlflow import MlflowClient

    from ticketflow.monitoring.feedback import FeedbackStore
    from ticketflow.monitoring.reference import load_champion_reference
    from ticketflow.monitoring.request_log import PredictionLog

    champion = load_champion_reference(cfg)
    targets = list(champion.model.targets)
    test_uri = f"runs:/{champion.run_id}/reference/test.parquet"
    mlflow.set_tracking_uri(cfg.tracking_uri)
    MlflowClient()  # the tracking URI is set: the next download resolves against it
    previous = pd.concat(
        [champion.reference, pd.read_parquet(mlflow.artifacts.download_artifacts(test_uri))], ignore_index=True
    )
    columns = ["ticket_id", "text", *targets, *(["resolution"] if "resolution" in previous.columns else [])]
    previous = previous[columns]
    store = FeedbackStore(cfg.prediction_log)
    corrected = store.labelled_tickets() if store.labelled_ticket_ids() else pd.DataFrame(columns=["ticket_id"])
    served = PredictionLog(cfg.prediction_log)
    # A training ticket corrected from the label audit keeps its other targets (and resolution) from its own row.
    own_rows = previous.drop_duplicates("ticket_id").set_index("ticket_id")
    for column in columns[2:]:
        if column not in corrected.columns:
            corrected[column] = np.nan
        missing = corrected[column].isna()
        corrected.loc[missing, column] = corrected.loc[missing, "ticket_id"].map(own_rows[column])
    for target in targets:
        missing = corrected[target].isna()
        corrected.loc[missing, target] = [
            ((served.get(t) or {}).get("labels") or {}).get(target) for t in corrected.loc[missing, "ticket_id"]
        ]
    served.close()
    unlabelled = corrected[targets].isna().any(axis=1)
    if unlabelled.any():
        log.warning("retraining data: %d corrected tickets left out (no label for every target)", unlabelled.sum())
    corrected = corrected.loc[~unlabelled, [c for c in columns if c in corrected.columns]]
    data = pd.concat([previous[~previous["ticket_id"].isin(corrected["ticket_id"])], corrected], ignore_index=True)
    data.to_parquet(out_path, index=False)
    counts = {"reference": len(previous), "corrected": len(corrected), "total": len(data)}
    log.info("retraining data: %s -> %s", counts, out_path)
    return counts


def retrain_result(state: str) -> str:
    """The `result` label of a retraining run that ended in `state`.

    Args:
        state: `PipelineTaskFinalStatus.state` of the retraining steps.

    Returns:
        "succeeded" for a state of `SUCCEEDED_STATES`, else "failed".
    """
    return "succeeded" if state.upper() in SUCCEEDED_STATES else "failed"


def count_retrain_run(state: str, home: str | os.PathLike, pushgateway: str = "") -> dict[str, float]:
    """Adds one run to `ticketflow_retrain_runs_total{result}` and publishes the totals.

    Each run is a fresh process whose counter starts at 0, and a push replaces the job's group on the
    Pushgateway, so pushing this process's counter alone would always say 1. Instead the totals are read back
    from where they were last published (the Pushgateway's `/metrics`, job `ticketflow-retrain`; locally
    `$TICKETFLOW_HOME/metrics/retrain.prom`), this run is added, and every result is published again, 0
    included. Prometheus then scrapes a true counter: it only grows, and it falls back to 0 only when the
    Pushgateway loses its state (a restart without persistence), which `increase()` reads as a counter reset.
    Publishing both results from the first run on means a first failure is an increase from 0; the alert
    RetrainFailed also catches a failure series that appears at 1 (after such a reset), which `increase()` cannot see.
    Read, add and push are not atomic: two retrains finishing at the same moment could lose one count. The
    drift pipeline's recurring run allows one run at a time (`max_concurrency=1`), so they do not.

    Args:
        state: Final state of the retraining steps (`PipelineTaskFinalStatus.state`); see `retrain_result`.
        home: The state folder, for the text file.
        pushgateway: Pushgateway address (`host:port` or URL); empty writes the text file.

    Returns:
        The totals published, by result.
    """
    result = retrain_result(state)
    series = metrics.counter_series(metrics.RETRAIN_RUNS)
    totals = dict.fromkeys(metrics.RETRAIN_RESULTS, 0.0)
    for sample in metrics.published_samples(metrics.RETRAIN_PUSH, home, pushgateway):
        if sample.name == series and sample.labels.get("result") in totals:
            totals[sample.labels["result"]] = sample.value
    totals[result] += 1
    metrics.RETRAIN_RUNS.clear()  # this process may have counted before: the totals replace whatever it holds
    for name, total in totals.items():
        metrics.RETRAIN_RUNS.labels(result=name).inc(total)
    where = metrics.publish(metrics.RETRAIN_PUSH, home, pushgateway)
    log.info("retraining run %s (state %s): totals %s -> %s", result, state, totals, where)
    return totals
