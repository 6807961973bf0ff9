"""Tuning: the stacked classifier's meta-model hyperparameters, chosen by seeded successive halving.

The candidates are the configured defaults first, then `trials - 1` configurations drawn with a seeded
`ParameterSampler`; scikit-learn's `HalvingGridSearchCV` runs through that explicit list on the meta-features,
with the stack's own folds and macro-F1, first on a third of the rows, then the best third of the candidates on all
of them. Seeded throughout, so the same data gives the same choice, whatever the machine's speed: the number of
trials bounds the work, and the wall-time cap `max_seconds` is only a safety net. Past it, fits are skipped (their
score is NaN), the best candidate so far wins and the result says `stopped`; below it, results are exactly those
of the plain search.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from math import inf, isfinite

import numpy as np
from scipy.stats import loguniform, randint
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  # makes HalvingGridSearchCV importable
from sklearn.metrics import f1_score
from sklearn.model_selection import HalvingGridSearchCV, ParameterSampler
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

# The meta-model's search space. One ticket's answer walks every tree, so the trees' count and size stay within the
# configured defaults' (100 trees of depth 5, 15 leaves): with up to 200 trees of depth 6 the tuned model took
# 6.5 ms to classify one ticket against 2.7 ms untuned (bench_quality). `class_weight` lets small, imbalanced data
# weigh its rare classes up.
SEARCH_SPACE: Mapping[str, object] = {
    "learning_rate": loguniform(0.03, 0.3),
    "max_iter": randint(50, 101),
    "max_leaf_nodes": randint(7, 16),
    "max_depth": randint(3, 6),
    "l2_regularization": loguniform(1e-3, 10),
    "min_samples_leaf": randint(5, 101),
    "class_weight": [None, "balanced"],
}
HALVING_FACTOR = 3  # each rung keeps the best third of the candidates on three times the rows
_PREFIX = "estimator__"


@dataclass(frozen=True)
class Rung:
    """One trial's score at one rung of the halving.

    Attributes:
        rung: The rung, from 0 (fewest rows).
        n_samples: Rows the rung's folds were drawn from.
        macro_f1: Mean macro-F1 over the folds, 0–1; NaN when the time cap skipped it.
    """

    rung: int
    n_samples: int
    macro_f1: float


@dataclass(frozen=True)
class Trial:
    """One candidate configuration and how far it went.

    Attributes:
        number: Its place among the candidates; 0 is the configured defaults.
        params: `HistGradientBoostingClassifier` parameters.
        rungs: Its score at each rung it reached, lowest first.
    """

    number: int
    params: dict[str, object]
    rungs: tuple[Rung, ...] = ()

    @property
    def macro_f1(self) -> float:
        """Its score at the highest rung it reached (NaN when none was scored)."""
        return self.rungs[-1].macro_f1 if self.rungs else float("nan")


@dataclass(frozen=True)
class TuningResult:
    """The tuner's choice and every trial behind it.

    Attributes:
        best_params: The chosen meta-model parameters.
        best_trial: The number of the trial that holds them.
        trials: Every candidate, in candidate order (the defaults first).
        stopped: True when the time cap cut the search short (the best so far was kept).
        seconds: Wall time of the search.
    """

    best_params: dict[str, object]
    best_trial: int
    trials: tuple[Trial, ...] = field(default_factory=tuple)
    stopped: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """Plain dicts and lists, JSON-ready: a rung the time cap skipped has `macro_f1` None."""
        plain = asdict(self)
        for trial in plain["trials"]:
            for rung in trial["rungs"]:
                rung["macro_f1"] = rung["macro_f1"] if isfinite(rung["macro_f1"]) else None
        return plain


class _DeadlineClassifier(ClassifierMixin, BaseEstimator):
    """An estimator that fits only while the search is within its time cap.

    Past `deadline` it skips the fit and `_macro_f1_or_nan` scores it NaN: the search goes on without cost and ranks
    it last. (A fit that raised instead would make scikit-learn abort a rung in which every fit failed.)

    Args:
        estimator: The classifier to fit.
        deadline: `time.monotonic()` past which fits are skipped.
    """

    def __init__(self, estimator: BaseEstimator | None = None, deadline: float = inf) -> None:
        self.estimator = estimator
        self.deadline = deadline

    def fit(self, X: np.ndarray, y: np.ndarray) -> _DeadlineClassifier:
        """Fits a clone of `estimator`, unless past the deadline."""
        self.classes_ = np.unique(y)
        self.expired_ = time.monotonic() > self.deadline
        self.estimator_ = None if self.expired_ else clone(self.estimator).fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The fitted estimator's predictions."""
        return self.estimator_.predict(X)


def _macro_f1_or_nan(estimator: _DeadlineClassifier, X: np.ndarray, y: np.ndarray) -> float:
    if estimator.expired_:
        return float("nan")
    return float(f1_score(y, estimator.predict(X), average="macro"))


def _plain(value: object) -> object:
    """NumPy scalars as Python ones (JSON, MLflow params)."""
    return value.item() if isinstance(value, np.generic) else value


