"""Logic tests of the model (synthetic data, vectors passed in) and behavioural tests with the real encoder."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from ticketflow.components.config import BUNDLED_EMBEDDING_MODEL, TicketflowConfig
from ticketflow.components.embed import EncoderSpec, encode_texts
from ticketflow.components.ingest import ColumnMapping
from ticketflow.components.model import FusionClassifier, TicketModel, _fit_temperature, feature_frame

CLASSES = ("Access", "Billing", "Network")
WORDS = {
    "Access": "password login account locked reset mfa token username permission sso",
    "Billing": "invoice refund charge payment card billing receipt credit subscription price",
    "Network": "vpn wifi network router dns proxy firewall latency ethernet tunnel",
    "shared": "please help hello thanks urgent today team issue problem again",
}
POOLS = {label: WORDS[label].split() for label in CLASSES}
SHARED = WORDS["shared"].split()
DIM = 16
# Fixed class centres: the embedding of a ticket is a random unit vector pulled towards its class's centre.
CENTRES = np.random.default_rng(1234).normal(size=(len(CLASSES), DIM))
SMALL_GRID = {"sgd_alphas": (1e-4, 1e-3), "fusion_weights": (0.0, 0.3, 0.6), "cv": 3}
MAPPING = ColumnMapping(("subject", "body", "tags"), "category", "priority", tags_column="tags")
PRIORITY_OF = {"Access": "high", "Billing": "low", "Network": "low"}


def synthetic(
    n_per_class: int, seed: int, text_signal: bool = True, embedding_signal: bool = True
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, unit vectors and labels; either branch can be made pure noise."""
    rng = np.random.default_rng(seed)
    every_word = [w for pool in POOLS.values() for w in pool]
    texts, vectors, labels = [], [], []
    for k, label in enumerate(CLASSES):
        for _ in range(n_per_class):
            # two words of the class, two of any class, two common ones: informative but not separable
            own = rng.choice(POOLS[label] if text_signal else every_word, 2)
            words = [*own, *rng.choice(every_word, 2), *rng.choice(SHARED, 2)]
            rng.shuffle(words)
            texts.append(" ".join(words))
            vector = rng.normal(size=DIM) + (CENTRES[k] if embedding_signal else 0.0)
            vectors.append(vector / np.linalg.norm(vector))
            labels.append(label)
    return texts, np.asarray(vectors, dtype=np.float32), np.asarray(labels)


@pytest.fixture(scope="module")
def train_data():
    return synthetic(40, seed=0)


@pytest.fixture(scope="module")
def held_out():
    return synthetic(20, seed=1)


@pytest.fixture(scope="module")
def fitted(train_data) -> FusionClassifier:
    texts, vectors, labels = train_data
    return FusionClassifier(**SMALL_GRID, random_state=0).fit(feature_frame(texts, vectors), labels)


@pytest.fixture(scope="module")
def priority_classifier(train_data) -> FusionClassifier:
    texts, vectors, labels = train_data
    priority = np.array([PRIORITY_OF[label] for label in labels])
    return FusionClassifier(**SMALL_GRID, random_state=0).fit(feature_frame(texts, vectors), priority)


# --- FusionClassifier ----------------------------------------------------------------------------------------


def test_fit_learns_classes_and_picks_from_the_grids(fitted):
    assert list(fitted.classes_) == sorted(CLASSES)
    assert fitted.alpha_ in SMALL_GRID["sgd_alphas"]
    assert fitted.fusion_weight_ in SMALL_GRID["fusion_weights"]
    assert len(fitted.search_scores_) == len(SMALL_GRID["sgd_alphas"]) * len(SMALL_GRID["fusion_weights"])
    assert fitted.cv_macro_f1_ == max(fitted.search_scores_.values())
    assert fitted.search_scores_[f"alpha={fitted.alpha_:g},weight={fitted.fusion_weight_:g}"] == fitted.cv_macro_f1_
    assert fitted.temperature_ > 0
    assert math.exp(-4) <= fitted.temperature_ <= math.exp(4)


def test_predict_proba_is_a_distribution_over_classes(fitted, held_out):
    texts, vectors, _ = held_out
    proba = fitted.predict_proba(feature_frame(texts, vectors))
    assert proba.shape == (len(texts), len(CLASSES))
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


def test_probability_columns_follow_classes(fitted, held_out):
    texts, vectors, labels = held_out
    features = feature_frame(texts, vectors)
    proba = fitted.predict_proba(features)
    np.testing.assert_array_equal(fitted.predict(features), fitted.classes_[proba.argmax(1)])
    for index, label in enumerate(fitted.classes_):
        # each class's own tickets put the most mass on that class's column
        assert proba[labels == label].mean(axis=0).argmax() == index


