"""Registration, the applied quality gate and alias moves against a real MLflow store (sqlite + local artifacts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import SAMPLE, seed_mlflow_store
from ticketflow.components.champion import (
    alias_version,
    load_champion,
    move_champion,
    promote,
    rollback,
    score_on_test_set,
)
from ticketflow.components.config import TicketflowConfig
from ticketflow.components.embed import EncoderSpec, encode_texts
from ticketflow.components.evaluate import evaluate_model
from ticketflow.components.ingest import ColumnMapping, ingest_tickets
from ticketflow.components.prepare import TEXT, dataset_fingerprint, prepare_tickets
from ticketflow.components.register import register_model
from ticketflow.components.train import fit_ticket_model


@dataclasses.dataclass
class Fixture:
    train: object
    test: object
    train_vectors: np.ndarray
    test_vectors: np.ndarray
    mapping: ColumnMapping


@pytest.fixture(scope="module")
def data() -> Fixture:
    cfg = TicketflowConfig()
    ingested = ingest_tickets(SAMPLE, cfg)
    prepared = prepare_tickets(ingested.tickets, ingested.mapping, cfg.test_size, cfg.seed)
    encoder = EncoderSpec.from_config(cfg).load()  # the encoder the trained models record
    return Fixture(
        prepared.train,
        prepared.test,
        encode_texts(encoder, prepared.train[TEXT].tolist(), 64),
        encode_texts(encoder, prepared.test[TEXT].tolist(), 64),
        ingested.mapping,
    )


def train_and_register(
    data: Fixture, cfg: TicketflowConfig, shuffle_labels: bool = False, mapping: ColumnMapping | None = None
):
    mapping = mapping or data.mapping
    train = data.train.copy()
    if shuffle_labels:  # a model that learned nothing: the gate must keep it away from champion
        rng = np.random.default_rng(0)
        for column in mapping.label_columns:
            train[column] = rng.permutation(train[column].to_numpy())
    model = fit_ticket_model(train, data.train_vectors, mapping, cfg)
    evaluation = evaluate_model(model, data.test, data.test_vectors, cfg.target_precision)
    fingerprint = dataset_fingerprint(data.train, data.test, mapping.label_columns)
    registration = register_model(
        model, evaluation, data.train, data.test, data.test_vectors, fingerprint, cfg, artifacts={}
    )
    return registration, evaluation


@pytest.fixture
def cfg(cfg: TicketflowConfig, empty_mlflow_db: Path) -> TicketflowConfig:
    """The shared `cfg` (state under tmp_path), its MLflow store a fresh copy of an empty, migrated one."""
    seed_mlflow_store(Path(cfg.home), empty_mlflow_db)
    return cfg


@pytest.fixture
def client(cfg: TicketflowConfig) -> MlflowClient:
    mlflow.set_tracking_uri(cfg.tracking_uri)
    return MlflowClient()


def test_a_worse_model_never_takes_champion(data: Fixture, cfg: TicketflowConfig, client: MlflowClient) -> None:
    first, first_eval = train_and_register(data, cfg)
    assert first.champion and first.model_version == "1"
    worse, worse_eval = train_and_register(data, cfg, shuffle_labels=True)
    assert worse_eval.mean_macro_f1 < first_eval.mean_macro_f1 - 0.2
    assert worse.champion is False and "does not beat champion v1" in worse.decision
    assert alias_version(client, "ticket-classifier", "champion") == "1"
    assert alias_version(client, "ticket-classifier", "challenger") == "2"
    tags = client.get_model_version("ticket-classifier", "2").tags
    assert tags["gate.decision"] == "rejected" and tags["gate.champion_version"] == "1"
    assert float(tags["gate.new_score"]) == pytest.approx(worse_eval.mean_macro_f1, abs=1e-5)
    # The champion was re-scored on the new model's test set: here the same split, so the same score.
    assert float(tags["gate.champion_score"]) == pytest.approx(first_eval.mean_macro_f1, abs=1e-4)


def test_the_run_holds_every_tuning_trial_and_the_chosen_parameters(
    data: Fixture, cfg: TicketflowConfig, client: MlflowClient
) -> None:
    # The boosted stack alone competes, so it is every target's form and is tuned (test_training_local sees the
    # record of a run where other forms win).
    update = {"tuning_trials": 4, "classifier_forms": ("stack",)}
    registration, _ = train_and_register(data, cfg.model_copy(update=update))
    run = client.get_run(registration.run_id)
    forms = {target: run.data.params[f"{target}.form"] for target in data.mapping.label_columns}
    assert set(forms.values()) == {"stack"} and "category.stack_cv_macro_f1" in run.data.params
    assert "category.text_cv_macro_f1" in run.data.params  # the text model's own score, chosen among candidates
    assert "category.linear_stack_cv_macro_f1" not in run.data.params  # that form did not compete
    # Each min_df's classifier competed whole; the chosen one's score is its form's.
    by_min_df = {n: float(run.data.params[f"category.min_df_{n}_cv_macro_f1"]) for n in cfg.tfidf_min_dfs}
    chosen_min_df = int(run.data.params["category.text_model"].split("min_df=")[1].split()[0])
    assert by_min_df[chosen_min_df] == max(by_min_df.values())
    assert by_min_df[chosen_min_df] == pytest.approx(float(run.data.params["category.stack_cv_macro_f1"]))
    for target in data.mapping.label_columns:
        table = mlflow.artifacts.load_dict(f"runs:/{registration.run_id}/tuning/{target}.json")
        tried = [0, 1, 2, 3] if forms[target] == "stack" else [0]  # another form has no boosted model to tune
        assert [t["number"] for t in table["trials"]] == tried and table["stopped"] is False
        history = client.get_metric_history(registration.run_id, f"{target}.tuning.macro_f1")
        # One point per scored trial (step = trial number): its macro-F1 at the highest rung it reached. Without a
        # search (another form) the configured settings were never scored by one: no points.
        scored = {t["number"]: t["rungs"][-1]["macro_f1"] for t in table["trials"] if t["rungs"]}
        assert {m.step: m.value for m in history} == scored and bool(scored) == (forms[target] == "stack")
        assert run.data.params[f"{target}.tuning.best_trial"] == str(table["best_trial"])
        assert table["best_params"] == table["trials"][table["best_trial"]]["params"]
        for name, value in table["best_params"].items():
            assert run.data.params[f"{target}.booster.{name}"] == str("none" if value is None else value)


def test_a_better_model_takes_champion(data: Fixture, cfg: TicketflowConfig, client: MlflowClient) -> None:
    weak, _ = train_and_register(data, cfg, shuffle_labels=True)
    assert weak.champion  # the first model always becomes champion
    strong, strong_eval = train_and_register(data, cfg)
    assert strong.champion and "beats champion v1" in strong.decision
    assert alias_version(client, "ticket-classifier", "champion") == "2"
    described = client.get_registered_model("ticket-classifier").description
    assert "**Champion: v2** (promoted: mean macro-F1" in described and "beats champion v1" in described
    assert figures_row(strong_eval, "priority") in described and "Latest registration" not in described


def figures_row(evaluation, target: str) -> str:
    """The description's table row of one target, written from the evaluation itself."""
    t = evaluation.targets[target]
    return f"| {target} | {t.macro_f1:.3f} | {t.accuracy:.3f} | {t.routing.precision:.3f} | {t.routing.coverage:.1%} |"