def candidate_params(defaults: Mapping[str, object], trials: int, random_state: int) -> list[dict[str, object]]:
    """The configurations a search tries: `defaults` first, then `trials - 1` seeded draws from `SEARCH_SPACE`.

    Args:
        defaults: The configured meta-model parameters (any of `SEARCH_SPACE`'s keys; the others take
            scikit-learn's defaults in the search and in the draws alike).
        trials: How many configurations in all, at least 1.
        random_state: Seed of the draws.

    Returns:
        The configurations, each with every key of `SEARCH_SPACE`.
    """
    baseline = HistGradientBoostingClassifier().get_params()
    first = {name: _plain(defaults.get(name, baseline[name])) for name in SEARCH_SPACE}
    drawn = ParameterSampler(SEARCH_SPACE, n_iter=max(trials - 1, 0), random_state=random_state)
    return [first] + [{name: _plain(draw[name]) for name in SEARCH_SPACE} for draw in drawn]


def tune_booster(
    features: np.ndarray,
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    defaults: Mapping[str, object],
    trials: int,
    random_state: int,
    max_seconds: float = inf,
) -> TuningResult:
    """Chooses the meta-model's parameters by successive halving on out-of-fold macro-F1.

    Args:
        features: The meta-features, one row per training ticket.
        y: Class index (or label) per row.
        folds: The stack's (train rows, validation rows) pairs.
        defaults: The configured parameters, always the first candidate (trial 0).
        trials: Configurations to try, the defaults included; 1 or less means no search (the defaults).
        random_state: Seed of the draws, the rungs' row samples and the boosters.
        max_seconds: Safety cap on the search's wall time; past it the best candidate so far wins (`stopped`).

    Returns:
        The chosen parameters and every trial's rungs and scores.
    """
    candidates = candidate_params(defaults, trials, random_state)
    if trials <= 1:
        return TuningResult(best_params=candidates[0], best_trial=0, trials=(Trial(0, candidates[0]),))
    started = time.monotonic()
    n_classes = len(np.unique(y))
    # scikit-learn's smallest rung: 2 rows per class and fold. Data too small for two rungs gets one, on all rows.
    smallest = 2 * len(folds) * n_classes
    min_resources = "exhaust" if smallest * HALVING_FACTOR <= len(y) else len(y)
    search = HalvingGridSearchCV(
        _DeadlineClassifier(
            HistGradientBoostingClassifier(early_stopping=False, random_state=random_state),
            deadline=started + max_seconds,
        ),
        [{f"{_PREFIX}{name}": [value] for name, value in candidate.items()} for candidate in candidates],
        factor=HALVING_FACTOR,
        resource="n_samples",
        min_resources=min_resources,
        cv=list(folds),
        scoring=_macro_f1_or_nan,
        refit=False,
        error_score=np.nan,
        n_jobs=1,
        random_state=random_state,
    )
    # One OpenMP thread: the search is dozens of small fits, for which thread start-up outweighs the split work,
    # and on a busy machine two spinning threads per fit made it ten times slower. The choice stays the same.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.filterwarnings("ignore", message=".*non-finite", category=UserWarning)  # skipped fits, past the cap
        search.fit(features, y)
    result = _result(candidates, search.cv_results_, time.monotonic() - started, max_seconds)
    if result.stopped:
        warnings.warn(
            f"tuning stopped at its time cap ({max_seconds:g} s): kept the best of the trials scored so far "
            f"(trial {result.best_trial})",
            RuntimeWarning,
            stacklevel=2,
        )
    log.info(
        "tuning: %d trials in %.1f s%s, best trial %d (macro-F1 %.4f): %s",
        len(candidates),
        result.seconds,
        " (stopped at the time cap)" if result.stopped else "",
        result.best_trial,
        result.trials[result.best_trial].macro_f1,
        result.best_params,
    )
    return result


def _result(
    candidates: list[dict[str, object]], cv_results: Mapping[str, object], seconds: float, max_seconds: float
) -> TuningResult:
    """Each candidate's rungs from `cv_results_`, and the best: highest rung with a score, then score, then order."""
    keys = [tuple(candidate.items()) for candidate in candidates]
    rungs: dict[int, list[Rung]] = {number: [] for number in range(len(candidates))}
    for params, rung, n_samples, score in zip(
        cv_results["params"], cv_results["iter"], cv_results["n_resources"], cv_results["mean_test_score"], strict=True
    ):
        plain = tuple((name, _plain(params[f"{_PREFIX}{name}"])) for name in candidates[0])
        rungs[keys.index(plain)].append(Rung(int(rung), int(n_samples), float(score)))
    trials = tuple(Trial(n, candidates[n], tuple(sorted(rungs[n], key=lambda r: r.rung))) for n in rungs)
    # A trial skipped at a rung (NaN) competes with the score of its highest rung that was scored.
    reached = {t.number: [r for r in t.rungs if isfinite(r.macro_f1)] for t in trials}
    stopped = seconds > max_seconds and any(len(reached[t.number]) < len(t.rungs) for t in trials)
    scored = [t for t in trials if reached[t.number]]
    if not scored:
        return TuningResult(candidates[0], 0, trials, stopped, seconds)
    best = max(scored, key=lambda t: (reached[t.number][-1].rung, reached[t.number][-1].macro_f1, -t.number))
    return TuningResult(best.params, best.number, trials, stopped, seconds)
