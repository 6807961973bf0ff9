"""The training tickets' vectors as an exact cosine index, and the label votes of a ticket's nearest neighbours.

The votes are the one signal that adds to TF-IDF on ticket text (`model.NeighbourStackClassifier`). The index
travels inside the model, so training, the pyfunc, batch scoring and the predictor all find the same neighbours
without a ChromaDB server: the vectors are stored as float16 (38k × 384 is about 30 MB) and searched exactly
(one matrix product; about 1 ms for one ticket against 30k).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Queries per matrix product while searching many tickets: bounds the similarity block to 1024 × n floats.
_QUERY_BLOCK = 1024


@dataclass
class Neighbours:
    """The nearest training tickets of each query, most similar first.

    Attributes:
        rows: Training rows, shape (queries, k).
        similarities: Their cosine similarities, shape (queries, k).
    """

    rows: np.ndarray
    similarities: np.ndarray


class NeighbourIndex:
    """Exact cosine search over unit-length training vectors.

    Args:
        vectors: The training tickets' embeddings, shape (n, dimension), row i being training ticket i.
    """

    def __init__(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = (vectors / np.clip(norms, 1e-12, None)).astype(np.float16)
        self._matrix: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.vectors)

    def __getstate__(self) -> dict[str, object]:
        """Pickles the float16 vectors only: the float32 copy is rebuilt on first search."""
        return {"vectors": self.vectors}

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restores the vectors; the float32 copy is rebuilt on first search."""
        self.vectors = state["vectors"]
        self._matrix = None

    @property
    def matrix(self) -> np.ndarray:
        """The vectors in float32 (what the search multiplies; made once, on first use)."""
        if self._matrix is None:
            self._matrix = np.ascontiguousarray(self.vectors, dtype=np.float32)
        return self._matrix

    def search(self, queries: np.ndarray, k: int, exclude_rows: np.ndarray | None = None) -> Neighbours:
        """The `k` most similar training tickets of each query.

        Args:
            queries: Unit-length query vectors, shape (q, dimension).
            k: Neighbours per query (at most the index's size, less one when excluding).
            exclude_rows: Per query, a training row it may not have as neighbour (its own row, when the queries are
                the training tickets themselves: a ticket never votes for itself), or -1 for none.

        Returns:
            The neighbours, most similar first (ties by lower row).
        """
        queries = np.asarray(queries, dtype=np.float32)
        k = min(k, len(self) - (1 if exclude_rows is not None else 0))
        if k < 1:
            raise ValueError(f"an index of {len(self)} tickets has no neighbours to give")
        rows = np.empty((len(queries), k), dtype=np.int64)
        similarities = np.empty((len(queries), k), dtype=np.float32)
        for start in range(0, len(queries), _QUERY_BLOCK):
            block = queries[start : start + _QUERY_BLOCK] @ self.matrix.T
            if exclude_rows is not None:
                own = np.asarray(exclude_rows[start : start + len(block)])
                has = own >= 0
                block[np.flatnonzero(has), own[has]] = -np.inf
            top = (
                np.argpartition(-block, k - 1, axis=1)[:, :k]
                if k < block.shape[1]
                else np.tile(np.arange(block.shape[1]), (len(block), 1))
            )
            top_similarity = np.take_along_axis(block, top, axis=1)
            order = np.lexsort((top, -top_similarity), axis=1)
            rows[start : start + len(block)] = np.take_along_axis(top, order, axis=1)
            similarities[start : start + len(block)] = np.take_along_axis(top_similarity, order, axis=1)
        return Neighbours(rows, similarities)


def neighbour_votes(neighbours: Neighbours, labels: np.ndarray, n_classes: int, ks: Sequence[int]) -> np.ndarray:
    """Label votes of a ticket's nearest training tickets, the features the stacked classifier adds to TF-IDF.

    Args:
        neighbours: From `NeighbourIndex.search` with at least `max(ks)` neighbours (fewer when the index is small:
            every k is then capped at what there is).
        labels: Class index (0 … n_classes − 1) of every training row.
        n_classes: Number of classes.
        ks: Neighbourhood sizes, e.g. (5, 20, 50).

    Returns:
        Shape (queries, (len(ks) + 1) × n_classes + 1): per k the class shares (each block sums to 1), the
        similarity of the nearest neighbour, then per class the highest similarity among the neighbours of that
        class (0 when none is among them).
    """
    one_hot = np.eye(n_classes, dtype=np.float32)[labels[neighbours.rows]]  # (queries, k, classes)
    weights = np.clip(neighbours.similarities, 0.0, None)[..., None]
    blocks = []
    for k in ks:
        w, votes = weights[:, :k], one_hot[:, :k]
        total = w.sum(axis=1)
        weighted = (votes * w).sum(axis=1) / np.clip(total, 1e-12, None)
        # No neighbour with a positive similarity: an unweighted vote instead of a division by zero.
        blocks.append(np.where(total > 0, weighted, votes.mean(axis=1)))
    blocks.append(neighbours.similarities[:, :1])
    blocks.append(np.where(one_hot > 0, weights, 0.0).max(axis=1))
    return np.hstack(blocks).astype(np.float64)
