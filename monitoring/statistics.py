"""The drift check's statistics: text descriptors, distances, and the tests that turn a distance into a verdict.

- Text descriptors of each ticket (length, non-letter share, out-of-vocabulary share against a vocabulary).
- Distances between a window and the reference: Wasserstein (normed) for numbers and Jensen-Shannon for
  categories, as Evidently computes them, so a calibrated threshold can be drawn on the reference alone.
- `null_quantile`: how far apart two samples of the reference itself lie, which raises the fixed thresholds for
  small windows.
- `embedding_drift`: the distance between mean embeddings against a bootstrap threshold (Evidently's
  `DistanceDriftMethod` with `bootstrap=True`, computed here once so the verdict and the threshold reported
  beside it come from the same resamples).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

_WORD = re.compile(r"[^\W\d_]+")
DESCRIPTORS = ("text_length", "non_letter_share", "oov_share")
# Resamples of the embedding bootstrap (Evidently's N_BOOTSTRAP); the quantile asked for is taken over them.
BOOTSTRAP_ROUNDS = 100


def vocabulary(texts: pd.Series) -> frozenset[str]:
    """Lower-cased words of the texts.

    Args:
        texts: Ticket texts.

    Returns:
        Every word (letters only) that occurs in them, lower-cased.
    """
    words: set[str] = set()
    for text in texts:
        words.update(w.lower() for w in _WORD.findall(text))
    return frozenset(words)


def text_descriptors(texts: pd.Series, vocab: frozenset[str]) -> pd.DataFrame:
    """Length, non-letter share and out-of-vocabulary share of each text.

    Args:
        texts: Ticket texts.
        vocab: Known words (the reference's); words outside it count as out of vocabulary.

    Returns:
        One row per text with the columns of `DESCRIPTORS`, indexed like `texts`.
    """
    rows = []
    for text in texts:
        words = [w.lower() for w in _WORD.findall(text)]
        letters = sum(ch.isalpha() for ch in text)
        rows.append(
            (
                float(len(text)),
                1.0 - letters / max(len(text), 1),
                sum(w not in vocab for w in words) / max(len(words), 1),
            )
        )
    return pd.DataFrame(rows, columns=list(DESCRIPTORS), index=texts.index)


def wasserstein_normed(current: np.ndarray, reference: np.ndarray) -> float:
    """Evidently's "wasserstein" statistic: the Wasserstein distance divided by the reference's spread.

    Args:
        current: Values of the window.
        reference: Values of the reference.

    Returns:
        The distance in units of the reference's standard deviation.
    """
    from scipy.stats import wasserstein_distance

    spread = float(np.std(reference)) or 1e-9
    return float(wasserstein_distance(reference, current) / spread)


def jensen_shannon(current: np.ndarray, reference: np.ndarray) -> float:
    """Evidently's "jensenshannon" statistic on category frequencies.

    Args:
        current: Categories of the window.
        reference: Categories of the reference.

    Returns:
        The Jensen-Shannon distance (natural log), 0 for equal mixes.
    """
    from scipy.spatial.distance import jensenshannon

    categories = np.unique(np.concatenate([reference, current]))
    p = np.array([(reference == c).mean() for c in categories])
    q = np.array([(current == c).mean() for c in categories])
    return float(jensenshannon(p, q))


def null_quantile(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    reference: np.ndarray,
    size: int,
    quantile: float,
    rounds: int = 300,
) -> float:
    """The statistic's quantile between two disjoint parts of the reference, one of the window's size.

    Drawing the window from one half and comparing it with the other keeps the two independent, as a real
    window is; the half-size reference makes the threshold slightly conservative (fewer false alarms).

    Args:
        statistic: `statistic(window, reference)`, e.g. `wasserstein_normed`.
        reference: The reference's values.
        size: The window's size.
        quantile: Quantile, 0–1, of the resampled statistics.
        rounds: Resamples drawn.

    Returns:
        The statistic a window of that size reaches by chance alone at that quantile.
    """
    rng = np.random.default_rng(0)
    values = []
    for _ in range(rounds):
        order = rng.permutation(len(reference))
        half = len(reference) // 2
        window, rest = reference[order[:half]], reference[order[half:]]
        picked = rng.choice(len(window), size, replace=size > len(window))
        values.append(statistic(window[picked], rest))
    return float(np.quantile(values, quantile))


class EmbeddingTest(NamedTuple):
    """The embedding test's outcome: a distance, the threshold it is compared with, and the verdict."""

    score: float
    threshold: float
    drifted: bool


def embedding_drift(
    current: np.ndarray, reference: np.ndarray, quantile: float, rounds: int = BOOTSTRAP_ROUNDS
) -> EmbeddingTest:
    """Euclidean distance between the mean embeddings, tested against a bootstrap of the reference.

    The bootstrap draws, with replacement, two samples of the reference sized as Evidently sizes them
    (n_ref²/(n_ref+n_cur) and n_cur·n_ref/(n_ref+n_cur)) and measures the same distance between their means;
    the threshold is the `quantile` of those distances, so it adapts to the window's size. Drift means the
    window's distance exceeds it.

    Args:
        current: Embeddings of the window, one row per ticket.
        reference: Embeddings of the reference.
        quantile: Bootstrap quantile, 0–1, the distance must exceed.
        rounds: Bootstrap resamples.

    Returns:
        The distance, the bootstrap threshold, and whether the distance exceeded it.
    """
    reference, current = np.asarray(reference), np.asarray(current)
    n_ref, n_cur = len(reference), len(current)
    # Means in float64: float32 vectors summed over thousands of rows lose the digits the distances live in.
    score = float(np.linalg.norm(current.mean(0, dtype=np.float64) - reference.mean(0, dtype=np.float64)))
    b_ref, b_cur = n_ref * n_ref // (n_ref + n_cur), n_cur * n_ref // (n_ref + n_cur)
    rng = np.random.default_rng(0)
    distances = []
    for _ in range(rounds):
        left, right = reference[rng.integers(n_ref, size=b_ref)], reference[rng.integers(n_ref, size=b_cur)]
        distances.append(np.linalg.norm(left.mean(0, dtype=np.float64) - right.mean(0, dtype=np.float64)))
    threshold = float(np.quantile(distances, quantile))
    return EmbeddingTest(score, threshold, score > threshold)
