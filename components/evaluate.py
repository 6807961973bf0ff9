"""Evaluate: accuracy, macro-F1, per-class scores, confusion matrices, calibration and review thresholds."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ticketflow.components.model import TicketModel
from ticketflow.components.prepare import TEXT

log = logging.getLogger(__name__)


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Top-label expected calibration error with equal-width confidence bins.

    Args:
        confidences: Top-class probability per ticket, 0–1.
        correct: Whether the top class was right.
        bins: Number of bins.

    Returns:
        Sum over bins of |accuracy − mean confidence| weighted by the bin's share of tickets, 0–1.
    """
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if not len(confidences):
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidences[in_bin].mean())
    return float(error)


@dataclass
class ReviewThreshold:
    """Confidence above which predictions reach the target precision, and what they cover."""

    threshold: float
    precision: float
    coverage: float
    target_precision: float


def review_threshold(confidences: np.ndarray, correct: np.ndarray, target_precision: float) -> ReviewThreshold:
    """The lowest confidence at which the precision of the predictions at or above it reaches the target.

    Args:
        confidences: Top-class probability per test ticket.
        correct: Whether each prediction was right.
        target_precision: Precision to reach, 0–1.

    Returns:
        The threshold (above 1 when no threshold reaches the target: everything needs review), the precision
        reached and the coverage (share of tickets at or above the threshold).
    """
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    order = np.argsort(-confidences, kind="stable")
    sorted_conf, sorted_correct = confidences[order], correct[order]
    precision_at = np.cumsum(sorted_correct) / np.arange(1, len(order) + 1)
    # A threshold t keeps every ticket with confidence >= t: only the last of equal confidences is a cut.
    is_cut = np.append(sorted_conf[1:] != sorted_conf[:-1], True) if len(order) else np.array([], dtype=bool)
    ok = np.flatnonzero(is_cut & (precision_at >= target_precision))
    if not len(ok):
        return ReviewThreshold(1.01, 0.0, 0.0, target_precision)
    last = ok[-1]
    return ReviewThreshold(
        float(sorted_conf[last]), float(precision_at[last]), float((last + 1) / len(order)), target_precision
    )


@dataclass
class TargetEvaluation:
    """Scores of one target on the test set."""

    target: str
    accuracy: float
    macro_f1: float
    ece: float
    review: ReviewThreshold
    classes: list[str]
    confusion: list[list[int]]
    per_class: dict[str, dict[str, float]]
    test_rows: int


@dataclass
class Evaluation:
    """Scores of every target, plus their mean macro-F1 (the quality gate's score)."""

    targets: dict[str, TargetEvaluation]

    @property
    def mean_macro_f1(self) -> float:
        """Mean macro-F1 over the targets."""
        return float(np.mean([t.macro_f1 for t in self.targets.values()]))

    def thresholds(self) -> dict[str, float]:
        """Review threshold per target."""
        return {name: t.review.threshold for name, t in self.targets.items()}

    def summary(self) -> dict[str, dict[str, float]]:
        """`{target: {accuracy, macro_f1}}`."""
        return {
            n: {"accuracy": round(t.accuracy, 4), "macro_f1": round(t.macro_f1, 4)} for n, t in self.targets.items()
        }

    def flat_metrics(self) -> dict[str, float]:
        """Scalar metrics named `<target>_<metric>`, plus `mean_macro_f1`."""
        flat = {"mean_macro_f1": round(self.mean_macro_f1, 6)}
        for name, t in self.targets.items():
            flat.update(
                {
                    f"{name}_accuracy": t.accuracy,
                    f"{name}_macro_f1": t.macro_f1,
                    f"{name}_ece": t.ece,
                    f"{name}_review_threshold": t.review.threshold,
                    f"{name}_review_coverage": t.review.coverage,
                }
            )
        return {k: round(float(v), 6) for k, v in flat.items()}

    def to_json(self) -> str:
        """Serialises the evaluation."""
        return json.dumps(
            {"targets": {n: asdict(t) for n, t in self.targets.items()}, "mean_macro_f1": self.mean_macro_f1}, indent=2
        )

    @classmethod
    def from_json(cls, text: str) -> Evaluation:
        """Reads an evaluation written by `to_json`."""
        data = json.loads(text)
        targets = {}
        for name, t in data["targets"].items():
            targets[name] = TargetEvaluation(**{**t, "review": ReviewThreshold(**t["review"])})
        return cls(targets)


