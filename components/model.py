"""The ticket model: one object that embeds raw text and classifies it for every target.

Each target (category/queue, priority) gets a `FusionClassifier`: TF-IDF word 1–2 grams with a linear model,
fused late with a small neural network on sentence embeddings. Embeddings alone fall short of TF-IDF on
lower-cased, stop-word-free ticket text, but they add what word overlap misses, so the two are combined by a
weighted sum of log-probabilities. The weight, the regularisation and a softmax temperature (so that
confidences are calibrated) are all chosen on out-of-fold predictions: no extra model fits.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sklearn
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from ticketflow.components.embed import EncoderSpec, embed_with_cache
from ticketflow.components.ingest import ColumnMapping
from ticketflow.components.prepare import TEXT, merge_text, normalise_whitespace, text_hash

log = logging.getLogger(__name__)

EMBEDDING_PREFIX = "emb_"
_EPS = 1e-9


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
        return Pipeline(
            [
                ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, dtype=np.float32)),
                (
                    "clf",
                    SGDClassifier(
                        loss="log_loss",
                        alpha=alpha,
                        class_weight="balanced",
                        max_iter=100,
                        tol=1e-4,
                        random_state=self.random_state,
                    ),
                ),
            ]
        )

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

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Fused log-scores before calibration, one column per class."""
        return self.fused_scores(*_split_features(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated class probabilities, one column per class of `classes_`."""
        return self.calibrated_proba(*_split_features(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Most probable class per row."""
        return self.classes_[self.decision_function(X).argmax(1)]


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
        classifiers: One fitted `FusionClassifier` per label column.
        collection: ChromaDB collection with the training tickets (for similar tickets).
        review_thresholds: Per target, the confidence below which a ticket needs review (set by evaluation).
        info: Free-form facts about the training run.
    """

    mapping: ColumnMapping
    embedding_model: str
    embed_batch_size: int
    classifiers: dict[str, FusionClassifier]
    collection: str = ""
    review_thresholds: dict[str, float] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)
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
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            for target, classifier in self.classifiers.items():
                proba = classifier.calibrated_proba(text_array, vector_array)
                best = proba.argmax(1)
                out[target] = TargetPrediction(classifier.classes_[best], proba.max(1), classifier.classes_, proba)
        return out

    def needs_review(self, predictions: dict[str, TargetPrediction]) -> np.ndarray:
        """True where any target's confidence is below its review threshold."""
        flags = np.zeros(len(next(iter(predictions.values())).labels), dtype=bool)
        for target, prediction in predictions.items():
            flags |= prediction.confidences < self.review_thresholds.get(target, 0.0)
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
