"""The vector store: ChromaDB collections of ticket vectors, and the names those collections go by.

Two kinds of collections:
- `vectors-exact-<encoder>`: a cache keyed by text hash, one per encoder (the embedding model, its precision and
  its token limit: `EncoderSpec.key`), so re-running on unchanged tickets (or a drift check over already-seen
  texts) reuses vectors instead of re-encoding them, and vectors of two encoders never mix.
- `tickets-<data+encoder digest>`: the tickets a model version was trained with (id, text, labels), which the
  server queries for similar tickets. Its name is derived from the data and the encoder and stored in the model,
  so a retrain writes a new collection and never changes what a served model reads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()[-limit:].strip("-") or "x"


def model_key(name: str) -> str:
    """A short, collection-name-safe key for an encoder key (`EncoderSpec.key`) or embedding model name."""
    return f"{_slug(name.split('/')[-1], 30)}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def cache_collection_name(encoder_key: str) -> str:
    """The cache collection of one encoder (`EncoderSpec.key`)."""
    # Read by id only, never searched; "l2" space, since a cosine collection hands back re-normalised vectors
    # (not bit-identical), and then a warm cache would train a slightly different model than a cold one.
    return f"vectors-exact-{model_key(encoder_key)}"


def tickets_collection_name(content_sha256: str, encoder_key: str) -> str:
    """The similarity collection for one training set embedded with one encoder (`EncoderSpec.key`)."""
    digest = hashlib.sha256(f"{content_sha256}|{encoder_key}".encode()).hexdigest()[:16]
    return f"tickets-{digest}"


# The cache is read by id, never searched, yet Chroma indexes every vector it holds: the sparsest graph it builds
# (4 links per vector, 16 candidates while inserting) stores 38k vectors in ~4 s instead of ~17 s.
CACHE_INDEX: Mapping[str, int] = {"hnsw:M": 4, "hnsw:construction_ef": 16}


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

    def _collection(
        self, name: str, create: bool = True, space: str = "cosine", index: Mapping[str, int] | None = None
    ):
        if create:
            return self.client.get_or_create_collection(name, metadata={"hnsw:space": space, **(index or {})})
        return self.client.get_collection(name)

    def has_collection(self, name: str) -> bool:
        """Whether a collection exists."""
        return name in {c.name if hasattr(c, "name") else c for c in self.client.list_collections()}

    def cached_vectors(self, encoder_key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors already stored for these text hashes by this encoder (`EncoderSpec.key`)."""
        collection = self._collection(cache_collection_name(encoder_key), space="l2", index=CACHE_INDEX)
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        for part in _chunks(len(unique), self.batch):
            got = collection.get(ids=unique[part], include=["embeddings"])
            for key, vector in zip(got["ids"], got["embeddings"], strict=True):
                found[key] = np.asarray(vector, dtype=np.float32)
        return found

    def cache_vectors(self, encoder_key: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Stores vectors under their text hashes in the encoder's cache collection."""
        collection = self._collection(cache_collection_name(encoder_key), space="l2", index=CACHE_INDEX)
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
        """Nearest stored tickets for each vector (cosine distance): ids, metadatas, distances and documents (texts)."""
        # A similarity collection is written once under a content digest and never changed, so its handle can
        # be kept: looking it up again costs a third of a query on the request path.
        handle = self._query_handles.get(name)
        if handle is None:
            handle = self._query_handles[name] = self._collection(name, create=False)
        return handle.query(
            query_embeddings=vectors, n_results=n_results, include=["metadatas", "distances", "documents"]
        )
