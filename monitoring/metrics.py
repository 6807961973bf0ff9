"""Every Prometheus metric object ticketflow creates, each by one literal `Counter`/`Gauge`/`Histogram` call.

These objects are the catalog: the alert rules (monitoring/prometheus/alerts.yml) and the dashboard
(monitoring/grafana/dashboards/) may name only metrics defined here or KServe's own, and
tests/integration/monitoring/test_observability.py and test_metrics.py check exactly that against the objects and
against what a live predictor and the drift check export.

Three registries, by who exports them:
- prometheus_client's default registry: the predictor's and the server's metrics. KServe's `/metrics`
  serves it, beside KServe's latency histograms (`request_{preprocess,predict,postprocess,explain}_seconds`,
  labelled `model_name`, defined in `kserve/metrics.py`).
- `DRIFT_REGISTRY`: what a drift check publishes, Pushgateway job `ticketflow-drift`.
- `RETRAIN_REGISTRY`: the retraining counter, Pushgateway job `ticketflow-retrain`.
The drift check and retraining are batch jobs: they push to a Pushgateway, and without one write a text file
under `$TICKETFLOW_HOME/metrics/`. Each has its own job (its own group on the Pushgateway) because a push
replaces its whole group: a drift check's push must not wipe the retraining counter.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

# ---- the predictor (serving/predictor.py), on the default registry ----------------------------------------------
PREDICTIONS = Counter(
    "ticketflow_predictions_total", "Tickets answered, by target and predicted label.", ["model", "target", "label"]
)
CONFIDENCE = Histogram(
    "ticketflow_prediction_confidence",
    "Top-label confidence of answered tickets.",
    ["model", "target"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
)
TICKETS = Counter("ticketflow_tickets_total", "Tickets answered.", ["model"])
NEEDS_REVIEW = Counter("ticketflow_needs_review_total", "Answered tickets flagged for human review.", ["model"])
MODEL_INFO = Gauge("ticketflow_model_info", "The model version being served (value 1).", ["model", "version"])
RELOADS = Counter("ticketflow_model_reloads_total", "Attempts to load a new champion, by result.", ["result"])
READY = Gauge("ticketflow_predictor_ready", "1 when the predictor has a model loaded and answers, else 0.")
NOT_READY_REASON = Gauge(
    "ticketflow_predictor_not_ready",
    "1 for the reason the predictor cannot load a model yet (e.g. no_champion, mlflow_unreachable), else 0.",
    ["reason"],
)
NOT_READY_REASONS = (
    "no_champion",
    "no_vectors",
    "mlflow_unreachable",
    "chroma_unreachable",
    "database_unreachable",
    "load_error",
)

# ---- the prediction log (monitoring/request_log.py), on the default registry: the predictor writes it -----------
LOG_WRITTEN = Counter("ticketflow_prediction_log_written_total", "Answered tickets written to the prediction log.")
LOG_DROPPED = Counter(
    "ticketflow_prediction_log_dropped_total",
    "Answered tickets never written to the prediction log: the buffer was full while the database was "
    "unreachable, or they were still buffered when the process stopped.",
)
LOG_BUFFERED = Gauge("ticketflow_prediction_log_buffered", "Answered tickets waiting to be written to the log.")
LOG_WRITE_FAILURES = Counter(
    "ticketflow_prediction_log_write_failures_total", "Batch writes to the prediction log that failed (then retried)."
)

# ---- the server's request accounting (serving/accounting.py), on the default registry ---------------------------
REJECTED = Counter("ticketflow_requests_rejected_total", "Requests answered with a 4xx, by reason.", ["reason"])
FAILED = Counter("ticketflow_requests_failed_total", "Requests answered with a 5xx, by status code.", ["status"])

# ---- the drift check (monitoring/drift_check.py) ------------------------------------------------------------------
DRIFT_REGISTRY = CollectorRegistry()
DRIFT_DETECTED = Gauge(
    "ticketflow_drift_detected", "1 when the last drift check found drift, else 0.", registry=DRIFT_REGISTRY
)
DRIFT_SCORE = Gauge("ticketflow_drift_score", "Drift score per signal.", ["signal"], registry=DRIFT_REGISTRY)
DRIFT_THRESHOLD = Gauge(
    "ticketflow_drift_threshold", "Drift threshold per signal.", ["signal"], registry=DRIFT_REGISTRY
)
DRIFT_QUEUE_SHARE = Gauge(
    "ticketflow_drift_queue_share", "Share of the window per predicted queue, 0-1.", ["queue"], registry=DRIFT_REGISTRY
)
DRIFT_QUEUE_DRIFTED = Gauge(
    "ticketflow_drift_queue_drifted", "1 when a queue's tickets drifted, else 0.", ["queue"], registry=DRIFT_REGISTRY
)
DRIFT_WINDOW_TICKETS = Gauge(
    "ticketflow_drift_window_tickets", "Tickets in the last drift check's window.", registry=DRIFT_REGISTRY
)
DRIFT_LAST_CHECK = Gauge(
    "ticketflow_drift_last_check_timestamp_seconds", "When the last drift check completed.", registry=DRIFT_REGISTRY
)
LIVE_ACCURACY = Gauge(
    "ticketflow_live_accuracy", "Accuracy on tickets corrected by agents, 0-1.", ["target"], registry=DRIFT_REGISTRY
)

# ---- retraining (monitoring/retraining.py; the drift pipeline's exit task) ----------------------------------------
RETRAIN_REGISTRY = CollectorRegistry()
RETRAIN_RUNS = Counter(
    "ticketflow_retrain_runs_total",
    "Retraining runs, by result: succeeded (trained and gated) or failed.",
    ["result"],
    registry=RETRAIN_REGISTRY,
)
RETRAIN_RESULTS = ("succeeded", "failed")


@dataclass(frozen=True)
class PushGroup:
    """A registry that a batch job publishes, with where it goes.

    Attributes:
        job: The Pushgateway job (the group's key; Prometheus keeps it as the `job` label, honor_labels).
        registry: The metrics pushed.
        textfile: The file name under `$TICKETFLOW_HOME/metrics/` used when there is no Pushgateway.
    """

    job: str
    registry: CollectorRegistry
    textfile: str


DRIFT_PUSH = PushGroup("ticketflow-drift", DRIFT_REGISTRY, "drift.prom")
RETRAIN_PUSH = PushGroup("ticketflow-retrain", RETRAIN_REGISTRY, "retrain.prom")


def textfile_path(group: PushGroup, home: str | os.PathLike) -> Path:
    """The text file a group is written to when there is no Pushgateway.

    Args:
        group: The pushed group.
        home: The state folder ($TICKETFLOW_HOME).

    Returns:
        `<home>/metrics/<group.textfile>`.
    """
    return Path(home) / "metrics" / group.textfile


def _gateway_url(pushgateway: str) -> str:
    # push_to_gateway accepts "host:port" as well as a URL; reading back needs the URL.
    url = pushgateway if "://" in pushgateway else f"http://{pushgateway}"
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise ValueError(f"Pushgateway address {pushgateway!r}: only http and https are supported")
    return url.rstrip("/")


def publish(group: PushGroup, home: str | os.PathLike, pushgateway: str = "") -> str:
    """Pushes a group's registry to the Pushgateway, or writes it to its text file when there is none.

    A push replaces the job's whole group on the Pushgateway (HTTP PUT), which is why each group has its own job.

    Args:
        group: What to publish.
        home: The state folder, for the text file.
        pushgateway: Pushgateway address (`host:port` or URL); empty writes the text file.

    Returns:
        Where the metrics went.
    """
    if pushgateway:
        push_to_gateway(pushgateway, job=group.job, registry=group.registry)
        return f"pushgateway {pushgateway} (job {group.job})"
    path = textfile_path(group, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), group.registry)
    return str(path)


def published_samples(group: PushGroup, home: str | os.PathLike, pushgateway: str = "") -> list[Sample]:
    """The samples a group last published: read back from the Pushgateway's `/metrics`, or from the text file.

    Args:
        group: The pushed group.
        home: The state folder, for the text file.
        pushgateway: Pushgateway address; empty reads the text file.

    Returns:
        The group's samples (on a Pushgateway only those of the group's job); none when nothing was published yet.

    Raises:
        OSError: The Pushgateway did not answer (an unreachable gateway would refuse the push too).
    """
    if pushgateway:
        url = f"{_gateway_url(pushgateway)}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:  # nosec B310  # http(s) only, checked above
            text = response.read().decode("utf-8")
    else:
        path = textfile_path(group, home)
        if not path.is_file():
            return []
        text = path.read_text(encoding="utf-8")
    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    if pushgateway:
        samples = [sample for sample in samples if sample.labels.get("job") == group.job]
    return samples


def counter_series(counter: Counter) -> str:
    """The series name a counter's values go by (`x_total` for a counter created as `x_total` or `x`).

    Args:
        counter: A counter object of this module.

    Returns:
        The name PromQL selects its values by.
    """
    [family] = counter.describe()
    return f"{family.name}_total"