def test_accuracy_well_above_chance_on_held_out_rows(fitted, held_out):
    texts, vectors, labels = held_out
    accuracy = (fitted.predict(feature_frame(texts, vectors)) == labels).mean()
    assert accuracy >= 0.75  # chance is 1/3


def test_fit_is_deterministic_for_a_random_state(train_data, held_out):
    texts, vectors, labels = train_data
    features = feature_frame(texts, vectors)
    held_features = feature_frame(*held_out[:2])
    first = FusionClassifier(**SMALL_GRID, random_state=3).fit(features, labels)
    second = FusionClassifier(**SMALL_GRID, random_state=3).fit(features, labels)
    assert (first.alpha_, first.fusion_weight_, first.temperature_) == (
        second.alpha_,
        second.fusion_weight_,
        second.temperature_,
    )
    np.testing.assert_array_equal(first.predict_proba(held_features), second.predict_proba(held_features))


def test_embeddings_are_used_when_only_they_carry_signal():
    texts, vectors, labels = synthetic(40, seed=2, text_signal=False)
    grid = {**SMALL_GRID, "fusion_weights": (0.0, 0.5, 1.0)}
    model = FusionClassifier(**grid, random_state=0).fit(feature_frame(texts, vectors), labels)
    assert model.fusion_weight_ > 0
    assert model.embedding_model_ is not None
    held_texts, held_vectors, held_labels = synthetic(20, seed=3, text_signal=False)
    assert (model.predict(feature_frame(held_texts, held_vectors)) == held_labels).mean() >= 0.7


def test_text_only_grid_fits_no_embedding_model(train_data, held_out):
    texts, vectors, labels = train_data
    model = FusionClassifier(sgd_alphas=(1e-4,), fusion_weights=(0.0,), cv=3, random_state=0)
    model.fit(feature_frame(texts, vectors), labels)
    assert model.fusion_weight_ == 0.0
    assert model.embedding_model_ is None
    held_texts, held_vectors, held_labels = held_out
    # the embeddings cannot matter: zeroing them changes nothing
    with_vectors = model.predict_proba(feature_frame(held_texts, held_vectors))
    without = model.predict_proba(feature_frame(held_texts, np.zeros_like(held_vectors)))
    np.testing.assert_array_equal(with_vectors, without)
    assert (model.classes_[with_vectors.argmax(1)] == held_labels).mean() >= 0.55  # chance is 1/3


@pytest.mark.parametrize("labels", [["Access"] * 12, ["only"] * 3])
def test_single_class_raises(labels):
    texts = [f"password reset number {i}" for i in range(len(labels))]
    vectors = np.ones((len(labels), DIM), dtype=np.float32)
    with pytest.raises(ValueError, match="two classes"):
        FusionClassifier(**SMALL_GRID).fit(feature_frame(texts, vectors), labels)


def test_fits_the_smallest_two_class_set_ingest_accepts(tmp_path):
    from ticketflow.components.ingest import REJECT_REASON, SOURCE_ROW, validate_tickets
    from ticketflow.components.prepare import TEXT, prepare_tickets
    from ticketflow.components.train import fit_ticket_model

    # Two classes of exactly min_class_examples tickets pass ingest; the 0.2 split leaves 8 + 8 to train on.
    cfg = TicketflowConfig(home=str(tmp_path))
    texts, _, labels = synthetic(cfg.min_class_examples, seed=4)
    keep = labels != "Network"
    frame = pd.DataFrame({"body": np.asarray(texts)[keep], "category": labels[keep]})
    frame[SOURCE_ROW] = range(1, len(frame) + 1)
    ingested = validate_tickets(frame, pd.DataFrame(columns=[SOURCE_ROW, REJECT_REASON, "raw"]), cfg)
    prepared = prepare_tickets(ingested.tickets, ingested.mapping, cfg.test_size, cfg.seed)
    vectors = np.random.default_rng(0).normal(size=(len(prepared.train), DIM)).astype(np.float32)
    model = fit_ticket_model(prepared.train, vectors, ingested.mapping, cfg)
    assert list(model.classifiers["category"].classes_) == ["Access", "Billing"]
    assert len(prepared.train[TEXT]) == 16


@pytest.mark.parametrize(("top", "p"), [(4.0, 0.8), (4.0, 0.99), (1.0, 0.6)])
def test_fit_temperature_matches_the_closed_form(top, p):
    # Every row scores [top, 0]; a fraction p is of class 0. NLL is minimal where sigmoid(top / T) = p.
    n = 100
    scores = np.tile([top, 0.0], (n, 1))
    y_index = np.array([0] * round(p * n) + [1] * (n - round(p * n)))
    expected = top / math.log(p / (1 - p))
    assert _fit_temperature(scores, y_index) == pytest.approx(expected, rel=1e-3)


# --- TicketModel ---------------------------------------------------------------------------------------------


