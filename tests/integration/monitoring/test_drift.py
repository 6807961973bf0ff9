"""Drift checks with real Evidently on real IT-service tickets and real embeddings (cached in ChromaDB).

The reference holds 1,500 tickets of every topic but "Purchase". Windows drawn from the same distribution
must not trigger (false-alarm rate measured over 20 windows: at most 1); a window where Purchase tickets,
never seen in training, arrive and get routed to Hardware must trigger and name Hardware.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ticketflow.components.config import BUNDLED_EMBEDDING_MODEL
from ticketflow.components.embed import EncoderSpec, embed_with_cache
from ticketflow.components.prepare import text_hash
from ticketflow.components.store import VectorStore
from ticketflow.monitoring.drift import DriftThresholds, check_drift
from ticketflow.monitoring.statistics import embedding_drift, text_descriptors, vocabulary

WINDOWS, WINDOW_SIZE, REFERENCE = 20, 100, 1500
HELD_OUT = "Purchase"


@pytest.fixture(scope="module")
def tickets(it_service_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, np.ndarray]:
    source = pd.read_csv(it_service_csv)
    rng = np.random.default_rng(7)
    known = source[source["Topic_group"] != HELD_OUT]
    picked = known.iloc[rng.permutation(len(known))[: REFERENCE + WINDOWS * WINDOW_SIZE + 100]]
    novel = source[source["Topic_group"] == HELD_OUT].sample(60, random_state=7)
    frame = pd.concat([picked, novel], ignore_index=True)
    frame = pd.DataFrame(
        {"text": frame["Document"], "predicted": frame["Topic_group"], "confidence": rng.uniform(0.6, 1.0, len(frame))}
    )
    frame.loc[frame["predicted"] == HELD_OUT, "predicted"] = "Hardware"  # the model never saw Purchase
    store = VectorStore(str(tmp_path_factory.mktemp("drift-vectors")))
    vectors, _ = embed_with_cache(
        frame["text"].tolist(),
        [text_hash(t) for t in frame["text"]],
        EncoderSpec(BUNDLED_EMBEDDING_MODEL, "int8"),
        store,
        64,
    )
    return frame, vectors


def split(tickets: tuple[pd.DataFrame, np.ndarray]):
    frame, vectors = tickets
    reference = slice(0, REFERENCE)
    return frame.iloc[reference].reset_index(drop=True), vectors[reference], frame, vectors


def test_windows_from_the_reference_distribution_rarely_alarm(tickets) -> None:
    reference, ref_vectors, frame, vectors = split(tickets)
    alarms = []
    for w in range(WINDOWS):
        rows = slice(REFERENCE + w * WINDOW_SIZE, REFERENCE + (w + 1) * WINDOW_SIZE)
        result, _ = check_drift(
            frame.iloc[rows].reset_index(drop=True), reference, vectors[rows], ref_vectors, "Topic_group"
        )
        assert result.enough_data
        alarms.append(result.drift_detected)
    assert sum(alarms) <= 1, f"{sum(alarms)} false alarms in {WINDOWS} windows"


def test_an_unseen_topic_is_detected_and_attributed_to_its_queue(tickets) -> None:
    reference, ref_vectors, frame, vectors = split(tickets)
    normal = np.arange(len(frame) - 160, len(frame) - 60)[:60]
    novel = np.arange(len(frame) - 60, len(frame))
    rows = np.concatenate([normal, novel])
    result, page = check_drift(
        frame.iloc[rows].reset_index(drop=True), reference, vectors[rows], ref_vectors, "Topic_group"
    )
    assert result.drift_detected, result.scores
    assert result.scores["embedding"]["drifted"]
    hardware = next(q for q in result.queues if q["queue"] == "Hardware")
    assert hardware["drifted"] and hardware["share"] > hardware["reference_share"]
    assert result.queues[0]["queue"] == "Hardware"  # the largest change in share comes first
    assert "Hardware" in result.reason
    assert "Drift detected" in page and "Per predicted queue" in page and "root_metric" in page  # ours + Evidently's


def test_too_few_tickets_give_not_enough_data(tickets) -> None:
    reference, ref_vectors, frame, vectors = split(tickets)
    rows = slice(REFERENCE, REFERENCE + 30)
    result, page = check_drift(
        frame.iloc[rows].reset_index(drop=True),
        reference,
        vectors[rows],
        ref_vectors,
        "Topic_group",
        DriftThresholds(min_tickets=50),
    )
    assert not result.drift_detected and not result.enough_data
    assert "not enough data: 30 tickets" in result.reason and "Not enough data" in page


def test_descriptors_measure_length_letters_and_unknown_words() -> None:
    vocab = vocabulary(pd.Series(["printer jammed again", "vpn down"]))
    out = text_descriptors(pd.Series(["printer jammed", "zzz 123!"]), vocab)
    assert list(out["text_length"]) == [14.0, 8.0]
    assert out.loc[0, "oov_share"] == 0.0 and out.loc[1, "oov_share"] == 1.0
    assert out.loc[0, "non_letter_share"] == pytest.approx(1 / 14)
    assert out.loc[1, "non_letter_share"] == pytest.approx(5 / 8)


def test_embedding_test_reports_the_threshold_its_verdict_used() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(600, 16)).astype(np.float32)
    same = rng.normal(size=(80, 16)).astype(np.float32)
    shifted = same + np.float32(0.5)
    quiet, moved = embedding_drift(same, reference, 0.99), embedding_drift(shifted, reference, 0.99)
    for outcome in (quiet, moved):
        assert outcome.drifted == (outcome.score > outcome.threshold)
    assert not quiet.drifted and moved.drifted
    assert moved.threshold == pytest.approx(quiet.threshold)  # same reference and window size: same bootstrap
    assert embedding_drift(shifted, reference, 0.99) == moved  # seeded: the same numbers every run