def test_each_registration_describes_the_version_and_the_registered_model(
    data: Fixture, cfg: TicketflowConfig, client: MlflowClient
) -> None:
    first, first_eval = train_and_register(data, cfg)
    assert first.champion
    model_text = client.get_registered_model("ticket-classifier").description
    version_text = client.get_model_version("ticket-classifier", "1").description
    for text in (model_text, version_text):
        for target in ("category", "priority"):  # every class the model learned, by name
            assert f"`{target}` ({', '.join(sorted(set(data.train[target])))})" in text
        assert figures_row(first_eval, "category") in text and figures_row(first_eval, "priority") in text
    fingerprint = dataset_fingerprint(data.train, data.test, data.mapping.label_columns)
    assert f"{fingerprint['rows']} tickets" in model_text and fingerprint["content_sha256"][:12] in model_text
    assert f"{fingerprint['test_rows']} of them held out" in version_text
    assert "**Champion: v1** (promoted: no champion yet: the first model becomes champion)" in model_text
    assert "Quality gate: **promoted to champion**" in version_text
    assert "Latest registration" not in model_text

    worse, worse_eval = train_and_register(data, cfg, shuffle_labels=True)
    assert not worse.champion
    updated = client.get_registered_model("ticket-classifier").description
    assert updated != model_text  # the second registration rewrote it
    # Still about the champion (v1, its figures), plus one line on the rejected newcomer.
    assert "**Champion: v1**" in updated and figures_row(first_eval, "category") in updated
    assert figures_row(worse_eval, "category") not in updated
    assert "Latest registration: **v2** (rejected: mean macro-F1" in updated and "does not beat champion v1" in updated
    rejected_text = client.get_model_version("ticket-classifier", "2").description
    assert figures_row(worse_eval, "category") in rejected_text and "Quality gate: **not promoted**" in rejected_text
    assert client.get_model_version("ticket-classifier", "1").description == version_text  # left as it was


