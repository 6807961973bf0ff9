"""The `champion` alias in the MLflow registry: who holds it, and how it moves (by the gate, by hand, back).

Every move is a compare-and-set: the alias is re-read just before it moves, and the move is refused when it no
longer points where the mover last saw it. Every champion change is appended to the registered model's
`champion_history` tag (which `rollback` walks back), and the version moved to gets `gate.*` tags saying why.
The gate's rule itself is `ticketflow.components.gate.decide`; here it is applied to the live registry.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ticketflow.components.config import TicketflowConfig
from ticketflow.components.embed import EncoderSpec
from ticketflow.components.evaluate import evaluate_model
from ticketflow.components.gate import GateDecision, comparable, decide
from ticketflow.components.model import TicketModel
from ticketflow.components.prepare import TEXT

log = logging.getLogger(__name__)

HISTORY_TAG = "champion_history"


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, as a string, or None when the alias is not set."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def load_champion(client: MlflowClient, name: str, alias: str) -> tuple[str, TicketModel] | None:
    """The version and model behind an alias, or None when the alias is not set."""
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    return str(version.version), pyfunc.unwrap_python_model().model


def _history(client: MlflowClient, name: str) -> list[str]:
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException:
        return []
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def move_champion(client: MlflowClient, name: str, version: str, alias: str, expected: str | None) -> str | None:
    """Points `alias` at `version` if the alias still points at `expected`; records the change.

    Returns:
        None when moved, else the reason for refusing.
    """
    current = alias_version(client, name, alias)
    if current != expected:
        return f"champion changed meanwhile (was v{expected}, now v{current}): alias not moved"
    client.set_registered_model_alias(name, alias, version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps([*_history(client, name), str(version)]))
    return None


def score_on_test_set(
    model: TicketModel,
    test: pd.DataFrame,
    test_vectors: np.ndarray,
    vectors_encoder: EncoderSpec,
    target_precision: float,
    store=None,
) -> float:
    """A model's mean macro-F1 on a test set, reusing the test vectors when they come from its embedding model.

    Args:
        model: The model to score (here: the champion).
        test: Test split with `text` and the label columns.
        test_vectors: The test texts' vectors, row-aligned, as the embed step computed them.
        vectors_encoder: The encoder that computed `test_vectors`.
        target_precision: Precision the review thresholds were chosen to reach (the evaluation compares to it).
        store: Vector store, to reuse cached vectors when the model encodes another way than `vectors_encoder`.

    Returns:
        Mean macro-F1 over the model's targets that the test set labels, 0–1.
    """
    if model.encoder_spec == vectors_encoder:
        vectors = test_vectors
    else:
        log.info(
            "gate: champion encodes with %s, not %s: re-embedding the test set",
            model.encoder_spec.key,
            vectors_encoder.key,
        )
        vectors = model.embed(test[TEXT].tolist(), store)
    return evaluate_model(model, test, vectors, target_precision).mean_macro_f1


def _tag_decision(client: MlflowClient, name: str, version: str, decision: GateDecision) -> None:
    tags = {
        "gate.decision": "promoted" if decision.promoted else "rejected",
        "gate.reason": decision.reason,
        "gate.new_score": f"{decision.new_score:.6f}",
        "gate.champion_version": decision.champion_version or "",
        "gate.champion_score": "" if decision.champion_score is None else f"{decision.champion_score:.6f}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def gate_version(
    client: MlflowClient,
    version: str,
    model: TicketModel,
    new_score: float,
    test: pd.DataFrame,
    test_vectors: np.ndarray,
    cfg: TicketflowConfig,
    store=None,
) -> GateDecision:
    """Applies the quality gate to a registered version: scores the champion, decides, moves `champion` or not.

    The champion is scored once, on the new version's test set and test vectors (embedded again only when it
    uses another embedding model), and only when its label sets are comparable.

    Args:
        client: MLflow client on the tracking server.
        version: The new version (already registered).
        model: The new version's model.
        new_score: Its mean macro-F1 on `test`.
        test: The new run's test split.
        test_vectors: The test split's vectors from the new model's embedding model, row-aligned.
        cfg: Configuration (model name, champion alias, target precision).
        store: Vector store (used only when the champion's embedding model differs).

    Returns:
        The final decision: when the champion changed meanwhile, not promoted and saying so.
    """
    name = cfg.registered_model_name
    champion = load_champion(client, name, cfg.champion_alias)
    if champion is None:
        decision = decide(new_score, model.label_sets)
    else:
        champion_version, champion_model = champion
        champion_score = None
        if comparable(model.label_sets, champion_model.label_sets):
            champion_score = score_on_test_set(
                champion_model, test, test_vectors, model.encoder_spec, cfg.target_precision, store
            )
        decision = decide(new_score, model.label_sets, champion_version, champion_model.label_sets, champion_score)
    if decision.promoted:
        refused = move_champion(client, name, version, cfg.champion_alias, decision.champion_version)
        if refused:
            decision = replace(decision, promoted=False, reason=refused)
    _tag_decision(client, name, version, decision)
    return decision


def promote(cfg: TicketflowConfig, version: str, reason: str = "promoted by hand") -> str:
    """Moves `champion` to a given version by hand, recorded like the gate's decisions.

    Args:
        cfg: Configuration (tracking URI, model name, alias).
        version: The version to serve.
        reason: Recorded on the version.

    Returns:
        A sentence saying what changed.

    Raises:
        ValueError: The version does not exist.
    """
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    name = cfg.registered_model_name
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise ValueError(f"{name} has no version {version!r}") from exc
    previous = alias_version(client, name, cfg.champion_alias)
    refused = move_champion(client, name, str(version), cfg.champion_alias, previous)
    if refused:
        raise RuntimeError(refused)
    client.set_model_version_tag(name, str(version), "gate.decision", "promoted by hand")
    client.set_model_version_tag(name, str(version), "gate.reason", f"{reason} (was v{previous})")
    return f"{cfg.champion_alias} of {name}: v{previous} -> v{version} ({reason})"


def rollback(cfg: TicketflowConfig) -> str:
    """Moves `champion` back to the version that held it before the current one.

    Returns:
        A sentence saying what changed.

    Raises:
        ValueError: There is no earlier champion to go back to.
    """
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    name = cfg.registered_model_name
    current = alias_version(client, name, cfg.champion_alias)
    history = _history(client, name)
    if current is None:
        raise ValueError(f"{name} has no {cfg.champion_alias}: nothing to roll back")
    earlier = [v for v in history if v != current]
    if not earlier:
        raise ValueError(
            f"{name} v{current} is the earliest champion left in the history (rollbacks remove what they leave): "
            "nothing to roll back to; `promote` can name any version"
        )
    target = earlier[-1]
    # Rolling back forgets the current champion's entry, so a second rollback goes one further back.
    trimmed = history[: len(history) - 1 - history[::-1].index(target)]
    client.set_registered_model_alias(name, cfg.champion_alias, target)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps([*trimmed, target]))
    client.set_model_version_tag(name, target, "gate.decision", "rolled back to")
    client.set_model_version_tag(name, target, "gate.reason", f"rollback from v{current}")
    return f"{cfg.champion_alias} of {name}: v{current} -> v{target} (rollback)"