def ticket_model(fitted, priority_classifier, thresholds: dict[str, float] | None = None) -> TicketModel:
    return TicketModel(
        mapping=MAPPING,
        embedding_model=BUNDLED_EMBEDDING_MODEL,
        embed_batch_size=8,
        classifiers={"category": fitted, "priority": priority_classifier},
        review_thresholds=thresholds or {},
    )


def test_ticket_model_predicts_every_target(fitted, priority_classifier, held_out):
    texts, vectors, labels = held_out
    model = ticket_model(fitted, priority_classifier)
    assert model.targets == ("category", "priority")
    predictions = model.predict(texts, vectors)
    assert set(predictions) == {"category", "priority"}
    features = feature_frame(texts, vectors)
    for target, classifier in model.classifiers.items():
        prediction = predictions[target]
        np.testing.assert_array_equal(prediction.classes, classifier.classes_)
        np.testing.assert_allclose(prediction.probabilities, classifier.predict_proba(features))
        np.testing.assert_allclose(prediction.confidences, prediction.probabilities.max(axis=1))
        np.testing.assert_array_equal(prediction.labels, classifier.classes_[prediction.probabilities.argmax(1)])
    assert (predictions["category"].labels == labels).mean() >= 0.75
    expected_priority = np.array([PRIORITY_OF[label] for label in labels])
    assert (predictions["priority"].labels == expected_priority).mean() >= 0.75


def test_predict_frame_columns(fitted, priority_classifier, held_out):
    texts, vectors, _ = held_out
    model = ticket_model(fitted, priority_classifier)
    frame = model.predict_frame(texts, vectors)
    predictions = model.predict(texts, vectors)
    assert list(frame.columns) == [
        "predicted_category",
        "confidence_category",
        "predicted_priority",
        "confidence_priority",
        "needs_review",
    ]
    assert len(frame) == len(texts)
    for target in ("category", "priority"):
        assert frame[f"predicted_{target}"].tolist() == predictions[target].labels.tolist()
        np.testing.assert_allclose(frame[f"confidence_{target}"], predictions[target].confidences, atol=5e-5)
    assert not frame["needs_review"].any()  # no thresholds set yet


def test_needs_review_flags_low_confidence_in_any_target(fitted, priority_classifier, held_out):
    texts, vectors, _ = held_out
    plain = ticket_model(fitted, priority_classifier).predict(texts, vectors)
    category_cut = float(np.median(plain["category"].confidences))
    priority_cut = float(np.median(plain["priority"].confidences))
    model = ticket_model(fitted, priority_classifier, {"category": category_cut, "priority": priority_cut})
    expected = (plain["category"].confidences < category_cut) | (plain["priority"].confidences < priority_cut)
    flags = model.needs_review(plain)
    np.testing.assert_array_equal(flags, expected)
    assert 0 < flags.sum() < len(texts)
    np.testing.assert_array_equal(model.predict_frame(texts, vectors)["needs_review"].to_numpy(), expected)
    only_category = ticket_model(fitted, priority_classifier, {"category": category_cut})
    np.testing.assert_array_equal(only_category.needs_review(plain), plain["category"].confidences < category_cut)
    everything = ticket_model(fitted, priority_classifier, {"priority": 1.01})
    assert everything.needs_review(plain).all()


def test_texts_from_frame(fitted, priority_classifier):
    model = ticket_model(fitted, priority_classifier)
    columns = pd.DataFrame(
        {
            "subject": ["VPN down", None],
            "body": ["No\\ntunnel  since\tmorning", "Charged twice"],
            "tags": ["vpn;network", ""],
        }
    )
    assert model.texts_from_frame(columns) == ["VPN down No tunnel since morning vpn network", "Charged twice"]
    text_only = pd.DataFrame({"text": ["  Password\\nreset ", None]})
    assert model.texts_from_frame(text_only) == ["Password reset", ""]
    both = columns.assign(text="ignored")  # the training data's columns win: text is built the same way
    assert model.texts_from_frame(both) == model.texts_from_frame(columns)
    with pytest.raises(ValueError, match="subject"):
        model.texts_from_frame(pd.DataFrame({"subject": ["only a subject"]}))


