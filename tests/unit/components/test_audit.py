"""The label audit: confident learning on hand-built probabilities, the artifact, the report section, and the
issue's test: 20 flipped categories of the bundled sample come out near the top of the list."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tests.unit.components.test_evaluate import evaluation
from tests.unit.components.test_model import synthetic
from tests.unit.components.test_stacking import QUICK
from ticketflow.components.audit import (
    ARTIFACT_COLUMNS,
    ISSUE_COLUMNS,
    ChampionLabelIssues,
    find_label_issues,
    issue_counts,
    label_issues_frame,
    label_issues_html,
    read_label_issues,
    read_label_issues_if_any,
    write_label_issues,
)
from ticketflow.components.config import TicketflowConfig
from ticketflow.components.evaluate import render_html
from ticketflow.components.model import NeighbourStackClassifier
from ticketflow.components.neighbours import NeighbourIndex

# --- find_label_issues ---------------------------------------------------------------------------------------

CLASSES = ["A", "B", "C"]
# Thresholds (mean probability of each class over the tickets given it): B (1.0 + 0.5) / 2 = 0.75,
# A (0.9 + 0.25 + 0.3) / 3 ≈ 0.483, C (1.0 + 0.4) / 2 = 0.7.
GIVEN = ["B", "B", "A", "A", "A", "C", "C"]
PROBABILITIES = np.array(
    [
        [0.0, 1.0, 0.0],
        [0.25, 0.5, 0.25],  # B below its threshold and no other class confident: left alone
        [0.9, 0.1, 0.0],  # confidently A, as given: not an issue
        [0.25, 0.75, 0.0],  # p(B) reaches B's threshold exactly: flagged, suggesting B
        [0.3, 0.7, 0.0],  # p(B) just below it: not flagged, however low p(A) is
        [0.0, 0.0, 1.0],
        [0.6, 0.0, 0.4],  # p(A) above A's threshold: flagged, suggesting A
    ]
)


def test_issues_are_tickets_confidently_of_another_class_than_given_most_disputed_first():
    issues = find_label_issues(GIVEN, PROBABILITIES, CLASSES)
    assert list(issues.columns) == list(ISSUE_COLUMNS)
    assert issues["position"].tolist() == [3, 6]
    assert issues["given_label"].tolist() == ["A", "C"]
    assert issues["suggested_label"].tolist() == ["B", "A"]
    np.testing.assert_allclose(issues["given_label_probability"], [0.25, 0.4])
    np.testing.assert_allclose(issues["suggested_label_probability"], [0.75, 0.6])
    np.testing.assert_allclose(issues["score"], [0.75, 0.6])  # 1 - p(given label), highest first


def test_thresholds_are_each_class_mean_self_confidence():
    # Raising the B tickets' own confidence raises B's threshold past 0.75: ticket 3 is no longer flagged.
    probabilities = PROBABILITIES.copy()
    probabilities[1] = [0.2, 0.6, 0.2]  # B's threshold: (1.0 + 0.6) / 2 = 0.8
    assert find_label_issues(GIVEN, probabilities, CLASSES)["position"].tolist() == [6]
    # Lowering it lets ticket 4 (p(B) = 0.7) through too.
    probabilities[1] = [0.4, 0.4, 0.2]  # (1.0 + 0.4) / 2 = 0.7
    assert find_label_issues(GIVEN, probabilities, CLASSES)["position"].tolist() == [3, 4, 6]


def test_the_suggestion_is_the_most_probable_confident_class_not_the_most_probable_class():
    given = ["A", "A", "B", "B", "C", "C"]
    probabilities = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.8, 0.2, 0.0],  # A's threshold 0.9
            [0.0, 0.5, 0.5],
            [0.0, 0.25, 0.75],  # B's threshold 0.375; p(C) reaches C's threshold: suggests C
            [0.0, 0.0, 1.0],
            [0.5, 0.45, 0.05],  # C's threshold 0.525; A is likelier but under its threshold, B is confident
        ]
    )
    issues = find_label_issues(given, probabilities, CLASSES).set_index("position")
    assert issues["suggested_label"].to_dict() == {3: "C", 5: "B"}
    assert list(issues.index) == [5, 3]  # p(given label) 0.05, then 0.25
    assert 2 not in issues.index  # B confident (0.5 ≥ 0.375), C not (0.5 < 0.525): as given


def test_equally_disputed_labels_are_ordered_by_the_margin_of_the_suggestion():
    given = ["A", "A", "A", "B", "B", "C", "C"]  # thresholds: A 0.3667, B 0.8, C 0.7
    probabilities = np.array(
        [
            [0.9, 0.1, 0.0],
            [0.1, 0.0, 0.75],  # p(A) 0.1, suggests C: margin 0.65
            [0.1, 0.9, 0.0],  # p(A) 0.1, suggests B: margin 0.8, listed first though later
            [0.0, 1.0, 0.0],
            [0.0, 0.6, 0.4],
            [0.0, 0.0, 0.8],
            [0.0, 0.4, 0.6],
        ]
    )
    issues = find_label_issues(given, probabilities, CLASSES)
    assert issues["position"].tolist() == [2, 1]
    np.testing.assert_allclose(issues["score"], [0.9, 0.9])


def test_no_issues_when_the_model_agrees_with_every_label():
    issues = find_label_issues(["A", "B"], np.eye(2), ["A", "B"])
    assert issues.empty and list(issues.columns) == list(ISSUE_COLUMNS)


@pytest.mark.parametrize(
    ("given", "probabilities", "message"),
    [
        (["A", "B"], np.ones((3, 3)) / 3, "shape"),
        (["A", "Z"], np.ones((2, 3)) / 3, "not among the classes"),
    ],
)
def test_bad_input_is_refused(given, probabilities, message):
    with pytest.raises(ValueError, match=message):
        find_label_issues(given, probabilities, CLASSES)


# --- The artifact ---------------------------------------------------------------------------------------------


def training_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticket_id": [f"T-{i}" for i in range(len(GIVEN))],
            "text": [f"ticket text {i}" for i in range(len(GIVEN))],
            "category": GIVEN,
            "priority": ["NA", "high", "NA", "high", "NA", "high", "NA"],
        }
    )


def test_the_artifact_has_every_audited_target_with_ids_texts_and_ranks():
    classifiers = {
        "category": SimpleNamespace(oof_proba_=PROBABILITIES, classes_=np.array(CLASSES)),
        # "NA" is a label, not a missing value; this classifier disputes the fourth and sixth tickets' priority.
        "priority": SimpleNamespace(
            oof_proba_=np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.95, 0.05], [0.7, 0.3]]),
            classes_=np.array(["NA", "high"]),
        ),
        "team": SimpleNamespace(classes_=np.array(["x", "y"])),  # no out-of-fold probabilities: not audited
    }
    issues = label_issues_frame(training_frame(), classifiers)
    assert list(issues.columns) == list(ARTIFACT_COLUMNS)
    assert issues[["ticket_id", "target", "given_label", "suggested_label", "rank"]].values.tolist() == [
        ["T-3", "category", "A", "B", 1],
        ["T-6", "category", "C", "A", 2],
        ["T-5", "priority", "high", "NA", 1],
        ["T-3", "priority", "high", "NA", 2],
    ]
    assert issues["text"].tolist()[0] == "ticket text 3"
    assert issues["confidence"].tolist()[:2] == [0.75, 0.6]  # the suggested label's probability
    assert issue_counts(issues, ["category", "priority", "team"]) == {"category": 2, "priority": 2, "team": 0}


def test_the_artifact_refuses_probabilities_of_other_tickets():
    classifiers = {"category": SimpleNamespace(oof_proba_=PROBABILITIES[:3], classes_=np.array(CLASSES))}
    with pytest.raises(ValueError, match="3 out-of-fold rows for 7 training tickets"):
        label_issues_frame(training_frame(), classifiers)


def test_the_artifact_round_trips_through_csv_labels_staying_text(tmp_path: Path):
    classifiers = {
        "priority": SimpleNamespace(
            oof_proba_=np.array([[0.1, 0.9]] * 3 + [[0.9, 0.1]] * 4), classes_=np.array(["NA", "high"])
        )
    }
    issues = label_issues_frame(training_frame(), classifiers)
    assert set(issues["suggested_label"]) == {"NA", "high"}
    write_label_issues(issues, tmp_path / "issues.csv")
    restored = read_label_issues(tmp_path / "issues.csv")
    pd.testing.assert_frame_equal(restored, issues, check_dtype=False)
    assert read_label_issues_if_any("") is None
    assert read_label_issues_if_any(tmp_path / "absent.csv") is None
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a label-issues file"):
        read_label_issues(tmp_path / "other.csv")


def test_the_classifier_keeps_its_out_of_fold_probabilities_but_does_not_pickle_them():
    texts, vectors, labels = synthetic(15, seed=0)
    index = NeighbourIndex(vectors)
    neighbours = index.search(index.matrix, 10, exclude_rows=np.arange(len(index)))
    classifier = NeighbourStackClassifier(**QUICK).fit(texts, labels, neighbours)
    assert classifier.oof_proba_.shape == (len(labels), len(classifier.classes_))
    np.testing.assert_allclose(classifier.oof_proba_.sum(axis=1), 1.0)
    restored = pickle.loads(pickle.dumps(classifier))
    assert not hasattr(restored, "oof_proba_")
    assert classifier.oof_proba_.shape == (len(labels), len(classifier.classes_))  # pickling left the fitted one whole
    np.testing.assert_array_equal(
        restored.class_probabilities(np.asarray(texts, dtype=object), vectors, neighbours),
        classifier.class_probabilities(np.asarray(texts, dtype=object), vectors, neighbours),
    )


def test_the_train_step_writes_the_label_issues_and_counts_them_in_the_models_metadata(tmp_path: Path):
    import json

    import joblib

    from ticketflow.components.train import train_from_files

    texts, vectors, labels = synthetic(20, seed=3)
    labels = labels.copy()
    labels[::6] = np.roll(labels[::6], 1)  # a few wrong labels (every sixth ticket), so that some are flagged
    train = pd.DataFrame({"ticket_id": [f"T-{i}" for i in range(len(texts))], "text": texts, "category": labels})
    train.to_parquet(tmp_path / "train.parquet", index=False)
    with open(tmp_path / "embeddings", "wb") as f:
        np.savez(f, train=vectors, test=vectors[:2])
    (tmp_path / "report.json").write_text(
        json.dumps({"mapping": {"text_columns": ["text"], "category_column": "category"}})
    )
    cfg = TicketflowConfig(home=str(tmp_path / "home"), cv_folds=3, booster_iterations=20, neighbour_ks=(3, 10), seed=0)
    paths = {name: str(tmp_path / name) for name in ("train.parquet", "embeddings", "report.json", "model", "issues")}
    facts = train_from_files(
        paths["train.parquet"], paths["embeddings"], paths["report.json"], "", cfg, paths["model"], paths["issues"]
    )
    issues = read_label_issues(paths["issues"])
    assert facts["category.label_issues"] == len(issues) == (issues["target"] == "category").sum() >= 1
    assert set(issues["ticket_id"]) <= set(train["ticket_id"])
    assert not hasattr(joblib.load(paths["model"]).classifiers["category"], "oof_proba_")
    # Without a path (callers from before the audit) nothing is written or counted.
    assert "category.label_issues" not in train_from_files(
        paths["train.parquet"], paths["embeddings"], paths["report.json"], "", cfg, str(tmp_path / "again")
    )


# --- The report and the feedback snapshot ---------------------------------------------------------------------


def many_issues(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticket_id": [f"T-{i}" for i in range(n)],
            "text": [f"<b>printer</b> {i} " + "very long text " * 30 for i in range(n)],
            "target": "category",
            "given_label": "Billing",
            "suggested_label": "Hardware & Co",
            "confidence": np.linspace(0.99, 0.5, n).round(4),
            "given_label_probability": 0.01,
            "rank": np.arange(1, n + 1),
        }
    )


def test_the_report_section_shows_the_total_and_the_top_20_escaped_and_shortened():
    section = label_issues_html(many_issues(25), "category")
    assert "Probably mislabelled training tickets" in section
    assert "25 training tickets flagged" in section and "the top 20" in section
    assert section.count("<tr>") == 21  # header + 20
    assert "&lt;b&gt;printer&lt;/b&gt; 0 " in section and "<b>printer" not in section
    assert "printer</b> 20 " not in section and "printer&lt;/b&gt; 20 " not in section  # the 21st is not listed
    assert "very long text " * 30 not in section and "…" in section
    assert "Hardware &amp; Co" in section and "0.990" in section
    empty = label_issues_html(many_issues(0), "category")
    assert "0 training tickets flagged" in empty and "<table" not in empty


def test_the_html_report_gets_the_section_per_target_only_with_label_issues():
    issues = many_issues(3)
    page = render_html(evaluation(), label_issues=issues)
    assert page.count("Probably mislabelled training tickets") == 2  # category and priority
    assert "3 training tickets flagged" in page and "0 training tickets flagged" in page
    assert "Probably mislabelled" not in render_html(evaluation())  # reports of models from before the audit


def test_feedback_snapshots_hold_the_suggested_labels_of_every_flagged_target():
    issues = many_issues(2)
    issues.loc[2] = ["T-0", "same ticket", "priority", "low", "high", 0.8, 0.1, 1]
    registered = datetime(2026, 1, 2, tzinfo=UTC)
    champion = ChampionLabelIssues("7", "run", registered, issues, {"category": 2, "priority": 1})
    snapshots = champion.feedback_snapshots()
    assert set(snapshots) == {"T-0", "T-1"}
    assert snapshots["T-0"]["labels"] == {"category": "Hardware & Co", "priority": "high"}
    assert snapshots["T-0"]["confidences"] == {"category": 0.99, "priority": 0.8}
    assert snapshots["T-0"]["model_version"] == "7" and snapshots["T-0"]["timestamp"] == registered
    ranked = champion.ranked()  # across targets by p(given label): 0.01 (rank 1), 0.01 (rank 2), 0.1
    assert ranked[["ticket_id", "target"]].values.tolist() == [
        ["T-0", "category"],
        ["T-1", "category"],
        ["T-0", "priority"],
    ]
    assert champion.ranked("priority")["target"].tolist() == ["priority"]
    with pytest.raises(ValueError, match="no target 'team'; its targets: category, priority"):
        champion.ranked("team")


# --- The issue's test: flipped labels of the bundled sample ---------------------------------------------------

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample_tickets.csv"
FLIPPED = 20


@pytest.fixture(scope="module")
def flipped_sample(tmp_path_factory) -> tuple[pd.DataFrame, np.ndarray]:
    """The sample's training split with 20 categories flipped to another class (seeded), and its label issues."""
    from ticketflow.components.embed import EncoderSpec, encode_texts
    from ticketflow.components.ingest import ingest_tickets
    from ticketflow.components.prepare import TEXT, prepare_tickets
    from ticketflow.components.train import fit_ticket_model

    cfg = TicketflowConfig(home=str(tmp_path_factory.mktemp("home")), priority_column="none")
    ingested = ingest_tickets(SAMPLE, cfg)
    train = prepare_tickets(ingested.tickets, ingested.mapping, cfg.test_size, cfg.seed).train.reset_index(drop=True)
    vectors = encode_texts(EncoderSpec.from_config(cfg).load(), train[TEXT].tolist(), cfg.embed_batch_size)
    rng = np.random.default_rng(16)
    flipped = rng.choice(len(train), FLIPPED, replace=False)
    classes = sorted(train["category"].unique())
    noisy = train.copy()
    for i in flipped:
        noisy.loc[i, "category"] = rng.choice([c for c in classes if c != train.loc[i, "category"]])
    model = fit_ticket_model(noisy, vectors, ingested.mapping, cfg)
    return label_issues_frame(noisy, model.classifiers), train.loc[flipped, "ticket_id"].to_numpy()


def test_most_flipped_labels_are_near_the_top_of_the_list(flipped_sample):
    issues, flipped = flipped_sample
    top = issues[issues["rank"] <= 2 * FLIPPED]
    found = top["ticket_id"].isin(flipped).sum()
    in_top_20 = top.head(FLIPPED)["ticket_id"].isin(flipped).sum()
    print(f"flipped in the top 40: {found} of {FLIPPED}, in the top 20: {in_top_20}; flagged in all: {len(issues)}")
    # Measured (seed 16): 12 of 20 in the top 40, 9 in the top 20, 32 flagged in all (18 without the flips: the
    # sample's own noise).
    # The rule leaves alone a flipped ticket whose true class the model does not reach that class's threshold for.
    assert found > FLIPPED / 2  # most of them
    # The flipped tickets crowd the top of the list: a random 20 of the 333 would hold about 1.
    assert in_top_20 >= 8
