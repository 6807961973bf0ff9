"""The quality gate: whether a new model version takes `champion`, decided from scores and label sets alone.

Pure: no MLflow, no models, no I/O, so every branch is a one-line test. The caller
(`ticketflow.components.champion.gate_version`) reads the champion, scores it on the new run's test set, asks
`decide`, and moves the alias (compare-and-set) when the decision says so.

The rules: the first model becomes champion; a model whose label sets differ from the champion's wins, since
their scores cannot be compared; otherwise the new model must score strictly higher (mean macro-F1 over its
targets, both scored on the same test set), so a tie keeps the champion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Per target (label column), the classes a model predicts.
LabelSets = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class GateDecision:
    """What the quality gate decided and why.

    Attributes:
        promoted: Whether the new version takes `champion`.
        reason: One sentence for people (tag `gate.reason`, the run summary's `decision`).
        new_score: The new version's mean macro-F1 on its test set, 0–1.
        champion_version: The champion it was compared with, or None when there was none.
        champion_score: The champion's mean macro-F1 on the same test set, or None when not scored.
    """

    promoted: bool
    reason: str
    new_score: float
    champion_version: str | None
    champion_score: float | None


def _normalised(labels: LabelSets) -> dict[str, list[str]]:
    return {str(target): sorted(map(str, classes)) for target, classes in labels.items()}


def comparable(new_labels: LabelSets, champion_labels: LabelSets) -> bool:
    """Whether two models predict the same targets with the same classes (class order does not matter).

    Args:
        new_labels: The new model's classes per target.
        champion_labels: The champion's classes per target.

    Returns:
        True when their scores on one test set can be compared.
    """
    return _normalised(new_labels) == _normalised(champion_labels)


def decide(
    new_score: float,
    new_labels: LabelSets,
    champion_version: str | None = None,
    champion_labels: LabelSets | None = None,
    champion_score: float | None = None,
) -> GateDecision:
    """Decides whether the new version takes `champion`.

    Args:
        new_score: The new version's mean macro-F1 on its test set, 0–1.
        new_labels: The new version's classes per target.
        champion_version: The current champion's version, or None when there is none.
        champion_labels: The champion's classes per target (needed when there is a champion).
        champion_score: The champion's mean macro-F1 on the new version's test set (needed when the label sets
            are comparable; ignored otherwise, and then recorded as None).

    Returns:
        The decision, with the sentence explaining it.

    Raises:
        ValueError: There is a champion but no label sets for it, or comparable label sets but no champion score.
    """
    if champion_version is None:
        return GateDecision(True, "no champion yet: the first model becomes champion", new_score, None, None)
    if champion_labels is None:
        raise ValueError(f"champion v{champion_version} given without its label sets")
    if not comparable(new_labels, champion_labels):
        return GateDecision(
            True,
            f"label sets differ from champion v{champion_version} (not comparable): the new model wins",
            new_score,
            champion_version,
            None,
        )
    if champion_score is None:
        raise ValueError(f"champion v{champion_version} has the same label sets: its score on the test set is needed")
    beats = new_score > champion_score
    verb = "beats" if beats else "does not beat"
    champion = f"champion v{champion_version} ({champion_score:.4f})"
    return GateDecision(
        beats,
        f"mean macro-F1 {new_score:.4f} {verb} {champion} on the same test set",
        new_score,
        champion_version,
        champion_score,
    )
