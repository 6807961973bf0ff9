"""Logic tests of the stacked classifier and its parts: the neighbour index, the votes, the flattened booster."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline

from tests.unit.components.test_model import CLASSES, synthetic
from ticketflow.components.forest import FlatForest
from ticketflow.components.ingest import ColumnMapping
from ticketflow.components.model import (
    NeighbourStackClassifier,
    TargetPrediction,
    TextModelSpec,
    TicketModel,
    _simplest_within_one_error,
)
from ticketflow.components.neighbours import NeighbourIndex, Neighbours, neighbour_votes
from ticketflow.components.routing import NEVER

# One min_df: the tests of other choices see one candidate per model kind (test_rare_words_... tries both).
QUICK = {"booster_iterations": 20, "cv": 3, "neighbour_ks": (3, 10), "random_state": 0, "tfidf_min_dfs": (2,)}


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# --- NeighbourIndex -------------------------------------------------------------------------------------------


def test_search_finds_the_exact_nearest_tickets_most_similar_first():
    index = NeighbourIndex(unit_vectors(300, 12, seed=0))
    queries = unit_vectors(20, 12, seed=1)
    found = index.search(queries, 7)
    similarities = queries @ index.matrix.T
    expected = np.argsort(-similarities, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(found.rows, expected)
    np.testing.assert_allclose(found.similarities, np.take_along_axis(similarities, expected, axis=1), rtol=1e-6)
    assert (np.diff(found.similarities, axis=1) <= 0).all()


def test_a_training_ticket_is_never_its_own_neighbour():
    vectors = unit_vectors(200, 8, seed=2)
    index = NeighbourIndex(vectors)
    own = index.search(index.matrix, 5)
    assert (own.rows[:, 0] == np.arange(200)).all()  # unexcluded, each ticket's nearest is itself
    excluded = index.search(index.matrix, 5, exclude_rows=np.arange(200))
    assert not (excluded.rows == np.arange(200)[:, None]).any()
    # The rest of the order is unchanged: the excluded search is the unexcluded one shifted by one.
    np.testing.assert_array_equal(excluded.rows[:, :4], index.search(index.matrix, 6).rows[:, 1:5])


def test_search_caps_k_at_the_index_size_and_refuses_an_empty_one():
    index = NeighbourIndex(unit_vectors(4, 6, seed=3))
    assert index.search(unit_vectors(2, 6, seed=4), 50).rows.shape == (2, 4)
    assert index.search(index.matrix, 50, exclude_rows=np.arange(4)).rows.shape == (4, 3)
    with pytest.raises(ValueError, match="no neighbours"):
        NeighbourIndex(unit_vectors(1, 6, seed=5)).search(unit_vectors(1, 6, seed=5), 3, exclude_rows=np.array([0]))


def test_index_normalises_stores_float16_and_pickles_without_its_float32_copy():
    index = NeighbourIndex(3.0 * unit_vectors(50, 10, seed=6))
    assert index.vectors.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(index.matrix, axis=1), 1.0, atol=1e-3)
    state = pickle.dumps(index)
    assert len(state) < 50 * 10 * 2 + 1000  # float16 only
    restored = pickle.loads(state)
    query = unit_vectors(3, 10, seed=7)
    np.testing.assert_array_equal(restored.search(query, 5).rows, index.search(query, 5).rows)


# --- neighbour_votes -----------------------------------------------------------------------------------------


def test_votes_are_similarity_weighted_shares_then_top_similarity_then_class_nearest():
    labels = np.array([0, 1, 1, 2])
    neighbours = Neighbours(rows=np.array([[1, 0, 2]]), similarities=np.array([[0.9, 0.6, 0.3]], dtype=np.float32))
    votes = neighbour_votes(neighbours, labels, n_classes=3, ks=(1, 3))
    np.testing.assert_allclose(votes[0, :3], [0.0, 1.0, 0.0])  # k=1: only row 1 (class 1)
    np.testing.assert_allclose(votes[0, 3:6], [0.6 / 1.8, 1.2 / 1.8, 0.0], rtol=1e-6)  # k=3
    assert votes[0, 6] == pytest.approx(0.9)
    np.testing.assert_allclose(votes[0, 7:], [0.6, 0.9, 0.0], rtol=1e-6)  # per class, its nearest ticket


def test_votes_of_neighbours_with_no_positive_similarity_are_an_unweighted_share():
    neighbours = Neighbours(rows=np.array([[0, 1]]), similarities=np.array([[-0.1, -0.2]], dtype=np.float32))
    votes = neighbour_votes(neighbours, np.array([0, 1]), n_classes=2, ks=(2,))
    np.testing.assert_allclose(votes[0, :2], [0.5, 0.5])


# --- FlatForest ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [2, 4])
def test_flat_forest_scores_as_scikit_learn_does(n_classes):
    rng = np.random.default_rng(8)
    X = rng.random((400, 9))
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values take the side the tree learnt
    y = rng.integers(0, n_classes, 400)
    booster = HistGradientBoostingClassifier(max_iter=40, max_depth=5, early_stopping=False, random_state=0).fit(X, y)
    forest = FlatForest(booster)
    X_new = rng.random((300, 9))
    X_new[rng.random(X_new.shape) < 0.05] = np.nan
    np.testing.assert_allclose(forest.predict_proba(X_new), booster.predict_proba(X_new), atol=1e-12)
    np.testing.assert_allclose(softmax(forest.class_scores(X_new), axis=1), booster.predict_proba(X_new), atol=1e-12)
    np.testing.assert_allclose(forest.predict_proba(X_new[:1]), booster.predict_proba(X_new[:1]), atol=1e-12)


# --- NeighbourStackClassifier --------------------------------------------------------------------------------


def fit_stack(texts, vectors, labels, **params) -> tuple[NeighbourStackClassifier, NeighbourIndex]:
    index = NeighbourIndex(vectors)
    neighbours = index.search(index.matrix, 10, exclude_rows=np.arange(len(index)))
    return NeighbourStackClassifier(**{**QUICK, **params}).fit(texts, labels, neighbours), index


@pytest.fixture(scope="module")
def stacked():
    texts, vectors, labels = synthetic(40, seed=0)
    return fit_stack(texts, vectors, labels)


def probabilities(model: NeighbourStackClassifier, index: NeighbourIndex, texts, vectors) -> np.ndarray:
    return model.class_probabilities(np.array(texts, dtype=object), vectors, index.search(vectors, 10))


def test_stack_probabilities_are_distributions_in_class_order(stacked):
    model, index = stacked
    texts, vectors, labels = synthetic(20, seed=1)
    proba = probabilities(model, index, texts, vectors)
    assert proba.shape == (len(texts), len(CLASSES))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(model.classes_) == sorted(CLASSES)
    assert (model.classes_[proba.argmax(1)] == labels).mean() > 0.8  # chance is 1/3


def test_stack_uses_the_neighbours_when_only_the_embeddings_carry_signal():
    texts, vectors, labels = synthetic(40, seed=0, text_signal=False)
    model, index = fit_stack(texts, vectors, labels)
    test_texts, test_vectors, test_labels = synthetic(20, seed=1, text_signal=False)
    accuracy = (model.classes_[probabilities(model, index, test_texts, test_vectors).argmax(1)] == test_labels).mean()
    assert accuracy > 0.8
    # Either stack reads the votes (the boosted one, or the logistic one when it scores within an error of it).
    assert model.form_ in ("stack", "linear_stack")
    assert model.form_cv_macro_f1_[model.form_] > model.text_cv_macro_f1_ + 0.3


def _one_hot_scores(predicted: np.ndarray, classes: int = 2) -> np.ndarray:
    return np.log(np.where(np.eye(classes, dtype=bool)[predicted], 0.9, 0.1))


@pytest.mark.parametrize(
    ("stack_wrong", "text_wrong", "chosen"),
    [
        # The stack is ahead in every fold by the same margin: more than its standard error (zero). It classifies.
        ([0, 0, 0, 0, 0], [2, 2, 2, 2, 2], "stack"),
        # Ahead overall, but the folds disagree: the margin is within one standard error, so the simpler text wins.
        ([0, 4, 0, 4, 0], [3, 0, 3, 0, 3], "text"),
        # Tied: the simpler form.
        ([1, 1, 1, 1, 1], [1, 1, 1, 1, 1], "text"),
        # The text model scores higher: it is the best form, whatever the errors.
        ([3, 3, 3, 3, 3], [0, 0, 0, 0, 0], "text"),
    ],
)
def test_the_simplest_form_within_one_standard_error_of_the_best_classifies(stack_wrong, text_wrong, chosen):
    folds, y = [], np.tile([0, 1], 50)  # five folds of 20 tickets
    stack_predicted, text_predicted = y.copy(), y.copy()
    for number, (n_stack, n_text) in enumerate(zip(stack_wrong, text_wrong, strict=True)):
        valid = np.arange(20 * number, 20 * number + 20)
        folds.append((np.setdiff1d(np.arange(100), valid), valid))
        stack_predicted[valid[:n_stack]] ^= 1
        text_predicted[valid[:n_text]] ^= 1
    candidates = {"stack": _one_hot_scores(stack_predicted), "text": _one_hot_scores(text_predicted)}
    pooled = {form: f1_score(y, scores.argmax(1), average="macro") for form, scores in candidates.items()}
    best = max(("stack", "text"), key=lambda form: pooled[form])
    assert _simplest_within_one_error(("stack", "text"), best, candidates, y, folds) == chosen
    # A form that does not compete is never chosen.
    assert _simplest_within_one_error(("stack",), "stack", candidates, y, folds) == "stack"


def test_the_text_model_classifies_alone_when_it_scores_higher_out_of_fold():
    # Embeddings of pure noise: the neighbours' votes are noise, and with them the stack scores lower out of fold.
    texts, vectors, labels = synthetic(40, seed=3, embedding_signal=False)
    model, index = fit_stack(texts, vectors, labels)
    scores = model.form_cv_macro_f1_
    assert model.form_ == "text" and scores["text"] > max(scores["stack"], scores["linear_stack"])
    assert model.forest_ is None and model.linear_meta_ is None
    assert model.cv_macro_f1_ == pytest.approx(model.text_cv_macro_f1_) == pytest.approx(scores["text"])
    query = np.array(synthetic(10, seed=4, embedding_signal=False)[0], dtype=object)
    proba = model.class_probabilities(query, vectors[:10], None)  # no neighbours needed
    expected = softmax(np.log(model.text_model_.predict_proba(query)) / model.temperature_, axis=1)
    np.testing.assert_allclose(proba, expected, atol=1e-9)
    np.testing.assert_allclose(proba, probabilities(model, index, query, vectors[:10]))  # neighbours change nothing
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).class_probabilities(query, None, None), proba)
    assert set(model.review_thresholds_) == set(CLASSES)


def test_stack_text_probabilities_equal_the_text_pipelines(stacked):
    model, _ = stacked
    texts = np.array(synthetic(10, seed=2)[0], dtype=object)
    np.testing.assert_allclose(model.text_proba(texts), model.text_model_.predict_proba(texts), atol=1e-12)


def test_stack_fit_is_deterministic_and_picks_the_best_text_model_of_the_grid():
    texts, vectors, labels = synthetic(30, seed=3)
    grid = {"sgd_alphas": (1e-4, 1e-3), "logistic_cs": (1.0, 8.0), "char_ngrams": False}
    first, index = fit_stack(texts, vectors, labels, **grid)
    second, _ = fit_stack(texts, vectors, labels, **grid)
    candidates = [TextModelSpec("sgd", 1e-4, averaged=True), TextModelSpec("sgd", 1e-3, averaged=True)]
    candidates += [TextModelSpec("logistic", 1.0), TextModelSpec("logistic", 8.0)]
    scores = first.text_search_scores_
    assert list(scores) == [str(spec) for spec in candidates]
    assert list(scores) == [
        "sgd alpha=0.0001, averaged, min_df=2",
        "sgd alpha=0.001, averaged, min_df=2",
        "logistic C=1, min_df=2",
        "logistic C=8, min_df=2",
    ]
    # The highest out-of-fold macro-F1, the first of the grid among ties; the text model is that candidate's.
    best = next(spec for spec in candidates if scores[str(spec)] == max(scores.values()))
    assert first.text_spec_ == best and first.text_cv_macro_f1_ == scores[str(best)]
    assert first.form_cv_macro_f1_["text"] == pytest.approx(first.text_cv_macro_f1_)
    fitted_classifier = first.text_model_.named_steps["clf"]
    assert type(fitted_classifier) is type(best.classifier(0))
    assert (first.text_spec_, first.temperature_, first.review_thresholds_) == (
        second.text_spec_,
        second.temperature_,
        second.review_thresholds_,
    )
    query_texts, query_vectors, _ = synthetic(5, seed=4)
    first_proba = probabilities(first, index, query_texts, query_vectors)
    np.testing.assert_array_equal(first_proba, probabilities(second, index, query_texts, query_vectors))


def compound_tickets(n_per_class: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Tickets whose class shows only inside words: the words that carry a class's stem are each seen once."""
    rng = np.random.default_rng(seed)
    stems = {"Access": "zugang", "Hardware": "drucker", "Purchase": "bestell"}
    letters = np.array(list("bcdfghjklmnpqrstvwxz"))

    def noise(size: int) -> str:
        return "".join(rng.choice(letters, size))

    texts, labels = [], []
    for label, stem in stems.items():
        for _ in range(n_per_class):
            common = rng.choice(["bitte", "danke", "hallo", "heute"], 2)  # words all classes share
            texts.append(" ".join([noise(4) + stem + noise(3), noise(7), *common]))
            labels.append(label)
    return texts, unit_vectors(len(texts), 8, seed), np.asarray(labels)


