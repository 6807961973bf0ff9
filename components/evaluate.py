"""Evaluate: accuracy, macro-F1, per-class scores, confusion matrices, calibration, and routing on the test split.

Routing: the model carries per-class review thresholds, chosen in training on out-of-fold predictions
(`ticketflow.components.routing.class_review_thresholds`). A ticket predicted as class c routes without review when
its confidence is at least the threshold of c. Here the test split is scored under those thresholds, once, for the
report: it shows whether the precision the thresholds were chosen for holds on tickets the model never saw.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ticketflow.components.audit import label_issues_html, read_label_issues_if_any
from ticketflow.components.ingest import TICKET_ID
from ticketflow.components.model import TicketModel
from ticketflow.components.prepare import TEXT
from ticketflow.components.privacy import mask_personal_data, snippet
from ticketflow.components.routing import expected_calibration_error

log = logging.getLogger(__name__)

# How far below the target precision a class's routed precision on the test split may fall before the report flags it.
PRECISION_TOLERANCE = 0.02
# Points kept per precision–coverage curve in the evaluation (enough for a plot, small enough for JSON).
CURVE_POINTS = 100
# Confused class pairs shown per target, example tickets per pair, and the length of an example's snippet.
CONFUSED_PAIRS = 3
CONFUSED_EXAMPLES = 2
SNIPPET_CHARS = 200


@dataclass
class ReliabilityBins:
    """Per equal-width confidence bin: tickets, their mean confidence and accuracy (a reliability diagram's data).

    Attributes:
        counts: Tickets whose top-class confidence falls in each bin.
        mean_confidence: Their mean confidence, 0–1 (0 for an empty bin).
        accuracy: Share of them predicted right, 0–1 (0 for an empty bin).
    """

    counts: list[int]
    mean_confidence: list[float]
    accuracy: list[float]


def reliability_bins(confidences: np.ndarray, correct: np.ndarray, bins: int = 15) -> ReliabilityBins:
    """Bins tickets by confidence the way `expected_calibration_error` does.

    Args:
        confidences: Top-class probability per ticket, 0–1.
        correct: Whether the top class was right.
        bins: Number of equal-width bins over 0–1.

    Returns:
        Count, mean confidence and accuracy per bin.
    """
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(counts > 0, np.bincount(which, confidences, bins) / counts, 0.0)
        accuracy = np.where(counts > 0, np.bincount(which, correct, bins) / counts, 0.0)
    return ReliabilityBins(counts.tolist(), mean_confidence.tolist(), accuracy.tolist())


@dataclass
class PrecisionCoverageCurve:
    """One class's routing trade-off as its threshold falls: each point routes the predictions at or above it.

    Attributes:
        thresholds: Confidence cuts, descending.
        coverage: Share of the class's predictions at or above each cut, 0–1, ascending.
        precision: Share of those that were right, 0–1.
    """

    thresholds: list[float]
    coverage: list[float]
    precision: list[float]


def precision_coverage_curve(
    confidences: np.ndarray, correct: np.ndarray, max_points: int = CURVE_POINTS
) -> PrecisionCoverageCurve:
    """Precision and coverage at every distinct confidence cut, thinned to at most `max_points` points.

    Args:
        confidences: Confidence of each prediction of one class.
        correct: Whether each was right.
        max_points: Most points kept; the first (highest cut) and last (everything routed) always are.

    Returns:
        The curve (empty lists when there are no predictions).
    """
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if not len(confidences):
        return PrecisionCoverageCurve([], [], [])
    order = np.argsort(-confidences, kind="stable")
    sorted_conf = confidences[order]
    routed = np.arange(1, len(order) + 1)
    precision = np.cumsum(correct[order]) / routed
    # A cut keeps every ticket at or above it: only the last of equal confidences is a point of the curve.
    cuts = np.flatnonzero(np.append(sorted_conf[1:] != sorted_conf[:-1], True))
    if len(cuts) > max_points:
        cuts = cuts[np.unique(np.round(np.linspace(0, len(cuts) - 1, max_points)).astype(int))]
    return PrecisionCoverageCurve(
        sorted_conf[cuts].tolist(), (routed[cuts] / len(order)).tolist(), precision[cuts].tolist()
    )


@dataclass
class ClassRouting:
    """Test tickets predicted as one class, routed under the model's threshold for that class.

    Attributes:
        threshold: The model's review threshold for the class (above 1: every such ticket needs review).
        predicted: Test tickets predicted as the class.
        routed: Of those, the ones at or above the threshold (routed without review).
        precision: Share of the routed ones that were right, 0–1 (0 when none was routed).
        coverage: `routed / predicted`, 0–1 (0 when none was predicted).
        curve: Precision against coverage of the class's predictions as the threshold falls.
    """

    threshold: float
    predicted: int
    routed: int
    precision: float
    coverage: float
    curve: PrecisionCoverageCurve


@dataclass
class TargetRouting:
    """One target's test tickets routed under the model's per-class review thresholds.

    Attributes:
        target_precision: Precision the thresholds were chosen to reach on out-of-fold predictions, 0–1.
        routed: Test tickets routed without review (confidence at or above their predicted class's threshold).
        precision: Share of the routed tickets that were right, 0–1 (0 when none was routed).
        coverage: Share of the test tickets routed, 0–1.
        classes: Per predicted class, its routing.
    """

    target_precision: float
    routed: int
    precision: float
    coverage: float
    classes: dict[str, ClassRouting]

    @property
    def min_class_precision(self) -> float:
        """Lowest routed precision over the classes with at least one routed ticket (0 when none has one)."""
        return min((c.precision for c in self.classes.values() if c.routed), default=0.0)

    def below_target(self, tolerance: float = PRECISION_TOLERANCE) -> list[str]:
        """Classes with routed tickets whose routed precision falls more than `tolerance` below the target."""
        return [
            label for label, c in self.classes.items() if c.routed and c.precision < self.target_precision - tolerance
        ]


def class_thresholds(thresholds: Mapping[str, float] | float, classes: list[str]) -> dict[str, float]:
    """A target's review thresholds as `{class: threshold}` over `classes` and the classes they name.

    Args:
        thresholds: Per class (models trained with per-class thresholds), or one float for every class (models
            pickled before).
        classes: Classes that need a threshold (e.g. the predicted ones).

    Returns:
        One threshold per class, sorted by class; a class a per-class mapping does not name gets 0 (routes every
        ticket), as `TicketModel.needs_review` does.
    """
    if isinstance(thresholds, Mapping):
        named = {str(label): float(value) for label, value in thresholds.items()}
        return {label: named.get(label, 0.0) for label in sorted(set(named) | set(classes))}
    return dict.fromkeys(sorted(set(classes)), float(thresholds))


def route_target(
    predicted: np.ndarray,
    correct: np.ndarray,
    confidences: np.ndarray,
    thresholds: Mapping[str, float] | float,
    target_precision: float,
) -> TargetRouting:
    """Routes one target's tickets under per-class thresholds and measures precision and coverage.

    Args:
        predicted: Predicted class per ticket.
        correct: Whether each prediction was right.
        confidences: Top-class probability per ticket, 0–1.
        thresholds: Per-class thresholds, or one for every class (see `class_thresholds`).
        target_precision: Precision the thresholds were chosen to reach, 0–1.

    Returns:
        Overall and per-class routing.
    """
    predicted = np.asarray(predicted).astype(str)
    correct = np.asarray(correct, dtype=bool)
    confidences = np.asarray(confidences, dtype=float)
    per_class = class_thresholds(thresholds, sorted(set(predicted)))
    cut = np.array([per_class[label] for label in predicted], dtype=float)
    routed = confidences >= cut  # below its class's threshold a ticket needs review
    classes = {}
    for label, threshold in per_class.items():
        mine = predicted == label
        kept = routed & mine
        classes[label] = ClassRouting(
            threshold=threshold,
            predicted=int(mine.sum()),
            routed=int(kept.sum()),
            precision=float(correct[kept].mean()) if kept.any() else 0.0,
            coverage=float(kept.sum() / mine.sum()) if mine.any() else 0.0,
            curve=precision_coverage_curve(confidences[mine], correct[mine]),
        )
    return TargetRouting(
        target_precision=float(target_precision),
        routed=int(routed.sum()),
        precision=float(correct[routed].mean()) if routed.any() else 0.0,
        coverage=float(routed.mean()) if len(routed) else 0.0,
        classes=classes,
    )


@dataclass
class ConfusedExample:
    """One test ticket of a confused pair: what it said (masked, shortened) and what the model made of it.

    Attributes:
        snippet: The ticket's text, personal data masked, about `SNIPPET_CHARS` characters.
        true_label: Its true class.
        predicted_label: The class the model predicted.
        confidence: The model's confidence in that prediction, 0–1.
        ticket_id: Its ticket id ("" when the test split has none).
    """

    snippet: str
    true_label: str
    predicted_label: str
    confidence: float
    ticket_id: str = ""


@dataclass
class ConfusedPair:
    """Test tickets of one true class predicted as one other class (directed: A taken for B, not B for A).

    Attributes:
        true_label: The tickets' true class.
        predicted_label: The class the model predicted instead.
        count: Test tickets of `true_label` predicted as `predicted_label`.
        share: `count` over the test tickets of `true_label`, 0–1.
        examples: Up to `CONFUSED_EXAMPLES` of them, most confident mistake first.
    """

    true_label: str
    predicted_label: str
    count: int
    share: float
    examples: list[ConfusedExample]


def confused_pairs(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    confidences: np.ndarray,
    texts: Sequence[str] | None = None,
    ticket_ids: Sequence[str] | None = None,
    top: int = CONFUSED_PAIRS,
    examples: int = CONFUSED_EXAMPLES,
    snippet_chars: int = SNIPPET_CHARS,
    mask: bool = True,
) -> list[ConfusedPair]:
    """The most frequent mistakes of one target, as directed pairs (true A predicted as B), with example tickets.

    Pairs are directed: "Network taken for Access" and "Access taken for Network" are two pairs, since they call for
    different fixes (and read differently in the confusion matrix's rows and columns). Order: most tickets first,
    ties by true label, then predicted label. Examples: the pair's most confident mistakes first (the ones routing
    is likeliest to send on without review), ties in test-split order, so the choice is deterministic.

    Args:
        y_true: True labels.
        y_pred: Predicted labels.
        confidences: Top-class probability per ticket, 0–1.
        texts: Ticket texts, row-aligned; None gives examples without snippets.
        ticket_ids: Ticket ids, row-aligned; None leaves the examples' ids empty.
        top: Most pairs returned.
        examples: Most example tickets per pair.
        snippet_chars: Longest snippet, in characters.
        mask: Mask e-mail addresses and phone numbers in the snippets (as the prediction log does).

    Returns:
        Up to `top` pairs with at least one ticket each (none when every prediction was right).
    """
    y_true, y_pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    confidences = np.asarray(confidences, dtype=float)
    wrong = np.flatnonzero(y_true != y_pred)
    counts: dict[tuple[str, str], list[int]] = {}
    for i in wrong:
        counts.setdefault((y_true[i], y_pred[i]), []).append(int(i))
    ranked = sorted(counts.items(), key=lambda item: (-len(item[1]), item[0]))[:top]
    masker = mask_personal_data if mask else None
    pairs = []
    for (true_label, predicted_label), rows in ranked:
        chosen = sorted(rows, key=lambda i: (-confidences[i], i))[:examples]
        pairs.append(
            ConfusedPair(
                true_label=true_label,
                predicted_label=predicted_label,
                count=len(rows),
                share=len(rows) / int((y_true == true_label).sum()),
                examples=[
                    ConfusedExample(
                        snippet=snippet(str(texts[i]), snippet_chars, masker) if texts is not None else "",
                        true_label=true_label,
                        predicted_label=predicted_label,
                        confidence=float(confidences[i]),
                        ticket_id=str(ticket_ids[i]) if ticket_ids is not None else "",
                    )
                    for i in chosen
                ],
            )
        )
    return pairs


@dataclass
class TargetEvaluation:
    """Scores of one target on the test set.

    `confused_pairs` is empty in evaluations written before it existed (and when every prediction was right).
    """

    target: str
    accuracy: float
    macro_f1: float
    ece: float
    reliability: ReliabilityBins
    routing: TargetRouting
    classes: list[str]
    confusion: list[list[int]]
    per_class: dict[str, dict[str, float]]
    test_rows: int
    confused_pairs: list[ConfusedPair] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> TargetEvaluation:
        """Rebuilds a target's evaluation from `dataclasses.asdict` output (e.g. read back from JSON)."""
        routing = dict(data["routing"])
        routing["classes"] = {
            label: ClassRouting(**{**c, "curve": PrecisionCoverageCurve(**c["curve"])})
            for label, c in routing["classes"].items()
        }
        pairs = [
            ConfusedPair(**{**p, "examples": [ConfusedExample(**e) for e in p["examples"]]})
            for p in data.get("confused_pairs", [])  # absent from evaluations written before
        ]
        return cls(
            **{
                **data,
                "reliability": ReliabilityBins(**data["reliability"]),
                "routing": TargetRouting(**routing),
                "confused_pairs": pairs,
            }
        )


@dataclass
class Evaluation:
    """Scores of every target, plus their mean macro-F1 (the quality gate's score)."""

    targets: dict[str, TargetEvaluation]

    @property
    def mean_macro_f1(self) -> float:
        """Mean macro-F1 over the targets."""
        return float(np.mean([t.macro_f1 for t in self.targets.values()]))

    def summary(self) -> dict[str, dict[str, float]]:
        """`{target: {accuracy, macro_f1}}`."""
        return {
            n: {"accuracy": round(t.accuracy, 4), "macro_f1": round(t.macro_f1, 4)} for n, t in self.targets.items()
        }

    def flat_metrics(self) -> dict[str, float]:
        """Scalar metrics named `<target>_<metric>`, plus `mean_macro_f1`.

        Per target: accuracy, macro-F1, ECE, routed precision and coverage under the model's thresholds, and the
        lowest routed precision of a class (over classes with a routed ticket).
        """
        flat = {"mean_macro_f1": round(self.mean_macro_f1, 6)}
        for name, t in self.targets.items():
            flat.update(
                {
                    f"{name}_accuracy": t.accuracy,
                    f"{name}_macro_f1": t.macro_f1,
                    f"{name}_ece": t.ece,
                    f"{name}_routed_precision": t.routing.precision,
                    f"{name}_routed_coverage": t.routing.coverage,
                    f"{name}_min_class_routed_precision": t.routing.min_class_precision,
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
        return cls({name: TargetEvaluation.from_dict(t) for name, t in data["targets"].items()})


def score_target(
    target: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    confidences: np.ndarray,
    thresholds: Mapping[str, float] | float,
    target_precision: float,
    bins: int = 15,
    texts: Sequence[str] | None = None,
    ticket_ids: Sequence[str] | None = None,
    mask_personal_data: bool = True,
) -> TargetEvaluation:
    """Scores one target's predictions, routing them under the model's review thresholds.

    Args:
        target: Label column.
        y_true: True labels.
        y_pred: Predicted labels.
        confidences: Top-class probabilities.
        thresholds: The model's review thresholds for this target: per class, or one float for every class.
        target_precision: Precision the thresholds were chosen to reach (what the report compares with), 0–1.
        bins: Calibration bins.
        texts: The tickets' texts, row-aligned: the confused pairs' examples quote them (None: no snippets).
        ticket_ids: The tickets' ids, row-aligned (None: examples without ids).
        mask_personal_data: Mask e-mail addresses and phone numbers in the examples' snippets.

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
        reliability=reliability_bins(confidences, correct, bins),
        routing=route_target(y_pred, correct, confidences, thresholds, target_precision),
        classes=classes,
        confusion=confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        per_class=per_class,
        test_rows=len(y_true),
        confused_pairs=confused_pairs(y_true, y_pred, confidences, texts, ticket_ids, mask=mask_personal_data),
    )


def evaluate_model(
    model: TicketModel,
    test: pd.DataFrame,
    vectors: np.ndarray | None,
    target_precision: float,
    bins: int = 15,
    mask_personal_data: bool = True,
) -> Evaluation:
    """Scores a model on the test split, for every target it predicts that the test set labels.

    Args:
        model: The fitted model; its `review_thresholds` decide which test tickets route without review (a target
            it has none for routes every ticket, as the model does).
        test: Test split with `text` and the label columns.
        vectors: The test texts' embeddings (None to encode them with the model's own encoder).
        target_precision: Precision the model's thresholds were chosen to reach, 0–1 (the report compares with it).
        bins: Calibration bins.
        mask_personal_data: Mask e-mail addresses and phone numbers in the confused pairs' example snippets.

    Returns:
        The evaluation.
    """
    texts = test[TEXT].tolist()
    ticket_ids = test[TICKET_ID].astype(str).tolist() if TICKET_ID in test.columns else None
    predictions = model.predict(texts, vectors)
    thresholds = getattr(model, "review_thresholds", None) or {}
    targets = {}
    for target, prediction in predictions.items():
        if target not in test.columns:
            continue
        t = targets[target] = score_target(
            target,
            test[target].to_numpy(),
            prediction.labels,
            prediction.confidences,
            thresholds.get(target, 0.0),
            target_precision,
            bins,
            texts,
            ticket_ids,
            mask_personal_data,
        )
        log.info(
            "evaluate: %s accuracy=%.4f macro-F1=%.4f ECE=%.4f routed precision=%.4f (target %.2f, lowest class %.4f)"
            " coverage=%.1f%%",
            target,
            t.accuracy,
            t.macro_f1,
            t.ece,
            t.routing.precision,
            t.routing.target_precision,
            t.routing.min_class_precision,
            100 * t.routing.coverage,
        )
    return Evaluation(targets)


def _pyplot():
    """Pyplot on matplotlib's Agg backend (a pipeline pod has no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    """Renders a figure as PNG bytes and closes it."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def confusion_png(classes: list[str], matrix: list[list[int]], title: str) -> bytes:
    """Draws a confusion matrix (rows: true label, columns: predicted) as a PNG."""
    plt = _pyplot()
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
    return _png(fig)


def reliability_png(reliability: ReliabilityBins, ece: float, title: str) -> bytes:
    """Draws a reliability diagram: accuracy against mean confidence per bin, the diagonal, and the bin counts.

    Args:
        reliability: Per-bin counts, mean confidences and accuracies.
        ece: Expected calibration error over the same bins, shown in the title.
        title: Title's start (e.g. the target).

    Returns:
        The PNG's bytes.
    """
    plt = _pyplot()
    bins = len(reliability.counts)
    counts = np.asarray(reliability.counts)
    filled = counts > 0
    left = np.linspace(0.0, 1.0, bins + 1)[:-1]
    confidence = np.asarray(reliability.mean_confidence)[filled]
    accuracy = np.asarray(reliability.accuracy)[filled]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, layout="constrained"
    )
    top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
    top.bar(left[filled], accuracy, width=1 / bins, align="edge", alpha=0.3, edgecolor="C0", label="accuracy per bin")
    top.plot(confidence, accuracy, "o-", color="C0", markersize=4, label="(mean confidence, accuracy)")
    top.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="accuracy")
    top.set_title(f"{title}: reliability, ECE {ece:.3f} ({bins} bins)")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(left, counts, width=1 / bins, align="edge", color="C0", alpha=0.6)
    for x, n in zip(left[filled], counts[filled], strict=True):
        bottom.text(x + 0.5 / bins, n, str(n), ha="center", va="bottom", fontsize=7)
    bottom.set(xlabel="confidence", ylabel="tickets", ylim=(0, max(1, counts.max()) * 1.25))
    return _png(fig)


def precision_coverage_png(routing: TargetRouting, title: str, tolerance: float = PRECISION_TOLERANCE) -> bytes:
    """Draws one panel per predicted class: precision of the routed tickets against coverage as the threshold falls.

    Each panel marks the model's threshold as a point (red when the class's routed precision falls more than
    `tolerance` below the target) and the target precision as a dashed line.

    Args:
        routing: The target's routing, with each class's curve.
        title: Title's start (e.g. the target).
        tolerance: How far below the target precision a class is flagged.

    Returns:
        The PNG's bytes.
    """
    plt = _pyplot()
    labels = list(routing.classes)
    columns = max(1, min(4, len(labels)))
    rows = max(1, math.ceil(len(labels) / columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns, 2.6 * rows + 0.6), squeeze=False, layout="constrained"
    )
    flagged = set(routing.below_target(tolerance))
    for ax, label in zip(axes.flat, labels, strict=False):
        c = routing.classes[label]
        colour = "red" if label in flagged else "black"
        ax.axhline(routing.target_precision, linestyle="--", color="grey", linewidth=1)
        ax.plot(c.curve.coverage, c.curve.precision, "-", color="C0")
        if c.routed:
            ax.plot([c.coverage], [c.precision], "o", color="red" if label in flagged else "C1")
            ax.annotate(
                f"t={c.threshold:.2f}",
                (c.coverage, c.precision),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=8,
            )
        note = "always review" if c.threshold > 1 else "nothing routed" if not c.routed else ""
        if not c.predicted:
            note = "no test predictions"
        if note:
            ax.text(0.97, 0.05, note, ha="right", va="bottom", transform=ax.transAxes, fontsize=8, color="grey")
        low = min([*c.curve.precision, routing.target_precision])
        ax.set(xlim=(0, 1.02), ylim=(max(0.0, low - 0.05), 1.02))
        ax.set_title(f"{label} (n={c.predicted})", fontsize=9, color=colour)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(labels) :]:
        ax.set_visible(False)
    fig.supxlabel("coverage of the class's predictions", fontsize=9)
    fig.supylabel("precision of the routed ones", fontsize=9)
    fig.suptitle(
        f"{title}: precision–coverage per predicted class (dashed: target {routing.target_precision:.2f}; "
        "dot: the model's threshold)",
        fontsize=10,
    )
    return _png(fig)


