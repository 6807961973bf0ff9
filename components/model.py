"""The ticket model: one object that embeds raw text and classifies it for every target.

Each target (category/queue, priority) gets a `NeighbourStackClassifier`: TF-IDF word 1–2 grams with a linear
model, stacked with the label votes of the ticket's nearest training tickets under a meta-model (boosted trees, or
a logistic regression where that scores higher out of fold), or the text model alone where that does. The nearest
tickets come from an exact index of the training vectors that travels inside the model
(`neighbours.NeighbourIndex`), so the pyfunc, batch scoring and the predictor need no ChromaDB server to classify.
The regularisation, the form, a softmax temperature (calibrated confidences) and each class's review threshold are
chosen on out-of-fold predictions of the training split.

`FusionClassifier` (TF-IDF fused late with an MLP on the embeddings) is the model trained before; it stays so
that versions registered with it keep loading and predicting, and as a candidate in the benchmarks.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import sklearn
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from ticketflow.components.embed import EncoderSpec, embed_with_cache
from ticketflow.components.forest import FlatForest
from ticketflow.components.ingest import ColumnMapping
from ticketflow.components.neighbours import NeighbourIndex, Neighbours, neighbour_votes
from ticketflow.components.prepare import TEXT, merge_text, normalise_whitespace, text_hash
from ticketflow.components.routing import class_review_thresholds
from ticketflow.components.tuning import tune_booster

log = logging.getLogger(__name__)

EMBEDDING_PREFIX = "emb_"
# What can classify a target, in the order that breaks ties of their out-of-fold macro-F1 (NeighbourStackClassifier).
FORMS = ("stack", "linear_stack", "text")
_EPS = 1e-9
# `NeighbourStackClassifier` parameters added after models were registered with it, and what those models did: they
# trained plain SGD without character n-grams, on the terms of at least two tickets. Unpickled without them,
# `get_params` (and so `repr`) would raise.
_PARAMETERS_BEFORE = {"sgd_average": False, "char_ngrams": False, "tfidf_min_dfs": (2,)}


def feature_frame(texts: Sequence[str], vectors: np.ndarray) -> pd.DataFrame:
    """The classifiers' input: a `text` column plus one `emb_<i>` column per embedding dimension."""
    frame = pd.DataFrame(vectors, columns=[f"{EMBEDDING_PREFIX}{i}" for i in range(vectors.shape[1])])
    frame.insert(0, TEXT, list(texts))
    return frame


def _split_features(X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    embedding_columns = [c for c in X.columns if str(c).startswith(EMBEDDING_PREFIX)]
    return X[TEXT].astype(str).to_numpy(), X[embedding_columns].to_numpy(dtype=np.float32)


def _aligned_log_proba(estimator, X, classes: np.ndarray) -> np.ndarray:
    """Log-probabilities with one column per class of `classes` (a fold may miss a class)."""
    out = np.full((X.shape[0], len(classes)), np.log(_EPS))
    proba = np.clip(estimator.predict_proba(X), _EPS, 1.0)
    index = np.searchsorted(classes, estimator.classes_)
    out[:, index] = np.log(proba)
    return out


def tfidf_words(min_df: int = 2) -> TfidfVectorizer:
    """TF-IDF of word 1–2 grams (sublinear tf) seen in at least `min_df` tickets: every text model's features."""
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df, dtype=np.float32)


def tfidf_chars(min_df: int = 2) -> TfidfVectorizer:
    """TF-IDF of character 2–5 grams within words (sublinear tf) seen in at least `min_df` tickets.

    They match the parts of words that word n-grams see only whole: German compounds ("Druckertreiber" shares
    "drucker" with "Drucker"), inflections and misspellings.
    """
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=min_df, dtype=np.float32)


def text_pipeline(alpha: float, random_state: int) -> Pipeline:
    """TF-IDF word 1–2 grams (sublinear tf) and a class-balanced linear model with log-loss (probabilities)."""
    return TextModelSpec("sgd", alpha).pipeline(random_state)


