"""The drift step on the configured stores: champion reference vs. a window of the prediction log, then metrics.

`run_drift_check` loads the champion and its reference, reads the window of served tickets, embeds both
through the vector store's cache and runs `ticketflow.monitoring.drift.check_drift`. `export_drift_metrics`
sets the drift metrics of `ticketflow.monitoring.metrics` from the verdict and pushes them (or writes them to
`$TICKETFLOW_HOME/metrics/drift.prom` when there is no Pushgateway).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ticketflow.monitoring import metrics
from ticketflow.monitoring.drift import DriftResult, DriftThresholds, check_drift


def read_window(log_uri: str, hours: float, records: int) -> pd.DataFrame:
    """The window of served tickets: the last `records` (when > 0), else the last `hours`.

    Args:
        log_uri: The prediction log's URI.
        hours: Window length in hours, when `records` is 0.
        records: The number of most recent tickets to read; 0 reads by time.

    Returns:
        The prediction log's rows of the window.
    """
    from ticketflow.monitoring.request_log import PredictionLog

    prediction_log = PredictionLog(log_uri)
    try:
        if records > 0:
            return prediction_log.read(last_n=records)
        return prediction_log.read(since=datetime.now(UTC) - pd.Timedelta(hours=hours))
    finally:
        prediction_log.close()


def run_drift_check(
    cfg,
    window_hours: float = 24.0,
    window_records: int = 0,
    thresholds: DriftThresholds | None = None,
) -> tuple[DriftResult, str]:
    """The drift step: champion reference vs. a window of the prediction log.

    Args:
        cfg: Configuration (MLflow, vector store, prediction log).
        window_hours: Window length when `window_records` is 0.
        window_records: Use the last N served tickets instead of a time window.
        thresholds: Signal thresholds.

    Returns:
        The verdict (with live accuracy on corrected tickets) and the HTML report.
    """
    from ticketflow.components.prepare import TEXT
    from ticketflow.components.store import VectorStore
    from ticketflow.monitoring.feedback import FeedbackStore
    from ticketflow.monitoring.reference import load_champion_reference

    champion = load_champion_reference(cfg)
    model = champion.model
    target = model.mapping.category_column
    window = read_window(cfg.prediction_log, window_hours, window_records)
    store = VectorStore(cfg.vector_store)
    started = time.perf_counter()
    ref_texts = champion.reference[TEXT].tolist()
    ref_vectors = model.embed(ref_texts, store)
    ref_pred = model.predict(ref_texts, ref_vectors)[target]
    reference = pd.DataFrame({"text": ref_texts, "predicted": ref_pred.labels, "confidence": ref_pred.confidences})
    if len(window):
        cur_texts = window["text"].tolist()
        cur_vectors = model.embed(cur_texts, store)
        current = pd.DataFrame(
            {
                "text": cur_texts,
                "predicted": window[f"label_{target}"].astype(str).to_numpy(),
                "confidence": window[f"confidence_{target}"].astype(float).to_numpy(),
            }
        )
    else:
        cur_vectors = np.zeros((0, ref_vectors.shape[1]), dtype=np.float32)
        current = pd.DataFrame({"text": [], "predicted": [], "confidence": []})
    embed_seconds = time.perf_counter() - started
    result, report = check_drift(current, reference, cur_vectors, ref_vectors, target, thresholds)
    result.model_version = champion.version
    result.window.update(
        {
            "hours": window_hours if window_records <= 0 else None,
            "records": window_records or None,
            "embed_seconds": round(embed_seconds, 3),
        }
    )
    result.live_accuracy = FeedbackStore(cfg.prediction_log).live_accuracy()
    return result, report


def export_drift_metrics(result: DriftResult, home: str, pushgateway: str = "") -> str:
    """Sets the drift metrics (`ticketflow.monitoring.metrics`) from a check's verdict and publishes them.

    Labelled gauges are cleared first, so a queue or a target absent from this check does not keep the value
    an earlier check in the same process gave it.

    Args:
        result: The check's verdict.
        home: State folder; the text file goes to `<home>/metrics/drift.prom` when there is no Pushgateway.
        pushgateway: Pushgateway address (`host:port`) on a cluster; empty writes the text file.

    Returns:
        Where the metrics went.
    """
    for labelled in (
        metrics.DRIFT_SCORE,
        metrics.DRIFT_THRESHOLD,
        metrics.DRIFT_QUEUE_SHARE,
        metrics.DRIFT_QUEUE_DRIFTED,
        metrics.LIVE_ACCURACY,
    ):
        labelled.clear()
    metrics.DRIFT_DETECTED.set(int(result.drift_detected))
    metrics.DRIFT_WINDOW_TICKETS.set(int(result.window.get("tickets", 0)))
    metrics.DRIFT_LAST_CHECK.set(datetime.fromisoformat(result.checked_at).timestamp())
    for signal, values in result.scores.items():
        metrics.DRIFT_SCORE.labels(signal=signal).set(float(values["score"]))
        metrics.DRIFT_THRESHOLD.labels(signal=signal).set(float(values["threshold"]))
    for queue in result.queues:
        metrics.DRIFT_QUEUE_SHARE.labels(queue=str(queue["queue"])).set(float(queue["share"]))
        metrics.DRIFT_QUEUE_DRIFTED.labels(queue=str(queue["queue"])).set(int(bool(queue["drifted"])))
    for target, values in result.live_accuracy.items():
        metrics.LIVE_ACCURACY.labels(target=target).set(float(values["accuracy"]))
    return metrics.publish(metrics.DRIFT_PUSH, home, pushgateway)
