"""Every Prometheus metric object ticketflow creates, each by one literal `Counter`/`Gauge`/`Histogram` call.

The predictor's metrics live on prometheus_client's default registry, which KServe's `/metrics` serves beside
its own latency histograms. The predictor, the server and the drift check import these objects; nothing else
creates a metric. `metrics_catalog.py` lists the names the alert rules and the dashboard may use, and a test
checks the two agree.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# The predictor (serving/predictor.py).
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

# The server's request accounting (serving/accounting.py).
REJECTED = Counter("ticketflow_requests_rejected_total", "Requests answered with a 4xx, by reason.", ["reason"])
FAILED = Counter("ticketflow_requests_failed_total", "Requests answered with a 5xx, by status code.", ["status"])
