"""Logic tests of evaluate: calibration error, review thresholds, per-target scores and the HTML report."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from ticketflow.components.evaluate import (
    Evaluation,
    ReviewThreshold,
    expected_calibration_error,
    render_html,
    review_threshold,
    score_target,
)

# --- expected_calibration_error ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidences", "correct", "bins"),
    [
        ([0.75] * 4, [1, 1, 1, 0], 15),
        ([0.9] * 10 + [0.6] * 5, [1] * 9 + [0] + [1, 1, 1, 0, 0], 10),
        ([1.0, 1.0, 0.0], [1, 1, 0], 15),  # the extreme confidences fall into the end bins
        ([0.5] * 2, [1, 0], 1),
    ],
)
def test_ece_is_zero_when_perfectly_calibrated(confidences, correct, bins):
    assert expected_calibration_error(np.array(confidences), np.array(correct), bins) == pytest.approx(0.0, abs=1e-12)


def test_ece_is_near_zero_for_a_large_calibrated_sample():
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.3, 1.0, 200_000)
    correct = rng.uniform(size=confidences.size) < confidences  # right with exactly the stated probability
    assert expected_calibration_error(confidences, correct, 15) < 0.01


@pytest.mark.parametrize(
    ("confidences", "correct", "bins", "expected"),
    [
        # two bins of two tickets, each half right: 0.5 * |0.5 - 0.9| + 0.5 * |0.5 - 0.6|
        ([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 0], 10, 0.25),
        # one bin holding everything: |0.5 - 0.75|
        ([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 0], 1, 0.25),
        # 2/3 * |0 - 0.95| + 1/3 * |1 - 0.3|
        ([0.95, 0.95, 0.3], [0, 0, 1], 2, 2 / 3 * 0.95 + 1 / 3 * 0.7),
        # always right but only 60 % sure (underconfident): |1 - 0.6|
        ([0.6, 0.6, 0.6], [1, 1, 1], 15, 0.4),
        # sure and always wrong
        ([1.0, 1.0], [0, 0], 15, 1.0),
    ],
)
def test_ece_known_values(confidences, correct, bins, expected):
    assert expected_calibration_error(np.array(confidences), np.array(correct), bins) == pytest.approx(expected)


def test_ece_of_overconfidence_is_the_confidence_gap():
    confidences = np.full(10, 0.95)
    correct = np.array([1] * 7 + [0] * 3)
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.95 - 0.7)


def test_ece_of_empty_input_is_zero():
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0


# --- review_threshold ----------------------------------------------------------------------------------------

CONF = [0.9, 0.8, 0.7, 0.6, 0.5]
RIGHT = [1, 1, 0, 1, 0]  # precision at or above each: 1, 1, 2/3, 3/4, 3/5


@pytest.mark.parametrize(
    ("target", "threshold", "precision", "coverage"),
    [
        (1.0, 0.8, 1.0, 0.4),
        (0.9, 0.8, 1.0, 0.4),
        (0.75, 0.6, 0.75, 0.8),  # 2/3 at 0.7 misses, but the lower cut at 0.6 reaches 3/4 again
        (0.7, 0.6, 0.75, 0.8),
        (0.6, 0.5, 0.6, 1.0),
        (0.0, 0.5, 0.6, 1.0),
    ],
)
def test_review_threshold_hand_computed(target, threshold, precision, coverage):
    result = review_threshold(np.array(CONF), np.array(RIGHT), target)
    assert result.threshold == pytest.approx(threshold)
    assert result.precision == pytest.approx(precision)
    assert result.coverage == pytest.approx(coverage)
    assert result.target_precision == target


def test_review_threshold_does_not_depend_on_input_order():
    order = [3, 0, 4, 2, 1]
    shuffled = review_threshold(np.array(CONF)[order], np.array(RIGHT)[order], 0.75)
    assert shuffled == review_threshold(np.array(CONF), np.array(RIGHT), 0.75)


@pytest.mark.parametrize(
    ("confidences", "correct"),
    [
        ([0.9, 0.8, 0.8, 0.5], [1, 1, 0, 1]),
        ([0.9, 0.8, 0.8, 0.5], [1, 0, 1, 1]),
        ([0.8, 0.5, 0.9, 0.8], [0, 1, 1, 1]),
    ],
)
def test_equal_confidences_are_one_cut(confidences, correct):
    # Cutting at 0.8 keeps both 0.8 tickets (precision 2/3), so only 0.9 reaches 100 %.
    result = review_threshold(np.array(confidences), np.array(correct), 1.0)
    assert result == ReviewThreshold(threshold=0.9, precision=1.0, coverage=0.25, target_precision=1.0)


def test_tie_at_the_cut_is_kept_whole():
    result = review_threshold(np.array([0.9, 0.8, 0.8, 0.7]), np.array([1, 0, 1, 0]), 0.66)
    assert result.threshold == pytest.approx(0.8)
    assert result.precision == pytest.approx(2 / 3)
    assert result.coverage == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("confidences", "correct", "target"),
    [
        ([0.9, 0.8, 0.7], [0, 0, 0], 0.5),
        ([0.9, 0.8], [0, 1], 1.0),
        ([0.9, 0.9], [1, 0], 0.9),
        ([], [], 0.9),
    ],
)
def test_unreachable_target_sends_everything_to_review(confidences, correct, target):
    result = review_threshold(np.array(confidences), np.array(correct, dtype=bool), target)
    assert result.threshold > 1.0
    assert result.coverage == 0.0
    assert result.precision == 0.0
    assert not (np.array(confidences) >= result.threshold).any()


def brute_force_threshold(confidences: np.ndarray, correct: np.ndarray, target: float) -> float | None:
    for t in np.unique(confidences):  # ascending: the first that reaches the target is the lowest
        kept = confidences >= t
        if correct[kept].mean() >= target:
            return float(t)
    return None


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target", [0.7, 0.9])
def test_review_threshold_matches_brute_force(seed, target):
    rng = np.random.default_rng(seed)
    confidences = rng.choice(np.round(np.linspace(0.3, 1.0, 15), 3), size=60)  # many ties
    correct = rng.uniform(size=60) < confidences
    result = review_threshold(confidences, correct, target)
    expected = brute_force_threshold(confidences, correct, target)
    if expected is None:
        assert result.threshold > 1.0
        return
    assert result.threshold == expected
    kept = confidences >= result.threshold
    assert result.coverage == pytest.approx(kept.mean())
    assert result.precision == pytest.approx(correct[kept].mean())
    assert result.precision >= target


# --- score_target --------------------------------------------------------------------------------------------

Y_TRUE = np.array(["Access", "Billing", "Network", "Access", "Billing", "Network", "Access", "Billing"])
Y_PRED = np.array(["Access", "Billing", "Access", "Access", "Network", "Network", "Billing", "Billing"])
CONFIDENCES = np.array([0.95, 0.9, 0.55, 0.85, 0.6, 0.8, 0.5, 0.7])


def test_score_target_matches_sklearn():
    scored = score_target("category", Y_TRUE, Y_PRED, CONFIDENCES, 0.9, 15)
    assert scored.target == "category"
    assert scored.accuracy == pytest.approx(accuracy_score(Y_TRUE, Y_PRED))
    assert scored.accuracy == pytest.approx(5 / 8)
    assert scored.macro_f1 == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert scored.classes == ["Access", "Billing", "Network"]
    assert np.array(scored.confusion).shape == (3, 3)
    assert scored.confusion == confusion_matrix(Y_TRUE, Y_PRED, labels=scored.classes).tolist()
    assert scored.confusion[2] == [1, 0, 1]  # rows are true labels: one Network ticket was taken for Access
    assert scored.test_rows == 8
    assert {c: m["support"] for c, m in scored.per_class.items()} == {"Access": 3, "Billing": 3, "Network": 2}
    correct = Y_TRUE == Y_PRED
    assert scored.ece == pytest.approx(expected_calibration_error(CONFIDENCES, correct, 15))
    assert scored.review == review_threshold(CONFIDENCES, correct, 0.9)


def test_score_target_with_a_class_only_predicted():
    y_pred = Y_PRED.astype(object)  # a fixed-width str array would truncate the longer label
    y_pred[2] = "Purchase"  # never a true label
    scored = score_target("category", Y_TRUE, y_pred, CONFIDENCES, 0.9, 15)
    assert scored.classes == ["Access", "Billing", "Network", "Purchase"]
    assert np.array(scored.confusion).shape == (4, 4)
    assert scored.confusion[3] == [0, 0, 0, 0]
    assert scored.confusion[2][3] == 1
    assert scored.per_class["Purchase"]["support"] == 0
    # Macro-F1 averages over the classes of the test set, not over predicted-only ones.
    assert scored.macro_f1 == pytest.approx(f1_score(Y_TRUE, y_pred, labels=sorted(set(Y_TRUE)), average="macro"))


def test_score_target_takes_labels_of_any_type():
    scored = score_target("priority", np.array([1, 2, 2, 1]), np.array(["1", "2", "1", "1"]), np.full(4, 0.7), 0.9, 5)
    assert scored.classes == ["1", "2"]
    assert scored.accuracy == pytest.approx(0.75)


# --- Evaluation JSON and HTML --------------------------------------------------------------------------------


def evaluation() -> Evaluation:
    priority_true = np.array(["high", "low", "low", "high", "medium", "low", "low", "medium"])
    priority_pred = np.array(["high", "low", "medium", "low", "medium", "low", "low", "low"])
    return Evaluation(
        {
            "category": score_target("category", Y_TRUE, Y_PRED, CONFIDENCES, 0.9, 15),
            "priority": score_target("priority", priority_true, priority_pred, CONFIDENCES[::-1], 0.9, 15),
        }
    )


def test_evaluation_json_round_trip():
    original = evaluation()
    restored = Evaluation.from_json(original.to_json())
    assert restored == original
    assert isinstance(restored.targets["category"].review, ReviewThreshold)
    assert restored.mean_macro_f1 == pytest.approx(original.mean_macro_f1)
    assert restored.flat_metrics() == original.flat_metrics()
    assert restored.thresholds() == original.thresholds()


def test_mean_macro_f1_is_the_mean_over_targets():
    scored = evaluation()
    expected = (scored.targets["category"].macro_f1 + scored.targets["priority"].macro_f1) / 2
    assert scored.mean_macro_f1 == pytest.approx(expected)
    assert scored.flat_metrics()["mean_macro_f1"] == pytest.approx(expected, abs=1e-6)


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []
        self.closed: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.opened.append(tag)

    def handle_endtag(self, tag):
        self.closed.append(tag)


def test_render_html_is_a_complete_page_with_every_target():
    page = render_html(evaluation(), title="Run <42>", facts={"test tickets": 8, "model": "a & b"})
    assert page.lower().startswith("<!doctype html>")
    assert page.rstrip().endswith("</html>")
    tags = _TagCollector()
    tags.feed(page)
    for tag in ("html", "head", "title", "body"):
        assert tags.opened.count(tag) == 1
        assert tags.closed.count(tag) == 1
    for target in ("category", "priority"):
        assert f"<h2>{target}</h2>" in page
    assert "Run &lt;42&gt;" in page  # escaped, not markup
    assert "a &amp; b" in page
    images = re.findall(r"<img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 2
    for image in images:
        assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")
