"""Unit tests of benchmarks/bench_quality.py's pure helpers: near-duplicate clusters, kNN votes, scores, cells."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench_quality import (
    ALTERNATIVES,
    Dataset,
    aggregate,
    cluster_counts,
    cs_results,
    cs_table,
    fold_key,
    form_note,
    knn_prediction,
    limited,
    mean_std,
    met_cell,
    near_duplicate_groups,
    pair_cell,
    paired_bootstrap,
    schemes,
    slice_scores,
    variant_of,
    with_variant,
)
from ticketflow.components.neighbours import Neighbours


def unit(*angles_degrees: float) -> np.ndarray:
    """Unit vectors in the plane at the given angles (cosine of two = cos of their angle difference)."""
    radians = np.radians(angles_degrees)
    return np.column_stack([np.cos(radians), np.sin(radians)]).astype(np.float32)


# --------------------------------------------------------------------------------------------- near-duplicates


@pytest.mark.parametrize("block", [1, 2, 1024])
def test_near_duplicates_are_connected_components_of_close_pairs(block: int) -> None:
    # 0–1 and 1–2 are 20° apart (cosine 0.94), 0–2 40° apart (0.77): one cluster through 1. 3 is alone, 4–5 a pair.
    vectors = unit(0, 20, 40, 120, 200, 205)
    groups = near_duplicate_groups(vectors, threshold=0.9, block=block)
    assert groups[0] == groups[1] == groups[2]
    assert groups[4] == groups[5]
    assert len({groups[0], groups[3], groups[4]}) == 3
    assert cluster_counts(groups) == {"clusters": 2, "rows": 5, "largest": 3}


def test_near_duplicates_normalise_and_respect_the_threshold() -> None:
    vectors = unit(0, 20) * np.array([[3.0], [0.5]], dtype=np.float32)  # lengths do not matter
    assert len(set(near_duplicate_groups(vectors, threshold=0.9))) == 1
    assert len(set(near_duplicate_groups(vectors, threshold=0.95))) == 2  # cos 20° ≈ 0.94


def test_near_duplicates_of_nothing_and_of_lone_rows() -> None:
    assert near_duplicate_groups(np.zeros((0, 2))).shape == (0,)
    groups = near_duplicate_groups(unit(0, 90, 180))
    assert sorted(groups) == [0, 1, 2]
    assert cluster_counts(groups) == {"clusters": 0, "rows": 0, "largest": 1}


# --------------------------------------------------------------------------------------------- kNN votes


def test_knn_prediction_takes_the_largest_similarity_weighted_share() -> None:
    train_labels = np.array(["a", "b", "b", "c"])
    classes = np.array(["a", "b", "c"])
    neighbours = Neighbours(
        rows=np.array([[0, 1, 2], [3, 0, 1]]),
        similarities=np.array([[0.9, 0.3, 0.3], [0.5, 0.4, 0.1]], dtype=np.float32),
    )
    labels, confidences = knn_prediction(neighbours, train_labels, classes, k=3)
    assert labels.tolist() == ["a", "c"]  # a's one close vote outweighs b's two far ones
    assert confidences == pytest.approx([0.9 / 1.5, 0.5 / 1.0])
    labels, _ = knn_prediction(neighbours, train_labels, classes, k=1)
    assert labels.tolist() == ["a", "c"]
    # The labels' positions in `classes` (what the latency arm keeps) give the same answer.
    by_position, shares = knn_prediction(neighbours, np.searchsorted(classes, train_labels), classes, k=3)
    assert by_position.tolist() == ["a", "c"]
    assert shares == pytest.approx([0.9 / 1.5, 0.5 / 1.0])


# --------------------------------------------------------------------------------------------- scores


def test_slice_scores_per_slice_and_empty_slices_left_out() -> None:
    y_true = np.array(["x", "x", "y", "y"])
    labels = np.array(["x", "y", "y", "y"])
    confidences = np.array([1.0, 1.0, 1.0, 1.0])
    slices = {
        "all": np.ones(4, dtype=bool),
        "en": np.array([True, True, False, False]),
        "fr": np.zeros(4, dtype=bool),
    }
    scores = slice_scores(y_true, labels, confidences, slices)
    assert set(scores) == {"all", "en"}
    assert scores["all"]["accuracy"] == 0.75
    assert scores["all"]["ece"] == pytest.approx(0.25)  # every ticket at confidence 1, three in four right
    assert scores["en"]["macro_f1"] == pytest.approx(2 / 3)  # only class x is present in the slice: F1 of x


def test_mean_std_and_aggregate_give_the_margin_fold_by_fold() -> None:
    assert mean_std([0.5]) == {"mean": 0.5, "std": None, "n": 1}
    assert mean_std([1.0, 3.0])["std"] == pytest.approx(np.sqrt(2))
    folds = [
        {
            "default": {
                "all": {"macro_f1": d, "accuracy": d, "ece": 0.1},
                "en": {"macro_f1": d, "accuracy": d, "ece": 0},
            },
            "baseline": {"all": {"macro_f1": b, "accuracy": b, "ece": 0.2}},
        }
        for d, b in ((0.5, 0.4), (0.7, 0.4))
    ]
    summary = aggregate(folds)
    assert set(summary["default"]) == {"all"}  # "en" is missing for the baseline
    assert summary["default"]["all"]["macro_f1"]["mean"] == pytest.approx(0.6)
    assert summary["margin"]["all"]["macro_f1"]["mean"] == pytest.approx(0.2)
    assert summary["margin"]["all"]["ece"]["mean"] == pytest.approx(-0.1)


def test_cells_show_means_stds_and_whether_the_baseline_is_reached() -> None:
    one = {"mean": 0.34567, "std": None}
    assert pair_cell(one, {"mean": 0.3, "std": None}) == "0.3457 / 0.3000"
    assert pair_cell({"mean": 0.345, "std": 0.0123}, {"mean": 0.3, "std": 0.01}) == "0.345 ± 0.012 / 0.300 ± 0.010"
    assert met_cell({"mean": 0.30}, {"mean": 0.32}) == "**no** (−0.020)"
    assert met_cell({"mean": 0.32}, {"mean": 0.32}) == "yes (+0.000)"


def test_cs_table_has_one_row_per_variant_scheme_and_target() -> None:
    stats = {"mean": 0.5, "std": 0.01}
    metric = {"macro_f1": stats, "accuracy": stats, "ece": stats}
    summary = {"default": {"all": metric, "en": metric}, "baseline": {"all": metric, "en": metric}}
    result = {"summary": summary}
    names = schemes(5)
    cs = {v: {s: {t: result for t in ("queue", "priority")} for s in names} for v in ("tags", "no tags")}
    table = cs_table("cs", cs, ["de", "en"])
    assert len(table["rows"]) == 12 and all(len(row) == len(table["columns"]) for row in table["rows"])
    assert table["rows"][0][:2] == ["cs queue", "test split"]
    assert table["rows"][-1][:2] == ["cs priority", "grouped 5-fold CV, no tags"]
    assert table["rows"][0][-2:] == ["—", "0.500 / 0.500 (+0.000)"]  # no German tickets in the summary
    # A single split's language margin carries its bootstrap interval.
    summary["margin_ci"] = {"macro_f1 en": (-0.031, 0.0125)}
    summary["default"]["en"] = {**metric, "macro_f1": {"mean": 0.49, "std": None}}
    assert cs_table("cs", cs, ["de", "en"])["rows"][0][-1] == "0.490 / 0.500 (−0.010; CI −0.031 to +0.013)"


def test_limited_stratifies_and_drops_classes_left_too_small() -> None:
    tickets = pd.DataFrame({"queue": ["a"] * 300 + ["b"] * 100 + ["c"] * 12, "priority": ["high", "low"] * 206})
    kept = limited(tickets, ("queue", "priority"), 100, seed=0)
    assert len(kept) <= 100
    assert set(kept["queue"]) == {"a", "b"}  # c: 12 × 100/412 ≈ 3 rows, under the 10 a class needs
    assert kept.index.is_monotonic_increasing
    assert limited(tickets, ("queue",), 0, seed=0) is tickets


def test_the_form_note_counts_each_targets_form_and_text_model_over_the_customer_support_fits() -> None:
    info = {"form": "stack", "text_model": "sgd alpha=1e-05"}
    it = {"name": "it_service", "target": "Topic_group", "candidates": {"stack": {"info": info}}}
    sgd, logistic = "sgd alpha=3e-05", "logistic C=16"
    done = {
        "cs 5-fold CV fold 1 (tags)": {
            "form": {"queue": "text", "priority": "linear_stack"},
            "text_model": {"queue": logistic, "priority": sgd},
        },
        "cs 5-fold CV fold 2 (tags)": {
            "form": {"queue": "text", "priority": "stack"},
            "text_model": {"queue": "logistic C=4, min_df=1", "priority": sgd + " + chars"},
        },
        "cs 5-fold CV fold 3 (tags)": {
            "form": {"queue": "stack", "priority": "linear_stack"},
            "text_model": {"queue": sgd, "priority": logistic},
        },
        "it_service stack": {"stack": {}},  # another dataset's job: not counted
    }
    for alternative in ALTERNATIVES:  # an alternative setting's fits: not the default's, not counted
        done[f"cs 5-fold CV fold 1 ({alternative})"] = {"form": {"queue": "stack"}, "text_model": {"queue": sgd}}
    note = form_note(it, "cs", done)
    assert "it_service Topic_group: stack;" in note
    assert "over its 3 fits: queue text ×2, stack ×1; priority linear_stack ×2, stack ×1." in note
    assert "it_service: sgd alpha=1e-05; cs: queue logistic ×1, logistic min_df=1 ×1, sgd ×1;" in note
    assert "; priority sgd ×1, sgd + chars ×1, logistic ×1." in note


def test_a_jobs_key_names_its_variant_and_the_same_rows_under_another() -> None:
    key = fold_key("cs", "plain SGD", "5-fold CV", 2)
    assert (key, variant_of(key)) == ("cs 5-fold CV fold 3 (plain SGD)", "plain SGD")
    assert with_variant(key, "tags") == fold_key("cs", "tags", "5-fold CV", 2)
    assert variant_of("it_service stack") == ""


def test_the_paired_bootstrap_interval_holds_the_margin_and_narrows_with_more_tickets() -> None:
    rng = np.random.default_rng(0)
    for n, width_at_most in ((200, 0.25), (5000, 0.06)):
        truth = rng.choice(["a", "b", "c"], n)
        better = np.where(rng.random(n) < 0.8, truth, rng.choice(["a", "b", "c"], n))  # ~85 % right
        worse = np.where(rng.random(n) < 0.5, truth, rng.choice(["a", "b", "c"], n))  # ~67 % right
        low, high = paired_bootstrap(truth, better, worse, rounds=200)
        assert 0 < low < high and high - low < width_at_most  # a clear margin: the interval excludes 0
        assert paired_bootstrap(truth, better, better, rounds=50) == (0.0, 0.0)  # the same predictions: no margin
    assert met_cell({"mean": 0.35}, {"mean": 0.36}, (-0.03, 0.01)) == "**no** (−0.010; 95 % CI −0.030 to +0.010)"


def test_a_single_split_carries_its_margin_s_bootstrap_interval_overall_and_per_language() -> None:
    rng = np.random.default_rng(0)
    languages = np.array(["fr"] * 10 + ["de"] * 30 + ["de"] * 10 + ["en"] * 20)  # French tickets only in training
    frame = pd.DataFrame({"queue": rng.choice(list("abc"), len(languages)), "language": languages})
    data = Dataset("cs", Path("tickets.csv"), SimpleNamespace(label_columns=("queue",)), frame)
    train, held_out = np.arange(40), np.arange(40, 70)
    truth = frame["queue"].to_numpy()[held_out]
    default = np.where(rng.random(30) < 0.7, truth, "a")
    baseline = np.where(rng.random(30) < 0.5, truth, "b")
    confidences = np.full(30, 0.6)
    models = {"default": (default, confidences), "baseline": (baseline, confidences)}
    fitted = {fold_key("cs", "tags", "test split", 0): {"targets": {"queue": models}}}
    result = cs_results(data, {"test split": [(train, held_out)]}, fitted, ["tags"])
    interval = result["tags"]["test split"]["queue"]["summary"]["margin_ci"]
    assert set(interval) == {"macro_f1", "macro_f1 de", "macro_f1 en"}  # no French test ticket, no French margin
    assert interval["macro_f1"] == paired_bootstrap(truth, default, baseline)
    german = languages[held_out] == "de"
    assert interval["macro_f1 de"] == paired_bootstrap(truth[german], default[german], baseline[german])
