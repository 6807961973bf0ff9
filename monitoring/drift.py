"""The drift check on in-memory frames: a window of traffic against the reference, and its HTML report.

Signals, each a score beside a threshold (the statistics are in `ticketflow.monitoring.statistics`):
- `descriptors`: drift of text descriptors (length, non-letter share, out-of-vocabulary share against the
  reference vocabulary), Evidently `ValueDrift` (Wasserstein distance, normed); the score is the largest.
- `prediction`: drift of the predicted category mix, Evidently `ValueDrift` (Jensen-Shannon distance).
- `embedding`: distance between mean ticket embeddings; its threshold is the bootstrap quantile of the same
  distance between reference resamples (a statistical test, so the threshold adapts to window size).
- `confidence`: drop of the mean top-label confidence, reference minus window.
Drift is then attributed per predicted queue: each queue's share of the window and of the reference, and
whether that queue's tickets drifted (the embedding test on that queue's tickets alone).

Evidently renders the HTML report for the descriptors, predictions and confidences. The embedding
columns are kept out of the report itself: with 384 columns, Evidently's generic column statistics take
about a minute for 10k × 10k rows, while the embedding test itself takes milliseconds.

The drift step on the configured stores (champion, prediction log, metrics) is `ticketflow.monitoring.drift_check`.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ticketflow.monitoring.statistics import (
    DESCRIPTORS,
    embedding_drift,
    jensen_shannon,
    null_quantile,
    text_descriptors,
    vocabulary,
    wasserstein_normed,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftThresholds:
    """Thresholds of the drift signals (defaults chosen for a false-alarm rate under 1 in 20).

    Attributes:
        descriptor: Wasserstein distance (normed) above which a text descriptor drifted.
        prediction: Jensen-Shannon distance above which the predicted category mix drifted.
        embedding_quantile: Bootstrap quantile, 0–1, the embedding distance must exceed.
        confidence_drop: Drop of the mean confidence, 0–1, that counts as drift.
        min_tickets: Fewer tickets in the window give "not enough data", not a verdict.
        min_queue_tickets: Fewer tickets of one predicted queue skip that queue's embedding test.
        null_quantile: Quantile, 0–1, of resampled statistics that raises the descriptor and prediction
            thresholds for small windows (a small window differs from the reference by chance alone).
    """

    descriptor: float = 0.1
    prediction: float = 0.1
    embedding_quantile: float = 0.99
    null_quantile: float = 0.999
    confidence_drop: float = 0.1
    min_tickets: int = 100
    min_queue_tickets: int = 20


@dataclass
class DriftResult:
    """A drift check's verdict, per-signal scores, per-queue attribution and window facts."""

    drift_detected: bool
    enough_data: bool
    reason: str
    scores: dict[str, dict[str, float | bool]] = field(default_factory=dict)
    queues: list[dict[str, object]] = field(default_factory=list)
    window: dict[str, object] = field(default_factory=dict)
    target: str = ""
    model_version: str = ""
    live_accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    checked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, object]:
        """The summary as plain data."""
        return asdict(self)


