"""Embedding with the bundled model and vector reuse through a real ChromaDB (persistent client in tmp_path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ticketflow.components.config import BUNDLED_EMBEDDING_MODEL
from ticketflow.components.embed import (
    EncoderSpec,
    embed_with_cache,
    encode_texts,
    load_sentence_model,
    resolve_model_path,
)
from ticketflow.components.prepare import text_hash
from ticketflow.components.store import VectorStore, cache_collection_name, tickets_collection_name

TEXTS = [
    "printer on floor 2 is jammed",
    "VPN disconnects every hour",
    "refund for a double charge",
    "printer on floor 2 is jammed",
]


@pytest.fixture(scope="module")
def encoder():
    return load_sentence_model(BUNDLED_EMBEDDING_MODEL)


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    return VectorStore(str(tmp_path / "chroma"))


def test_bundled_model_resolves_to_the_wheel_and_other_names_pass_through() -> None:
    assert (Path(resolve_model_path(BUNDLED_EMBEDDING_MODEL)) / "config.json").is_file()
    assert resolve_model_path("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"
    assert resolve_model_path("/models/my-encoder") == "/models/my-encoder"


def test_an_unreachable_model_name_fails_naming_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The variable is read when huggingface_hub is imported: once another test imported it, only the constant
    # counts (without it, this test waited on the unreachable Hub when it ran after the unit tests).
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="no-such-org/no-such-model"):
        load_sentence_model("no-such-org/no-such-model")


def test_vectors_are_normalised_384_dimensional(encoder) -> None:
    vectors = encode_texts(encoder, TEXTS, batch_size=2)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encode_texts(encoder, [], batch_size=2).shape == (0, 384)


def test_second_embedding_reuses_stored_vectors(encoder, store: VectorStore) -> None:
    hashes = [text_hash(t) for t in TEXTS]
    spec = EncoderSpec(BUNDLED_EMBEDDING_MODEL)
    first, encoded = embed_with_cache(TEXTS, hashes, spec, store, 8, model=encoder)
    assert encoded == 3  # the repeated text is encoded once
    again, encoded_again = embed_with_cache(TEXTS, hashes, spec, store, 8, model=encoder)
    assert encoded_again == 0
    assert np.array_equal(again, first)  # bit-identical: a warm cache must train the same model as a cold one
    np.testing.assert_allclose(first, encode_texts(encoder, TEXTS, 8), atol=1e-5)
    # The cache is keyed by the whole encoder: another model, precision or token limit reuses nothing.
    for other_spec in (
        EncoderSpec("another-model"),
        EncoderSpec(spec.model, "int8"),
        EncoderSpec(spec.model, "fp32", 64),
    ):
        _, other = embed_with_cache(TEXTS[:1], hashes[:1], other_spec, store, 8, model=encoder)
        assert other == 1, other_spec


def test_ticket_collection_is_written_once_and_answers_similarity(encoder, store: VectorStore) -> None:
    tickets = pd.DataFrame(
        {
            "ticket_id": ["a", "b", "c"],
            "text": TEXTS[:3],
            "category": ["Hardware", "Network", "Billing"],
            "resolution": ["reseat the tray", "", "refunded"],
        }
    )
    tickets["text_hash"] = tickets["text"].map(text_hash)
    vectors = encode_texts(encoder, tickets["text"].tolist(), 8)
    name = tickets_collection_name("digest", EncoderSpec(BUNDLED_EMBEDDING_MODEL).key)
    assert store.write_tickets(name, tickets, vectors, ["category"], "ticket_id", "text", "text_hash") is True
    assert store.write_tickets(name, tickets, vectors, ["category"], "ticket_id", "text", "text_hash") is False
    assert store.count(name) == 3
    query = encode_texts(encoder, ["the printer jammed again"], 8)
    hit = store.query(name, query, n_results=1)
    assert hit["ids"][0] == ["a"]
    assert hit["metadatas"][0][0]["label:category"] == "Hardware"
    assert hit["metadatas"][0][0]["resolution"] == "reseat the tray"
    assert hit["documents"][0] == [TEXTS[0]]  # the ticket's text, for the answer's snippet


def test_a_collection_without_texts_answers_empty_snippets(encoder, store: VectorStore) -> None:
    from ticketflow.serving.privacy import mask_personal_data
    from ticketflow.serving.protocol import similar_answers

    vectors = encode_texts(encoder, TEXTS[:2], 8)
    # Written by hand without documents, as a store filled by another tool might be.
    store.client.get_or_create_collection("tickets-no-texts", metadata={"hnsw:space": "cosine"}).add(
        ids=["a", "b"], embeddings=vectors, metadatas=[{"label:category": "Hardware"}, {"label:category": "Network"}]
    )
    hits = store.query("tickets-no-texts", vectors[:1], n_results=2)
    [(similar, _)] = similar_answers(hits, 0.75, mask_personal_data)
    assert [s["id"] for s in similar] == ["a", "b"]
    assert [s["snippet"] for s in similar] == ["", ""]


def test_collection_names_follow_data_and_encoder() -> None:
    int8 = EncoderSpec(BUNDLED_EMBEDDING_MODEL, "int8", 256)
    keys = [
        spec.key
        for spec in (
            int8,
            EncoderSpec(BUNDLED_EMBEDDING_MODEL, "fp32", 256),
            EncoderSpec(BUNDLED_EMBEDDING_MODEL, "int8", 128),
            EncoderSpec(BUNDLED_EMBEDDING_MODEL, "int8", 0),
            EncoderSpec("sentence-transformers/all-mpnet-base-v2", "int8", 256),
        )
    ]
    a = tickets_collection_name("data-1", int8.key)
    assert a == tickets_collection_name("data-1", EncoderSpec(BUNDLED_EMBEDDING_MODEL, "int8", 256).key)
    assert a != tickets_collection_name("data-2", int8.key)
    assert len({tickets_collection_name("data-1", key) for key in keys}) == len(keys)  # vectors never mix
    assert len({cache_collection_name(key) for key in keys}) == len(keys)
    for name in (a, cache_collection_name("org/Some Model_v2!|int8|256")):
        assert 3 <= len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()
