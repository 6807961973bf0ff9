"""Logic tests of evaluate: calibration error, review thresholds, routing under them, scores and the HTML report."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from ticketflow.components.evaluate import (
    SNIPPET_CHARS,
    ClassRouting,
    ConfusedExample,
    ConfusedPair,
    Evaluation,
    PrecisionCoverageCurve,
    ReliabilityBins,
    TargetRouting,
    class_thresholds,
    confused_pairs,
    evaluate_model,
    precision_coverage_curve,
    reliability_bins,
    render_html,
    route_target,
    score_target,
)
from ticketflow.components.routing import NEVER, ReviewThreshold, expected_calibration_error, review_threshold

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


# --- routing under the model's thresholds --------------------------------------------------------------------

Y_TRUE = np.array(["Access", "Billing", "Network", "Access", "Billing", "Network", "Access", "Billing"])
Y_PRED = np.array(["Access", "Billing", "Access", "Access", "Network", "Network", "Billing", "Billing"])
CONFIDENCES = np.array([0.95, 0.9, 0.55, 0.85, 0.6, 0.8, 0.5, 0.7])
CORRECT = Y_TRUE == Y_PRED  # right, right, wrong, right, wrong, right, wrong, right
# Predicted Access: 0.95 ✓, 0.55 ✗, 0.85 ✓; Billing: 0.9 ✓, 0.5 ✗, 0.7 ✓; Network: 0.6 ✗, 0.8 ✓.
THRESHOLDS = {"Access": 0.6, "Billing": 0.5, "Network": NEVER}


def test_routing_by_hand():
    routing = route_target(Y_PRED, CORRECT, CONFIDENCES, THRESHOLDS, 0.9)
    access, billing, network = (routing.classes[c] for c in ("Access", "Billing", "Network"))
    # Access: 0.95 and 0.85 reach 0.6, both right; 0.55 needs review.
    assert (access.threshold, access.predicted, access.routed) == (0.6, 3, 2)
    assert access.precision == pytest.approx(1.0)
    assert access.coverage == pytest.approx(2 / 3)
    # Billing: all three reach 0.5 (a confidence equal to the threshold routes), one is wrong.
    assert (billing.predicted, billing.routed) == (3, 3)
    assert billing.precision == pytest.approx(2 / 3)
    assert billing.coverage == pytest.approx(1.0)
    # Network: NEVER, so both need review.
    assert (network.threshold, network.predicted, network.routed) == (NEVER, 2, 0)
    assert (network.precision, network.coverage) == (0.0, 0.0)
    # Overall: 5 of 8 routed, 4 of them right.
    assert routing.routed == 5
    assert routing.precision == pytest.approx(4 / 5)
    assert routing.coverage == pytest.approx(5 / 8)
    assert routing.target_precision == 0.9
    # The lowest class precision leaves out Network, which routed nothing.
    assert routing.min_class_precision == pytest.approx(2 / 3)
    assert routing.below_target() == ["Billing"]
    assert routing.below_target(tolerance=0.3) == []


def test_legacy_float_threshold_applies_to_every_class():
    routing = route_target(Y_PRED, CORRECT, CONFIDENCES, 0.7, 0.9)
    assert {c: r.threshold for c, r in routing.classes.items()} == {"Access": 0.7, "Billing": 0.7, "Network": 0.7}
    assert {c: r.routed for c, r in routing.classes.items()} == {"Access": 2, "Billing": 2, "Network": 1}
    assert routing.classes["Network"].coverage == pytest.approx(1 / 2)
    assert routing.routed == 5
    assert routing.precision == pytest.approx(1.0)  # every ticket at or above 0.7 was right
    assert routing == route_target(
        Y_PRED, CORRECT, CONFIDENCES, dict.fromkeys(("Access", "Billing", "Network"), 0.7), 0.9
    )


def test_class_thresholds_expands_and_fills():
    assert class_thresholds(0.8, ["b", "a", "b"]) == {"a": 0.8, "b": 0.8}
    # A mapping keeps its classes (even ones never predicted); a predicted class it misses routes everything.
    assert class_thresholds({"a": 0.9, "z": NEVER}, ["a", "b"]) == {"a": 0.9, "b": 0.0, "z": NEVER}
    assert class_thresholds({1: 0.5}, []) == {"1": 0.5}  # labels become strings, as the predictions do


def test_a_class_never_predicted_gets_an_empty_row():
    routing = route_target(Y_PRED, CORRECT, CONFIDENCES, {**THRESHOLDS, "Purchase": 0.4}, 0.9)
    purchase = routing.classes["Purchase"]
    assert (purchase.predicted, purchase.routed, purchase.precision, purchase.coverage) == (0, 0, 0.0, 0.0)
    assert purchase.curve == PrecisionCoverageCurve([], [], [])
    assert routing.routed == 5  # the other classes are unchanged


def test_nothing_routed():
    routing = route_target(Y_PRED, CORRECT, CONFIDENCES, NEVER, 0.9)
    assert (routing.routed, routing.precision, routing.coverage, routing.min_class_precision) == (0, 0.0, 0.0, 0.0)
    assert routing.below_target() == []  # a class that routes nothing is not flagged: it sends everything to review


# --- precision_coverage_curve --------------------------------------------------------------------------------


def test_curve_by_hand():
    # The Access predictions: 0.95 ✓, 0.55 ✗, 0.85 ✓.
    curve = precision_coverage_curve(np.array([0.95, 0.55, 0.85]), np.array([True, False, True]))
    assert curve.thresholds == [0.95, 0.85, 0.55]
    assert curve.coverage == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert curve.precision == pytest.approx([1.0, 1.0, 2 / 3])


def test_curve_keeps_ties_together():
    curve = precision_coverage_curve(np.array([0.9, 0.8, 0.8, 0.5]), np.array([1, 1, 0, 1]))
    assert curve.thresholds == [0.9, 0.8, 0.5]
    assert curve.coverage == pytest.approx([0.25, 0.75, 1.0])
    assert curve.precision == pytest.approx([1.0, 2 / 3, 3 / 4])


@pytest.mark.parametrize(("n", "levels"), [(5000, None), (3000, 40), (7, None)])
def test_curve_is_thinned_monotonic_and_exact(n, levels):
    rng = np.random.default_rng(n)
    confidences = rng.uniform(0.2, 1.0, n)
    if levels:
        confidences = np.round(confidences * levels) / levels  # many ties
    correct = rng.uniform(size=n) < confidences
    curve = precision_coverage_curve(confidences, correct)
    points = len(np.unique(confidences))
    assert len(curve.coverage) == min(points, 100)
    assert np.all(np.diff(curve.coverage) > 0)  # coverage grows as the threshold falls
    assert np.all(np.diff(curve.thresholds) < 0)
    assert curve.thresholds[0] == confidences.max()  # the highest cut and "route everything" are kept
    assert curve.thresholds[-1] == confidences.min()
    assert curve.coverage[-1] == pytest.approx(1.0)
    for t, coverage, precision in zip(curve.thresholds, curve.coverage, curve.precision, strict=True):
        kept = confidences >= t
        assert coverage == pytest.approx(kept.mean())
        assert precision == pytest.approx(correct[kept].mean())


def test_class_routing_lies_on_its_curve():
    rng = np.random.default_rng(3)
    predicted = rng.choice(["a", "b"], 400)
    confidences = np.round(rng.uniform(0.3, 1.0, 400), 2)
    correct = rng.uniform(size=400) < confidences
    routing = route_target(predicted, correct, confidences, {"a": 0.705, "b": 0.6}, 0.9)
    for label, c in routing.classes.items():
        assert len(c.curve.coverage) <= 100
        mine = confidences[predicted == label]
        cut = mine[mine >= c.threshold].min()  # the curve's point for the threshold is the lowest routed confidence
        at = c.curve.thresholds.index(cut)
        assert (c.curve.coverage[at], c.curve.precision[at]) == pytest.approx((c.coverage, c.precision))


# --- reliability_bins ----------------------------------------------------------------------------------------


def test_reliability_bins_by_hand():
    bins = reliability_bins(CONFIDENCES, CORRECT, 2)
    # 0.5 falls in the lower bin (its upper edge is closed, as in the calibration error); the 7 others above it.
    assert bins.counts == [1, 7]
    assert bins.mean_confidence == pytest.approx([0.5, 5.35 / 7])
    assert bins.accuracy == pytest.approx([0.0, 5 / 7])


@pytest.mark.parametrize("seed", range(3))
def test_reliability_bins_give_the_calibration_error(seed):
    rng = np.random.default_rng(seed)
    confidences = rng.uniform(0.3, 1.0, 500)
    correct = rng.uniform(size=500) < confidences**2
    bins = reliability_bins(confidences, correct, 15)
    assert len(bins.counts) == 15
    assert sum(bins.counts) == 500
    counts = np.array(bins.counts)
    gaps = np.abs(np.array(bins.accuracy) - np.array(bins.mean_confidence))
    assert float((counts / 500 * gaps).sum()) == pytest.approx(expected_calibration_error(confidences, correct, 15))
    assert all(
        a == 0.0 and m == 0.0 for n, a, m in zip(counts, bins.accuracy, bins.mean_confidence, strict=True) if n == 0
    )


# --- score_target --------------------------------------------------------------------------------------------


def test_score_target_matches_sklearn():
    scored = score_target("category", Y_TRUE, Y_PRED, CONFIDENCES, THRESHOLDS, 0.9, 15)
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
    assert scored.ece == pytest.approx(expected_calibration_error(CONFIDENCES, CORRECT, 15))
    assert scored.reliability == reliability_bins(CONFIDENCES, CORRECT, 15)
    assert scored.routing == route_target(Y_PRED, CORRECT, CONFIDENCES, THRESHOLDS, 0.9)


def test_score_target_with_a_class_only_predicted():
    y_pred = Y_PRED.astype(object)  # a fixed-width str array would truncate the longer label
    y_pred[2] = "Purchase"  # never a true label
    scored = score_target("category", Y_TRUE, y_pred, CONFIDENCES, THRESHOLDS, 0.9, 15)
    assert scored.classes == ["Access", "Billing", "Network", "Purchase"]
    assert np.array(scored.confusion).shape == (4, 4)
    assert scored.confusion[3] == [0, 0, 0, 0]
    assert scored.confusion[2][3] == 1
    assert scored.per_class["Purchase"]["support"] == 0
    # Macro-F1 averages over the classes of the test set, not over predicted-only ones.
    assert scored.macro_f1 == pytest.approx(f1_score(Y_TRUE, y_pred, labels=sorted(set(Y_TRUE)), average="macro"))
    # The thresholds name no Purchase: its one ticket (0.55, wrong) routes, as the model would route it.
    assert scored.routing.classes["Purchase"].routed == 1
    assert scored.routing.classes["Purchase"].precision == 0.0


def test_score_target_takes_labels_of_any_type():
    scored = score_target(
        "priority", np.array([1, 2, 2, 1]), np.array(["1", "2", "1", "1"]), np.full(4, 0.7), {1: 0.8, 2: 0.5}, 0.9, 5
    )
    assert scored.classes == ["1", "2"]
    assert scored.accuracy == pytest.approx(0.75)
    assert {c: r.routed for c, r in scored.routing.classes.items()} == {"1": 0, "2": 1}


# --- evaluate_model ------------------------------------------------------------------------------------------


class FakeModel:
    """Stands in for `TicketModel`: fixed predictions per target, and review thresholds."""

    def __init__(self, predictions: dict[str, tuple[np.ndarray, np.ndarray]], review_thresholds: dict) -> None:
        self.predictions = predictions
        self.review_thresholds = review_thresholds
        self.calls: list[tuple[list[str], object]] = []

    def predict(self, texts, vectors=None):
        self.calls.append((list(texts), vectors))
        return {t: SimpleNamespace(labels=labels, confidences=conf) for t, (labels, conf) in self.predictions.items()}


PRIORITY_TRUE = np.array(["high", "low", "low", "high", "medium", "low", "low", "medium"])
PRIORITY_PRED = np.array(["high", "low", "medium", "low", "medium", "low", "low", "low"])


def test_evaluate_model_routes_under_the_model_thresholds():
    test = pd.DataFrame({"text": [f"ticket {i}" for i in range(8)], "category": Y_TRUE, "priority": PRIORITY_TRUE})
    vectors = np.zeros((8, 3))
    model = FakeModel(
        {
            "category": (Y_PRED, CONFIDENCES),
            "priority": (PRIORITY_PRED, CONFIDENCES[::-1]),
            "queue": (Y_PRED, CONFIDENCES),  # the test set has no queue column: not scored
        },
        {"category": THRESHOLDS, "priority": 0.75},  # per class (new models) and one float (models pickled before)
    )
    evaluation = evaluate_model(model, test, vectors, target_precision=0.9, bins=15)
    assert model.calls == [(test["text"].tolist(), vectors)]
    assert set(evaluation.targets) == {"category", "priority"}
    assert evaluation.targets["category"].routing == route_target(Y_PRED, CORRECT, CONFIDENCES, THRESHOLDS, 0.9)
    priority = evaluation.targets["priority"].routing
    assert {c: r.threshold for c, r in priority.classes.items()} == {"high": 0.75, "low": 0.75, "medium": 0.75}
    # Priority confidences (reversed): 0.7 high ✓, 0.5 low ✓, 0.8 medium ✗, 0.6 low ✗, 0.85 medium ✓, 0.55 low ✓,
    # 0.9 low ✓, 0.95 low ✗: at 0.75 and above, medium 0.8 ✗ and 0.85 ✓, low 0.9 ✓ and 0.95 ✗.
    assert priority.routed == 4
    assert priority.precision == pytest.approx(0.5)
    assert priority.classes["high"].routed == 0


def test_evaluate_model_without_thresholds_routes_everything():
    test = pd.DataFrame({"text": ["t"] * 8, "category": Y_TRUE})
    evaluation = evaluate_model(FakeModel({"category": (Y_PRED, CONFIDENCES)}, {}), test, None, 0.9)
    routing = evaluation.targets["category"].routing
    assert routing.coverage == 1.0
    assert routing.precision == pytest.approx(5 / 8)


# --- Evaluation: metrics, JSON and HTML ----------------------------------------------------------------------


def evaluation() -> Evaluation:
    return Evaluation(
        {
            "category": score_target("category", Y_TRUE, Y_PRED, CONFIDENCES, THRESHOLDS, 0.9, 15),
            "priority": score_target("priority", PRIORITY_TRUE, PRIORITY_PRED, CONFIDENCES[::-1], 0.75, 0.9, 15),
        }
    )


def test_evaluation_json_round_trip():
    original = evaluation()
    restored = Evaluation.from_json(original.to_json())
    assert restored == original
    category = restored.targets["category"]
    assert isinstance(category.reliability, ReliabilityBins)
    assert isinstance(category.routing, TargetRouting)
    assert isinstance(category.routing.classes["Access"], ClassRouting)
    assert isinstance(category.routing.classes["Access"].curve, PrecisionCoverageCurve)
    assert restored.mean_macro_f1 == pytest.approx(original.mean_macro_f1)
    assert restored.flat_metrics() == original.flat_metrics()
    assert not hasattr(restored, "thresholds")  # thresholds come from training now, not from the test split


def test_flat_metrics_are_named_scalars():
    metrics = evaluation().flat_metrics()
    expected = {"mean_macro_f1"} | {
        f"{target}_{name}"
        for target in ("category", "priority")
        for name in (
            "accuracy",
            "macro_f1",
            "ece",
            "routed_precision",
            "routed_coverage",
            "min_class_routed_precision",
        )
    }
    assert set(metrics) == expected
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", name) for name in metrics)
    assert all(type(value) is float and np.isfinite(value) for value in metrics.values())
    assert metrics["category_routed_precision"] == pytest.approx(0.8)
    assert metrics["category_routed_coverage"] == pytest.approx(5 / 8)
    assert metrics["category_min_class_routed_precision"] == pytest.approx(2 / 3, abs=1e-6)


def test_training_metrics_use_the_routing_names():
    from ticketflow.components.register import training_metrics

    metrics = training_metrics(evaluation())
    assert {
        "category.routed_precision",
        "category.routed_coverage",
        "category.min_class_routed_precision",
        "priority.ece",
        "mean_macro_f1",
    } <= set(metrics)
    assert not any("review" in name for name in metrics)
    assert metrics["category.routed_precision"] == pytest.approx(0.8)


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


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(evaluation(), title="Run <42>", facts={"test tickets": 8, "model": "a & b"})


def test_render_html_is_a_complete_page_with_every_target(page):
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


def test_render_html_draws_three_pictures_per_target(page):
    images = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", page)
    assert [alt for alt, _ in images] == [
        f"{kind} of {target}"
        for target in ("category", "priority")
        for kind in ("precision-coverage curves", "reliability diagram", "confusion matrix")
    ]
    for _, image in images:
        assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")


def routing_rows(page: str, target: str) -> dict[str, tuple[str, list[str]]]:
    """The routing table of a target: `{class: (row class attribute, cells)}`."""
    section = page.split(f"<h2>{target}</h2>")[1].split("<h2>")[0]
    table = re.search(r"<table><tr><th>predicted class</th>.*?</table>", section).group(0)
    rows = {}
    for attribute, cells in re.findall(r"<tr(?: class='(\w+)')?>((?:<td>.*?</td>)+)</tr>", table):
        values = re.findall(r"<td>(.*?)</td>", cells)
        rows[values[0]] = (attribute, values[1:])
    return rows


def test_render_html_routing_table_flags_classes_below_target(page):
    rows = routing_rows(page, "category")
    # threshold, predicted, routed, routed precision, coverage
    assert rows["Access"] == ("", ["0.600", "3", "2", "1.000", "66.7%"])
    assert rows["Billing"] == ("below", ["0.500", "3", "3", "0.667 ▼", "100.0%"])  # 0.667 < 0.9 - 0.02
    assert rows["Network"] == ("", ["always review", "2", "0", "–", "0.0%"])
    assert rows["all classes"] == ("total", ["per class", "8", "5", "0.800", "62.5%"])
    assert "tr.below td{" in page  # the flag is styled
    priority = routing_rows(page, "priority")
    assert priority["medium"][0] == "below"  # 0.8 ✗, 0.85 ✓: one in two right
    assert priority["high"] == ("", ["0.750", "1", "0", "–", "0.0%"])


def test_render_html_handles_a_target_with_many_classes():
    rng = np.random.default_rng(0)
    labels = np.array([f"class {i}" for i in range(11)])
    y_true = rng.choice(labels, 300)
    y_pred = np.where(rng.uniform(size=300) < 0.7, y_true, rng.choice(labels, 300))
    scored = score_target("queue", y_true, y_pred, rng.uniform(0.2, 1.0, 300), 0.6, 0.9, 15)
    page = render_html(Evaluation({"queue": scored}))
    assert len(re.findall(r"<img ", page)) == 3
    assert len(routing_rows(page, "queue")) == 12


# --- confused pairs ------------------------------------------------------------------------------------------

LONG = "The shared printer on floor 3 " + "keeps printing blank pages after the driver update " * 6 + "END"
# A taken for B three times, A for C twice, B for A twice (a tie with A→C, broken by the true label), C for B once
# (the most confident mistake of all, yet the rarest pair: left out with three pairs shown).
CONFUSION_ROWS = [
    # true, predicted, confidence, text
    ("A", "A", 0.95, "right"),
    ("A", "B", 0.6, "least confident A taken for B"),
    ("A", "B", 0.9, "Mail jo.doe@example.com about  the\tprinter"),
    ("A", "B", 0.7, LONG),
    ("A", "C", 0.5, "second A taken for C"),
    ("A", "C", 0.55, "call +1 555 0188 please"),
    ("B", "B", 0.9, "right"),
    ("B", "A", 0.8, "first of a tie"),
    ("B", "A", 0.8, "second of a tie"),
    ("B", "B", 0.7, "right"),
    ("C", "C", 0.9, "right"),
    ("C", "B", 0.99, "rarest pair"),
    ("C", "C", 0.8, "right"),
]
C_TRUE, C_PRED, C_CONF, C_TEXT = (list(column) for column in zip(*CONFUSION_ROWS, strict=True))
C_IDS = [f"T{i}" for i in range(len(CONFUSION_ROWS))]


def test_confused_pairs_by_hand():
    pairs = confused_pairs(np.array(C_TRUE), np.array(C_PRED), np.array(C_CONF), C_TEXT, C_IDS)
    assert [(p.true_label, p.predicted_label, p.count) for p in pairs] == [("A", "B", 3), ("A", "C", 2), ("B", "A", 2)]
    assert [p.share for p in pairs] == pytest.approx([3 / 6, 2 / 6, 2 / 4])
    # Two examples each, the most confident mistake first; a tie keeps test-split order.
    assert [[e.ticket_id for e in p.examples] for p in pairs] == [["T2", "T3"], ["T5", "T4"], ["T7", "T8"]]
    assert [[e.confidence for e in p.examples] for p in pairs] == [[0.9, 0.7], [0.55, 0.5], [0.8, 0.8]]
    for p in pairs:
        assert all((e.true_label, e.predicted_label) == (p.true_label, p.predicted_label) for e in p.examples)
    a_for_b, a_for_c, _ = pairs
    # Masked as the prediction log masks, whitespace collapsed.
    assert a_for_b.examples[0].snippet == "Mail [email] about the printer"
    assert a_for_c.examples[0].snippet == "call [phone] please"
    # A long text is cut on a word boundary, ellipsis included within the limit.
    long = a_for_b.examples[1].snippet
    assert len(long) <= SNIPPET_CHARS and long.endswith("…") and LONG.startswith(long[:-1])
    assert LONG[len(long) - 1] == " " and len(long) > SNIPPET_CHARS - 20


def test_confused_pairs_are_directed_and_cut_to_top():
    pairs = confused_pairs(np.array(C_TRUE), np.array(C_PRED), np.array(C_CONF), top=10, examples=1)
    assert [(p.true_label, p.predicted_label) for p in pairs] == [("A", "B"), ("A", "C"), ("B", "A"), ("C", "B")]
    assert all(len(p.examples) == 1 for p in pairs)
    assert pairs[0].examples[0].snippet == ""  # no texts given: no snippet
    assert confused_pairs(np.array(["x", "y"]), np.array(["x", "y"]), np.array([0.9, 0.8])) == []


def test_confused_pairs_unmasked_when_masking_is_off():
    pairs = confused_pairs(np.array(C_TRUE), np.array(C_PRED), np.array(C_CONF), C_TEXT, mask=False)
    assert pairs[0].examples[0].snippet == "Mail jo.doe@example.com about the printer"


def test_score_target_keeps_confused_pairs_and_the_json_round_trip_reads_them():
    scored = score_target("queue", C_TRUE, C_PRED, C_CONF, 0.5, 0.9, 15, C_TEXT, C_IDS)
    assert [(p.true_label, p.predicted_label) for p in scored.confused_pairs] == [("A", "B"), ("A", "C"), ("B", "A")]
    restored = Evaluation.from_json(Evaluation({"queue": scored}).to_json()).targets["queue"]
    assert restored == scored
    assert isinstance(restored.confused_pairs[0], ConfusedPair)
    assert isinstance(restored.confused_pairs[0].examples[0], ConfusedExample)


def test_an_evaluation_written_before_confused_pairs_still_reads():
    written = json.loads(Evaluation({"queue": score_target("queue", C_TRUE, C_PRED, C_CONF, 0.5, 0.9)}).to_json())
    for target in written["targets"].values():
        del target["confused_pairs"]
    restored = Evaluation.from_json(json.dumps(written)).targets["queue"]
    assert restored.confused_pairs == []
    assert restored.macro_f1 == pytest.approx(score_target("queue", C_TRUE, C_PRED, C_CONF, 0.5, 0.9).macro_f1)
    assert "No mistakes" in render_html(Evaluation({"queue": restored}))  # the report still renders


def test_evaluate_model_quotes_test_tickets_with_their_ids():
    test = pd.DataFrame({"ticket_id": C_IDS, "text": C_TEXT, "category": C_TRUE})
    model = FakeModel({"category": (np.array(C_PRED), np.array(C_CONF))}, {})
    [a_for_b, *_] = evaluate_model(model, test, None, 0.9).targets["category"].confused_pairs
    assert [(e.ticket_id, e.snippet[:12]) for e in a_for_b.examples] == [("T2", "Mail [email]"), ("T3", LONG[:12])]
    unmasked = evaluate_model(model, test, None, 0.9, mask_personal_data=False).targets["category"]
    assert "jo.doe@example.com" in unmasked.confused_pairs[0].examples[0].snippet


def test_render_html_shows_the_confused_pairs_with_masked_examples():
    page = render_html(
        Evaluation({"queue": score_target("queue", C_TRUE, C_PRED, C_CONF, 0.5, 0.9, 15, C_TEXT, C_IDS)})
    )
    section = page.split("<h3>Most confused pairs</h3>")[1]
    table = re.search(r"<table class='confused'>.*?</table>", section, re.S).group(0)
    rows = re.findall(r"<tr><td>(.*?)</td><td>(\d+)</td><td>(.*?)</td>", table)
    assert rows == [("A → B", "3", "50.0%"), ("A → C", "2", "33.3%"), ("B → A", "2", "50.0%")]
    assert table.count("<li>") == 6
    assert "<q>Mail [email] about the printer</q>" in table
    assert "(T2, true A, predicted B at 0.90)" in table
    assert "jo.doe@example.com" not in page and "555 0188" not in page