@dataclass(frozen=True)
class TextModelSpec:
    """One candidate text model: `tfidf_words` and a class-balanced linear classifier with log-loss.

    With `chars`, a second classifier of the same kind reads `tfidf_chars`, and the two vote: their class
    probabilities are averaged (`VotingClassifier`, soft voting).

    Attributes:
        kind: "sgd" (`SGDClassifier`: one-vs-rest, a few passes, seconds on 30k tickets) or "logistic"
            (multinomial `LogisticRegression` solved by Newton-CG: exact, a few seconds on 30k tickets; on a few
            thousand noisy tickets it can score higher than SGD's approximate optimum).
        strength: SGD's `alpha` (higher: stronger regularisation) or the logistic regression's `C` (higher: weaker).
        averaged: SGD only: the average of its weights over the passes (averaged SGD) instead of the last ones. The
            last step's weights swing with the order of the tickets; their average is steadier, which counts on a few
            thousand noisy tickets (customer_support queue: BENCHMARKS.md, Quality).
        chars: Whether a model on character n-grams votes beside the word model.
        min_df: The fewest tickets a term must occur in to be a feature (`tfidf_words`, `tfidf_chars`). 2 drops the
            terms of a single ticket: two thirds of the word vocabulary of 30k IT tickets, a model a third the size.
            1 keeps them: on a few thousand tickets, rare words are much of what tells queues apart.
    """

    kind: Literal["sgd", "logistic"]
    strength: float
    averaged: bool = False
    chars: bool = False
    min_df: int = 2  # also what a spec pickled before the field existed used

    def __str__(self) -> str:
        if self.kind == "logistic":
            name = f"logistic C={self.strength:g}"
        else:
            name = f"sgd alpha={self.strength:g}" + (", averaged" if self.averaged else "")
        return name + f", min_df={self.min_df}" + (" + chars" if self.chars else "")

    @property
    def words_only(self) -> TextModelSpec:
        """The same model without the character n-grams."""
        return replace(self, chars=False)

    def classifier(self, random_state: int) -> SGDClassifier | LogisticRegression:
        """The unfitted classifier (on TF-IDF rows)."""
        if self.kind == "sgd":
            return SGDClassifier(
                loss="log_loss",
                alpha=self.strength,
                class_weight="balanced",
                max_iter=100,
                tol=1e-4,
                random_state=random_state,
                average=self.averaged,
            )
        # Newton-CG needs ~10 iterations where lbfgs needs ~100 on these problems: 5-10x faster, same optimum.
        return LogisticRegression(C=self.strength, class_weight="balanced", solver="newton-cg", max_iter=1000)

    def pipeline(self, random_state: int) -> Pipeline | VotingClassifier:
        """TF-IDF and the classifier, unfitted; with `chars`, the soft vote of the word and the character model."""
        words = Pipeline([("tfidf", tfidf_words(self.min_df)), ("clf", self.classifier(random_state))])
        if not self.chars:
            return words
        chars = Pipeline([("tfidf", tfidf_chars(self.min_df)), ("clf", self.classifier(random_state))])
        return VotingClassifier([("words", words), ("chars", chars)], voting="soft")


