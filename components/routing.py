"""Routing: calibration error, and the confidence above which a class's tickets route without a person.

Support platforms let an admin choose, per class, the precision at which tickets route without review. Each class
gets its own threshold, chosen on out-of-fold predictions of the training split (`class_review_thresholds`); the
thresholds travel with the model and `TicketModel.needs_review` applies them to every answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# A threshold above every confidence: the class's tickets all need review (no cut reaches the precision).
NEVER = 1.01


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
        return ReviewThreshold(NEVER, 0.0, 0.0, target_precision)
    last = ok[-1]
    return ReviewThreshold(
        float(sorted_conf[last]), float(precision_at[last]), float((last + 1) / len(order)), target_precision
    )


def class_review_thresholds(
    confidences: np.ndarray, predicted: np.ndarray, correct: np.ndarray, classes: Sequence[str], target_precision: float
) -> dict[str, float]:
    """Per predicted class, the lowest confidence at which that class's predictions above it reach the precision.

    Args:
        confidences: Top-class probability per ticket (out-of-fold, calibrated).
        predicted: Predicted class per ticket.
        correct: Whether each prediction was right.
        classes: Every class of the target (a class never predicted gets `NEVER`).
        target_precision: Precision each class's routed tickets must reach, 0–1.

    Returns:
        `{class: threshold}`; a ticket predicted as that class needs review below the threshold.
    """
    confidences, predicted, correct = np.asarray(confidences), np.asarray(predicted).astype(str), np.asarray(correct)
    thresholds = {}
    for label in map(str, classes):
        mine = predicted == label
        thresholds[label] = review_threshold(confidences[mine], correct[mine], target_precision).threshold
    return thresholds