def test_a_character_model_votes_when_words_alone_cannot_tell_the_classes_apart():
    texts, vectors, labels = compound_tickets(40, seed=0)
    model, _ = fit_stack(texts, vectors, labels, sgd_alphas=(1e-4,), char_ngrams=True)
    scores = model.text_search_scores_
    assert list(scores) == ["sgd alpha=0.0001, averaged, min_df=2", "sgd alpha=0.0001, averaged, min_df=2 + chars"]
    # The stems' words are unique (min_df=2 drops them): the word model is near chance, the character vote far above.
    assert (
        scores["sgd alpha=0.0001, averaged, min_df=2 + chars"]
        > 0.9
        > 0.5
        > scores["sgd alpha=0.0001, averaged, min_df=2"]
    )
    assert model.text_spec_ == TextModelSpec("sgd", 1e-4, averaged=True, chars=True)
    query = np.array(compound_tickets(5, seed=1)[0], dtype=object)
    words, chars = (pipeline.predict_proba(query) for pipeline in model.text_model_.estimators_)
    # The fast path gives what scikit-learn's soft vote gives: the mean of the two models' probabilities.
    np.testing.assert_allclose(model.text_proba(query), (words + chars) / 2, atol=1e-12)
    np.testing.assert_allclose(model.text_proba(query), model.text_model_.predict_proba(query), atol=1e-12)
    assert (model.classes_[model.text_proba(query).argmax(1)] == np.repeat(sorted(set(labels)), 5)).all()
    reloaded = pickle.loads(pickle.dumps(model))
    assert not [name for name in vars(reloaded) if name.startswith("_text_weights")]  # made again on first use
    np.testing.assert_allclose(reloaded.text_proba(query), model.text_proba(query), atol=1e-12)
    # Without the option (the default) no character model competes.
    words_only, _ = fit_stack(texts, vectors, labels, sgd_alphas=(1e-4,))
    assert list(words_only.text_search_scores_) == ["sgd alpha=0.0001, averaged, min_df=2"]


