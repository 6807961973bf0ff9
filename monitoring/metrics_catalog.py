"""Every Prometheus metric ticketflow exports, by name, with its type and label names.

One list for the dashboard, the alert rules and their tests to agree on. Names are the ones written in
PromQL: a counter's name carries its `_total`, a histogram is listed once under its base name and queried
as `<name>_bucket`, `<name>_sum` and `<name>_count` (what `prometheus_client` exposes; it also adds
`<name>_created` to counters and histograms).

- Serving (`serving/predictor.py`, `serving/accounting.py`): the predictor's own counters, histogram and gauge.
- KServe 0.21 (`kserve/metrics.py`): latency histograms of each stage of an inference call, labelled
  `model_name`. They carry no status code, and there is no end-to-end histogram.
- Drift (`DRIFT_METRICS`): what the drift and retraining jobs push to the Pushgateway. The drift exporter
  imports this tuple so its names cannot drift from the dashboard's.
"""

from __future__ import annotations

import re

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

SERVING_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ticketflow_predictions_total": (COUNTER, ("model", "target", "label")),
    "ticketflow_prediction_confidence": (HISTOGRAM, ("model", "target")),
    "ticketflow_tickets_total": (COUNTER, ("model",)),
    "ticketflow_needs_review_total": (COUNTER, ("model",)),
    "ticketflow_requests_rejected_total": (COUNTER, ("reason",)),
    "ticketflow_model_info": (GAUGE, ("model", "version")),
    "ticketflow_model_reloads_total": (COUNTER, ("result",)),
    # 5xx answers by HTTP status. Not exported yet: the alert HighErrorRate and the dashboard already use it.
    "ticketflow_requests_failed_total": (COUNTER, ("status",)),
}

# Metrics listed above that the server does not export yet; a test fails once one is, so the entry goes.
PENDING_METRICS: frozenset[str] = frozenset()

KSERVE_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "request_preprocess_seconds": (HISTOGRAM, ("model_name",)),
    "request_predict_seconds": (HISTOGRAM, ("model_name",)),
    "request_postprocess_seconds": (HISTOGRAM, ("model_name",)),
    "request_explain_seconds": (HISTOGRAM, ("model_name",)),
}

_DRIFT: dict[str, tuple[str, tuple[str, ...]]] = {
    "ticketflow_drift_detected": (GAUGE, ()),  # 1 when the last check found drift, else 0
    "ticketflow_drift_score": (GAUGE, ("signal",)),
    "ticketflow_drift_threshold": (GAUGE, ("signal",)),
    "ticketflow_drift_queue_share": (GAUGE, ("queue",)),
    "ticketflow_drift_queue_drifted": (GAUGE, ("queue",)),  # 0/1 per queue
    "ticketflow_drift_window_tickets": (GAUGE, ()),
    "ticketflow_drift_last_check_timestamp_seconds": (GAUGE, ()),
    "ticketflow_retrain_runs_total": (COUNTER, ("result",)),  # result: promoted | rejected | failed
    "ticketflow_live_accuracy": (GAUGE, ("target",)),
}

# The names the drift exporter must export, exactly.
DRIFT_METRICS: tuple[str, ...] = tuple(_DRIFT)

_ALL = {**SERVING_METRICS, **KSERVE_METRICS, **_DRIFT}

# Metric name -> type ("counter", "gauge" or "histogram").
EXPORTED_METRICS: dict[str, str] = {name: kind for name, (kind, _) in _ALL.items()}

# Metric name -> its label names (those `prometheus_client` is given; Prometheus adds job and instance).
METRIC_LABELS: dict[str, tuple[str, ...]] = {name: labels for name, (_, labels) in _ALL.items()}

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count", "_created")


def series_names(metric: str) -> tuple[str, ...]:
    """The series names a catalog metric appears under on `/metrics`.

    Args:
        metric: A name of `EXPORTED_METRICS`.

    Returns:
        The name itself for a gauge; `x_total` and `x_created` for a counter `x_total`; the `_bucket`,
        `_sum`, `_count` and `_created` series for a histogram.

    Raises:
        KeyError: The metric is not in the catalog.
    """
    kind = EXPORTED_METRICS[metric]
    if kind == HISTOGRAM:
        return tuple(metric + suffix for suffix in _HISTOGRAM_SUFFIXES)
    if kind == COUNTER:
        return metric, re.sub(r"_total$", "_created", metric)
    return (metric,)


_SERIES_TO_METRIC = {series: metric for metric in EXPORTED_METRICS for series in series_names(metric)}


def metric_of_series(series: str) -> str | None:
    """The catalog metric a series name (as written in PromQL) belongs to, or None when none does.

    Args:
        series: A series name, e.g. `request_predict_seconds_bucket` or `ticketflow_tickets_total`.

    Returns:
        The catalog name (`request_predict_seconds`, `ticketflow_tickets_total`), or None.
    """
    return _SERIES_TO_METRIC.get(series)