def test_different_label_sets_let_the_new_model_win(data: Fixture, cfg: TicketflowConfig) -> None:
    train_and_register(data, cfg)
    category_only = dataclasses.replace(data.mapping, priority_column="")
    result, _ = train_and_register(data, cfg, mapping=category_only)
    assert result.champion and "label sets differ" in result.decision


def test_alias_is_not_moved_when_the_champion_changed_meanwhile(
    data: Fixture, cfg: TicketflowConfig, client: MlflowClient
) -> None:
    train_and_register(data, cfg)
    train_and_register(data, cfg, shuffle_labels=True)
    refused = move_champion(client, "ticket-classifier", "2", "champion", expected="7")
    assert refused and "changed meanwhile" in refused
    assert alias_version(client, "ticket-classifier", "champion") == "1"


def test_promote_and_rollback_errors_are_clear(data: Fixture, cfg: TicketflowConfig, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to roll back"):
        rollback(cfg)
    train_and_register(data, cfg)
    with pytest.raises(ValueError, match="no version '5'"):
        promote(cfg, "5")
    with pytest.raises(ValueError, match="earliest champion left in the history"):
        rollback(cfg)


def test_the_champion_is_scored_on_the_given_test_vectors(
    data: Fixture, cfg: TicketflowConfig, client: MlflowClient
) -> None:
    _, first_eval = train_and_register(data, cfg)
    _, champion = load_champion(client, "ticket-classifier", "champion")
    same_model = score_on_test_set(champion, data.test, data.test_vectors, champion.encoder_spec, cfg.target_precision)
    # Vectors from the champion's own encoder are used as they are: no encoder is loaded.
    assert champion.__dict__["_encoder"] is None
    assert same_model == pytest.approx(first_eval.mean_macro_f1, abs=1e-6)
    # Vectors from another encoder are not: the champion embeds the test set itself.
    wrong_vectors = np.zeros_like(data.test_vectors)
    other_encoder = EncoderSpec(champion.embedding_model, "fp32", champion.embedding_max_tokens)
    other_model = score_on_test_set(champion, data.test, wrong_vectors, other_encoder, cfg.target_precision)
    assert champion.__dict__["_encoder"] is not None
    assert other_model == pytest.approx(same_model, abs=1e-4)


def test_test_vectors_must_match_the_test_rows(data: Fixture, cfg: TicketflowConfig) -> None:
    model = fit_ticket_model(data.train, data.train_vectors, data.mapping, cfg)
    evaluation = evaluate_model(model, data.test, data.test_vectors, cfg.target_precision)
    fingerprint = dataset_fingerprint(data.train, data.test, data.mapping.label_columns)
    with pytest.raises(ValueError, match="test_vectors has"):
        register_model(model, evaluation, data.train, data.test, data.test_vectors[:-1], fingerprint, cfg, {})
