"""Quality benchmark: candidate models on it_service, cross-validated quality on customer_support, calibration.

    python -m benchmarks.bench_quality            # ../shared/data, ≈ 20 min on 2 cores
    python -m benchmarks.bench_quality --quick    # the bundled sample in both roles; writes to a temp folder

Every model is trained in this run on the pipeline's text, and every choice (C, alpha, fusion weight, temperature,
review thresholds) is made on out-of-fold predictions of the training rows: held-out rows are scored once. The
baseline is bench_training's: TF-IDF word 1–2 grams + balanced LogisticRegression, C from {1, 4, 16} by 3-fold
grid search on macro-F1.

1. it_service (the pipeline's stratified 80/20 split, seed 42): the baseline, the stack's text model alone (the
   TF-IDF candidate it chose out of fold), kNN votes alone (argmax of the k=20 similarity-weighted label shares), the
   previous `FusionClassifier` and the default `NeighbourStackClassifier`: macro-F1, accuracy, ECE (15 bins), train
   time and the median time to classify one ticket given its vector (all candidates interleaved round by round).
   Stretch goal: macro-F1 and accuracy ≥ 0.90. The default's routing under its own review thresholds: precision ≥
   0.90 overall and ≥ 0.88 for every class, coverage ≥ 0.80. ECE ≤ 0.02.
2. customer_support (queue and priority): the default model against the baseline on the pipeline's split, as the
   mean ± std of a 5-fold stratified CV, and as a 5-fold CV grouped by near-duplicate clusters (connected pairs of
   cosine ≥ 0.9 between subject + body embeddings, never split across folds); each with and without the tags
   column, overall and per language. Goal: ≥ baseline.

Texts are encoded once per dataset and variant; the fits run in worker processes (one thread each, two side by
side on 2 cores), so the train times compare candidates with each other, not with `make run`'s threads.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import (
    ROOT,
    figure,
    interleaved,
    measure,
    median,
    output_arguments,
    output_paths,
    run_facts,
    save,
    say,
    shown,
)

SHARED = ROOT.parent / "shared" / "data"
IT_SERVICE = SHARED / "it_service_tickets" / "tickets.csv"
CUSTOMER_SUPPORT = SHARED / "customer_support_tickets" / "tickets.csv"
SAMPLE = ROOT / "data" / "sample_tickets.csv"
STRETCH = 0.90  # it_service macro-F1 and accuracy (stretch goal)
ECE_GOAL = 0.02
ROUTED_PRECISION_GOAL = 0.90
CLASS_PRECISION_GOAL = 0.88
COVERAGE_GOAL = 0.80
DUPLICATE_COSINE = 0.9  # near-duplicates: tickets whose subject + body embeddings are at least this similar
FOLDS = (5, 2)  # cross-validation folds: full, quick
KNN_K = 20
BINS = 15
MIN_CLASS_ROWS = 10  # --limit keeps the classes with at least this many rows (ingest's own minimum)
LATENCY_ROUNDS = (300, 5)  # full, quick
BOOTSTRAP_ROUNDS = 1000  # resamples of a single test split (paired: both models on each)
# Settings of the default model measured beside it on customer_support (tags kept, the split and the stratified CV):
# what a user could switch on, and why it is not the default; or the default before, to show what its change did.
ALTERNATIVES = {
    "logistic text candidates": {"logistic_cs": (1.0, 4.0, 16.0)},
    "plain SGD": {"sgd_average": False},
    "character n-gram candidates": {"char_ngrams": True},
    "TF-IDF min_df 2 only": {"tfidf_min_dfs": (2,)},
}
CANDIDATES = {  # key → the table's name, in the table's order
    "baseline": "baseline: TF-IDF + LogisticRegression (C by 3-fold CV)",
    "text": "the stack's text model alone (TF-IDF + its chosen linear model)",
    "knn": f"kNN votes alone (k={KNN_K}, similarity-weighted)",
    "fusion": "previous: FusionClassifier (TF-IDF + SGD fused with an embedding MLP)",
    "stack": "**default: NeighbourStackClassifier**",
}
MODELS = ("default", "baseline")
METRICS = ("macro_f1", "accuracy", "ece")


# --------------------------------------------------------------------------------------------- pure helpers


def near_duplicate_groups(vectors: np.ndarray, threshold: float = DUPLICATE_COSINE, block: int = 1024) -> np.ndarray:
    """Each row's near-duplicate cluster: connected components of the pairs whose cosine is at least `threshold`.

    Args:
        vectors: Embeddings, shape (n, dimension) (normalised here).
        threshold: Cosine at or above which two rows are near-duplicates, −1–1.
        block: Rows compared per matrix product (bounds memory to block × n floats).

    Returns:
        Cluster id per row (0 … clusters − 1); a row without near-duplicates is a cluster of its own.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if not n:
        return np.zeros(0, dtype=np.int64)
    vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    rows, cols = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for start in range(0, n, block):
        i, j = np.nonzero(vectors[start : start + block] @ vectors.T >= threshold)
        keep = j > i + start  # each pair once, never a row with itself
        rows.append(i[keep] + start)
        cols.append(j[keep])
    row, col = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(row), dtype=np.int8), (row, col)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def cluster_counts(groups: np.ndarray) -> dict[str, int]:
    """How many clusters hold more than one row, and how many rows they hold."""
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=int)
    grouped = sizes[sizes > 1]
    return {"clusters": len(grouped), "rows": int(grouped.sum()), "largest": int(sizes.max(initial=0))}