def score_target(
    target: str, y_true: np.ndarray, y_pred: np.ndarray, confidences: np.ndarray, target_precision: float, bins: int
) -> TargetEvaluation:
    """Scores one target's predictions.

    Args:
        target: Label column.
        y_true: True labels.
        y_pred: Predicted labels.
        confidences: Top-class probabilities.
        target_precision: Precision the review threshold must reach.
        bins: Calibration bins.

    Returns:
        The target's evaluation.
    """
    y_true, y_pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    classes = sorted(set(y_true) | set(y_pred))
    correct = y_true == y_pred
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    per_class = {
        c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }
    return TargetEvaluation(
        target=target,
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0)),
        ece=expected_calibration_error(confidences, correct, bins),
        review=review_threshold(confidences, correct, target_precision),
        classes=classes,
        confusion=confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        per_class=per_class,
        test_rows=len(y_true),
    )


def evaluate_model(
    model: TicketModel, test: pd.DataFrame, vectors: np.ndarray | None, target_precision: float, bins: int = 15
) -> Evaluation:
    """Scores a model on the test split, for every target it predicts that the test set labels.

    Args:
        model: The fitted model.
        test: Test split with `text` and the label columns.
        vectors: The test texts' embeddings (None to encode them with the model's own encoder).
        target_precision: Precision the review thresholds must reach.
        bins: Calibration bins.

    Returns:
        The evaluation.
    """
    predictions = model.predict(test[TEXT].tolist(), vectors)
    targets = {}
    for target, prediction in predictions.items():
        if target not in test.columns:
            continue
        targets[target] = score_target(
            target, test[target].to_numpy(), prediction.labels, prediction.confidences, target_precision, bins
        )
        t = targets[target]
        log.info(
            "evaluate: %s accuracy=%.4f macro-F1=%.4f ECE=%.4f review<%.3f (coverage %.1f%%)",
            target,
            t.accuracy,
            t.macro_f1,
            t.ece,
            t.review.threshold,
            100 * t.review.coverage,
        )
    return Evaluation(targets)


def confusion_png(classes: list[str], matrix: list[list[int]], title: str) -> bytes:
    """Draws a confusion matrix (rows: true label, columns: predicted) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(matrix)
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                str(values[i, j]),
                ha="center",
                va="center",
                color="white" if values[i, j] > values.max() / 2 else "black",
                fontsize=8,
            )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def render_html(
    evaluation: Evaluation, title: str = "ticketflow evaluation", facts: dict | None = None, bins: int = 15
) -> str:
    """A self-contained HTML report: scores, review thresholds, per-class table and confusion matrices.

    Args:
        evaluation: The evaluation to show.
        title: Page title.
        facts: Extra key/value facts shown at the top (data source, rows, model).
        bins: Number of bins the calibration error was computed with.

    Returns:
        The HTML page.
    """
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}"
        "td:first-child{text-align:left}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if facts:
        parts.append(
            "<table>"
            + "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in facts.items())
            + "</table>"
        )
    parts.append(f"<p>Mean macro-F1 over targets (the quality gate's score): <b>{evaluation.mean_macro_f1:.4f}</b></p>")
    for name, t in evaluation.targets.items():
        r = t.review
        parts.append(
            f"<h2>{esc(name)}</h2><table><tr><th>accuracy</th><th>macro-F1</th><th>ECE ({bins} bins)</th>"
            f"<th>review threshold</th><th>precision above it</th><th>coverage</th><th>test tickets</th></tr>"
            f"<tr><td>{t.accuracy:.4f}</td><td>{t.macro_f1:.4f}</td><td>{t.ece:.4f}</td>"
            f"<td>{r.threshold:.3f}</td><td>{r.precision:.3f} (target {r.target_precision:.2f})</td>"
            f"<td>{100 * r.coverage:.1f}%</td><td>{t.test_rows}</td></tr></table>"
        )
        rows = "".join(
            f"<tr><td>{esc(c)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
            f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
            for c, m in t.per_class.items()
        )
        parts.append(
            f"<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>"
        )
        png = base64.b64encode(confusion_png(t.classes, t.confusion, f"{name}: confusion matrix")).decode()
        parts.append(f"<img alt='confusion matrix of {esc(name)}' src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def evaluate_from_files(
    model_path: str,
    test_path: str,
    embeddings_path: str,
    target_precision: float,
    html_path: str,
    evaluation_path: str,
    bins: int = 15,
) -> Evaluation:
    """The evaluate step on files: scores the model, writes the HTML report and the evaluation JSON.

    Returns:
        The evaluation.
    """
    import joblib

    from ticketflow.components.embed import load_split_vectors

    model: TicketModel = joblib.load(model_path)
    test = pd.read_parquet(test_path)
    _, test_vectors = load_split_vectors(embeddings_path)
    evaluation = evaluate_model(model, test, test_vectors, target_precision, bins)
    facts = {
        "test tickets": len(test),
        "embedding model": model.embedding_model,
        "targets": ", ".join(model.targets),
        "target precision": target_precision,
    }
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(render_html(evaluation, facts=facts, bins=bins))
    with open(evaluation_path, "w", encoding="utf-8") as f:
        f.write(evaluation.to_json())
    return evaluation