def test_a_character_vote_within_one_error_of_the_best_word_model_leaves_it_out():
    # Words carry the class (the usual synthetic tickets): the character vote cannot win by more than noise.
    texts, vectors, labels = synthetic(40, seed=0)
    model, _ = fit_stack(texts, vectors, labels, sgd_alphas=(1e-4,), char_ngrams=True)
    scores = model.text_search_scores_
    assert (
        abs(scores["sgd alpha=0.0001, averaged, min_df=2 + chars"] - scores["sgd alpha=0.0001, averaged, min_df=2"])
        < 0.05
    )
    assert model.text_spec_ == TextModelSpec("sgd", 1e-4, averaged=True)
    assert isinstance(model.text_model_, Pipeline)


def paired_tickets(n_pairs_per_class: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Tickets in pairs of one class sharing one word no other ticket has (a paraphrased near-duplicate's mark)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("bcdfghjklmnpqrstvwxz"))
    texts, labels = [], []
    for label in CLASSES:
        for _ in range(n_pairs_per_class):
            mark = "".join(rng.choice(letters, 8))
            for _ in range(2):
                common = rng.choice(["please", "thanks", "hello", "today", "issue"], 3)  # words all classes share
                texts.append(" ".join([mark, *common]))
                labels.append(label)
    return texts, unit_vectors(len(texts), 8, seed), np.asarray(labels)


def test_rare_words_count_when_a_ticket_and_its_pair_fall_in_different_folds():
    texts, vectors, labels = paired_tickets(20, seed=0)
    model, _ = fit_stack(texts, vectors, labels, sgd_alphas=(1e-4,), tfidf_min_dfs=(2, 1), forms=("text",))
    scores = model.text_search_scores_
    assert list(scores) == ["sgd alpha=0.0001, averaged, min_df=2", "sgd alpha=0.0001, averaged, min_df=1"]
    # A held-out ticket's mark is in one training ticket: min_df=2 drops it (near chance), min_df=1 keeps it.
    assert scores["sgd alpha=0.0001, averaged, min_df=1"] > 0.55 > 0.45 > scores["sgd alpha=0.0001, averaged, min_df=2"]
    assert model.text_spec_ == TextModelSpec("sgd", 1e-4, averaged=True, min_df=1)
    assert model.text_model_.named_steps["tfidf"].min_df == 1
    assert model.min_df_cv_macro_f1_ == {
        min_df: scores[f"sgd alpha=0.0001, averaged, min_df={min_df}"] for min_df in (2, 1)
    }
    # With every form competing, each min_df's classifier is judged as a whole: the chosen one scores highest.
    whole, _ = fit_stack(texts, vectors, labels, sgd_alphas=(1e-4,), tfidf_min_dfs=(2, 1))
    assert set(whole.min_df_cv_macro_f1_) == {1, 2}
    assert whole.form_cv_macro_f1_[whole.form_] == max(whole.min_df_cv_macro_f1_.values())
    assert whole.min_df_cv_macro_f1_[whole.text_spec_.min_df] == max(whole.min_df_cv_macro_f1_.values())
    # A min_df given twice is tried once.
    twice, _ = fit_stack(texts, vectors, labels, sgd_alphas=(1e-4,), tfidf_min_dfs=(1, 1), forms=("text",))
    assert list(twice.text_search_scores_) == ["sgd alpha=0.0001, averaged, min_df=1"]
    assert NeighbourStackClassifier().get_params()["tfidf_min_dfs"] == (2, 1)
    # A text model spec pickled before min_df existed used terms of at least two tickets.
    spec = pickle.loads(pickle.dumps(model.text_spec_))
    del spec.__dict__["min_df"]
    assert spec.min_df == 2 and spec.pipeline(0).named_steps["tfidf"].min_df == 2


def test_on_equal_scores_the_first_min_df_given_classifies():
    # Three words, each in a third of the tickets: every term is in many tickets, so both vocabularies are the same.
    rng = np.random.default_rng(0)
    labels = np.repeat(CLASSES, 30)
    texts = [f"{label.lower()} {rng.choice(['please', 'thanks'])}" for label in labels]
    vectors = unit_vectors(len(texts), 8, seed=0)
    for min_dfs in ((2, 1), (1, 2)):
        model, _ = fit_stack(texts, vectors, labels, sgd_alphas=(1e-4,), tfidf_min_dfs=min_dfs, forms=("text",))
        assert model.min_df_cv_macro_f1_[1] == model.min_df_cv_macro_f1_[2]
        assert model.text_spec_.min_df == min_dfs[0]


def test_a_model_pickled_before_the_newer_parameters_loads_with_what_it_did_then(stacked):
    model, _ = stacked
    state = pickle.loads(pickle.dumps(model)).__getstate__()
    for name in ("sgd_average", "char_ngrams", "tfidf_min_dfs"):  # as pickled before these parameters existed
        del state[name]
    old = NeighbourStackClassifier.__new__(NeighbourStackClassifier)
    old.__setstate__(state)
    # Plain SGD, no character vote, terms of two tickets: what every model trained then did. get_params and repr work.
    assert (old.get_params()["sgd_average"], old.get_params()["char_ngrams"]) == (False, False)
    assert old.get_params()["tfidf_min_dfs"] == (2,)
    assert "NeighbourStackClassifier(" in repr(old)
    texts = np.array(synthetic(5, seed=9)[0], dtype=object)
    np.testing.assert_allclose(old.text_proba(texts), model.text_proba(texts))
    # A model pickled with them keeps its own.
    assert pickle.loads(pickle.dumps(model)).get_params()["sgd_average"] is True


def test_sgd_text_models_average_their_weights_unless_told_not_to():
    texts, vectors, labels = synthetic(30, seed=3)
    averaged, _ = fit_stack(texts, vectors, labels, sgd_alphas=(1e-4,))
    plain, _ = fit_stack(texts, vectors, labels, sgd_alphas=(1e-4,), sgd_average=False)
    assert averaged.text_spec_ == TextModelSpec("sgd", 1e-4, averaged=True)
    assert plain.text_spec_ == TextModelSpec("sgd", 1e-4) and str(plain.text_spec_) == "sgd alpha=0.0001, min_df=2"
    averaged_sgd, plain_sgd = (m.text_model_.named_steps["clf"] for m in (averaged, plain))
    assert (averaged_sgd.average, plain_sgd.average) == (True, False)
    # The same passes over the same tickets (same seed), but the average of the weights is not the last weights.
    assert averaged_sgd.n_iter_ == plain_sgd.n_iter_
    assert not np.allclose(averaged_sgd.coef_, plain_sgd.coef_)
    query = np.array(synthetic(10, seed=6)[0], dtype=object)
    np.testing.assert_allclose(averaged.text_proba(query), averaged.text_model_.predict_proba(query), atol=1e-12)


@pytest.mark.parametrize("classes", [CLASSES, CLASSES[:2]])
def test_a_logistic_text_model_scores_as_its_pipeline_does(classes):
    texts, vectors, labels = synthetic(30, seed=5)
    keep = np.isin(labels, classes)
    model, _ = fit_stack(
        np.asarray(texts)[keep], vectors[keep], labels[keep], sgd_alphas=(), logistic_cs=(4.0,), char_ngrams=False
    )
    assert model.text_spec_ == TextModelSpec("logistic", 4.0) and list(model.classes_) == sorted(classes)
    query = np.array(synthetic(10, seed=6)[0], dtype=object)
    # Multinomial softmax for three classes, one sigmoid for two: as scikit-learn's own predict_proba.
    np.testing.assert_allclose(model.text_proba(query), model.text_model_.predict_proba(query), atol=1e-12)


def test_a_two_class_logistic_meta_model_scores_as_scikit_learn_does():
    texts, vectors, labels = synthetic(30, seed=7)
    keep = labels != CLASSES[2]
    model, index = fit_stack(np.asarray(texts)[keep], vectors[keep], labels[keep])
    query_texts, query_vectors, _ = synthetic(10, seed=8)
    query, neighbours = np.array(query_texts, dtype=object), index.search(query_vectors, 10)
    # Whatever form won, score through the logistic meta-model's path against scikit-learn's predict_log_proba.
    train_neighbours = index.search(index.matrix, 10, exclude_rows=np.arange(len(index)))
    features = model.features(np.asarray(texts, dtype=object)[keep], train_neighbours)
    model.linear_meta_ = LogisticRegression().fit(features, np.searchsorted(model.classes_, labels[keep]))
    model.form_ = "linear_stack"
    expected = softmax(model.linear_meta_.predict_log_proba(model.features(query, neighbours)) / model.temperature_, 1)
    np.testing.assert_allclose(model.class_probabilities(query, query_vectors, neighbours), expected, atol=1e-9)


def test_stack_thresholds_cover_every_class_and_rise_with_the_precision_asked():
    texts, vectors, labels = synthetic(40, seed=5)
    loose, _ = fit_stack(texts, vectors, labels, review_precision=0.5)
    strict, _ = fit_stack(texts, vectors, labels, review_precision=1.0)
    assert set(loose.review_thresholds_) == set(CLASSES) == set(strict.review_thresholds_)
    for label in CLASSES:
        assert 0.0 <= loose.review_thresholds_[label] <= strict.review_thresholds_[label] <= NEVER


def test_stack_refuses_a_single_class_and_a_call_without_neighbours(stacked):
    texts, vectors, _ = synthetic(10, seed=6)
    index = NeighbourIndex(vectors)
    with pytest.raises(ValueError, match="two classes"):
        NeighbourStackClassifier(**QUICK).fit(texts, ["Access"] * len(texts), index.search(index.matrix, 5))
    with pytest.raises(ValueError, match="neighbours"):
        stacked[0].class_probabilities(np.array(texts, dtype=object), vectors, None)


# --- TicketModel with per-class review thresholds ------------------------------------------------------------


def ticket_model(thresholds: dict) -> TicketModel:
    mapping = ColumnMapping(("text",), "category", "priority")
    return TicketModel(mapping, "unused", 8, classifiers={}, review_thresholds=thresholds)


def prediction(labels: list[str], confidences: list[float]) -> TargetPrediction:
    classes = np.array(sorted(set(labels)))
    return TargetPrediction(np.array(labels), np.array(confidences), classes, np.zeros((len(labels), len(classes))))


def test_needs_review_follows_the_threshold_of_the_predicted_class():
    model = ticket_model({"category": {"Access": 0.3, "Billing": 0.8}, "priority": {"high": 0.5, "low": NEVER}})
    predictions = {
        "category": prediction(["Access", "Access", "Billing", "Billing", "Access"], [0.35, 0.29, 0.79, 0.8, 0.9]),
        "priority": prediction(["high", "high", "high", "high", "low"], [0.9, 0.9, 0.9, 0.9, 0.99]),
    }
    # Ticket 2: Billing below its own 0.8 (though above Access's 0.3); ticket 5: "low" always needs review.
    assert model.needs_review(predictions).tolist() == [False, True, True, False, True]


def test_a_legacy_single_threshold_applies_to_every_class():
    model = ticket_model({"category": 0.6})
    predictions = {"category": prediction(["Access", "Billing", "Billing"], [0.59, 0.6, 0.95])}
    assert model.needs_review(predictions).tolist() == [True, False, False]


def test_a_logistic_meta_model_classifies_when_it_scores_highest_out_of_fold():
    texts, vectors, labels = synthetic(40, seed=2)
    model, index = fit_stack(texts, vectors, labels)
    scores = model.form_cv_macro_f1_
    assert model.form_ == "linear_stack" and scores["linear_stack"] > max(scores["stack"], scores["text"])
    assert model.forest_ is None and model.cv_macro_f1_ == pytest.approx(scores["linear_stack"])
    query_texts, query_vectors, _ = synthetic(10, seed=4)
    query = np.array(query_texts, dtype=object)
    neighbours = index.search(query_vectors, 10)
    log_proba = model.linear_meta_.predict_log_proba(model.features(query, neighbours))
    expected = softmax(log_proba / model.temperature_, axis=1)
    np.testing.assert_allclose(model.class_probabilities(query, query_vectors, neighbours), expected, atol=1e-9)
    with pytest.raises(ValueError, match="neighbours"):
        model.class_probabilities(query, query_vectors, None)


def test_only_the_forms_asked_for_compete():
    # Noise embeddings: with every form competing the text model alone wins (see above); asked for, the stack takes.
    texts, vectors, labels = synthetic(40, seed=3, embedding_signal=False)
    model, _ = fit_stack(texts, vectors, labels, forms=("stack",), tuning_trials=2)
    assert model.form_ == "stack" and set(model.form_cv_macro_f1_) == {"stack"}
    assert model.forest_ is not None and len(model.tuning_["trials"]) == 2  # the stack is tuned
    linear, _ = fit_stack(texts, vectors, labels, forms=("linear_stack", "text"))
    assert linear.form_ == "text" and set(linear.form_cv_macro_f1_) == {"linear_stack", "text"}
    for forms in ((), ("stack", "forest")):
        with pytest.raises(ValueError, match="subset"):
            fit_stack(texts, vectors, labels, forms=forms)