def knn_prediction(neighbours, train_labels: np.ndarray, classes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The kNN-alone candidate: the class with the largest similarity-weighted share among the k nearest tickets.

    Args:
        neighbours: `Neighbours` of the queries, at least k per query.
        train_labels: Label of every training row, or its position in `classes` (integers: the model keeps
            these, so that one ticket's prediction does not convert every training label again).
        classes: Sorted classes (`np.unique` of the training labels).
        k: Neighbours that vote.

    Returns:
        The predicted class and its share (the confidence), per query.
    """
    from ticketflow.components.neighbours import neighbour_votes

    train_labels = np.asarray(train_labels)
    integers = np.issubdtype(train_labels.dtype, np.integer)
    y_index = train_labels if integers else np.searchsorted(classes, train_labels.astype(str))
    shares = neighbour_votes(neighbours, y_index, len(classes), (k,))[:, : len(classes)]
    return classes[shares.argmax(1)], shares.max(1)


def slice_scores(
    y_true: np.ndarray, labels: np.ndarray, confidences: np.ndarray, slices: Mapping[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """Macro-F1 (over the classes present), accuracy and ECE of predictions, overall and per slice.

    Args:
        y_true: True labels.
        labels: Predicted labels.
        confidences: Top-class probability of each prediction.
        slices: Slice name → boolean mask over the rows (e.g. `{"all": …, "en": …}`); empty slices are left out.

    Returns:
        Slice name → `{macro_f1, accuracy, ece}`.
    """
    from sklearn.metrics import accuracy_score, f1_score

    from ticketflow.components.routing import expected_calibration_error

    y_true, labels = np.asarray(y_true).astype(str), np.asarray(labels).astype(str)
    confidences = np.asarray(confidences, dtype=float)
    out = {}
    for name, mask in slices.items():
        if not mask.any():
            continue
        truth, guess = y_true[mask], labels[mask]
        out[name] = {
            "macro_f1": float(f1_score(truth, guess, labels=sorted(set(truth)), average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(truth, guess)),
            "ece": expected_calibration_error(confidences[mask], truth == guess, BINS),
        }
    return out


def mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    values = [float(v) for v in values]
    return {
        "mean": float(np.mean(values)) if values else float("nan"),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        "n": len(values),
    }


def aggregate(folds: Sequence[Mapping[str, Mapping[str, Mapping[str, float]]]]) -> dict:
    """Mean ± std over folds of each model's scores per slice, and of the default's margin over the baseline.

    Args:
        folds: Per fold, `{model: {slice: {metric: value}}}` with models "default" and "baseline".

    Returns:
        `{model: {slice: {metric: mean_std}}}` plus `"margin": {slice: {metric: mean_std}}` (default − baseline,
        fold by fold), over the slices every fold has.
    """
    slices = [s for s in folds[0]["default"] if all(s in f["default"] and s in f["baseline"] for f in folds)]
    out: dict = {model: {} for model in (*MODELS, "margin")}
    for s in slices:
        for model in MODELS:
            out[model][s] = {m: mean_std([f[model][s][m] for f in folds]) for m in METRICS}
        out["margin"][s] = {m: mean_std([f["default"][s][m] - f["baseline"][s][m] for f in folds]) for m in METRICS}
    return out


def _value(stats: Mapping[str, float | None], digits: int) -> str:
    text = f"{stats['mean']:.{digits}f}"
    return text if stats["std"] is None else f"{text} ± {stats['std']:.{digits}f}"


def pair_cell(default: Mapping, baseline: Mapping) -> str:
    """`default / baseline` (means ± std when there are folds)."""
    digits = 4 if default["std"] is None else 3
    return f"{_value(default, digits)} / {_value(baseline, digits)}"


def margin_text(margin: float, interval: Sequence[float] | None, interval_name: str) -> str:
    """`(+0.010)`, or with an interval `(+0.010; <interval_name> −0.020 to +0.040)`, minus signs typeset."""
    spread = "" if interval is None else f"; {interval_name} {interval[0]:+.3f} to {interval[1]:+.3f}"
    return f"({margin:+.3f}{spread})".replace("-", "−")


def met_cell(default: Mapping, baseline: Mapping, interval: Sequence[float] | None = None) -> str:
    """Whether the default's (mean) score reaches the baseline's, with the margin (and its 95 % interval)."""
    margin = default["mean"] - baseline["mean"]
    return f"{'yes' if margin >= 0 else '**no**'} {margin_text(margin, interval, '95 % CI')}"


def paired_bootstrap(
    y_true: np.ndarray, first: np.ndarray, second: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of macro-F1(first) − macro-F1(second) over resamples of the same rows.

    Both models are scored on each resample (paired), so the interval shows how far a single test split's margin
    could move on another draw of tickets like these: the noise a one-split comparison carries.
    """
    from sklearn.metrics import f1_score

    y_true, first, second = (np.asarray(a).astype(str) for a in (y_true, first, second))
    rng = np.random.default_rng(seed)
    margins = []
    for _ in range(rounds):
        rows = rng.integers(0, len(y_true), len(y_true))
        truth, present = y_true[rows], sorted(set(y_true[rows]))
        scores = [f1_score(truth, p[rows], labels=present, average="macro", zero_division=0) for p in (first, second)]
        margins.append(scores[0] - scores[1])
    low, high = np.percentile(margins, [2.5, 97.5])
    return float(low), float(high)


def limited(tickets: pd.DataFrame, label_columns: Sequence[str], limit: int, seed: int) -> pd.DataFrame:
    """At most `limit` tickets, stratified on the first label column; classes left with too few rows dropped.

    Args:
        tickets: Ingested tickets.
        label_columns: Label columns (the first one stratifies).
        limit: Rows kept, at most (0: all).
        seed: Seed of the sample.

    Returns:
        The sample, in the file's order.
    """
    from sklearn.model_selection import train_test_split

    if not limit or len(tickets) <= limit:
        return tickets
    strata = tickets[label_columns[0]].astype(str)
    strata = strata.where(strata.map(strata.value_counts()) >= 2, "rare")
    kept, _ = train_test_split(tickets, train_size=limit, stratify=strata, random_state=seed)
    kept = kept.sort_index()
    for column in label_columns:
        counts = kept[column].astype(str).value_counts()
        kept = kept[kept[column].astype(str).map(counts) >= MIN_CLASS_ROWS]
    return kept


# --------------------------------------------------------------------------------------------- fits (workers)


def _one_thread() -> None:
    """Worker initializer: the libraries the fits use loaded, then held to one BLAS/OpenMP thread each."""
    # Loaded first (OpenMP, BLAS), so that the limit reaches them.
    import sklearn.ensemble
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_limits

    import ticketflow.components.train  # noqa: F401

    threadpool_limits(limits=1)
    warnings.simplefilter("ignore")


def _proba_result(classes: np.ndarray, proba: np.ndarray, seconds: float, model: object, info: dict) -> dict:
    best = proba.argmax(1)
    return {
        "labels": np.asarray(classes)[best].astype(str),
        "confidences": proba.max(1),
        "seconds": seconds,
        "model": model,
        "info": info,
    }


def candidate_job(
    kind: str, train: pd.DataFrame, train_vectors: np.ndarray, test_texts: list[str], test_vectors, mapping, cfg
):
    """Fits it_service candidates of one kind and predicts the test split: `{candidate: result}`.

    Args:
        kind: "baseline", "stack" (also gives "text": its text model refitted alone), "fusion" or "knn".
        train: Training split (`text` and the label columns).
        train_vectors: Its embeddings.
        test_texts: Test split texts.
        test_vectors: Their embeddings.
        mapping: Column roles; the category column is the target.
        cfg: Configuration of the default model.
    """
    from benchmarks.bench_training import fit_baseline
    from ticketflow.components.model import FusionClassifier, feature_frame
    from ticketflow.components.neighbours import NeighbourIndex
    from ticketflow.components.prepare import TEXT
    from ticketflow.components.train import fit_ticket_model

    target = mapping.category_column
    texts, y = train[TEXT].tolist(), train[target].astype(str).to_numpy()
    started = time.perf_counter()
    if kind == "baseline":
        model, info = fit_baseline(texts, train[target])
        return {kind: _proba_result(model.classes_, model.predict_proba(test_texts), info["fit_seconds"], model, info)}
    if kind == "stack":
        model = fit_ticket_model(train, train_vectors, mapping, cfg)
        seconds = time.perf_counter() - started
        prediction = model.predict(test_texts, test_vectors)[target]
        info = model.info["hyperparameters"][target]
        stack = {
            "labels": prediction.labels.astype(str),
            "confidences": prediction.confidences,
            "seconds": seconds,
            "model": model,
            "info": info,
        }
        started = time.perf_counter()
        spec = model.classifiers[target].text_spec_
        text_model = spec.pipeline(cfg.seed).fit(texts, y)
        seconds = time.perf_counter() - started
        proba = text_model.predict_proba(test_texts)
        text = _proba_result(text_model.classes_, proba, seconds, text_model, {"text_model": str(spec)})
        return {"stack": stack, "text": text}
    if kind == "fusion":
        model = FusionClassifier(random_state=cfg.seed).fit(feature_frame(texts, train_vectors), y)
        seconds = time.perf_counter() - started
        proba = model.calibrated_proba(np.asarray(test_texts, dtype=object), test_vectors)
        info = {"alpha": model.alpha_, "fusion_weight": model.fusion_weight_, "temperature": model.temperature_}
        return {kind: _proba_result(model.classes_, proba, seconds, model, info)}
    if kind == "knn":
        index = NeighbourIndex(train_vectors)
        _ = index.matrix  # the float32 copy every search multiplies: part of building the index
        classes = np.unique(y)
        seconds = time.perf_counter() - started
        labels, confidences = knn_prediction(index.search(test_vectors, KNN_K), y, classes, KNN_K)
        model = {"index": index, "labels": np.searchsorted(classes, y), "classes": classes}
        return {kind: {"labels": labels, "confidences": confidences, "seconds": seconds, "model": model, "info": {}}}
    raise ValueError(f"unknown candidate kind {kind!r}")


def fold_job(
    train: pd.DataFrame,
    test: pd.DataFrame,
    train_vectors: np.ndarray,
    test_vectors: np.ndarray,
    mapping,
    cfg,
    with_baseline: bool = True,
):
    """The default model and the baseline fitted on one fold's training rows, predicting its held-out rows.

    Args:
        train: The fold's training rows (`text` and the label columns).
        test: Its held-out rows.
        train_vectors: Embeddings of `train`.
        test_vectors: Embeddings of `test`.
        mapping: Column roles; every label column is a target.
        cfg: Settings of the default model (`ALTERNATIVES` change some).
        with_baseline: False fits the default alone (an alternative setting, compared with the baseline of the
            same rows fitted by another job).

    Returns:
        `{"seconds": {model: s}, "targets": {target: {model: (labels, confidences)}}, "C": {target: C}}`.
    """
    from benchmarks.bench_training import fit_baseline
    from ticketflow.components.prepare import TEXT
    from ticketflow.components.train import fit_ticket_model

    texts = test[TEXT].tolist()
    started = time.perf_counter()
    model = fit_ticket_model(train, train_vectors, mapping, cfg)
    out = {"seconds": {"default": time.perf_counter() - started, "baseline": 0.0}, "targets": {}, "C": {}}
    out["form"] = {target: hp["form"] for target, hp in model.info["hyperparameters"].items()}
    out["text_model"] = {target: hp["text_model"] for target, hp in model.info["hyperparameters"].items()}
    predictions = model.predict(texts, test_vectors)
    for target in mapping.label_columns:
        p = predictions[target]
        out["targets"][target] = {"default": (p.labels.astype(str), p.confidences)}
        if not with_baseline:
            continue
        baseline, info = fit_baseline(train[TEXT].tolist(), train[target])
        out["seconds"]["baseline"] += info["fit_seconds"]
        out["C"][target] = info["C"]
        proba = baseline.predict_proba(texts)
        out["targets"][target]["baseline"] = (baseline.classes_[proba.argmax(1)].astype(str), proba.max(1))
    return out


# --------------------------------------------------------------------------------------------- the run


@dataclasses.dataclass
class Dataset:
    """One dataset's rows (train then test of the pipeline's split) and what the benchmark derives from them."""

    name: str
    path: Path
    mapping: object
    frame: pd.DataFrame  # ticket_id, text, labels, split ("train"/"test"), language when the file has one
    vectors: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # variant → embeddings of `frame`
    encode_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def train_rows(self) -> np.ndarray:
        """Positions of the pipeline's training rows in `frame`."""
        return np.flatnonzero(self.frame["split"].to_numpy() == "train")

    @property
    def test_rows(self) -> np.ndarray:
        """Positions of the pipeline's test rows in `frame`."""
        return np.flatnonzero(self.frame["split"].to_numpy() == "test")


def load_dataset(name: str, path: Path, cfg, limit: int) -> Dataset:
    """Ingests a file, limits it, prepares the pipeline's split, and adds the text without tags and the language."""
    from ticketflow.components.ingest import TICKET_ID, ingest_tickets
    from ticketflow.components.prepare import merge_text, prepare_tickets

    ingested = ingest_tickets(path, cfg)
    mapping = ingested.mapping
    tickets = limited(ingested.tickets, mapping.label_columns, limit, cfg.seed)
    prepared = prepare_tickets(tickets, mapping, cfg.test_size, cfg.seed)
    frame = pd.concat([prepared.train, prepared.test], ignore_index=True)
    by_id = tickets.set_index(tickets[TICKET_ID].astype(str))
    rows = by_id.loc[frame[TICKET_ID]]
    if mapping.tags_column:
        no_tags = dataclasses.replace(
            mapping, text_columns=tuple(c for c in mapping.text_columns if c != mapping.tags_column), tags_column=""
        )
        frame["text_no_tags"] = rows.apply(merge_text, axis=1, mapping=no_tags).to_numpy()
    if "language" in rows.columns:
        frame["language"] = rows["language"].astype(str).to_numpy()
    say(
        f"{name}: {len(frame):,} tickets of {shown(path)} ({len(prepared.train):,} train / {len(prepared.test):,} test)"
    )
    return Dataset(name, path, mapping, frame)


def encode(encoder, spec_key: str, texts: list[str], cache: Path | None, memo: dict) -> tuple[np.ndarray, float]:
    """Embeddings of texts, and the seconds encoding took (0 when reused from this run or from `cache`)."""
    from ticketflow.components.embed import encode_texts

    key = hashlib.sha256("\x1e".join([spec_key, *texts]).encode("utf-8")).hexdigest()[:24]
    if key in memo:
        return memo[key], 0.0
    file = cache / f"{key}.npy" if cache else None
    if file is not None and file.is_file():
        memo[key] = np.load(file)
        return memo[key], 0.0
    started = time.perf_counter()
    vectors = encode_texts(encoder, texts, 64, progress=True)
    seconds = time.perf_counter() - started
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, vectors)
    memo[key] = vectors
    return vectors, seconds


def schemes(folds: int) -> tuple[str, str, str]:
    """The evaluation schemes' names: the pipeline's split, stratified CV, CV grouped by near-duplicates."""
    return ("test split", f"{folds}-fold CV", f"grouped {folds}-fold CV")


def cs_folds(
    data: Dataset, groups: np.ndarray, folds: int, seed: int
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Each scheme's (train rows, held-out rows): the pipeline's split, stratified CV, grouped stratified CV."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = data.frame[data.mapping.category_column].astype(str).to_numpy()
    plain = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    grouped = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    names = schemes(folds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a rare class with fewer rows than folds (quick mode)
        return {
            names[0]: [(data.train_rows, data.test_rows)],
            names[1]: list(plain.split(y, y)),
            names[2]: list(grouped.split(y, y, groups)),
        }


def run_jobs(jobs: list[tuple[str, Callable, tuple]], workers: int) -> dict[str, object]:
    """Runs the jobs in worker processes (one thread each), most expensive first as given; results by key."""
    results: dict[str, object] = {}
    context = multiprocessing.get_context("spawn")  # no fork of a process whose encoder threads already ran
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_one_thread) as pool:
        futures = {pool.submit(fn, *args): key for key, fn, args in jobs}
        for done, future in enumerate(as_completed(futures), start=1):
            key = futures[future]
            results[key] = future.result()
            say(f"  [{done}/{len(jobs)}] {key}: {describe(results[key])}")
    return results


def describe(result: Mapping) -> str:
    """One progress line's worth of a finished job."""
    if "targets" in result:
        seconds = ", ".join(f"{m} {s:.0f} s" for m, s in result["seconds"].items())
        return f"fitted ({seconds})"
    return ", ".join(f"{name} fitted in {r['seconds']:.1f} s" for name, r in result.items())


def latency(candidates: Mapping[str, Mapping], encoder, texts: list[str], vectors: np.ndarray, rounds: int) -> dict:
    """Seconds to classify one ticket given its vector, per candidate, interleaved; and to encode one ticket."""
    from ticketflow.components.embed import encode_texts

    texts = [texts[i % len(texts)] for i in range(rounds)]
    vectors = np.asarray([vectors[i % len(vectors)] for i in range(rounds)], dtype=np.float32)
    baseline, text_model = candidates["baseline"]["model"], candidates["text"]["model"]
    fusion, stack, knn = candidates["fusion"]["model"], candidates["stack"]["model"], candidates["knn"]["model"]
    arms = {
        "baseline": lambda i: baseline.predict_proba(texts[i : i + 1]),
        "text": lambda i: text_model.predict_proba(texts[i : i + 1]),
        "knn": lambda i: knn_prediction(
            knn["index"].search(vectors[i : i + 1], KNN_K), knn["labels"], knn["classes"], KNN_K
        ),
        "fusion": lambda i: fusion.calibrated_proba(np.asarray(texts[i : i + 1], dtype=object), vectors[i : i + 1]),
        "stack": lambda i: stack.predict(texts[i : i + 1], vectors[i : i + 1]),
        "encode": lambda i: encode_texts(encoder, texts[i : i + 1], 1),
    }
    for arm in arms.values():  # warm-up, untimed
        arm(0)
    return interleaved(arms, rounds)


def it_service_results(data: Dataset, fitted: Mapping[str, Mapping], cfg) -> dict:
    """Scores of every candidate on the test split, and the default's routing under its own thresholds."""
    from ticketflow.components.evaluate import route_target

    target = data.mapping.category_column
    test = data.frame.iloc[data.test_rows]
    y_true = test[target].astype(str).to_numpy()
    everything = {"all": np.ones(len(test), dtype=bool)}
    rows = {}
    for key in CANDIDATES:
        r = fitted[key]
        rows[key] = {
            **slice_scores(y_true, r["labels"], r["confidences"], everything)["all"],
            "train_seconds": r["seconds"],
            "info": r["info"],
        }
    stack = fitted["stack"]
    correct = stack["labels"] == y_true
    thresholds = stack["model"].review_thresholds[target]
    routing = route_target(stack["labels"], correct, stack["confidences"], thresholds, cfg.target_precision)
    return {
        "target": target,
        "train_rows": len(data.train_rows),
        "test_rows": len(test),
        "candidates": rows,
        "routing": {
            "target_precision": cfg.target_precision,
            "precision": routing.precision,
            "min_class_precision": routing.min_class_precision,
            "coverage": routing.coverage,
            "routed": routing.routed,
            "classes": {c: {"precision": r.precision, "coverage": r.coverage} for c, r in routing.classes.items()},
            "thresholds": thresholds,
        },
    }


def language_slices(languages: np.ndarray | None, held_out: np.ndarray) -> dict[str, np.ndarray]:
    """Masks over the held-out rows: `all`, and one per language of the data when it has a `language` column."""
    slices = {"all": np.ones(len(held_out), dtype=bool)}
    if languages is not None:
        slices |= {lang: languages[held_out] == lang for lang in sorted(set(languages))}
    return slices


def cs_results(data: Dataset, folds: Mapping, fitted: Mapping[str, Mapping], variants: Sequence[str]) -> dict:
    """Per variant, scheme and target: each fold's scores (overall and per language) and their mean ± std."""
    y = {t: data.frame[t].astype(str).to_numpy() for t in data.mapping.label_columns}
    languages = data.frame["language"].to_numpy() if "language" in data.frame else None
    out: dict = {}
    for variant in variants:
        for scheme, splits in folds.items():
            if fold_key(data.name, variant, scheme, 0) not in fitted:  # an alternative measured in fewer schemes
                continue
            per_target: dict = {t: [] for t in data.mapping.label_columns}
            for number, (_, held_out) in enumerate(splits):
                result = fitted[fold_key(data.name, variant, scheme, number)]
                slices = language_slices(languages, held_out)
                for target, models in result["targets"].items():
                    per_target[target].append(
                        {m: slice_scores(y[target][held_out], *models[m], slices) for m in MODELS}
                    )
            for target, scores in per_target.items():
                summary = aggregate(scores)
                if len(splits) == 1:  # one split: how far its margins could move on another draw of tickets
                    held_out = splits[0][1]
                    models = fitted[fold_key(data.name, variant, scheme, 0)]["targets"][target]
                    truth = y[target][held_out]
                    default, baseline = (np.asarray(models[model][0]) for model in ("default", "baseline"))
                    summary["margin_ci"] = {
                        "macro_f1" if name == "all" else f"macro_f1 {name}": paired_bootstrap(
                            truth[rows], default[rows], baseline[rows]
                        )
                        for name, rows in language_slices(languages, held_out).items()
                        if rows.any()  # a language with no test ticket has no margin
                    }
                out.setdefault(variant, {}).setdefault(scheme, {})[target] = {"folds": scores, "summary": summary}
    return out


def fold_key(dataset: str, variant: str, scheme: str, number: int) -> str:
    return f"{dataset} {scheme} fold {number + 1} ({variant})"


def variant_of(key: str) -> str:
    """The variant a customer_support job's key names (`fold_key`); "" for other jobs."""
    return key.rsplit(" (", 1)[1].removesuffix(")") if key.endswith(")") else ""


def with_variant(key: str, variant: str) -> str:
    """The key of the job that fits the same rows as `key`'s under another variant."""
    return key.rsplit(" (", 1)[0] + f" ({variant})"


# --------------------------------------------------------------------------------------------- the report


def _default_fits(cs_name: str, done: Mapping[str, object]) -> dict[str, Mapping]:
    """The customer_support fits of the default settings (not of `ALTERNATIVES`), by job key."""
    return {
        key: result
        for key, result in done.items()
        if key.startswith(f"{cs_name} ") and isinstance(result, Mapping) and variant_of(key) not in ALTERNATIVES
    }


def _choice_counts(cs_name: str, done: Mapping[str, object], field: str, kind=lambda choice: choice) -> str:
    """How often each target's `field` took each value (by `kind`) over the default's customer_support fits."""
    counts: dict[str, Counter] = {}
    for result in _default_fits(cs_name, done).values():
        if field in result:
            for target, choice in result[field].items():
                counts.setdefault(target, Counter())[kind(choice)] += 1
    return "; ".join(
        f"{target} " + ", ".join(f"{choice} ×{n}" for choice, n in choices.most_common())
        for target, choices in counts.items()
    )


def text_model_kind(name: str) -> str:
    """A text model's kind from its name (`str(TextModelSpec)`): `sgd` or `logistic`, then its min_df when named.

    ` + chars` follows if a character model votes.
    """
    min_df = next((part for part in name.replace(",", " ").split() if part.startswith("min_df=")), "")
    return " ".join(filter(None, [name.split()[0], min_df])) + (" + chars" if name.endswith("+ chars") else "")


def form_note(it: Mapping, cs_name: str, done: Mapping[str, object]) -> str:
    """Which form (`model.FORMS`) and which kind of text model the default chose out of fold, per target and fit."""
    info = it["candidates"]["stack"]["info"]
    fits = sum(1 for result in _default_fits(cs_name, done).values() if "form" in result)
    cs_forms = _choice_counts(cs_name, done, "form")
    cs_text = _choice_counts(cs_name, done, "text_model", kind=text_model_kind)
    return (
        f"- The default's form per target, chosen in each fit on out-of-fold macro-F1 (the simplest within one "
        f"standard error of the best; boosted `stack`, logistic `linear_stack`, or the `text` model alone): "
        f"{it['name']} {it['target']}: {info.get('form', 'stack')}; "
        f"{cs_name}, over its {fits} fits: {cs_forms}. Its text model (TF-IDF of the terms in at least `min_df` "
        f"tickets + `sgd` or `logistic`, `+ chars` where a character n-gram model votes beside it; the highest "
        f"out-of-fold macro-F1, a character vote only by more than one standard error; each min_df's classifier "
        f"competes whole, by its form's score): {it['name']}: {info.get('text_model', 'sgd')}; {cs_name}: {cs_text}."
    )


def candidates_table(it: Mapping, seconds: Mapping[str, list[float]]) -> list[str]:
    """The it_service candidates as Markdown lines."""
    lines = [
        f"| {it['name']} {it['target']}: model | macro-F1 | accuracy | ECE | train s | one ticket, ms |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in CANDIDATES.items():
        r = it["candidates"][key]
        lines.append(
            f"| {name} | {r['macro_f1']:.4f} | {r['accuracy']:.4f} | {r['ece']:.4f} | {r['train_seconds']:.0f} | "
            f"{1000 * median(seconds[key]):.2f} |"
        )
    return lines


def language_cell(default: Mapping, baseline: Mapping, interval: Sequence[float] | None = None) -> str:
    """A language's `default / baseline` macro-F1 (means), the margin, and on a single split its 95 % interval."""
    margin = default["mean"] - baseline["mean"]
    return f"{default['mean']:.3f} / {baseline['mean']:.3f} {margin_text(margin, interval, 'CI')}"


def cs_table(name: str, cs: Mapping, languages: Sequence[str]) -> dict:
    """The customer_support table: one row per target × scheme × tags variant."""
    columns = ["target", "evaluation", "macro-F1 default / baseline", "≥ baseline?", "accuracy default / baseline"]
    columns += ["≥ baseline?", *(f"{lang}: macro-F1 default / baseline (margin)" for lang in languages)]
    rows = []
    for variant, schemes in cs.items():
        for scheme, targets in schemes.items():
            for target, result in targets.items():
                s = result["summary"]
                d, b = s["default"]["all"], s["baseline"]["all"]
                row = [f"{name} {target}", scheme + ("" if variant == "tags" else f", {variant}")]
                interval = s.get("margin_ci", {}).get("macro_f1")
                row += [pair_cell(d["macro_f1"], b["macro_f1"]), met_cell(d["macro_f1"], b["macro_f1"], interval)]
                row += [pair_cell(d["accuracy"], b["accuracy"]), met_cell(d["accuracy"], b["accuracy"])]
                for lang in languages:
                    dl, bl = s["default"].get(lang), s["baseline"].get(lang)
                    interval = s.get("margin_ci", {}).get(f"macro_f1 {lang}")
                    row.append("—" if dl is None else language_cell(dl["macro_f1"], bl["macro_f1"], interval))
                rows.append(row)
    return {"columns": columns, "rows": rows}


def report(it: Mapping, seconds: Mapping[str, list[float]], cs_name: str, cs: Mapping, facts: Mapping) -> tuple:
    """Summary rows, further figures, notes (with the candidates table) and the customer_support table."""
    stack, baseline = it["candidates"]["stack"], it["candidates"]["baseline"]
    name, target, routing = it["name"], it["target"], it["routing"]
    lr = "TF-IDF + LR"
    # (figure, value, baseline, its label, goal as "≥"/"≤" and the bound): the it_service goals.
    goals = [
        ("macro-F1, default model (stretch goal)", stack["macro_f1"], baseline["macro_f1"], lr, "≥", STRETCH),
        ("accuracy, default model (stretch goal)", stack["accuracy"], baseline["accuracy"], lr, "≥", STRETCH),
        (f"ECE ({BINS} bins), default model", stack["ece"], baseline["ece"], lr, "≤", ECE_GOAL),
        ("routed precision, default's thresholds", routing["precision"], ROUTED_PRECISION_GOAL, "goal", "≥", None),
        ("lowest routed precision of a class", routing["min_class_precision"], CLASS_PRECISION_GOAL, "goal", "≥", None),
        ("routed coverage, default's thresholds", routing["coverage"], COVERAGE_GOAL, "goal", "≥", None),
    ]
    summary = []
    for label, value, base, base_label, sense, bound in goals:
        bound = base if bound is None else bound  # the routing goals are their own baseline
        summary.append(
            figure(
                f"{name} {target} {label}",
                value,
                baseline=base,
                baseline_label=base_label,
                goal=f"{sense} {bound:.2f}" if sense == "≥" else f"{sense} {bound}",
                met=value >= bound if sense == "≥" else value <= bound,
            )
        )
    split, cv, _ = schemes(facts["folds"])
    for t, result in cs.get("tags", {}).get(cv, {}).items():
        d, b = result["summary"]["default"]["all"]["macro_f1"], result["summary"]["baseline"]["all"]["macro_f1"]
        summary.append(
            figure(
                f"{cs_name} {t} macro-F1, default model, {cv} mean",
                d["mean"],
                baseline=b["mean"],
                baseline_label=lr,
                goal="≥ baseline",
                met=d["mean"] >= b["mean"],
            )
        )
    best_key = max(CANDIDATES, key=lambda k: it["candidates"][k]["macro_f1"])
    best = it["candidates"][best_key]
    figures = [
        figure(
            f"{name} {target} best macro-F1 of the candidates ({best_key})",
            best["macro_f1"],
            baseline=STRETCH,
            baseline_label="stretch goal",
        ),
    ]
    for scheme in (split, cv):
        for t, result in cs.get("tags", {}).get(scheme, {}).items():
            d, b = result["summary"]["default"]["all"]["ece"], result["summary"]["baseline"]["all"]["ece"]
            label = f"{cs_name} {t} ECE ({BINS} bins), default model, {scheme}" + (" mean" if d["std"] else "")
            figures.append(figure(label, d["mean"], baseline=b["mean"], baseline_label=lr))
    gap_f1, gap_acc = STRETCH - best["macro_f1"], STRETCH - max(r["accuracy"] for r in it["candidates"].values())
    clusters = facts["clusters"]
    encode_note = (
        f"encoding is shared: {facts['encode_seconds']:.0f} s for the {facts['encoded']:,} tickets (int8 ONNX, "
        f"2 threads), {1000 * median(seconds['encode']):.1f} ms for one ticket (median, same rounds)"
        if facts["encode_seconds"]
        else f"encoding is shared: {1000 * median(seconds['encode']):.1f} ms for one ticket (median, same rounds; "
        "the bulk vectors came from --vector-cache)"
    )
    notes = [
        f"- {name}: the pipeline's split ({it['train_rows']:,} train / {it['test_rows']:,} test, stratified, seed 42), "
        "every choice made on out-of-fold predictions of the training rows, the test rows scored once. Best "
        f"macro-F1 {best['macro_f1']:.4f} ({best_key}): {abs(gap_f1):.4f} {'short of' if gap_f1 > 0 else 'above'} "
        f"the {STRETCH:.2f} stretch goal (best accuracy {-gap_acc:+.4f} from it). Train time: one thread, two fits "
        "side by side; one ticket: median of "
        f"{len(seconds['stack'])} interleaved rounds, classifying one test ticket given its vector; {encode_note}.",
        f"- {cs_name}: queue and priority on the same rows in three schemes: the pipeline's split; a "
        f"{facts['folds']}-fold stratified CV (mean ± std over folds); the same grouped so that near-duplicates "
        f"(cosine ≥ {DUPLICATE_COSINE} between subject + body embeddings, connected pairs) never straddle folds: "
        f"{clusters['clusters']} clusters hold {clusters['rows']} of {facts['cs_rows']:,} rows (largest "
        f"{clusters['largest']}). *No tags*: subject + body only, for both models. ≥ baseline compares the means; "
        "the parenthesis gives the margin and, for the single test split, its 95 % interval over "
        f"{BOOTSTRAP_ROUNDS} paired bootstrap resamples of the test rows (the noise of one split).",
        "",
        *candidates_table(it, seconds),
    ]
    return summary, figures, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_quality", description=__doc__.split("\n")[0])
    output_arguments(parser)
    parser.add_argument("--it-service", type=Path, help="candidates' data (default: it_service; quick: the sample)")
    parser.add_argument("--customer-support", type=Path, help="CV data (default: customer_support; quick: the sample)")
    parser.add_argument("--limit", type=int, default=0, help="keep at most this many tickets per file (0: all)")
    parser.add_argument("--workers", type=int, default=2, help="fits side by side, one thread each")
    parser.add_argument("--vector-cache", type=Path, help="reuse embeddings saved here by an earlier run (e.g. .bench)")
    args = parser.parse_args(argv)
    results, report_path = output_paths(args)
    it_path = args.it_service or (SAMPLE if args.quick else IT_SERVICE)
    cs_path = args.customer_support or (SAMPLE if args.quick else CUSTOMER_SUPPORT)
    for path in (it_path, cs_path):
        if not path.is_file():
            print(f"error: {path} not found (the shared data lives in ../shared/data beside the repo)", file=sys.stderr)
            return 2
    os.chdir(ROOT)
    for name in ("TICKETFLOW_HOME", "MLFLOW_TRACKING_URI", "TICKETFLOW_EMBEDDING_MODEL"):
        os.environ.pop(name, None)
    from ticketflow.components.config import TicketflowConfig
    from ticketflow.components.embed import EncoderSpec

    packages = ("scikit-learn", "numpy", "onnxruntime", "sentence-transformers")
    command = "python -m benchmarks.bench_quality" + (" --quick" if args.quick else "")
    command += f" --limit {args.limit}" if args.limit else ""
    run = run_facts(command, args.quick, packages)
    names = ("sample", "sample") if args.quick and not (args.it_service or args.customer_support) else None
    it_name, cs_name = names or (
        it_path.parent.name.removesuffix("_tickets"),
        cs_path.parent.name.removesuffix("_tickets"),
    )
    cfg = TicketflowConfig(home=str(ROOT / ".bench" / "quality-home"))  # nothing is written there
    with measure() as load:
        it = load_dataset(it_name, it_path, cfg, args.limit)
        cs = load_dataset(cs_name, cs_path, cfg, args.limit)
        spec = EncoderSpec.from_config(cfg)
        encoder, memo = spec.load(), {}
        from ticketflow.components.prepare import TEXT

        # it_service: the pipeline's text only; customer_support: with and without tags.
        for data, variants in ((it, {"tags": TEXT}), (cs, {"tags": TEXT, "no tags": "text_no_tags"})):
            for variant, column in variants.items():
                if column not in data.frame:
                    continue
                texts = data.frame[column].tolist()
                say(f"encoding {len(texts):,} {data.name} tickets" + ("" if data is it else f" ({variant})"))
                vectors, data.encode_seconds[variant] = encode(encoder, spec.key, texts, args.vector_cache, memo)
                data.vectors[variant] = vectors
                say(f"  {data.encode_seconds[variant]:.1f} s")
        groups = near_duplicate_groups(cs.vectors["no tags" if "no tags" in cs.vectors else "tags"])
        clusters = cluster_counts(groups)
        say(f"{cs.name}: {clusters['clusters']} near-duplicate clusters hold {clusters['rows']} rows")
        n_folds = FOLDS[1 if args.quick else 0]
        folds = cs_folds(cs, groups, n_folds, cfg.seed)

        train, test = it.frame.iloc[it.train_rows].reset_index(drop=True), it.frame.iloc[it.test_rows]
        vectors = it.vectors["tags"]
        it_args = (train, vectors[it.train_rows], test[TEXT].tolist(), vectors[it.test_rows], it.mapping, cfg)
        jobs = [(f"{it.name} {kind}", candidate_job, (kind, *it_args)) for kind in ("baseline", "fusion", "stack")]
        for variant, cs_vectors in cs.vectors.items():
            frame = cs.frame if variant == "tags" else cs.frame.assign(**{TEXT: cs.frame["text_no_tags"]})
            for scheme, splits in folds.items():
                for number, (train_rows, held_out) in enumerate(splits):
                    fold_args = (
                        frame.iloc[train_rows].reset_index(drop=True),
                        frame.iloc[held_out].reset_index(drop=True),
                        cs_vectors[train_rows],
                        cs_vectors[held_out],
                        cs.mapping,
                        cfg,
                    )
                    jobs.append((fold_key(cs.name, variant, scheme, number), fold_job, fold_args))
        cs_vectors = cs.vectors["tags"]
        for alternative, changes in ALTERNATIVES.items():
            for scheme, splits in list(folds.items())[:2]:  # the split and the stratified CV
                for number, (train_rows, held_out) in enumerate(splits):
                    fold_args = (
                        cs.frame.iloc[train_rows].reset_index(drop=True),
                        cs.frame.iloc[held_out].reset_index(drop=True),
                        cs_vectors[train_rows],
                        cs_vectors[held_out],
                        cs.mapping,
                        cfg.model_copy(update=changes),
                        False,
                    )
                    jobs.append((fold_key(cs.name, alternative, scheme, number), fold_job, fold_args))
        jobs.append((f"{it.name} knn", candidate_job, ("knn", *it_args)))
        say(f"{len(jobs)} fits on {args.workers} workers (one thread each)")
        done = run_jobs(jobs, args.workers)
        for key, result in done.items():  # an alternative's baseline: the one fitted on the same rows
            if variant_of(key) in ALTERNATIVES:
                same_rows = done[with_variant(key, "tags")]
                for target, models in result["targets"].items():
                    models["baseline"] = same_rows["targets"][target]["baseline"]
        fitted = {k: v for kind in ("baseline", "fusion", "stack", "knn") for k, v in done[f"{it.name} {kind}"].items()}
        rounds = LATENCY_ROUNDS[1 if args.quick else 0]
        say(f"one ticket given its vector: {rounds} interleaved rounds of every candidate")
        seconds = latency(fitted, encoder, test[TEXT].tolist(), vectors[it.test_rows], rounds)
        say("  " + ", ".join(f"{k} {1000 * median(v):.2f} ms" for k, v in seconds.items()))
    it_scores = {"name": it.name, **it_service_results(it, fitted, cfg)}
    for key, r in it_scores["candidates"].items():
        say(f"{it.name} {key}: macro-F1 {r['macro_f1']:.4f}, accuracy {r['accuracy']:.4f}, ECE {r['ece']:.4f}")
    cs_scores = cs_results(cs, folds, done, [*cs.vectors, *ALTERNATIVES])
    languages = sorted(set(cs.frame["language"])) if "language" in cs.frame else []
    facts = {
        "clusters": clusters,
        "cs_rows": len(cs.frame),
        "folds": n_folds,
        "encode_seconds": it.encode_seconds["tags"],
        "encoded": len(it.frame),
    }
    summary, figures, notes = report(it_scores, seconds, cs.name, cs_scores, facts)
    notes.insert(2, form_note(it_scores, cs.name, done))
    table = cs_table(cs.name, cs_scores, languages)
    for row in table["rows"]:
        say("  " + " | ".join(row))
    run |= {"finished": datetime.now(UTC).isoformat(timespec="seconds"), "other_cores": load.other_cores}
    run["wall_seconds"] = round(load.seconds, 1)
    details = {
        "data": {it.name: shown(it.path), cs.name: shown(cs.path)},
        "limit": args.limit,
        "it_service": it_scores | {"one_ticket_median_s": {k: median(v) for k, v in seconds.items()}},
        "customer_support": {
            "near_duplicates": clusters | {"cosine": DUPLICATE_COSINE, "embedded_text": "subject + body"},
            "schemes": {
                variant: {scheme: {t: r["summary"] for t, r in targets.items()} for scheme, targets in schemes.items()}
                for variant, schemes in cs_scores.items()
            },
            "baseline_C": {k: v["C"] for k, v in done.items() if "C" in v},
            "default_form": {k: v["form"] for k, v in done.items() if "form" in v},
            "default_text_model": {k: v["text_model"] for k, v in done.items() if "text_model" in v},
        },
        "encode_seconds": {d.name + " " + v: s for d in (it, cs) for v, s in d.encode_seconds.items()},
    }
    data = {
        "run": run,
        "title": "Quality: candidates, cross-validation, calibration",
        "summary": summary,
        "figures": figures,
        "notes": notes,
        "table": table,
        "details": json.loads(json.dumps(details, default=_plain)),
    }
    save("quality", data, results, report_path)
    say(f"wrote the quality part of {shown(results)} and {shown(report_path)} in {load.seconds:.0f} s")
    return 0


def _plain(value: object) -> object:
    """A numpy scalar or array as JSON (anything else as its text)."""
    with contextlib.suppress(AttributeError):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
