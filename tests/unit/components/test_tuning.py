"""Logic tests of the meta-model tuner (seeded successive halving) and of the stack that uses it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import StratifiedKFold

from tests.unit.components.test_model import CLASSES, synthetic
from tests.unit.components.test_stacking import fit_stack, probabilities
from ticketflow.components.tuning import SEARCH_SPACE, _result, candidate_params, tune_booster

DEFAULTS = {"learning_rate": 0.1, "max_iter": 30, "max_leaf_nodes": 15, "max_depth": 3}
TRIALS = 5


def problem() -> tuple[np.ndarray, np.ndarray, list]:
    X, y = make_classification(240, 8, n_informative=4, n_classes=3, random_state=0)
    return X, y, list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))


def tune(trials: int = TRIALS, random_state: int = 0, max_seconds: float = math.inf):
    X, y, folds = problem()
    return tune_booster(X, y, folds, DEFAULTS, trials, random_state, max_seconds)


@pytest.fixture(scope="module")
def tuned():
    return tune()


def test_trials_are_bounded_and_halved(tuned):
    assert [t.number for t in tuned.trials] == list(range(TRIALS))
    first_rung = [t for t in tuned.trials if t.rungs and t.rungs[0].rung == 0]
    assert len(first_rung) == TRIALS
    # 5 candidates, factor 3: all on a third of the rows, then the best two on all of them.
    assert sorted({r.n_samples for t in tuned.trials for r in t.rungs}) == [80, 240]
    finalists = [t for t in tuned.trials if len(t.rungs) == 2]
    assert len(finalists) == 2
    eliminated = [t.rungs[0].macro_f1 for t in tuned.trials if len(t.rungs) == 1]
    assert min(f.rungs[0].macro_f1 for f in finalists) >= max(eliminated)
    best = max(finalists, key=lambda t: t.macro_f1)
    assert (tuned.best_trial, tuned.best_params) == (best.number, best.params)
    assert not tuned.stopped


def test_the_configured_parameters_are_trial_zero(tuned):
    first = tuned.trials[0].params
    assert {k: first[k] for k in DEFAULTS} == DEFAULTS
    # The rest take scikit-learn's defaults, so trial 0 is exactly the meta-model trained before tuning existed.
    assert (first["l2_regularization"], first["min_samples_leaf"], first["class_weight"]) == (0.0, 20, None)
    assert set(first) == set(SEARCH_SPACE)


def test_same_seed_same_result_and_another_seed_other_candidates(tuned):
    again = tune()
    assert again.as_dict() | {"seconds": 0} == tuned.as_dict() | {"seconds": 0}
    other = candidate_params(DEFAULTS, TRIALS, random_state=1)
    assert other[0] == tuned.trials[0].params  # the defaults stay first
    assert other[1:] != [t.params for t in tuned.trials[1:]]


def test_drawn_candidates_stay_in_the_search_space():
    drawn = candidate_params(DEFAULTS, 40, random_state=3)[1:]
    assert len(drawn) == 39
    for params in drawn:
        assert 0.03 <= params["learning_rate"] <= 0.3 and 1e-3 <= params["l2_regularization"] <= 10
        assert 50 <= params["max_iter"] <= 100 and 7 <= params["max_leaf_nodes"] <= 15
        assert 3 <= params["max_depth"] <= 5  # one ticket walks every tree: no more or bigger trees than the defaults
        assert 5 <= params["min_samples_leaf"] <= 100
        assert all(not isinstance(v, np.generic) for v in params.values())  # plain Python: JSON, MLflow params
    assert {p["class_weight"] for p in drawn} == {None, "balanced"}


def test_one_trial_means_no_search():
    result = tune(trials=1)
    assert result.best_params == result.trials[0].params and result.best_trial == 0
    assert len(result.trials) == 1 and result.trials[0].rungs == () and result.seconds == 0.0


def test_no_time_left_keeps_the_defaults_and_says_it_stopped():
    with pytest.warns(RuntimeWarning, match="time cap"):
        result = tune(max_seconds=0)
    assert result.stopped and result.best_trial == 0
    assert {k: result.best_params[k] for k in DEFAULTS} == DEFAULTS
    assert all(r.macro_f1 != r.macro_f1 for t in result.trials for r in t.rungs)  # every fit skipped: NaN
    assert all(r["macro_f1"] is None for t in result.as_dict()["trials"] for r in t["rungs"])  # JSON: null


def test_a_search_stopped_between_rungs_keeps_the_best_of_the_last_scored_rung():
    candidates = [{"max_iter": n} for n in (10, 20, 30, 40)]
    nan = float("nan")
    cv_results = {  # rung 0 scored; rung 1 skipped past the cap
        "params": [{"estimator__max_iter": n} for n in (10, 20, 30, 40, 30, 20)],
        "iter": [0, 0, 0, 0, 1, 1],
        "n_resources": [10, 10, 10, 10, 30, 30],
        "mean_test_score": [0.5, 0.7, 0.8, 0.6, nan, nan],
    }
    result = _result(candidates, cv_results, seconds=2.0, max_seconds=1.0)
    assert result.stopped and result.best_trial == 2 and result.best_params == {"max_iter": 30}
    assert [len(t.rungs) for t in result.trials] == [1, 2, 2, 1]
    # The same scores within the cap: NaN from a failed fit is not a stop.
    assert not _result(candidates, cv_results, seconds=0.5, max_seconds=1.0).stopped


# --- the stack with its tuner ---------------------------------------------------------------------------------


def test_the_stack_fits_its_meta_model_with_the_chosen_parameters():
    texts, vectors, labels = synthetic(30, seed=3)
    model, _ = fit_stack(texts, vectors, labels, tuning_trials=4, forms=("stack",))  # tuned only when it classifies
    assert model.booster_params_ == model.tuning_["best_params"]
    assert len(model.tuning_["trials"]) == 4
    # One tree per class and iteration: the flattened forest holds exactly the chosen number of iterations.
    assert len(model.forest_.roots) == model.booster_params_["max_iter"] * len(CLASSES)


def test_one_trial_keeps_the_configured_meta_model():
    texts, vectors, labels = synthetic(30, seed=3)
    model, _ = fit_stack(texts, vectors, labels, tuning_trials=1, forms=("stack",))
    assert model.booster_params_["max_iter"] == 20  # QUICK's booster_iterations
    assert len(model.forest_.roots) == 20 * len(CLASSES)


def test_the_same_data_and_seed_give_the_same_model():
    texts, vectors, labels = synthetic(30, seed=4)
    first, index = fit_stack(texts, vectors, labels, tuning_trials=6)
    second, _ = fit_stack(texts, vectors, labels, tuning_trials=6)
    assert first.tuning_ | {"seconds": 0} == second.tuning_ | {"seconds": 0}
    assert (first.booster_params_, first.temperature_, first.review_thresholds_) == (
        second.booster_params_,
        second.temperature_,
        second.review_thresholds_,
    )
    query_texts, query_vectors, _ = synthetic(10, seed=5)
    np.testing.assert_array_equal(
        probabilities(first, index, query_texts, query_vectors),
        probabilities(second, index, query_texts, query_vectors),
    )
