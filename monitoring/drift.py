"""Drift check: live traffic (the prediction log) against the champion's training reference, with Evidently.

Signals, each a score beside a threshold:
- `descriptors`: drift of text descriptors (length, non-letter share, out-of-vocabulary share against the
  reference vocabulary), Evidently `ValueDrift` (Wasserstein distance, normed); the score is the largest.
- `prediction`: drift of the predicted category mix, Evidently `ValueDrift` (Jensen-Shannon distance).
- `embedding`: distance between mean ticket embeddings, Evidently's `DistanceDriftMethod`; its threshold is
  the bootstrap quantile of the same distance between reference resamples (a statistical test, so the
  threshold adapts to window size).
- `confidence`: drop of the mean top-label confidence, reference minus window.
Drift is then attributed per predicted queue: each queue's share of the window and of the reference, and
whether that queue's tickets drifted (the embedding test on that queue's tickets alone).

Evidently renders the HTML report for the descriptors, predictions and confidences. The embedding
columns are kept out of the report itself: with 384 columns, Evidently's generic column statistics take
about a minute for 10k × 10k rows, while the drift method itself takes milliseconds.
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

log = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W\d_]+")
_NON_LETTER = re.compile(r"[^\W_]")  # counts letters and digits; the share below is 1 - letters / characters
DESCRIPTORS = ("text_length", "non_letter_share", "oov_share")


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


def vocabulary(texts: pd.Series) -> frozenset[str]:
    """Lower-cased words of the texts."""
    words: set[str] = set()
    for text in texts:
        words.update(w.lower() for w in _WORD.findall(text))
    return frozenset(words)


def text_descriptors(texts: pd.Series, vocab: frozenset[str]) -> pd.DataFrame:
    """Length, non-letter share and out-of-vocabulary share of each text.

    Args:
        texts: Ticket texts.
        vocab: Known words (the reference's); words outside it count as out of vocabulary.

    Returns:
        One row per text with the columns of `DESCRIPTORS`.
    """
    rows = []
    for text in texts:
        words = [w.lower() for w in _WORD.findall(text)]
        letters = sum(ch.isalpha() for ch in text)
        rows.append(
            (
                float(len(text)),
                1.0 - letters / max(len(text), 1),
                sum(w not in vocab for w in words) / max(len(words), 1),
            )
        )
    return pd.DataFrame(rows, columns=list(DESCRIPTORS), index=texts.index)


def _wasserstein_normed(current: np.ndarray, reference: np.ndarray) -> float:
    """Evidently's "wasserstein" statistic: Wasserstein distance divided by the reference's spread."""
    from scipy.stats import wasserstein_distance

    spread = float(np.std(reference)) or 1e-9
    return float(wasserstein_distance(reference, current) / spread)


def _jensen_shannon(current: np.ndarray, reference: np.ndarray) -> float:
    """Evidently's "jensenshannon" statistic on category frequencies."""
    from scipy.spatial.distance import jensenshannon

    categories = np.unique(np.concatenate([reference, current]))
    p = np.array([(reference == c).mean() for c in categories])
    q = np.array([(current == c).mean() for c in categories])
    return float(jensenshannon(p, q))


def _null_quantile(statistic, reference: np.ndarray, size: int, quantile: float, rounds: int = 300) -> float:
    """The statistic's quantile between two disjoint parts of the reference, one of the window's size.

    Drawing the window from one half and comparing it with the other keeps the two independent, as a real
    window is; the half-size reference makes the threshold slightly conservative (fewer false alarms).
    """
    rng = np.random.default_rng(0)
    values = []
    for _ in range(rounds):
        order = rng.permutation(len(reference))
        half = len(reference) // 2
        window, rest = reference[order[:half]], reference[order[half:]]
        picked = rng.choice(len(window), size, replace=size > len(window))
        values.append(statistic(window[picked], rest))
    return float(np.quantile(values, quantile))


def embedding_drift(current: np.ndarray, reference: np.ndarray, quantile: float) -> tuple[float, float, bool]:
    """Evidently's distance method with a bootstrap threshold.

    Returns:
        The distance between mean embeddings, the bootstrap threshold and whether it was exceeded.
    """
    from evidently.legacy.metrics.data_drift import embedding_drift_methods as methods

    method = methods.DistanceDriftMethod(dist="euclidean", bootstrap=True, quantile_probability=quantile)
    ref, cur = pd.DataFrame(reference), pd.DataFrame(current)
    score, drifted, _ = method(cur, ref)
    # Evidently returns only the verdict: recompute its bootstrap quantile to report the threshold too.
    threshold = _bootstrap_threshold(ref, cur, quantile, methods.N_BOOTSTRAP)
    return float(score), threshold, bool(drifted)


def _bootstrap_threshold(ref: pd.DataFrame, cur: pd.DataFrame, quantile: float, rounds: int) -> float:
    n_ref, n_cur = len(ref), len(cur)
    b_ref = int(n_ref**2 / (n_ref + n_cur))
    b_cur = int(n_cur * n_ref / (n_ref + n_cur))
    values = ref.to_numpy()
    distances = []
    for i in range(rounds):
        rng = np.random.RandomState(i)  # Evidently seeds each round the same way
        a = values[rng.choice(n_ref, b_ref)].mean(0)
        b = values[rng.choice(n_ref, b_cur)].mean(0)
        distances.append(float(np.linalg.norm(a - b)))
    return float(np.percentile(distances, 100 * quantile))


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
            _null_quantile(_wasserstein_normed, ref[c].to_numpy(float), len(cur), thresholds.null_quantile),
        )
        for c in DESCRIPTORS
    }
    prediction_limit = max(
        thresholds.prediction,
        _null_quantile(_jensen_shannon, ref["predicted"].to_numpy(), len(cur), thresholds.null_quantile),
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


# ---- the drift step on the configured stores ------------------------------------------------------------------


@dataclass
class Champion:
    """The served model with its reference snapshot."""

    version: str
    model: object  # ticketflow.components.model.TicketModel (imported lazily: heavy)
    reference: pd.DataFrame
    run_id: str


def load_champion_reference(cfg) -> Champion:
    """The champion model and the training reference logged with it.

    Raises:
        LookupError: There is no champion yet.
    """
    import mlflow
    from mlflow import MlflowClient

    from ticketflow.components.register import load_champion

    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    champion = load_champion(client, cfg.registered_model_name, cfg.champion_alias)
    if champion is None:
        raise LookupError(f"no {cfg.champion_alias} for {cfg.registered_model_name}: train first (make run)")
    version, model = champion
    details = client.get_model_version(cfg.registered_model_name, version)
    reference = pd.read_parquet(mlflow.artifacts.download_artifacts(details.tags["reference_uri"]))
    return Champion(version, model, reference, details.run_id)


def read_window(log_uri: str, hours: float, records: int) -> pd.DataFrame:
    """The window of served tickets: the last `records` (when > 0), else the last `hours`."""
    from ticketflow.monitoring.request_log import PredictionLog

    log_ = PredictionLog(log_uri)
    try:
        if records > 0:
            return log_.read(last_n=records)
        return log_.read(since=datetime.now(UTC) - pd.Timedelta(hours=hours))
    finally:
        log_.close()


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
    from ticketflow.components.embed import VectorStore
    from ticketflow.components.prepare import TEXT
    from ticketflow.monitoring.feedback import FeedbackStore, feedback_uri

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
    result.live_accuracy = FeedbackStore(feedback_uri(cfg)).live_accuracy()
    return result, report


def export_metrics(result: DriftResult, cfg, pushgateway: str = "") -> str:
    """Publishes the check's scores as Prometheus metrics (names from `ticketflow.monitoring.metrics_catalog`).

    Args:
        result: The check's verdict.
        cfg: Configuration (home folder for the local text file).
        pushgateway: Pushgateway address (`host:port`) on a cluster; empty writes a node-exporter text file.

    Returns:
        Where the metrics went.
    """
    from pathlib import Path

    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

    from ticketflow.monitoring.metrics_catalog import DRIFT_METRICS

    registry = CollectorRegistry()
    names = set(DRIFT_METRICS)

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        if name not in names:  # the dashboard queries these names
            raise ValueError(f"{name} is not in the metrics catalog")
        return Gauge(name, doc, labels, registry=registry)

    gauge("ticketflow_drift_detected", "1 when the last check found drift.").set(int(result.drift_detected))
    gauge("ticketflow_drift_window_tickets", "Tickets in the last check's window.").set(result.window.get("tickets", 0))
    gauge("ticketflow_drift_last_check_timestamp_seconds", "When the last drift check completed.").set(
        datetime.fromisoformat(result.checked_at).timestamp()
    )
    score = gauge("ticketflow_drift_score", "Drift score per signal.", ("signal",))
    threshold = gauge("ticketflow_drift_threshold", "Drift threshold per signal.", ("signal",))
    for signal, values in result.scores.items():
        score.labels(signal=signal).set(float(values["score"]))
        threshold.labels(signal=signal).set(float(values["threshold"]))
    share = gauge("ticketflow_drift_queue_share", "Share of the window per predicted queue.", ("queue",))
    drifted = gauge("ticketflow_drift_queue_drifted", "1 when a queue's tickets drifted.", ("queue",))
    for queue in result.queues:
        share.labels(queue=str(queue["queue"])).set(float(queue["share"]))
        drifted.labels(queue=str(queue["queue"])).set(int(bool(queue["drifted"])))
    accuracy = gauge("ticketflow_live_accuracy", "Accuracy on tickets corrected by agents.", ("target",))
    for target, values in result.live_accuracy.items():
        accuracy.labels(target=target).set(float(values["accuracy"]))
    if pushgateway:
        push_to_gateway(pushgateway, job="ticketflow-drift", registry=registry)
        return f"pushgateway {pushgateway}"
    path = Path(cfg.home) / "metrics" / "drift.prom"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return str(path)


def assemble_retraining_data(cfg, out_path: str) -> dict[str, object]:
    """Training data for a retrain: the champion's data (train and test) plus tickets agents corrected.

    A corrected ticket missing a correction for some target takes the served prediction for it (recorded
    with the correction), so a category-only correction still teaches the category.

    Args:
        cfg: Configuration.
        out_path: Parquet file to write.

    Returns:
        Row counts: reference, corrected, total.
    """
    import mlflow
    from mlflow import MlflowClient

    from ticketflow.monitoring.feedback import FeedbackStore, feedback_uri

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
    store = FeedbackStore(feedback_uri(cfg))
    corrected = store.labelled_tickets() if store.labelled_ticket_ids() else pd.DataFrame(columns=["ticket_id"])
    from ticketflow.monitoring.request_log import PredictionLog

    served = PredictionLog(cfg.prediction_log)
    for target in targets:
        if target not in corrected.columns:
            corrected[target] = np.nan
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