class FakeEncoder:
    """Stands in for a SentenceTransformer: returns the known vector of each text."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.calls = 0

    def encode(self, texts, **kwargs):
        self.calls += 1
        return np.stack([self.table[t] for t in texts])

    def get_embedding_dimension(self) -> int:
        return DIM


def test_predict_without_vectors_encodes_with_the_configured_model(fitted, priority_classifier, held_out, monkeypatch):
    texts, vectors, _ = held_out
    encoder = FakeEncoder(dict(zip(texts, vectors, strict=True)))
    loaded = []
    monkeypatch.setattr(EncoderSpec, "load", lambda spec: loaded.append(spec.model) or encoder)
    model = ticket_model(fitted, priority_classifier)
    encoded = model.predict(texts)
    model.predict(texts[:3])
    assert loaded == [BUNDLED_EMBEDDING_MODEL]  # loaded once, then reused
    explicit = model.predict(texts, vectors)
    for target in model.targets:
        np.testing.assert_allclose(encoded[target].probabilities, explicit[target].probabilities, rtol=1e-6)


def test_pickling_round_trips_without_the_encoder(fitted, priority_classifier, held_out, tmp_path):
    texts, vectors, _ = held_out
    model = ticket_model(fitted, priority_classifier, {"category": 0.6})
    model._encoder = threading.Lock()  # stands in for loaded weights; a lock cannot be pickled
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    assert isinstance(model._encoder, type(threading.Lock()))  # the live model keeps its encoder
    loaded = joblib.load(path)
    assert loaded._encoder is None
    assert loaded.mapping == MAPPING
    assert loaded.review_thresholds == {"category": 0.6}
    assert loaded.encoder_spec == model.encoder_spec
    pd.testing.assert_frame_equal(loaded.predict_frame(texts, vectors), model.predict_frame(texts, vectors))


# --- Behaviour with the real bundled encoder, trained on the bundled sample ----------------------------------

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample_tickets.csv"


@pytest.fixture(scope="module")
def sample_ticket_model(tmp_path_factory):
    from ticketflow.components.ingest import ingest_tickets
    from ticketflow.components.prepare import TEXT, prepare_tickets
    from ticketflow.components.train import fit_ticket_model

    # Priority is left out: these cases are about the category, and it halves the training time.
    cfg = TicketflowConfig(home=str(tmp_path_factory.mktemp("home")), priority_column="none")
    ingested = ingest_tickets(SAMPLE, cfg)
    prepared = prepare_tickets(ingested.tickets, ingested.mapping, cfg.test_size, cfg.seed)
    encoder = EncoderSpec.from_config(cfg).load()  # what `make run` trains and serves with
    vectors = encode_texts(encoder, prepared.train[TEXT].tolist(), cfg.embed_batch_size)
    return fit_ticket_model(prepared.train, vectors, ingested.mapping, cfg), encoder


@pytest.fixture(scope="module")
def sample_model(sample_ticket_model):
    model, encoder = sample_ticket_model

    def categories(texts: list[str]) -> list[str]:
        return model.predict(texts, encode_texts(encoder, texts, 8))["category"].labels.tolist()

    return categories


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("The VPN keeps DISCONNECTING from home", "the vpn keeps disconnecting from home"),
        ("my invoice\n\nshows a   double charge", "  my invoice shows a double charge\t"),
    ],
)
def test_case_and_whitespace_change_no_probability(sample_ticket_model, a, b):
    model, encoder = sample_ticket_model
    first, second = (model.predict([text], encode_texts(encoder, [text], 8))["category"] for text in (a, b))
    np.testing.assert_allclose(first.probabilities, second.probabilities, atol=1e-6)
    np.testing.assert_allclose(first.probabilities.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("the printer is jammed", "printer jammed"),
        ("Hi, this is Anna. My laptop will not turn on.", "Hi, this is Felix. My laptop will not turn on."),
    ],
)
def test_invariance(sample_model, a, b):
    first, second = sample_model([a, b])
    assert first == second


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("VPN keeps disconnecting and I cannot reach the network from home", "Network"),
        ("I was charged twice on my invoice, please refund the duplicate payment", "Billing"),
        ("I forgot my password and need a password reset for my account", "Access"),
    ],
)
def test_directional(sample_model, text, category):
    assert sample_model([text]) == [category]


def test_a_new_version_shares_the_loaded_encoder_only_when_it_encodes_the_same_way(
    fitted, priority_classifier, monkeypatch
):
    loads = []
    monkeypatch.setattr(EncoderSpec, "load", lambda spec: loads.append(spec) or object())
    served = ticket_model(fitted, priority_classifier)
    retrained = ticket_model(fitted, priority_classifier)
    assert retrained.reuse_encoder_of(served) is False  # nothing loaded yet: nothing to share
    assert retrained.reuse_encoder_of(None) is False
    encoder = served.encoder()
    assert retrained.reuse_encoder_of(served) is True
    assert retrained.encoder() is encoder
    others = [
        dataclasses.replace(ticket_model(fitted, priority_classifier), **change)
        for change in (
            {"embedding_model": "other/model"},
            {"embedding_precision": "int8"},
            {"embedding_max_tokens": 64},
        )
    ]
    for other in others:  # another model, precision or token limit is another encoder
        assert other.reuse_encoder_of(served) is False
        assert other.encoder() is not encoder
    assert loads == [served.encoder_spec] + [other.encoder_spec for other in others]