def _evidently_report(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    columns: list[str],
    categorical: list[str],
    thresholds: DriftThresholds,
):
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    numerical = [c for c in columns if c not in categorical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    metrics = [ValueDrift(column=c, method="wasserstein", threshold=thresholds.descriptor) for c in numerical]
    metrics += [ValueDrift(column=c, method="jensenshannon", threshold=thresholds.prediction) for c in categorical]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Keyword arguments: Evidently's order is current first, and a swap would invert every verdict.
        return Report(metrics, include_tests=True).run(
            current_data=Dataset.from_pandas(current[columns], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
        )


def _value_drift_scores(snapshot) -> dict[str, float]:
    scores = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            scores[config["column"]] = float(metric["value"])
    return scores


def check_drift(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    current_vectors: np.ndarray,
    reference_vectors: np.ndarray,
    target: str,
    thresholds: DriftThresholds | None = None,
) -> tuple[DriftResult, str]:
    """Compares a window of traffic with the reference.

    Args:
        current: The window: `text`, `predicted` (the target's predicted label) and `confidence`.
        reference: The reference snapshot with the same columns (predictions of the same model).
        current_vectors: Embeddings of `current`, row-aligned.
        reference_vectors: Embeddings of `reference`, row-aligned.
        target: The label column whose predictions are compared (the category).
        thresholds: Signal thresholds.

    Returns:
        The verdict and the HTML report.
    """
    thresholds = thresholds or DriftThresholds()
    started = time.perf_counter()
    window = {"tickets": len(current), "reference_tickets": len(reference)}
    if len(current) < thresholds.min_tickets:
        reason = f"not enough data: {len(current)} tickets in the window, at least {thresholds.min_tickets} needed"
        result = DriftResult(False, False, reason, window=window, target=target)
        return result, _summary_html(result, "")
    # Vocabulary from half of the reference; the other half gives the reference's own OOV distribution.
    half = np.arange(len(reference)) % 2 == 0
    vocab = vocabulary(reference.loc[half, "text"])
    ref = pd.concat([reference[["predicted", "confidence"]], text_descriptors(reference["text"], vocab)], axis=1)
    ref = ref[~half].reset_index(drop=True)
    cur = pd.concat(
        [
            current[["predicted", "confidence"]].reset_index(drop=True),
            text_descriptors(current["text"].reset_index(drop=True), vocab),
        ],
        axis=1,
    )
    cur["predicted"], ref["predicted"] = cur["predicted"].astype(str), ref["predicted"].astype(str)
    snapshot = _evidently_report(cur, ref, [*DESCRIPTORS, "confidence", "predicted"], ["predicted"], thresholds)
    values = _value_drift_scores(snapshot)
    # Fixed distances suit large windows only: small windows differ by chance. Calibrate on the reference.
    limits = {
        c: max(
            thresholds.descriptor,
            null_quantile(wasserstein_normed, ref[c].to_numpy(float), len(cur), thresholds.null_quantile),
        )
        for c in DESCRIPTORS
    }
    prediction_limit = max(
        thresholds.prediction,
        null_quantile(jensen_shannon, ref["predicted"].to_numpy(), len(cur), thresholds.null_quantile),
    )
    excess = {c: values[c] / limits[c] for c in DESCRIPTORS}
    worst = max(excess, key=excess.get)
    descriptor_score = values[worst]
    emb_score, emb_threshold, emb_drifted = embedding_drift(
        current_vectors, reference_vectors, thresholds.embedding_quantile
    )
    confidence_drop = float(reference["confidence"].mean() - current["confidence"].mean())
    scores = {
        "descriptors": {
            "score": descriptor_score,
            "threshold": limits[worst],
            "drifted": excess[worst] > 1,
            **{f"{c}_score": values[c] for c in DESCRIPTORS},
            **{f"{c}_threshold": limits[c] for c in DESCRIPTORS},
        },
        "prediction": {
            "score": values["predicted"],
            "threshold": prediction_limit,
            "drifted": values["predicted"] > prediction_limit,
        },
        "embedding": {"score": emb_score, "threshold": emb_threshold, "drifted": emb_drifted},
        "confidence": {
            "score": confidence_drop,
            "threshold": thresholds.confidence_drop,
            "drifted": confidence_drop > thresholds.confidence_drop,
        },
    }
    queues = attribute_queues(current, reference, current_vectors, reference_vectors, thresholds)
    drifted = [name for name, s in scores.items() if s["drifted"]]
    reason = f"drift in {', '.join(drifted)}" if drifted else "no signal over its threshold"
    changed = [q["queue"] for q in queues if q["drifted"]]
    if changed:
        reason += f"; queues whose tickets changed: {', '.join(changed)}"
    window["seconds"] = round(time.perf_counter() - started, 3)
    result = DriftResult(bool(drifted), True, reason, scores=scores, queues=queues, window=window, target=target)
    log.info("drift: %s (%d current vs %d reference tickets)", reason, len(current), len(reference))
    return result, _summary_html(result, snapshot.get_html_str(as_iframe=False))


def attribute_queues(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    current_vectors: np.ndarray,
    reference_vectors: np.ndarray,
    thresholds: DriftThresholds,
) -> list[dict[str, object]]:
    """Per predicted queue: share of the window and of the reference, and whether its tickets drifted.

    Returns:
        One entry per queue seen in either, most changed share first.
    """
    cur_pred = current["predicted"].astype(str).to_numpy()
    ref_pred = reference["predicted"].astype(str).to_numpy()
    out = []
    for queue in sorted(set(cur_pred) | set(ref_pred)):
        in_cur, in_ref = cur_pred == queue, ref_pred == queue
        entry: dict[str, object] = {
            "queue": queue,
            "tickets": int(in_cur.sum()),
            "share": float(in_cur.mean()),
            "reference_share": float(in_ref.mean()),
            "score": None,
            "threshold": None,
            "drifted": False,
        }
        if in_cur.sum() >= thresholds.min_queue_tickets and in_ref.sum() >= thresholds.min_queue_tickets:
            score, threshold, drifted = embedding_drift(
                current_vectors[in_cur], reference_vectors[in_ref], thresholds.embedding_quantile
            )
            entry.update(score=score, threshold=threshold, drifted=drifted)
        out.append(entry)
    return sorted(out, key=lambda q: -abs(q["share"] - q["reference_share"]))


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _summary_html(result: DriftResult, evidently_html: str) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{s['score']:.4f}</td><td>{s['threshold']:.4f}</td>"
        f"<td>{'DRIFT' if s['drifted'] else 'ok'}</td></tr>"
        for name, s in result.scores.items()
    )
    queue_rows = "".join(
        f"<tr><td>{esc(str(q['queue']))}</td><td>{q['tickets']}</td><td>{100 * q['share']:.1f}%</td>"
        f"<td>{100 * q['reference_share']:.1f}%</td><td>{_number(q['score'])}</td>"
        f"<td>{'DRIFT' if q['drifted'] else ''}</td></tr>"
        for q in result.queues
    )
    verdict = "Drift detected" if result.drift_detected else ("No drift" if result.enough_data else "Not enough data")
    summary = (
        f"<section style='font-family:sans-serif;margin:1em'><h1>ticketflow drift check: {verdict}</h1>"
        f"<p>{esc(result.reason)}</p><p>window: {esc(json.dumps(result.window))}</p>"
        "<table border=1 cellpadding=4><tr><th>signal</th><th>score</th><th>threshold</th><th></th></tr>"
        f"{rows}</table><h2>Per predicted queue</h2><table border=1 cellpadding=4><tr><th>queue</th>"
        "<th>tickets</th><th>share</th><th>reference share</th><th>embedding distance</th><th></th></tr>"
        f"{queue_rows}</table></section>"
    )
    if "<body" in evidently_html:
        return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + summary, evidently_html, count=1)
    return f"<!doctype html><html><head><meta charset='utf-8'></head><body>{summary}{evidently_html}</body></html>"