def _image(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def routing_table(routing: TargetRouting, test_rows: int, tolerance: float = PRECISION_TOLERANCE) -> str:
    """HTML table of routing per predicted class and over all classes; classes below target are flagged.

    Args:
        routing: The target's routing.
        test_rows: Test tickets of the target (the "all classes" row's predictions).
        tolerance: How far below the target precision a class's routed precision is flagged.

    Returns:
        The `<table>` element.
    """
    esc = html.escape
    flagged = set(routing.below_target(tolerance))

    def row(
        label: str, threshold: str, predicted: int, routed: int, precision: float, coverage: float, kind: str
    ) -> str:
        shown = (f"{precision:.3f}" if routed else "–") + (" ▼" if kind == "below" else "")
        attribute = f" class='{kind}'" if kind else ""
        return (
            f"<tr{attribute}><td>{esc(label)}</td><td>{threshold}</td><td>{predicted}</td><td>{routed}</td>"
            f"<td>{shown}</td><td>{100 * coverage:.1f}%</td></tr>"
        )

    rows = [
        row(
            label,
            "always review" if c.threshold > 1 else f"{c.threshold:.3f}",
            c.predicted,
            c.routed,
            c.precision,
            c.coverage,
            "below" if label in flagged else "",
        )
        for label, c in routing.classes.items()
    ]
    rows.append(
        row("all classes", "per class", test_rows, routing.routed, routing.precision, routing.coverage, "total")
    )
    return (
        "<table><tr><th>predicted class</th><th>threshold</th><th>predicted</th><th>routed</th>"
        f"<th>routed precision</th><th>coverage</th></tr>{''.join(rows)}</table>"
    )


def confused_pairs_html(pairs: list[ConfusedPair]) -> str:
    """The "Most confused pairs" section of one target: per pair, its count and its example tickets.

    Args:
        pairs: The target's confused pairs (see `confused_pairs`); snippets are already masked.

    Returns:
        A heading and a `<table class='confused'>` (a sentence instead when there are none).
    """
    esc = html.escape
    heading = (
        "<h3>Most confused pairs</h3><p>True class taken for another on the test split (directed: A taken for B), "
        "most tickets first; examples are the most confident mistakes, personal data masked.</p>"
    )
    if not pairs:
        return heading + "<p>No mistakes on the test split.</p>"
    rows = []
    for pair in pairs:
        examples = "".join(
            f"<li><q>{esc(e.snippet)}</q> <small>({esc(e.ticket_id) + ', ' if e.ticket_id else ''}true "
            f"{esc(e.true_label)}, predicted {esc(e.predicted_label)} at {e.confidence:.2f})</small></li>"
            for e in pair.examples
        )
        rows.append(
            f"<tr><td>{esc(pair.true_label)} → {esc(pair.predicted_label)}</td><td>{pair.count}</td>"
            f"<td>{100 * pair.share:.1f}%</td><td class='examples'><ul>{examples}</ul></td></tr>"
        )
    return (
        heading + "<table class='confused'><tr><th>true → predicted</th><th>tickets</th><th>share of true class</th>"
        f"<th>examples</th></tr>{''.join(rows)}</table>"
    )


def render_html(
    evaluation: Evaluation,
    title: str = "ticketflow evaluation",
    facts: dict | None = None,
    bins: int = 15,
    label_issues: pd.DataFrame | None = None,
) -> str:
    """A self-contained HTML report: scores, routing under the model's thresholds, calibration and confusion.

    Per target: headline scores; routing per predicted class (classes whose routed precision falls more than
    `PRECISION_TOLERANCE` below the target are flagged); a reliability diagram; per-class precision–coverage
    curves; the per-class precision/recall table, the confusion matrix, and the most confused class pairs with
    example tickets (personal data masked).

    Args:
        evaluation: The evaluation to show.
        title: Page title.
        facts: Extra key/value facts shown at the top (data source, rows, model).
        bins: Number of bins the calibration error was computed with.
        label_issues: The training tickets whose labels the model disputes (`audit.label_issues_frame`): each target
            gets a section "Probably mislabelled training tickets"; None (models trained before the audit) omits it.

    Returns:
        The HTML page.
    """
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}"
        "td:first-child{text-align:left}tr.below td{background:#fde2e2;color:#a00}tr.total td{font-weight:bold}"
        "img{max-width:100%;display:block;margin:1em 0}td.examples{text-align:left;max-width:45em}"
        "td.examples ul{margin:0;padding-left:1.2em}</style></head><body>",
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
        r = t.routing
        parts.append(
            f"<h2>{esc(name)}</h2><table><tr><th>accuracy</th><th>macro-F1</th><th>ECE ({bins} bins)</th>"
            f"<th>routed precision</th><th>coverage</th><th>lowest class precision</th><th>test tickets</th></tr>"
            f"<tr><td>{t.accuracy:.4f}</td><td>{t.macro_f1:.4f}</td><td>{t.ece:.4f}</td>"
            f"<td>{r.precision:.3f} (target {r.target_precision:.2f})</td><td>{100 * r.coverage:.1f}%</td>"
            f"<td>{r.min_class_precision:.3f}</td><td>{t.test_rows}</td></tr></table>"
        )
        parts.append(
            "<h3>Routing under the model's review thresholds</h3>"
            "<p>A ticket routes without review when its confidence reaches its predicted class's threshold, chosen "
            f"in training to reach precision {r.target_precision:.2f} on out-of-fold predictions. Rows marked ▼: the "
            f"routed precision on the test split is more than {PRECISION_TOLERANCE:.2f} below that.</p>"
        )
        parts.append(routing_table(r, t.test_rows))
        parts.append(_image(precision_coverage_png(r, name), f"precision-coverage curves of {name}"))
        parts.append("<h3>Calibration</h3>")
        parts.append(_image(reliability_png(t.reliability, t.ece, name), f"reliability diagram of {name}"))
        parts.append("<h3>Per-class scores</h3>")
        rows = "".join(
            f"<tr><td>{esc(c)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
            f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
            for c, m in t.per_class.items()
        )
        parts.append(
            f"<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>"
        )
        parts.append(
            _image(confusion_png(t.classes, t.confusion, f"{name}: confusion matrix"), f"confusion matrix of {name}")
        )
        parts.append(confused_pairs_html(t.confused_pairs))
        if label_issues is not None:
            parts.append(label_issues_html(label_issues, name))
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
    mask_personal_data: bool = True,
    label_issues_path: str = "",
) -> Evaluation:
    """The evaluate step on files: scores the model, writes the HTML report and the evaluation JSON.

    The report quotes test tickets (the confused pairs' examples), masked by default: it is read by more people
    than the prediction log is.

    Args:
        model_path: The trained model (joblib).
        test_path: Parquet of the test split.
        embeddings_path: The embed step's vectors (the test ones are scored).
        target_precision: Precision the model's thresholds were chosen to reach, 0–1.
        html_path: Where to write the HTML report.
        evaluation_path: Where to write the evaluation JSON.
        bins: Equal-width confidence bins of the calibration error.
        mask_personal_data: Mask e-mail addresses and phone numbers in the quoted tickets.
        label_issues_path: The train step's label issues (CSV); empty or absent leaves their section out.

    Returns:
        The evaluation.
    """
    import joblib

    from ticketflow.components.embed import load_split_vectors

    model: TicketModel = joblib.load(model_path)
    test = pd.read_parquet(test_path)
    _, test_vectors = load_split_vectors(embeddings_path)
    evaluation = evaluate_model(model, test, test_vectors, target_precision, bins, mask_personal_data)
    facts = {
        "test tickets": len(test),
        "embedding model": model.embedding_model,
        "targets": ", ".join(model.targets),
        "target precision (the thresholds' aim)": target_precision,
    }
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(
            render_html(evaluation, facts=facts, bins=bins, label_issues=read_label_issues_if_any(label_issues_path))
        )
    with open(evaluation_path, "w", encoding="utf-8") as f:
        f.write(evaluation.to_json())
    return evaluation
