"""The quality gate's rule, every branch, as plain values: no MLflow, no model."""

from __future__ import annotations

import dataclasses

import pytest

from ticketflow.components.gate import GateDecision, comparable, decide

LABELS = {"category": ["billing", "hardware", "network"], "priority": ["high", "low"]}


def test_the_first_model_becomes_champion() -> None:
    decision = decide(0.41, LABELS)
    assert decision == GateDecision(True, "no champion yet: the first model becomes champion", 0.41, None, None)


@pytest.mark.parametrize(
    "champion_labels",
    [
        {"category": ["billing", "hardware", "network"]},  # the champion had no priority
        {"category": ["billing", "hardware"], "priority": ["high", "low"]},  # a class came or went
        {"queue": ["billing", "hardware", "network"], "priority": ["high", "low"]},  # another label column
    ],
)
def test_different_label_sets_let_the_new_model_win_unscored(champion_labels: dict[str, list[str]]) -> None:
    decision = decide(0.10, LABELS, "3", champion_labels, champion_score=0.99)
    assert decision.promoted
    assert decision.reason == "label sets differ from champion v3 (not comparable): the new model wins"
    assert decision.champion_version == "3" and decision.champion_score is None


@pytest.mark.parametrize(
    ("new_score", "champion_score", "promoted", "reason"),
    [
        (0.8123, 0.8, True, "mean macro-F1 0.8123 beats champion v2 (0.8000) on the same test set"),
        (0.8, 0.8, False, "mean macro-F1 0.8000 does not beat champion v2 (0.8000) on the same test set"),
        (0.5, 0.8, False, "mean macro-F1 0.5000 does not beat champion v2 (0.8000) on the same test set"),
    ],
    ids=["better", "equal-keeps-champion", "worse"],
)
def test_comparable_models_are_decided_by_score(
    new_score: float, champion_score: float, promoted: bool, reason: str
) -> None:
    decision = decide(new_score, LABELS, "2", LABELS, champion_score)
    assert decision == GateDecision(promoted, reason, new_score, "2", champion_score)


def test_a_hair_better_wins_though_the_rounded_scores_look_equal() -> None:
    decision = decide(0.80001, LABELS, "2", LABELS, 0.8)
    assert decision.promoted and "0.8000 beats champion v2 (0.8000)" in decision.reason


def test_label_sets_compare_regardless_of_order_and_type() -> None:
    shuffled = {"priority": ["low", "high"], "category": ["network", "billing", "hardware"]}
    assert comparable(LABELS, shuffled)
    assert comparable({"priority": [1, 2]}, {"priority": ["2", "1"]})
    assert decide(0.9, LABELS, "4", shuffled, 0.5).promoted
    assert not decide(0.4, LABELS, "4", shuffled, 0.5).promoted


def test_missing_champion_facts_are_errors_not_decisions() -> None:
    with pytest.raises(ValueError, match="champion v5 given without its label sets"):
        decide(0.9, LABELS, "5")
    with pytest.raises(ValueError, match="champion v5 has the same label sets"):
        decide(0.9, LABELS, "5", LABELS)


def test_a_decision_is_a_frozen_value() -> None:
    decision = decide(0.9, LABELS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.promoted = False  # type: ignore[misc]