class FusionClassifier(ClassifierMixin, BaseEstimator):
    """TF-IDF + linear model fused with an embedding MLP, temperature-calibrated.

    Args:
        sgd_alphas: Regularisation strengths tried for the TF-IDF model (chosen by cross-validation).
        fusion_weights: Weights of the embedding model tried in the fusion, 0–1 (chosen likewise).
        cv: Number of stratified folds for the search and the calibration.
        random_state: Seed of the folds and of both models.
    """

    def __init__(
        self,
        sgd_alphas: Sequence[float] = (1e-5, 3e-5, 1e-4),
        fusion_weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0),
        cv: int = 3,
        random_state: int = 42,
    ) -> None:
        self.sgd_alphas = sgd_alphas
        self.fusion_weights = fusion_weights
        self.cv = cv
        self.random_state = random_state

    def _text_model(self, alpha: float) -> Pipeline:
        return text_pipeline(alpha, self.random_state)

    def _embedding_model(self, n_samples: int) -> MLPClassifier:
        # Early stopping holds out 10 %: with very few tickets that hold-out cannot cover every class.
        return MLPClassifier(
            hidden_layer_sizes=(256,),
            early_stopping=n_samples >= 50,
            n_iter_no_change=5,
            max_iter=200,
            random_state=self.random_state,
        )

    def fit(self, X: pd.DataFrame, y: Sequence[str]) -> FusionClassifier:
        """Searches alpha and fusion weight on out-of-fold predictions, fits the temperature, then refits.

        Args:
            X: Feature frame from `feature_frame`.
            y: Labels.

        Returns:
            self
        """
        texts, vectors = _split_features(X)
        y = np.asarray(y).astype(str)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"need at least two classes to train, got {list(self.classes_)}")
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        oof_text = {a: np.zeros((len(y), len(self.classes_))) for a in self.sgd_alphas}
        oof_embedding = np.zeros((len(y), len(self.classes_)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for train_idx, valid_idx in folds.split(texts, y):
                for alpha in self.sgd_alphas:
                    model = self._text_model(alpha).fit(texts[train_idx], y[train_idx])
                    oof_text[alpha][valid_idx] = _aligned_log_proba(model, texts[valid_idx], self.classes_)
                if any(w > 0 for w in self.fusion_weights):
                    mlp = self._embedding_model(len(train_idx)).fit(vectors[train_idx], y[train_idx])
                    oof_embedding[valid_idx] = _aligned_log_proba(mlp, vectors[valid_idx], self.classes_)
            scores = {}
            for alpha in self.sgd_alphas:
                for weight in self.fusion_weights:
                    fused = (1 - weight) * oof_text[alpha] + weight * oof_embedding
                    scores[(alpha, weight)] = f1_score(y, self.classes_[fused.argmax(1)], average="macro")
            # Highest macro-F1; among ties the first (strongest regularisation, least fusion) wins.
            self.alpha_, self.fusion_weight_ = max(scores, key=lambda k: scores[k])
            self.cv_macro_f1_ = float(scores[(self.alpha_, self.fusion_weight_)])
            self.search_scores_ = {f"alpha={a:g},weight={w:g}": float(s) for (a, w), s in scores.items()}
            fused = (1 - self.fusion_weight_) * oof_text[self.alpha_] + self.fusion_weight_ * oof_embedding
            self.temperature_ = _fit_temperature(fused, np.searchsorted(self.classes_, y))
            self.text_model_ = self._text_model(self.alpha_).fit(texts, y)
            self.embedding_model_ = self._embedding_model(len(y)).fit(vectors, y) if self.fusion_weight_ > 0 else None
        log.info(
            "train: alpha=%g fusion_weight=%g temperature=%.3f cv macro-F1=%.4f",
            self.alpha_,
            self.fusion_weight_,
            self.temperature_,
            self.cv_macro_f1_,
        )
        return self

    def fused_scores(self, texts: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Fused log-scores before calibration from the two inputs as arrays (no feature frame).

        Args:
            texts: Merged ticket texts, shape (n,).
            vectors: Their embeddings, shape (n, dimension).

        Returns:
            One column per class of `classes_`.
        """
        scores = (1 - self.fusion_weight_) * _aligned_log_proba(self.text_model_, texts, self.classes_)
        if self.embedding_model_ is not None:
            scores += self.fusion_weight_ * _aligned_log_proba(self.embedding_model_, vectors, self.classes_)
        return scores

    def calibrated_proba(self, texts: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities from arrays (the serving path: `predict_proba` without the frame)."""
        return softmax(self.fused_scores(texts, vectors) / self.temperature_, axis=1)

    def class_probabilities(self, texts: np.ndarray, vectors: np.ndarray, neighbours: Neighbours | None) -> np.ndarray:
        """Calibrated class probabilities (the interface `TicketModel` calls; this model has no use for neighbours)."""
        return self.calibrated_proba(texts, vectors)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Fused log-scores before calibration, one column per class."""
        return self.fused_scores(*_split_features(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated class probabilities, one column per class of `classes_`."""
        return self.calibrated_proba(*_split_features(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Most probable class per row."""
        return self.classes_[self.decision_function(X).argmax(1)]


@dataclass
class _Choice:
    """One candidate classifier judged out of fold (`NeighbourStackClassifier._choose_form`).

    Attributes:
        text_spec: Its text model.
        form: Its form, one of `FORMS`.
        form_scores: Every competing form's out-of-fold macro-F1.
        candidates: Their out-of-fold class log-scores.
        features: The meta-models' input: the text model's out-of-fold probabilities and the neighbours' votes.
    """

    text_spec: TextModelSpec
    form: str
    form_scores: dict[str, float]
    candidates: dict[str, np.ndarray]
    features: np.ndarray

    @property
    def score(self) -> float:
        """Its form's out-of-fold macro-F1."""
        return self.form_scores[self.form]


class NeighbourStackClassifier(ClassifierMixin, BaseEstimator):
    """TF-IDF + linear model stacked with the nearest training tickets' label votes under a boosted meta-model.

    Single linear models on ticket text plateau; the one signal that adds to them is which labels a ticket's
    nearest training tickets (by embedding) carry. A gradient-boosted model learns how far to trust each: its
    inputs are the linear model's out-of-fold class probabilities and the votes (`neighbours.neighbour_votes`),
    where a training ticket is never its own neighbour. The boosted model's parameters are tuned on those features
    by seeded successive halving (`tuning.tune_booster`, the configured ones always a candidate). On a few thousand
    noisy tickets boosted trees learn noise: a linear meta-model over the same features, or the text model alone,
    then scores higher. The three (`FORMS`) compete on out-of-fold macro-F1, the boosted one with its configured
    parameters (tuned on the same folds, its score would be biased upwards). The simplest form (text, then
    linear_stack, then stack) whose score is within one standard error of the best one's classifies (`form_`): the
    error of the mean of their per-fold differences. A margin smaller than the folds' own disagreement is noise, and
    a simpler form carries less of it. Each TF-IDF `min_df` builds such a classifier (its own best text model and
    form), and the one whose form scores highest out of fold classifies. Only when the boosted stack classifies is it
    tuned. The chosen form's out-of-fold scores then fit a softmax temperature (calibrated confidences) and each
    class's review threshold.

    Args:
        sgd_alphas: Regularisation strengths tried for an SGD text model (`TextModelSpec`).
        sgd_average: Whether those SGD models average their weights over the passes (`TextModelSpec.averaged`).
        logistic_cs: Inverse regularisation strengths tried for a logistic-regression text model; empty tries none.
            Of every SGD and logistic candidate on one min_df the highest out-of-fold macro-F1 wins (ties: SGD, then
            the order given).
        char_ngrams: Whether each candidate also competes with a character n-gram model voting beside it
            (`TextModelSpec.chars`). Such a candidate wins only by more than one standard error over the best word
            model (the per-fold differences, as for the forms): it costs a second TF-IDF at training and serving.
        tfidf_min_dfs: The fewest tickets a term must occur in (`TextModelSpec.min_df`): each candidate above is
            tried with each, and each value's classifier competes as a whole; among equal scores the first wins.
        neighbour_ks: Neighbourhood sizes whose votes are features, e.g. (5, 20, 50).
        booster_iterations: Boosting iterations of the meta-model (the tuner's first candidate, like the next three).
        booster_learning_rate: Its learning rate.
        booster_max_leaf_nodes: Leaves per tree.
        booster_max_depth: Depth per tree: shallow trees score one ticket in about 0.1 ms (`forest.FlatForest`).
        review_precision: Precision, 0–1, each class's tickets above its review threshold reach out of fold.
        forms: The forms that compete (a non-empty subset of `FORMS`); one form classifies without a choice.
        cv: Stratified folds of the out-of-fold predictions.
        random_state: Seed of the folds, the tuner and the models.
        tuning_trials: Meta-model configurations the tuner tries when the boosted stack is the form, the configured
            one included; 1 means none.
        tuning_max_seconds: Safety cap on the tuner's wall time: past it the best configuration so far wins.

    Attributes:
        form_: What classifies, one of `FORMS`: "stack" (the boosted meta-model, `forest_`), "linear_stack" (the
            logistic one, `linear_meta_`) or "text" (the text model alone). The other meta-model is None.
        form_cv_macro_f1_: Each form's out-of-fold macro-F1.
        text_spec_: The text model chosen (`TextModelSpec`), `text_model_` fitted on every training ticket.
        text_cv_macro_f1_: Its out-of-fold macro-F1.
        text_search_scores_: Every text candidate's out-of-fold macro-F1, by `str(TextModelSpec)`.
        min_df_cv_macro_f1_: Each min_df's classifier's out-of-fold macro-F1 (its form's), by min_df.
        booster_params_: The meta-model's parameters the tuner chose.
        tuning_: The tuner's result as plain dicts (`tuning.TuningResult.as_dict`): every trial's parameters and its
            macro-F1 per rung.
    """

    def __init__(
        self,
        sgd_alphas: Sequence[float] = (1e-5, 3e-5),
        sgd_average: bool = True,
        logistic_cs: Sequence[float] = (),
        char_ngrams: bool = False,
        tfidf_min_dfs: Sequence[int] = (2, 1),
        neighbour_ks: Sequence[int] = (5, 20, 50),
        booster_iterations: int = 100,
        booster_learning_rate: float = 0.1,
        booster_max_leaf_nodes: int = 15,
        booster_max_depth: int = 5,
        review_precision: float = 0.91,
        forms: Sequence[str] = FORMS,
        cv: int = 5,
        random_state: int = 42,
        tuning_trials: int = 4,
        tuning_max_seconds: float = 900.0,
    ) -> None:
        self.sgd_alphas = sgd_alphas
        self.sgd_average = sgd_average
        self.logistic_cs = logistic_cs
        self.char_ngrams = char_ngrams
        self.tfidf_min_dfs = tfidf_min_dfs
        self.neighbour_ks = neighbour_ks
        self.booster_iterations = booster_iterations
        self.booster_learning_rate = booster_learning_rate
        self.booster_max_leaf_nodes = booster_max_leaf_nodes
        self.booster_max_depth = booster_max_depth
        self.review_precision = review_precision
        self.forms = forms
        self.cv = cv
        self.random_state = random_state
        self.tuning_trials = tuning_trials
        self.tuning_max_seconds = tuning_max_seconds

    def _min_dfs(self) -> list[int]:
        """The min_df values to try, each once, in the order given (the first wins a tie)."""
        return list(dict.fromkeys(int(min_df) for min_df in self.tfidf_min_dfs))

    def _text_specs(self) -> list[TextModelSpec]:
        kinds = [("sgd", float(alpha), bool(self.sgd_average)) for alpha in self.sgd_alphas]
        kinds += [("logistic", float(c), False) for c in self.logistic_cs]
        words = [TextModelSpec(*kind, min_df=min_df) for min_df in self._min_dfs() for kind in kinds]
        # Every word model first: a character candidate's out-of-fold probabilities average its word model's.
        return words + ([replace(spec, chars=True) for spec in words] if self.char_ngrams else [])

    def _text_oof_proba(self, texts: np.ndarray, y: np.ndarray, folds: list) -> dict[TextModelSpec, np.ndarray]:
        """Each text candidate's out-of-fold class probabilities (one TF-IDF fit per fold, n-gram kind and min_df)."""
        specs = self._text_specs()
        oof = {spec: np.zeros((len(y), len(self.classes_))) for spec in specs}
        makers = {False: tfidf_words, True: tfidf_chars}
        for train_idx, valid_idx in folds:
            rows = {}
            for chars, min_df in dict.fromkeys((spec.chars, spec.min_df) for spec in specs):
                tfidf = makers[chars](min_df)
                rows[chars, min_df] = (tfidf.fit_transform(texts[train_idx]), tfidf.transform(texts[valid_idx]))
            for spec in specs:
                train_rows, valid_rows = rows[spec.chars, spec.min_df]
                classifier = spec.classifier(self.random_state).fit(train_rows, y[train_idx])
                proba = np.exp(_aligned_log_proba(classifier, valid_rows, self.classes_))
                if spec.chars:  # the soft vote with its word model, whose probabilities are in already
                    proba = (proba + oof[spec.words_only][valid_idx]) / 2
                oof[spec][valid_idx] = proba
        return oof

    def _configured_booster_params(self) -> dict[str, object]:
        return {
            "max_iter": self.booster_iterations,
            "learning_rate": self.booster_learning_rate,
            "max_leaf_nodes": self.booster_max_leaf_nodes,
            "max_depth": self.booster_max_depth,
        }

    def _booster(self, params: dict[str, object]) -> HistGradientBoostingClassifier:
        """The boosted meta-model with `params` (the configured ones, or the tuner's `booster_params_`)."""
        return HistGradientBoostingClassifier(**params, early_stopping=False, random_state=self.random_state)

    @staticmethod
    def _linear_meta() -> LogisticRegression:
        return LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)

    def _meta_oof_scores(
        self, make_meta: Callable[[], ClassifierMixin], features: np.ndarray, y_index: np.ndarray, folds: list
    ) -> np.ndarray:
        """Out-of-fold class log-scores of the meta-model `make_meta` builds (a class a fold lacks scores log ε)."""
        scores = np.full((len(y_index), len(self.classes_)), np.log(_EPS))
        for train_idx, valid_idx in folds:
            meta = make_meta().fit(features[train_idx], y_index[train_idx])
            held_out = features[valid_idx]
            fold_scores = (
                FlatForest(meta).class_scores(held_out)
                if isinstance(meta, HistGradientBoostingClassifier)
                else meta.predict_log_proba(held_out)
            )
            scores[np.ix_(valid_idx, meta.classes_)] = fold_scores
        return scores

    def _votes(self, neighbours: Neighbours) -> np.ndarray:
        return neighbour_votes(neighbours, self.neighbour_labels_, len(self.classes_), self.neighbour_ks)

    def _choose_form(
        self,
        competing: list[str],
        oof_text: Mapping[TextModelSpec, np.ndarray],
        text_scores: Mapping[TextModelSpec, float],
        min_df: int,
        votes: np.ndarray,
        y_index: np.ndarray,
        folds: list,
    ) -> _Choice:
        """The classifier one min_df builds, judged out of fold: its text model, then its form."""
        scores = {spec: score for spec, score in text_scores.items() if spec.min_df == min_df}
        # Highest macro-F1; among ties the first (SGD's, then logistic ones, as given) wins; a character vote must
        # beat the best word model by more than the folds' own disagreement.
        best_text = max(scores, key=lambda spec: scores[spec])
        if best_text.chars:
            best_words = max((spec for spec in scores if not spec.chars), key=lambda spec: scores[spec])
            if _within_one_error(oof_text[best_text], oof_text[best_words], y_index, folds):
                best_text = best_words
        features = np.hstack([oof_text[best_text], votes])
        # The same features under the boosted trees, under a class-balanced multinomial logistic regression (on a few
        # thousand noisy tickets the trees learn noise where a linear model does not), and the text model alone.
        configured = self._configured_booster_params()
        candidates = {}
        for form in competing:  # only the competing forms are fitted
            if form == "stack":
                candidates[form] = self._meta_oof_scores(lambda: self._booster(configured), features, y_index, folds)
            elif form == "linear_stack":
                candidates[form] = self._meta_oof_scores(self._linear_meta, features, y_index, folds)
            else:
                candidates[form] = np.log(np.clip(oof_text[best_text], _EPS, 1.0))
        form_scores = {
            form: _macro_f1(self.classes_[y_index], self.classes_[c.argmax(1)]) for form, c in candidates.items()
        }
        # Highest out-of-fold macro-F1 (among ties the first of `FORMS`), then the simplest form within one standard
        # error of it. The boosted stack competes with its configured settings: tuned on these same folds, its score
        # would be the best of several draws.
        best = max(competing, key=lambda form: form_scores[form])
        form = _simplest_within_one_error(competing, best, candidates, y_index, folds)
        return _Choice(best_text, form, form_scores, candidates, features)

    def fit(self, texts: Sequence[str], y: Sequence[str], neighbours: Neighbours) -> NeighbourStackClassifier:
        """Chooses the text model and the form on out-of-fold predictions, then the temperature and the thresholds.

        Args:
            texts: Training texts.
            y: Their labels.
            neighbours: Each training ticket's nearest training tickets, itself excluded (row i of the index is
                training ticket i), at least `max(neighbour_ks)` of them.

        Returns:
            self
        """
        competing = [form for form in FORMS if form in self.forms]
        if not competing or set(self.forms) - set(FORMS):
            raise ValueError(f"forms must be a non-empty subset of {FORMS}, got {tuple(self.forms)}")
        texts = np.asarray([str(t) for t in texts], dtype=object)
        y = np.asarray(y).astype(str)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"need at least two classes to train, got {list(self.classes_)}")
        y_index = np.searchsorted(self.classes_, y)
        self.neighbour_labels_ = y_index.astype(np.int16)
        folds = list(StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state).split(texts, y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            oof_text = self._text_oof_proba(texts, y, folds)
            text_scores = {spec: _macro_f1(y, self.classes_[p.argmax(1)]) for spec, p in oof_text.items()}
            self.text_search_scores_ = {str(spec): score for spec, score in text_scores.items()}
            votes = self._votes(neighbours)
            # Each min_df builds a whole classifier (its best text model, then its form), and the one scoring highest
            # out of fold wins (among ties the first given): rare terms can lift the text model alone and still add
            # nothing once the neighbours' votes, which also see near-duplicates, stand beside it.
            options = [
                self._choose_form(competing, oof_text, text_scores, min_df, votes, y_index, folds)
                for min_df in self._min_dfs()
            ]
            self.min_df_cv_macro_f1_ = {option.text_spec.min_df: option.score for option in options}
            chosen = max(options, key=lambda option: option.score)
            self.text_spec_, self.form_, self.form_cv_macro_f1_ = chosen.text_spec, chosen.form, chosen.form_scores
            self.text_cv_macro_f1_ = text_scores[self.text_spec_]
            candidates, features = chosen.candidates, chosen.features
            tuning = tune_booster(
                features,
                y_index,
                folds,
                self._configured_booster_params(),
                self.tuning_trials if self.form_ == "stack" else 1,  # no meta-model to tune otherwise
                self.random_state,
                self.tuning_max_seconds,
            )
            self.booster_params_ = tuning.best_params
            self.tuning_ = tuning.as_dict()
            if self.form_ == "stack" and tuning.best_trial != 0:
                tuned = self.booster_params_
                candidates["stack"] = self._meta_oof_scores(lambda: self._booster(tuned), features, y_index, folds)
            oof_scores = candidates[self.form_]
            self.temperature_ = _fit_temperature(oof_scores, y_index)
            oof_proba = softmax(oof_scores / self.temperature_, axis=1)
            # Kept for the label audit (`ticketflow.components.audit`), which needs scores of tickets the model did
            # not learn from; training-time only, so left out of the pickle.
            self.oof_proba_ = oof_proba
            predicted = self.classes_[oof_proba.argmax(1)]
            self.cv_macro_f1_ = float(f1_score(y, predicted, average="macro"))
            self.review_thresholds_ = class_review_thresholds(
                oof_proba.max(1), predicted, predicted == y, self.classes_, self.review_precision
            )
            self.text_model_ = self.text_spec_.pipeline(self.random_state).fit(texts, y)
            self.forest_ = (
                FlatForest(self._booster(self.booster_params_).fit(features, y_index))
                if self.form_ == "stack"
                else None
            )
            self.linear_meta_ = self._linear_meta().fit(features, y_index) if self.form_ == "linear_stack" else None
        log.info(
            "train: text model %s, cv macro-F1 %s: %s, temperature=%.3f",
            self.text_spec_,
            ", ".join(f"{form} {score:.4f}" for form, score in self.form_cv_macro_f1_.items()),
            self.form_,
            self.temperature_,
        )
        return self

    def _decision(self, name: str, classifier: ClassifierMixin, rows) -> np.ndarray:
        """A linear classifier's decision values, as its `decision_function` gives them, without its per-call checks.

        scikit-learn validates the input and multiplies by a transposed copy of the coefficients on every call:
        about 1 ms of a single ticket's answer. Here the rows meet a contiguous copy made once (kept as `name`).
        """
        if self.__dict__.get(name) is None:
            self.__dict__[name] = (np.ascontiguousarray(classifier.coef_.T), classifier.intercept_)
        weights, intercept = self.__dict__[name]
        return np.asarray(rows @ weights + intercept)

    def text_proba(self, texts: np.ndarray) -> np.ndarray:
        """The text model's class probabilities, as its `predict_proba` gives them (`_decision`)."""
        if isinstance(self.text_model_, VotingClassifier):  # word and character models: the mean of theirs
            parts = [
                self._pipeline_proba(f"_text_weights_{number}", pipeline, texts)
                for number, pipeline in enumerate(self.text_model_.estimators_)
            ]
            return np.mean(parts, axis=0)
        return self._pipeline_proba("_text_weights", self.text_model_, texts)

    def _pipeline_proba(self, name: str, pipeline: Pipeline, texts: np.ndarray) -> np.ndarray:
        """A TF-IDF + linear classifier pipeline's class probabilities, as its `predict_proba` gives them."""
        classifier = pipeline.named_steps["clf"]
        decision = self._decision(name, classifier, pipeline.named_steps["tfidf"].transform(texts))
        if decision.shape[1] == 1:  # two classes: both kinds give the second one sigmoid(decision)
            positive = expit(decision[:, 0])
            return np.column_stack([1.0 - positive, positive])
        if isinstance(classifier, LogisticRegression):  # multinomial
            return softmax(decision, axis=1)
        # SGDClassifier's log-loss probabilities: one-vs-rest sigmoids normalised to sum to 1.
        positive = expit(decision)
        return positive / np.clip(positive.sum(axis=1, keepdims=True), _EPS, None)

    def __getstate__(self) -> dict[str, object]:
        """Pickles without the contiguous copies of coefficients (made again on first use) and `oof_proba_`."""
        # scikit-learn's records its version; on Python 3.11+ it is the instance's own __dict__, so copy before popping.
        state = dict(super().__getstate__())
        for name in [key for key in state if key.startswith(("_text_weights", "_meta_weights"))]:
            state.pop(name)
        state.pop("oof_proba_", None)  # one row per training ticket: the audit's input, of no use to predictions
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Unpickles; a model pickled before a parameter existed gets the value that says what it did then."""
        super().__setstate__({**_PARAMETERS_BEFORE, **state})

    def features(self, texts: np.ndarray, neighbours: Neighbours) -> np.ndarray:
        """The meta-model's input: the text model's class probabilities and the neighbours' votes."""
        return np.hstack([self.text_proba(texts), self._votes(neighbours)])

    def class_probabilities(self, texts: np.ndarray, vectors: np.ndarray, neighbours: Neighbours | None) -> np.ndarray:
        """Calibrated class probabilities, one column per class of `classes_`.

        Args:
            texts: Merged ticket texts, shape (n,).
            vectors: Their embeddings (unused: the neighbours carry what the vectors say).
            neighbours: Their nearest training tickets from the model's index.
        """
        if self.form == "text":
            scores = np.log(np.clip(self.text_proba(texts), _EPS, 1.0))
        elif neighbours is None:
            raise ValueError("NeighbourStackClassifier needs the tickets' neighbours")
        elif self.form == "linear_stack":
            decision = self._decision("_meta_weights", self.linear_meta_, self.features(texts, neighbours))
            if decision.shape[1] == 1:  # two classes: P(second) = sigmoid(d) = softmax([0, d])
                decision = np.column_stack([np.zeros(len(decision)), decision[:, 0]])
            scores = np.full((len(texts), len(self.classes_)), np.log(_EPS))
            scores[:, self.linear_meta_.classes_] = log_softmax(decision, axis=1)
        else:
            scores = self.forest_.class_scores(self.features(texts, neighbours))
        return softmax(scores / self.temperature_, axis=1)

    @property
    def form(self) -> str:
        """What classifies, one of `FORMS` (`form_`)."""
        return self.__dict__.get("form_", "stack")  # models fitted before the choice existed are stacks


def _simplest_within_one_error(
    competing: Sequence[str], best: str, candidates: dict[str, np.ndarray], y_index: np.ndarray, folds: list
) -> str:
    """The simplest form whose out-of-fold macro-F1 is within one standard error of the best form's.

    The error is that of the mean of the per-fold differences from the best form (the one-standard-error rule):
    a margin smaller than the folds' own disagreement is noise, and the simpler form then carries less of it.
    """
    for form in reversed(FORMS):  # simplest first: text, linear_stack, stack
        if form == best:
            break
        if form in competing and _within_one_error(candidates[best], candidates[form], y_index, folds):
            return form
    return best


def _within_one_error(best_scores: np.ndarray, scores: np.ndarray, y_index: np.ndarray, folds: list) -> bool:
    """Whether out-of-fold `scores` lose to `best_scores` by no more than one standard error, in macro-F1.

    The error is that of the mean of the per-fold differences (either kind of score: one column per class).
    """
    differences = [
        _macro_f1(y_index[valid], best_scores[valid].argmax(1)) - _macro_f1(y_index[valid], scores[valid].argmax(1))
        for _, valid in folds
    ]
    return bool(np.mean(differences) <= np.std(differences, ddof=1) / np.sqrt(len(differences)))


def _macro_f1(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(f1_score(y, predicted, average="macro"))


def _fit_temperature(scores: np.ndarray, y_index: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood of softmax(scores / T)."""

    def nll(log_t: float) -> float:
        return -float(log_softmax(scores / np.exp(log_t), axis=1)[np.arange(len(y_index)), y_index].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded").x))


@dataclass
class TargetPrediction:
    """Predictions for one target: labels, confidences and the full probability table."""

    labels: np.ndarray
    confidences: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray


@dataclass
class TicketModel:
    """Embeds raw ticket text once and classifies it for each target.

    Attributes:
        mapping: Column roles of the training data (to build text from subject/body/tags the same way).
        embedding_model: Configured sentence-transformers model.
        embed_batch_size: Texts per encode batch.
        embedding_precision: The encoder's precision at training (`int8` or `fp32`); predictions encode the same way.
        embedding_max_tokens: The encoder's token limit at training (0: the model's own).
        classifiers: One fitted classifier per label column (`NeighbourStackClassifier`; `FusionClassifier` in
            models trained before it).
        collection: ChromaDB collection with the training tickets (for similar tickets).
        review_thresholds: Per target and predicted class, the confidence below which a ticket needs review
            (chosen in training on out-of-fold predictions). Models trained before hold one float per target.
        info: Free-form facts about the training run.
        neighbour_index: The training tickets' vectors, searched for the classifiers' neighbour votes.
    """

    mapping: ColumnMapping
    embedding_model: str
    embed_batch_size: int
    classifiers: dict[str, FusionClassifier]
    collection: str = ""
    review_thresholds: dict[str, dict[str, float] | float] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)
    neighbour_index: NeighbourIndex | None = None
    # Models pickled before these existed were trained on PyTorch's fp32 vectors at the model's own limit: the
    # class defaults say so (unpickling restores the instance's dict, and a missing attribute falls back here).
    embedding_precision: str = "fp32"
    embedding_max_tokens: int = 0

    def __post_init__(self) -> None:
        """Starts without a loaded encoder (it loads on first use)."""
        self._encoder = None

    def __getstate__(self) -> dict[str, object]:
        """Pickles without the encoder's weights: the spec is enough to load them again."""
        state = dict(self.__dict__)
        state.pop("_encoders", None)  # the attribute's name in models pickled when encoders had backends
        state["_encoder"] = None
        return state

    @property
    def encoder_spec(self) -> EncoderSpec:
        """The encoder the training vectors came from, which every prediction uses too."""
        return EncoderSpec(self.embedding_model, self.embedding_precision, self.embedding_max_tokens)

    @property
    def targets(self) -> tuple[str, ...]:
        """The label columns this model predicts."""
        return tuple(self.classifiers)

    @property
    def label_sets(self) -> dict[str, list[str]]:
        """Per target, the classes this model predicts (sorted): what the quality gate compares."""
        return {target: sorted(map(str, classifier.classes_)) for target, classifier in self.classifiers.items()}

    def encoder(self):
        """The encoder of `encoder_spec`, loaded on first use: one path for a single ticket and a batch alike."""
        if self.__dict__.get("_encoder") is None:  # absent in models pickled before this attribute existed
            self._encoder = self.encoder_spec.load()
        return self._encoder

    def reuse_encoder_of(self, other: TicketModel | None) -> bool:
        """Shares the encoder `other` already loaded, when both models encode the same way (`encoder_spec`).

        A retrained version usually keeps its predecessor's encoder; sharing spares loading the weights, exporting
        and quantising the graph a second time.

        Args:
            other: Another model version, e.g. the one being served; None shares nothing.

        Returns:
            True when this model now uses `other`'s encoder.
        """
        loaded = other.__dict__.get("_encoder") if other is not None else None
        if loaded is None or other.encoder_spec != self.encoder_spec:
            return False
        self._encoder = loaded
        return True

    def texts_from_frame(self, frame: pd.DataFrame) -> list[str]:
        """Builds model text from a frame holding either `text` or the training data's text columns.

        Raises:
            ValueError: The frame has neither.
        """
        if all(c in frame.columns for c in self.mapping.text_columns):
            return frame.apply(merge_text, axis=1, mapping=self.mapping).tolist()
        if TEXT in frame.columns:
            return frame[TEXT].fillna("").astype(str).map(normalise_whitespace).tolist()
        raise ValueError(
            f"input needs a '{TEXT}' column or the text columns {list(self.mapping.text_columns)}; "
            f"got {list(frame.columns)}"
        )

    def embed(self, texts: Sequence[str], store=None) -> np.ndarray:
        """Embeds texts with the training-time model, reusing vectors from `store` when given."""
        vectors, _ = embed_with_cache(
            list(texts),
            [text_hash(t) for t in texts],
            self.encoder_spec,
            store,
            self.embed_batch_size,
            model=self.encoder(),
        )
        return vectors

    def predict(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> dict[str, TargetPrediction]:
        """Predicts every target for raw texts.

        Args:
            texts: Merged ticket texts.
            vectors: Their embeddings when already computed (else they are encoded here).

        Returns:
            Predictions per target.
        """
        if vectors is None:
            vectors = self.embed(texts)
        text_array = np.array([str(t) for t in texts], dtype=object)
        vector_array = np.asarray(vectors, dtype=np.float32)
        out = {}
        # The inputs are ours and already checked (strings, finite unit vectors): skipping sklearn's per-call
        # validation takes about a third off one ticket's classification, which matters on the request path.
        neighbours = self.neighbours(vector_array)
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            for target, classifier in self.classifiers.items():
                proba = classifier.class_probabilities(text_array, vector_array, neighbours)
                best = proba.argmax(1)
                out[target] = TargetPrediction(classifier.classes_[best], proba.max(1), classifier.classes_, proba)
        return out

    def neighbours(self, vectors: np.ndarray) -> Neighbours | None:
        """The tickets' nearest training tickets, as many as the classifiers' votes read (None without an index)."""
        wanted = [max(c.neighbour_ks) for c in self.classifiers.values() if hasattr(c, "neighbour_ks")]
        if self.__dict__.get("neighbour_index") is None or not wanted:  # absent in models pickled before it
            return None
        return self.neighbour_index.search(vectors, max(wanted))

    def needs_review(self, predictions: dict[str, TargetPrediction]) -> np.ndarray:
        """True where any target's confidence is below the review threshold of the class it predicts.

        A class without a threshold routes every ticket; a legacy single threshold applies to every class.
        """
        flags = np.zeros(len(next(iter(predictions.values())).labels), dtype=bool)
        for target, prediction in predictions.items():
            thresholds = self.review_thresholds.get(target, 0.0)
            if isinstance(thresholds, dict):
                thresholds = np.array([thresholds.get(str(label), 0.0) for label in prediction.labels], dtype=float)
            flags |= prediction.confidences < thresholds
        return flags

    def predict_frame(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> pd.DataFrame:
        """Predictions as columns `predicted_<target>`, `confidence_<target>` and `needs_review`."""
        predictions = self.predict(texts, vectors)
        frame = pd.DataFrame(index=range(len(texts)))
        for target, prediction in predictions.items():
            frame[f"predicted_{target}"] = prediction.labels
            frame[f"confidence_{target}"] = prediction.confidences.round(4)
        frame["needs_review"] = self.needs_review(predictions)
        return frame
